"""TensorBoard events of a run (``<run_dir>/tensorboard``), when the ``tensorboard`` package is installed.

Open them with ``tensorboard --logdir runs/``. Training writes per-term losses (``loss/<term>``),
learning rates (``lr/group<i>``: 0 the backbone's, 1 the heads') and images/s; the runner adds
the final metrics (``metrics/<name>``). Without tensorboard (``pip install 'wsolbench[tensorboard]'``)
nothing is written and nothing fails.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Folder of the event files inside a run directory.
EVENTS_DIRNAME = "tensorboard"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can write events (the ``tensorboard`` package is installed)."""
    return importlib.util.find_spec("tensorboard") is not None


class EventLog:
    """Scalars to TensorBoard; a no-op when disabled or when tensorboard is not installed.

    Args:
        run_dir: The run directory; events go to ``run_dir/tensorboard``.
        enabled: False writes nothing (e.g. on every rank but the main one).
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True):
        self._writer: Any = None
        if enabled and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(Path(run_dir) / EVENTS_DIRNAME))

    def scalars(self, group: str, values: Mapping[str, float], step: int) -> None:
        """Write ``group/<name>`` = value for each item at ``step``."""
        if self._writer is None:
            return
        for name, value in values.items():
            self._writer.add_scalar(f"{group}/{name}", value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
