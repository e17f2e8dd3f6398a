"""One run end to end: config -> components -> train -> maps -> HDF5 cache -> metrics."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsolbench import config as configuration
from wsolbench.cache import CACHE_FILENAME, CacheMeta, config_hash, read_cache
from wsolbench.errors import UsageError
from wsolbench.evaluate import evaluate_cache
from wsolbench.predict import write_cache
from wsolbench.progress import Progress
from wsolbench.registry import Registry
from wsolbench.results import METRICS_FILENAME
from wsolbench.runtime import init_runtime, shutdown
from wsolbench.train import CHECKPOINT, build_parts, train

CONFIG_FILENAME = "config.yaml"


@dataclass
class RunResult:
    """Where a run lives and what it scored."""

    run_dir: Path
    metrics: dict[str, Any]
    reused: bool = False


def run_name(config: dict[str, Any], digest: str) -> str:
    """``<dataset>-<backbone>-<method>-s<seed>-<hash8>``: readable and unique per config."""
    parts = [config["dataset"]["name"], config["backbone"]["name"], config["method"]["name"]]
    return "-".join(p.replace(":", "_").replace("/", "_") for p in parts) + f"-s{config['seed']}-{digest[:8]}"


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def evaluate_run_dir(run_dir: Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of a run from its cache alone; saved as ``metrics.json`` beside it."""
    with read_cache(run_dir / CACHE_FILENAME) as cache:
        evaluation = (config or cache.meta.config).get("eval", configuration.DEFAULTS["eval"])
        metrics = evaluate_cache(
            cache, cam_threshold=evaluation["cam_threshold"], cam_curve_interval=evaluation["cam_curve_interval"]
        )
    write_json_atomic(run_dir / METRICS_FILENAME, metrics)
    return metrics


def execute(
    config: dict[str, Any],
    registry: Registry,
    *,
    out: Path,
    resume: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Train and evaluate one configuration in ``out/<run name>``.

    A run whose metrics already exist is reused (unless ``force``); a run with a
    checkpoint but no metrics needs ``resume`` (continue) or ``force`` (start over), so
    finished work is never overwritten by accident.
    """
    progress = progress or Progress()
    digest = config_hash(config)
    run_dir = out / run_name(config, digest)
    if (run_dir / METRICS_FILENAME).exists() and not force:
        progress.message("reusing finished run", run=str(run_dir))
        return RunResult(run_dir, json.loads((run_dir / METRICS_FILENAME).read_text()), reused=True)
    if (run_dir / CHECKPOINT).exists() and not (resume or force):
        raise UsageError(
            f"run directory {str(run_dir)!r} holds an unfinished run: add --resume to continue it or --force to start over"
        )
    runtime = init_runtime(config["device"])
    try:
        if runtime.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / CONFIG_FILENAME).write_text(configuration.dump(config))
        parts = build_parts(config, registry)
        progress.message(
            "run",
            dir=str(run_dir),
            device=str(runtime.device),
            processes=runtime.world_size,
            train_images=len(parts.train_set),
            test_images=len(parts.test_set),
        )
        train(parts, config, runtime, run_dir, config_hash=digest, resume=resume and not force, progress=progress)
        meta = CacheMeta.from_config(config, plugin_versions=_plugin_versions(config, registry), config_hash=digest)
        write_cache(run_dir / CACHE_FILENAME, parts.model, parts.test_set, config, runtime, meta)
        metrics = evaluate_run_dir(run_dir, config) if runtime.is_main else {}
    finally:
        shutdown(runtime)
    return RunResult(run_dir, metrics)


def _plugin_versions(config: dict[str, Any], registry: Registry) -> dict[str, str]:
    versions = {}
    for section, kind in configuration.COMPONENT_SECTIONS.items():
        plugin = registry.get(kind, config[section]["name"]).plugin
        versions[f"{section}:{config[section]['name']}"] = f"{plugin.distribution} {plugin.version}"
    return versions
