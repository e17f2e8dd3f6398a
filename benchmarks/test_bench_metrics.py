"""Speed of wsolbench.metrics against the naive per-threshold implementation.

Run:  python -m pytest benchmarks/test_bench_metrics.py --benchmark-only -q

Ours runs on 2,000 CAM-like 224x224 float64 maps (28x28 "feature maps" of a few
Gaussian blobs plus noise, upsampled bicubically and min-max normalised as in
wsolevaluation's inference, plus 5% noisy maps with many small regions and
holes); the naive implementation (``benchmarks/naive_metrics.py``: one
``cv2.findContours`` per image and threshold, one ``np.histogram`` per image)
runs on every 20th of them (100 maps, same mix) in the same test, the two timed
alternately (``interleaved`` fixture of ``benchmarks/conftest.py``). The ratio of
median per-map CPU times (all threads summed: the ratio of the work done) is
``benchmark.extra_info['speedup_cpu']``, asserted and compared with ``baseline.json``;
the ratio of wall-clock times, the measure of the issue's targets, is
``wall_clock_factor``. It is context only: ours runs on every core, the naive code on
one, so it depends on how many cores other processes leave free (8.9x on a quiet machine,
4.8x at load 3-4 for MaxBoxAcc). PxAP's ratio is taken with ours on one thread too
(see ``test_pxap_speedup``). Results are also checked to be identical on the subset.
The asserted floors (2.5x: regression guards well below the measured values,
see MIN_BOX_SPEEDUP) can be overridden with WSOLBENCH_MIN_BOX_SPEEDUP /
WSOLBENCH_MIN_PXAP_SPEEDUP.

``test_hard_maps_cost`` compares MaxBoxAccV2 on 150 noisy, ring-heavy and pure-noise maps with
150 smooth single blobs (``bench_maps.py`` kinds): ``hard_vs_smooth_ratio``, CPU time per map
(issue 16's goal: 2; measured 2026-12-01: rings 2.9, noisy 6-7, noise 7-8). The comparison with
wsolevaluation's own evaluator needs its numpy < 1.24 environment: ``vs_reference.py``.
"""

from __future__ import annotations

import contextlib
import os
import statistics

import numba
import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from bench_maps import benchmark_maps  # noqa: E402
from naive_metrics import naive_box_accuracy, naive_pxap  # noqa: E402

from wsolbench.metrics import box_accuracy, pxap  # noqa: E402

N_MAPS = 2000
SUBSET = slice(0, N_MAPS, 20)
# Floors on the CPU-time ratio that catch a broken kernel, not the targets. Targets (wall clock):
# 50x boxes, NOT reached (2026-11-25, 2 cores: 8.9x MaxBoxAcc, 10.6x MaxBoxAccV2 quiet; CPU time
# 4.5x / 5.4x; see profile_box_stages.py) and 5x PxAP (9.9x wall, 5.5x CPU on 2026-11-25; 2026-12-02, on
# an AVX2-only host: 5.7x wall on two threads, 4.8x CPU on one). Regressions against
# the measured values are caught by benchmarks/compare.py and baseline.json.
MIN_BOX_SPEEDUP = float(os.environ.get("WSOLBENCH_MIN_BOX_SPEEDUP", 2.5))
MIN_PXAP_SPEEDUP = float(os.environ.get("WSOLBENCH_MIN_PXAP_SPEEDUP", 2.5))


@pytest.fixture(scope="module")
def data():
    return benchmark_maps(N_MAPS)


def _record(benchmark, metric, value, timing, n_ours, n_naive, minimum):
    """Per-map speed-ups from interleaved timings (see conftest.time_interleaved)."""
    wall = (timing.second_median / n_naive) / (timing.first_median / n_ours)
    cpu = (statistics.median(timing.second_cpu) / n_naive) / (statistics.median(timing.first_cpu) / n_ours)
    benchmark.extra_info.update(
        metric=metric,
        value=value,
        maps=n_ours,
        naive_maps=n_naive,
        ours_ms_per_map=1e3 * timing.first_median / n_ours,
        naive_ms_per_map=1e3 * timing.second_median / n_naive,
        wall_clock_factor=wall,
        speedup_cpu=cpu,
        threads=numba.get_num_threads(),
    )
    print(
        f"\n{metric}: ours {1e3 * timing.first_median / n_ours:.3f} ms/map, naive "
        f"{1e3 * timing.second_median / n_naive:.3f} ms/map: speed-up {wall:.1f}x wall, {cpu:.1f}x CPU time"
    )
    assert cpu >= minimum, f"{metric}: {cpu:.1f}x CPU time < {minimum}x"


