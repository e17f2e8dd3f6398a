"""Finding runs and turning their metrics into table rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wsolbench.cache import read_meta
from wsolbench.errors import UsageError
from wsolbench.evaluate import evaluate_run
from wsolbench.rundir import CACHE_FILENAME, EVAL_SPLITS, RunDir
from wsolbench.tables import build_table, config_variant, render_table

#: A run of at most this many epochs counts as a short budget for :func:`budget_note`.
SHORT_BUDGET_EPOCHS = 10
#: ... and its classifier as near chance when its top-1 accuracy is below this many times guessing's.
NEAR_CHANCE = 3.0
#: What a newcomer's CPU table points at instead: the synthetic ablation (README, benchmarks/RESULTS.md).
ABLATION_COMMAND = "wsolbench sweep benchmarks/ablation.yaml"


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory from a run directory or its ``cache.h5`` path (:meth:`RunDir.resolve`)."""
    return RunDir.resolve(path).path


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories named by ``paths``; a folder of runs (like ``runs/``) expands to its runs."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir() and not RunDir(path).is_run():
            found.extend(sorted(p.parent for p in path.glob(f"*/{CACHE_FILENAME}")))
        else:
            found.append(resolve_run_dir(path))
    if not found:
        raise UsageError(
            f"no finished runs under {', '.join(map(str, paths))}: run `wsolbench run` first or name run folders"
        )
    return found


def run_metrics(run_dir: Path, *, recompute: bool = False) -> dict[str, Any]:
    """The run's metrics: ``metrics.json`` when present, else recomputed from its caches
    with the run's own evaluation settings (:func:`wsolbench.evaluate.evaluate_run`)."""
    run = RunDir(run_dir)
    saved = None if recompute else run.read_metrics()
    return saved if saved is not None else evaluate_run(run)


def budget_note(config: Mapping[str, Any], extra: Mapping[str, Any], metrics: Mapping[str, Any]) -> str | None:
    """The line a table needs under a from-scratch, short CPU run whose classifier is near chance.

    Such a run (the README's first command: VGG16 without pretrained weights, 2 CPU epochs)
    barely starts learning, so its numbers show that the pipeline works, not how methods
    compare; the line says so and names the command that does show the methods'
    differences on CPU. None for any other run.
    """
    backbone, train = config.get("backbone") or {}, config.get("train") or {}
    epochs, classes = train.get("epochs"), metrics.get("num_classes")
    error = metrics.get("cls_err_top1")
    if backbone.get("pretrained") or extra.get("train_device") != "cpu":
        return None
    if not isinstance(epochs, int) or epochs > SHORT_BUDGET_EPOCHS or not classes or error is None:
        return None
    if 100.0 - float(error) >= NEAR_CHANCE * 100.0 / classes:
        return None
    return (
        f"{backbone.get('name', 'the backbone')} trained from scratch for {epochs} epoch{'s' * (epochs != 1)} on CPU "
        f"classifies near chance (guessing: {100 - 100 / classes:.1f}% Top-1 Cls Err), so these numbers show the "
        f"pipeline, not the methods: `{ABLATION_COMMAND}` compares the methods on CPU (tinycnn, about 2 min "
        "per run), --pretrained PATH fine-tunes ImageNet weights."
    )


def run_row(run_dir: Path, *, recompute: bool = False, split: str = "test") -> dict[str, Any]:
    """One table row: the run's names and seed (from the cache metadata) plus the metrics of
    ``split`` and how they were computed (``split``, ``cam_threshold_from``,
    ``cam_curve_interval``), and ``notes`` for under the table (:func:`budget_note`).

    Raises:
        UsageError: ``split`` is not one the run evaluated.
    """
    if split not in EVAL_SPLITS:
        raise UsageError(f"unknown split {split!r}: tables show {' or '.join(EVAL_SPLITS)}")
    meta = read_meta(RunDir(run_dir).cache())
    metrics = run_metrics(run_dir, recompute=recompute)
    values = metrics if split == "test" else metrics.get(split)
    if not isinstance(values, Mapping):
        raise UsageError(
            f"run {Path(run_dir).name!r} has no {split} metrics: repeat its `wsolbench run` command with "
            f"--set 'eval.splits=[test, {split}]' (the trained model is reused)"
        )
    settings = metrics.get("eval") if isinstance(metrics.get("eval"), Mapping) else {}
    row = {
        "method": meta.method,
        "backbone": meta.backbone,
        "dataset": meta.dataset,
        "seed": meta.seed,
        "variant": config_variant(meta.config, dataset_fingerprint=meta.extra.get("train_data_fingerprint")),
        "run": Path(run_dir).name,
        **{key: value for key, value in values.items() if not isinstance(value, Mapping)},
    }
    if "cam_curve_interval" in settings:
        row["cam_curve_interval"] = settings["cam_curve_interval"]
    note = budget_note(meta.config, meta.extra, values)
    if note:
        row["notes"] = [note]
    return row


def render_runs(
    run_dirs: Iterable[Path], *, fmt: str = "github", recompute: bool = False, split: str = "test", **options: Any
) -> str:
    """The comparison table of some runs as text (the ``split``'s numbers)."""
    rows = [run_row(Path(d), recompute=recompute, split=split) for d in run_dirs]
    options.setdefault("protocol_columns", fmt == "csv")
    return render_table(build_table(rows, **options), fmt=fmt)
