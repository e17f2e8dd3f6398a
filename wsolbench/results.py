"""Finding runs and turning their caches into table rows."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from wsolbench.cache import CACHE_FILENAME, read_meta
from wsolbench.errors import UsageError
from wsolbench.tables import build_table, config_variant, render_table

METRICS_FILENAME = "metrics.json"


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory from a run directory or its ``cache.h5`` path."""
    path = Path(path)
    if path.is_file() and path.name == CACHE_FILENAME:
        return path.parent
    if path.is_file():
        raise UsageError(
            f"{str(path)!r} is not a run's {CACHE_FILENAME}: pass the run folder or its {CACHE_FILENAME} "
            "(metrics.json is written beside it)"
        )
    if not (path / CACHE_FILENAME).is_file():
        raise UsageError(
            f"{str(path)!r} is not a run directory (no {CACHE_FILENAME}): pass a folder under runs/ or its cache file"
        )
    return path


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories named by ``paths``; a folder of runs (like ``runs/``) expands to its runs."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not (path / CACHE_FILENAME).exists():
            found.extend(sorted(p.parent for p in path.glob(f"*/{CACHE_FILENAME}")))
        else:
            found.append(resolve_run_dir(path))
    if not found:
        raise UsageError(
            f"no finished runs under {', '.join(map(str, paths))}: run `wsolbench run` first or name run folders"
        )
    return found


def run_metrics(run_dir: Path, *, recompute: bool = False) -> dict[str, Any]:
    """The run's metrics: ``metrics.json`` when present, else recomputed from its cache."""
    from wsolbench.runner import evaluate_run_dir

    saved = run_dir / METRICS_FILENAME
    if saved.exists() and not recompute:
        return json.loads(saved.read_text())
    return evaluate_run_dir(run_dir)


def run_row(run_dir: Path, *, recompute: bool = False) -> dict[str, Any]:
    """One table row: the run's names and seed (from the cache metadata) plus its metrics."""
    meta = read_meta(run_dir / CACHE_FILENAME)
    return {
        "method": meta.method,
        "backbone": meta.backbone,
        "dataset": meta.dataset,
        "seed": meta.seed,
        "variant": config_variant(meta.config),
        "run": run_dir.name,
        **run_metrics(run_dir, recompute=recompute),
    }


def render_runs(run_dirs: Iterable[Path], *, fmt: str = "github", recompute: bool = False, **options: Any) -> str:
    """The comparison table of some runs as text."""
    rows = [run_row(Path(d), recompute=recompute) for d in run_dirs]
    return render_table(build_table(rows, **options), fmt=fmt)