@pytest.mark.parametrize("metric", ["MaxBoxAcc", "MaxBoxAccV2"])
def test_box_speedup(benchmark, interleaved, data, metric):
    maps, boxes, _ = data
    kwargs = (
        {"iou_thresholds": (50,), "multi_contour": False}
        if metric == "MaxBoxAcc"
        else {"iou_thresholds": (30, 50, 70), "multi_contour": True}
    )
    sub_maps, sub_boxes = maps[SUBSET], boxes[SUBSET]
    # identical numbers on the subset (this also compiles the kernel before any timing)
    ours_sub = box_accuracy(sub_maps, sub_boxes, **kwargs)
    naive_value, naive_curves = naive_box_accuracy(sub_maps, sub_boxes, **kwargs)
    assert ours_sub.value == naive_value
    for iou, curve in naive_curves.items():
        np.testing.assert_array_equal(ours_sub.curves[iou], curve)

    result = benchmark.pedantic(box_accuracy, args=(maps, boxes), kwargs=kwargs, rounds=1, iterations=1)
    timing = interleaved(
        lambda: box_accuracy(maps, boxes, **kwargs), lambda: naive_box_accuracy(sub_maps, sub_boxes, **kwargs), 2
    )
    _record(benchmark, metric, result.value, timing, len(maps), len(sub_maps), MIN_BOX_SPEEDUP)


HARD_MAPS = 150


@pytest.fixture(scope="module")
def smooth_maps():
    return benchmark_maps(HARD_MAPS, kind="smooth")[:2]


@pytest.mark.parametrize("kind", ["noisy", "rings", "noise"])
def test_hard_maps_cost(benchmark, interleaved, smooth_maps, kind):
    """MaxBoxAccV2 CPU time per map on noisy, ring-heavy and pure-noise maps over that on smooth
    single blobs (bench_maps.py kinds), interleaved: ``hard_vs_smooth_ratio`` (issue 16's goal: 2)."""
    maps, boxes, _ = benchmark_maps(HARD_MAPS, kind=kind)
    smooth, smooth_boxes = smooth_maps
    box_accuracy(maps[:4], boxes[:4])  # compiled before timing
    timing = interleaved(lambda: box_accuracy(maps, boxes), lambda: box_accuracy(smooth, smooth_boxes), 3)
    benchmark.pedantic(box_accuracy, args=(maps[:10], boxes[:10]), rounds=1, iterations=1)
    ratio = statistics.median(timing.first_cpu) / statistics.median(timing.second_cpu)
    benchmark.extra_info.update(
        kind=kind,
        maps=HARD_MAPS,
        hard_ms_per_map=1e3 * statistics.median(timing.first_cpu) / HARD_MAPS,
        smooth_ms_per_map=1e3 * statistics.median(timing.second_cpu) / HARD_MAPS,
        hard_vs_smooth_ratio=ratio,
    )
    print(f"\n{kind}: {ratio:.1f}x the CPU time per map of smooth maps")
    assert ratio < 20, f"{kind} maps cost {ratio:.1f}x smooth ones"


@contextlib.contextmanager
def numba_threads(n: int):
    """``numba.set_num_threads(n)`` inside the block (the metrics' chunk pool follows it)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def test_pxap_speedup(benchmark, interleaved, data):
    """PxAP's speed-up is asserted on one thread against one thread (the naive code's).

    Its histogram kernel streams 0.4 MB per map through a few vector instructions per
    pixel, so a second thread on this 2-vCPU machine adds CPU time without adding as much
    work (2026-12-02: 0.21 ms/map on one thread; 0.13 ms wall, about 0.26 ms CPU on two):
    the two-thread CPU ratio measures how the host shares its cores, not the kernel. The
    all-thread wall-clock factor is recorded as ``wall_clock_factor_all_threads``.
    """
    maps, _, masks = data
    sub = slice(0, N_MAPS, 4)  # 500 maps: np.histogram is fast, time enough of it
    assert pxap(maps[sub], masks[sub]).value == naive_pxap(maps[sub], masks[sub])
    result = benchmark.pedantic(pxap, args=(maps, masks), rounds=1, iterations=1)
    all_threads = interleaved(lambda: pxap(maps, masks), lambda: naive_pxap(maps[sub], masks[sub]), 3)
    with numba_threads(1):
        timing = interleaved(lambda: pxap(maps, masks), lambda: naive_pxap(maps[sub], masks[sub]), 3)
        _record(benchmark, "PxAP", result.value, timing, len(maps), len(maps[sub]), MIN_PXAP_SPEEDUP)
    naive_per_map = all_threads.second_median / len(maps[sub])
    benchmark.extra_info["wall_clock_factor_all_threads"] = naive_per_map / (all_threads.first_median / len(maps))
