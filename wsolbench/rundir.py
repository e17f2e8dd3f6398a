"""The layout of a run directory, in one place.

A run lives in ``runs/<dataset>-<backbone>-<method>-s<seed>-<hash8>/``::

    config.yaml      the resolved config of the latest run or evaluation in this folder
    checkpoint.pt    the trained model (model, optimizer, epoch, RNG state), written every epoch
    cache.h5         maps and ground truth of the test split (every table number comes from it)
    cache-val.h5     the same for the val split, when the run evaluates val
    metrics.json     the metrics computed from the caches, with the settings used

Every module that reads or writes one of these files gets its path from :class:`RunDir`;
this module imports nothing else from wsolbench, so any module may use it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsolbench.errors import UsageError

CONFIG_FILENAME = "config.yaml"
CHECKPOINT_FILENAME = "checkpoint.pt"
CACHE_FILENAME = "cache.h5"
METRICS_FILENAME = "metrics.json"

#: The splits a run may evaluate; ``test`` is always evaluated.
EVAL_SPLITS = ("test", "val")


def cache_filename(split: str = "test") -> str:
    """``cache.h5`` for the test split, ``cache-<split>.h5`` for another one."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"no cache for split {split!r}; runs evaluate {', '.join(EVAL_SPLITS)}")
    return CACHE_FILENAME if split == "test" else f"cache-{split}.h5"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory (nothing is created until something is written).

    Attributes:
        path: The folder.
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILENAME

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILENAME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILENAME

    def cache(self, split: str = "test") -> Path:
        """The cache of ``split`` (``cache.h5`` for test, ``cache-val.h5`` for val)."""
        return self.path / cache_filename(split)

    def is_run(self) -> bool:
        """Whether the folder holds a finished evaluation (a test cache)."""
        return self.cache().is_file()

    def read_metrics(self) -> dict[str, Any] | None:
        """``metrics.json`` as a dict, or None when absent or unreadable."""
        try:
            data = json.loads(self.metrics.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Replace ``metrics.json`` atomically."""
        write_json_atomic(self.metrics, metrics)

    @classmethod
    def resolve(cls, path: str | os.PathLike[str]) -> RunDir:
        """A run directory from its folder or its ``cache.h5`` path.

        Raises:
            UsageError: ``path`` is another file, or a folder without ``cache.h5``.
        """
        path = Path(path)
        if path.is_file() and path.name == CACHE_FILENAME:
            return cls(path.parent)
        if path.is_file():
            raise UsageError(
                f"{str(path)!r} is not a run's {CACHE_FILENAME}: pass the run folder or its {CACHE_FILENAME} "
                f"({METRICS_FILENAME} is written beside it)"
            )
        if not (path / CACHE_FILENAME).is_file():
            raise UsageError(
                f"{str(path)!r} is not a run directory (no {CACHE_FILENAME}): pass a folder under runs/ or its cache file"
            )
        return cls(path)
