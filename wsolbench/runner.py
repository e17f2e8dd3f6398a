"""One run end to end: config -> components -> train -> maps -> HDF5 caches -> metrics.

A run folder is named by the hash of what its trained model depends on
(:func:`wsolbench.cache.config_hash` with the training split's fingerprint), not by its
evaluation settings. So :func:`execute` does only what a config still needs:

* metrics saved with the same evaluation settings and caches that still fit: reuse them;
* caches that fit but other evaluation settings (``eval.cam_threshold``,
  ``eval.cam_curve_interval``): re-evaluate the caches (seconds, no model);
* a split whose cache is missing (val newly asked for), was written for other data
  (the split's fingerprint changed) or lacks maps the settings now want
  (``eval.save_maps``): predict it with the trained model, no training;
* otherwise train (or ``--resume``), predict every evaluated split, evaluate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsolbench import config as configuration
from wsolbench.cache import CacheError, CacheMeta, config_hash, dataset_fingerprint, read_meta
from wsolbench.errors import UsageError
from wsolbench.evaluate import METRIC_KEYS, NEUTRAL_KEYS, EvalSettings, evaluate_run, same_settings
from wsolbench.events import EventLog
from wsolbench.predict import write_cache
from wsolbench.progress import Progress
from wsolbench.registry import Registry
from wsolbench.rundir import RunDir
from wsolbench.runtime import init_runtime, shutdown
from wsolbench.specs import WSOLDataset
from wsolbench.train import build_dataset, build_parts, train


@dataclass
class RunResult:
    """Where a run lives and what it scored.

    Attributes:
        run_dir: The run folder.
        metrics: Its ``metrics.json`` (empty on the non-main ranks of a distributed run).
        reused: No training happened in this call (the folder's trained model was reused).
    """

    run_dir: Path
    metrics: dict[str, Any]
    reused: bool = False


def run_name(config: dict[str, Any], digest: str) -> str:
    """``<dataset>-<backbone>-<method>-s<seed>-<hash8>``: readable and unique per config."""
    parts = [config["dataset"]["name"], config["backbone"]["name"], config["method"]["name"]]
    return "-".join(p.replace(":", "_").replace("/", "_") for p in parts) + f"-s{config['seed']}-{digest[:8]}"


def build_splits(config: dict[str, Any], registry: Registry, splits: tuple[str, ...]) -> dict[str, WSOLDataset]:
    """The training split and the evaluated ``splits`` of the configured dataset.

    Raises:
        UsageError: the dataset has no ``val`` split although the settings evaluate it, or
            an evaluated split is empty.
    """
    data = {"train": build_dataset(config, registry, "train")}
    for split in splits:
        try:
            data[split] = build_dataset(config, registry, split)
        except UsageError as error:
            if split != "val":
                raise
            raise UsageError(
                f"eval.splits / eval.cam_threshold=val need a val split, and dataset {config['dataset']['name']!r} "
                f"gave none ({error}); evaluate test only (eval.cam_threshold: best or a number)"
            ) from None
        if len(data[split]) == 0:
            raise UsageError(
                f"the {split} split of dataset {config['dataset']['name']!r} has no images: add some, or evaluate "
                "test only (eval.splits: [test], eval.cam_threshold: best or a number)"
            )
    return data


def execute(
    config: dict[str, Any],
    registry: Registry,
    *,
    out: Path,
    resume: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> RunResult:
    """Train (if needed), predict (if needed) and evaluate one configuration in ``out/<run name>``.

    A finished run is reused (``force`` retrains), re-evaluated or re-predicted as the
    module docstring says; a run with a checkpoint but no metrics needs ``resume``
    (continue) or ``force`` (start over), so finished work is never overwritten by accident.
    """
    progress = progress or Progress()
    settings = EvalSettings.from_config(config["eval"])
    data = build_splits(config, registry, settings.splits)
    fingerprints = {split: dataset_fingerprint(dataset) for split, dataset in data.items()}
    digest = config_hash(config, dataset_fingerprint=fingerprints["train"])
    run = RunDir(out / run_name(config, digest))
    saved = None if force else run.read_metrics()
    stale = [s for s in settings.splits if force or not _cache_fits(run.cache(s), fingerprints[s], config)]
    if saved is not None and not stale:
        if same_settings(saved, settings):
            progress.message("reusing finished run", run=str(run.path))
            return RunResult(run.path, saved, reused=True)
        progress.message("re-evaluating the finished run's caches with new eval settings", run=str(run.path))
        if not _is_main_process():
            return RunResult(run.path, {}, reused=True)
        run.config.write_text(configuration.dump(config))
        return RunResult(run.path, evaluate_run(run, settings), reused=True)
    trained = saved is not None
    if trained and not run.checkpoint.exists():
        raise UsageError(
            f"run {str(run.path)!r} must predict {', '.join(stale)} but its {run.checkpoint.name} is gone: "
            "restore it, or add --force to retrain"
        )
    if not trained and run.checkpoint.exists() and not (resume or force):
        raise UsageError(
            f"run directory {str(run.path)!r} holds an unfinished run: add --resume to continue it or --force to start over"
        )
    previous_device = _train_device(run) if trained else None
    runtime = init_runtime(config["device"])
    try:
        if runtime.is_main:
            run.path.mkdir(parents=True, exist_ok=True)
            run.config.write_text(configuration.dump(config))
        parts = build_parts(config, registry, data)
        progress.message(
            "reusing the trained model to predict " + ", ".join(stale) if trained else "run",
            dir=str(run.path),
            device=str(runtime.device),
            processes=runtime.world_size,
            train_images=len(parts.train_set),
            **{f"{split}_images": len(data[split]) for split in stale},
        )
        resume = (resume and not force) or trained  # a finished run's checkpoint holds every epoch: nothing trains
        train(parts, config, runtime, run.path, config_hash=digest, resume=resume, progress=progress)
        versions = _plugin_versions(config, registry)
        for split in stale:
            dataset = parts.datasets[split]
            extra = {
                "data_fingerprint": fingerprints[split],
                "train_data_fingerprint": fingerprints["train"],
                "train_device": previous_device or runtime.device.type,
                "normalization": dataset.normalization,
            }
            meta = CacheMeta.from_config(config, plugin_versions=versions, config_hash=digest, split=split, extra=extra)
            write_cache(run.cache(split), parts.model, dataset, config, runtime, meta)
        metrics = evaluate_run(run, settings) if runtime.is_main else {}
        with EventLog(run.path, enabled=runtime.is_main) as events:
            scalars = {key: value for key, value in metrics.items() if isinstance(value, float)}
            events.scalars("metrics", scalars, step=config["train"]["epochs"])
    finally:
        shutdown(runtime)
    return RunResult(run.path, metrics, reused=trained)


def _is_main_process() -> bool:
    """Rank 0 of a torchrun launch, or a plain process (decided without a process group)."""
    return int(os.environ.get("RANK", "0")) == 0


def _train_device(run: RunDir) -> str | None:
    """Where a finished run's model was trained, as its test cache records it."""
    try:
        return read_meta(run.cache()).extra.get("train_device")
    except CacheError:
        return None


def _covers(written: Any, wanted: Any) -> bool:
    """Does a cache written with eval value ``written`` hold what value ``wanted`` asks for?"""
    if isinstance(wanted, bool):
        return not wanted or written is True
    if isinstance(wanted, (list, tuple)):
        return isinstance(written, (list, tuple)) and set(map(str, wanted)) <= set(map(str, written))
    return written == wanted


def _cache_fits(path: Path, fingerprint: str, config: dict[str, Any]) -> bool:
    """Whether an existing cache serves ``config``: same data, and every map it asks for stored.

    The metric settings (:data:`~wsolbench.evaluate.METRIC_KEYS`) and ``eval.batch_size``
    never need a new cache; any other ``eval`` key must be covered by the value the cache
    was written with (a map kept that is no longer wanted is fine).
    """
    if not path.is_file():
        return False
    try:
        meta = read_meta(path)
    except CacheError:
        return False
    if meta.extra.get("data_fingerprint") != fingerprint:
        return False
    written = meta.config.get("eval") or {}
    return all(
        _covers(written.get(key), wanted)
        for key, wanted in config["eval"].items()
        if key not in METRIC_KEYS and key not in NEUTRAL_KEYS
    )


def _plugin_versions(config: dict[str, Any], registry: Registry) -> dict[str, str]:
    versions = {}
    for section, kind in configuration.COMPONENT_SECTIONS.items():
        plugin = registry.get(kind, config[section]["name"]).plugin
        versions[f"{section}:{config[section]['name']}"] = f"{plugin.distribution} {plugin.version}"
    return versions
