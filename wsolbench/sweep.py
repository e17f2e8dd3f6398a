"""Sweeps: the cross product of methods x backbones x datasets x seeds from one grid file."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wsolbench import config as configuration
from wsolbench.errors import UsageError

GRID_AXES = {"methods": "method.name", "backbones": "backbone.name", "datasets": "dataset.name", "seeds": "seed"}


def load_grid(path: str | Path) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Read a grid YAML: axes (``methods``, ``backbones``, ``datasets``, ``seeds``) plus an
    optional ``base`` config (same sections as a run config) applied to every run.

    Example::

        methods: [cam, multiloss, hda, danet]
        backbones: [tinycnn]
        seeds: [0, 1, 2]
        base:
          train: {epochs: 6}
    """
    data = configuration.load_yaml(path)
    unknown = set(data) - set(GRID_AXES) - {"base"}
    if unknown:
        raise UsageError(
            f"grid {str(path)!r}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join([*GRID_AXES, 'base'])}"
        )
    axes = {}
    for axis in GRID_AXES:
        values = data.get(axis, [])
        if not isinstance(values, list):
            raise UsageError(f"grid {str(path)!r}: {axis!r} must be a list, e.g. {axis}: [a, b]")
        axes[axis] = values
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise UsageError(f"grid {str(path)!r}: 'base' must be a mapping of config sections")
    return axes, base


def grid_points(axes: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of the non-empty axes as ``{dotted key: value}``."""
    used = [(GRID_AXES[axis], values) for axis, values in axes.items() if values]
    for combination in itertools.product(*(values for _, values in used)):
        yield {key: value for (key, _), value in zip(used, combination)}


@dataclass(frozen=True)
class RunCall:
    """One sweep run as a picklable job: ``RunCall(...)(config)`` trains (or reuses) the run
    and returns its folder. A SLURM job requeued after a timeout continues it (``on_requeue``)."""

    out: Path
    resume: bool = False
    force: bool = False
    log_format: str = "plain"
    quiet: bool = False

    def __call__(self, config: dict[str, Any]) -> Path:
        from wsolbench.progress import Progress
        from wsolbench.registry import default_registry
        from wsolbench.runner import execute

        progress = Progress(self.log_format, quiet=self.quiet)
        label = "/".join(str(config[s]["name"]) for s in ("method", "backbone", "dataset"))
        progress.message(f"run {label} seed {config['seed']}")
        result = execute(
            config, default_registry(), out=self.out, resume=self.resume, force=self.force, progress=progress
        )
        return result.run_dir

    def on_requeue(self) -> RunCall:
        """The call a requeued job makes: resume the checkpoint, never start over."""
        return replace(self, resume=True, force=False)
