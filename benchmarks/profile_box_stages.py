"""Where the time of the box metrics goes, stage by stage, against the 50x budget.

Run:  python benchmarks/profile_box_stages.py [N_MAPS]

Times each compiled stage of ``wsolbench.metrics`` (``wsolbench/metrics/_sweep.py``) on one
core, in the order MaxBoxAcc and MaxBoxAccV2 run them, on the maps of
``test_bench_metrics.py`` (``bench_maps.py``), and the naive per-threshold implementation
(``naive_metrics.py``) on every 10th map. The budget line is what a 50x wall-clock speed-up
allows per map with every core of this machine busy: ``naive / 50 * cores`` of CPU time.
This is a diagnostic, not a regression check; nothing is asserted.
"""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict

import numpy as np
from bench_maps import benchmark_maps
from naive_metrics import naive_box_accuracy

from wsolbench.metrics import _sweep

THRESHOLDS = np.arange(0, 1, 0.01)


def _stage_times(maps: np.ndarray, boxes: list[np.ndarray], multi: bool) -> dict[str, float]:
    """CPU seconds per map of every stage of one box metric."""
    H, W = maps.shape[1:]
    ws, dvals, kmap, levels, _ = _sweep._workspace(H, W, THRESHOLDS.size)
    band, filled, fgpat, bgpat, lab, order, cnt = ws[0], ws[1], ws[2], ws[3], ws[4], ws[6], ws[7]
    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn, *args):
        start = time.process_time()
        out = fn(*args)
        spent[name] += time.process_time() - start
        return out

    for img, gt in zip(maps, boxes, strict=True):
        gt = np.ascontiguousarray(gt, dtype=np.int64)
        D, _ = timed("quantise", _sweep._quantize, img, THRESHOLDS, band, dvals, kmap)
        if multi:
            timed("neighbour patterns", _sweep._patterns, H, W, band, fgpat, bgpat, True, True)
            total = timed("counting sort", _sweep._sort, H, W, D, band, order, cnt)
            timed("background sweep (holes)", _sweep._bg_sweep, H, W, D, ws, gt, total, *levels[:3], False)
        else:
            timed("hole filling", _sweep._fill_holes, H, W, D, band, filled, order, lab)
            band[:] = filled
            timed("neighbour patterns", _sweep._patterns, H, W, band, fgpat, bgpat, True, False)
            timed("counting sort", _sweep._sort, H, W, D, band, order, cnt)
        timed("foreground sweep", _sweep._fg_sweep, H, W, D, ws, gt, multi, *levels)
    return {name: seconds / len(maps) for name, seconds in spent.items()}


def main(n_maps: int = 400) -> None:
    maps, boxes, _ = benchmark_maps(n_maps)
    _stage_times(maps[:2], boxes[:2], True)  # compile or load the kernels before timing
    _stage_times(maps[:2], boxes[:2], False)
    cores = os.cpu_count() or 1
    for metric, multi in (("MaxBoxAcc", False), ("MaxBoxAccV2", True)):
        kwargs = {"iou_thresholds": (50,), "multi_contour": False} if not multi else {}
        start = time.process_time()
        naive_box_accuracy(maps[::10], boxes[::10], **kwargs)
        naive = (time.process_time() - start) / len(maps[::10])
        stages = _stage_times(maps, boxes, multi)
        print(f"\n{metric}: CPU ms per 224x224 map, one core")
        for name, seconds in stages.items():
            print(f"  {name:<28}{1e3 * seconds:8.3f}")
        print(f"  {'total':<28}{1e3 * sum(stages.values()):8.3f}")
        print(f"  {'naive per-threshold':<28}{1e3 * naive:8.3f}")
        print(f"  {f'50x budget ({cores} cores)':<28}{1e3 * naive / 50 * cores:8.3f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 400)
