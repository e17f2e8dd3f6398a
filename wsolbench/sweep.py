"""Sweeps: the cross product of methods x backbones x datasets x seeds (and of any config
options the grid lists) from one grid file."""

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
    """Read a grid YAML: axes (``methods``, ``backbones``, ``datasets``, ``seeds``), optional
    ``options`` (dotted config keys, each with a list of values, crossed with the axes) and an
    optional ``base`` config (same sections as a run config) applied to every run.

    Returns the axes (the named ones, then each option under its dotted key) and the base.

    Example::

        methods: [danet]
        backbones: [tinycnn]
        seeds: [0, 1, 2]
        options:
          method.k: [1, 2, 4, 8, 16]
          method.scope: [joint, level]
        base:
          train: {epochs: 6}
    """
    data = configuration.load_yaml(path)
    allowed = [*GRID_AXES, "options", "base"]
    unknown = set(data) - set(allowed)
    if unknown:
        raise UsageError(f"grid {str(path)!r}: unknown key {sorted(unknown)[0]!r}; allowed: {', '.join(allowed)}")
    axes = {}
    for axis in GRID_AXES:
        axes[axis] = _axis_values(path, axis, data.get(axis, []))
    options = data.get("options") or {}
    if not isinstance(options, dict):
        raise UsageError(f"grid {str(path)!r}: 'options' must map dotted config keys to lists, e.g. method.k: [4, 8]")
    for key, values in options.items():
        if not isinstance(key, str) or len(key.split(".")) < 2 or key in GRID_AXES.values():
            raise UsageError(
                f"grid {str(path)!r}: option {key!r} must be a dotted config key such as method.k "
                "(methods, backbones, datasets and seeds have their own axes)"
            )
        axes[key] = _axis_values(path, f"options: {key}", values)
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise UsageError(f"grid {str(path)!r}: 'base' must be a mapping of config sections")
    return axes, base


def _axis_values(path: str | Path, axis: str, values: Any) -> list[Any]:
    if not isinstance(values, list):
        raise UsageError(f"grid {str(path)!r}: {axis!r} must be a list, e.g. [a, b]")
    return values


def grid_points(axes: dict[str, list[Any]]) -> Iterator[dict[str, Any]]:
    """Every combination of the non-empty axes as ``{dotted key: value}`` (named axes map to
    their config keys, options keep theirs)."""
    used = [(GRID_AXES.get(axis, axis), values) for axis, values in axes.items() if values]
    for combination in itertools.product(*(values for _, values in used)):
        yield {key: value for (key, _), value in zip(used, combination)}


def point_label(point: dict[str, Any]) -> str:
    """A grid point's options as ``key=value`` pairs (the named axes left out), for logs."""
    named = set(GRID_AXES.values())
    return " ".join(f"{key}={value}" for key, value in point.items() if key not in named)


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
