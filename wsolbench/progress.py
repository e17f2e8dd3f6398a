"""Training progress: a tqdm bar on a terminal, plain or JSON log lines otherwise."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

LOG_FORMATS = ("auto", "bar", "plain", "json")


class Progress:
    """Reports epochs, batches, loss, throughput and ETA.

    The trainer reports the loss every ``train.log_every`` batches (a plain/JSON line each
    time; the bar shows the latest).

    Args:
        log_format: ``auto`` (a bar on a TTY, plain lines otherwise), ``bar``, ``plain`` or ``json``.
        quiet: Print nothing but errors.
        stream: Where to print (stderr by default, so tables on stdout stay clean).
    """

    def __init__(self, log_format: str = "auto", *, quiet: bool = False, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        if log_format == "auto":
            log_format = "bar" if self.stream.isatty() else "plain"
        self.format = log_format
        self.quiet = quiet
        self._bar: tqdm | None = None
        self._start = 0.0
        self._seen = 0
        self._loss: float | None = None

    def message(self, text: str, **fields: Any) -> None:
        """A one-off event line (run start, checkpoint, evaluation)."""
        if self.quiet:
            return
        if self.format == "json":
            print(json.dumps({"event": text, **fields}), file=self.stream, flush=True)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            print(f"{text} {extra}".rstrip(), file=self.stream, flush=True)

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        self._epoch, self._epochs, self._batches = epoch, epochs, batches
        self._start, self._seen = time.perf_counter(), 0
        if not self.quiet and self.format == "bar":
            self._bar = tqdm(
                total=batches, desc=f"epoch {epoch + 1}/{epochs}", file=self.stream, leave=False, dynamic_ncols=True
            )

    def images_per_second(self) -> float:
        """Training throughput of the current epoch so far."""
        return self._seen / max(time.perf_counter() - self._start, 1e-9)

    def step(self, batch: int, images: int, loss: float | None) -> None:
        """One batch done; ``loss`` is the mean loss since the last report, or None between reports."""
        self._seen += images
        if loss is not None:
            self._loss = loss
        if self.quiet:
            return
        rate = self.images_per_second()
        if self._bar is not None:
            if self._loss is not None:
                self._bar.set_postfix(loss=f"{self._loss:.4f}", img_s=f"{rate:.1f}")
            self._bar.update(1)
        elif loss is not None:
            eta = (self._batches - batch - 1) * (time.perf_counter() - self._start) / (batch + 1)
            self._line(
                "batch",
                batch=batch + 1,
                batches=self._batches,
                loss=round(loss, 5),
                img_per_s=round(rate, 1),
                eta_s=round(eta, 1),
            )

    def end_epoch(self, **metrics: float) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if not self.quiet:
            elapsed = time.perf_counter() - self._start
            self._line(
                "epoch", seconds=round(elapsed, 1), img_per_s=round(self._seen / max(elapsed, 1e-9), 1), **metrics
            )

    def _line(self, event: str, **fields: Any) -> None:
        fields = {"epoch": self._epoch + 1, "epochs": self._epochs, **fields}
        if self.format == "json":
            print(json.dumps({"event": event, **fields}), file=self.stream, flush=True)
        else:
            print(f"[{event}] " + " ".join(f"{k}={v}" for k, v in fields.items()), file=self.stream, flush=True)
