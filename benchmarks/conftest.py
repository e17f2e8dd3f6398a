"""Shared fixtures of the benchmark suites (``pytest benchmarks/``; the main run collects ``tests/`` only).

The machine running these is shared and loaded, so no suite compares absolute times: each
measures the library and a plain baseline in the *same* test, interleaved, and stores the
ratio in ``benchmark.extra_info`` (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Interleaved:
    """Per-call times (seconds) of two callables measured alternately.

    Attributes:
        first, second: Wall-clock time of every timed call of the first / second callable.
        first_cpu, second_cpu: The same calls' CPU time of this process (``time.process_time``):
            what the call computed, without the time it spent waiting for a core that other
            processes held. Steadier than wall time on a loaded machine for calls lasting
            seconds, which medians of a few samples cannot clean; blind to waiting (disk, sleep).
    """

    first: list[float]
    second: list[float]
    first_cpu: list[float]
    second_cpu: list[float]

    @staticmethod
    def _ratio(a: list[float], b: list[float]) -> float:
        return statistics.median(a) / statistics.median(b)

    @property
    def first_median(self) -> float:
        return statistics.median(self.first)

    @property
    def second_median(self) -> float:
        return statistics.median(self.second)

    @property
    def ratio(self) -> float:
        """``median(first) / median(second)``, wall clock."""
        return self._ratio(self.first, self.second)

    @property
    def cpu_ratio(self) -> float:
        """``median(first_cpu) / median(second_cpu)``."""
        return self._ratio(self.first_cpu, self.second_cpu)

    @property
    def paired_ratio(self) -> float:
        """Median of the per-pair wall-clock ratios: insensitive to load that comes and goes
        between pairs (both calls of a pair run in the same spell)."""
        return statistics.median(a / b for a, b in zip(self.first, self.second, strict=True))

    @property
    def paired_cpu_ratio(self) -> float:
        """Median of the per-pair CPU-time ratios: both of the above."""
        return statistics.median(a / b for a, b in zip(self.first_cpu, self.second_cpu, strict=True))


def time_interleaved(
    first: Callable[[], object], second: Callable[[], object], pairs: int, *, second_repeat: int = 1
) -> Interleaved:
    """Time ``pairs`` calls of each callable, alternating which runs first (AB, BA, AB, ...).

    Alternating the order cancels any advantage of running right after the other one (warm
    caches, a frequency step); a slow spell of the machine hits both sides of a pair. Compare
    the medians, never single times.

    ``second_repeat``: each sample of ``second`` times this many back-to-back calls and records
    their mean, for a baseline much shorter than ``first`` whose single calls would be at the
    mercy of one page fault or one preemption.
    """
    wall: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    calls = (first, second)
    repeats = (1, second_repeat)
    for pair in range(pairs):
        for which in (0, 1) if pair % 2 == 0 else (1, 0):
            call, repeat = calls[which], repeats[which]
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(repeat):
                call()
            wall[which].append((time.perf_counter() - start) / repeat)
            cpu[which].append((time.process_time() - start_cpu) / repeat)
    return Interleaved(wall[0], wall[1], cpu[0], cpu[1])


@pytest.fixture
def interleaved() -> Callable[[Callable[[], object], Callable[[], object], int], Interleaved]:
    """:func:`time_interleaved`, as a fixture (conftest modules are not imported by tests)."""
    return time_interleaved


@pytest.fixture
def one_torch_thread():
    """``torch.set_num_threads(1)`` for the test, restored afterwards.

    On a shared 2-core machine intra-op threads of both sides of a comparison fight with
    other processes for the cores, which makes ratios swing; one thread keeps the library and
    the plain loop doing the same sequential work.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
