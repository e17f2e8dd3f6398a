"""Where the time of the box metrics goes, stage by stage, per kind of map.

Run:  python benchmarks/profile_box_stages.py [--maps N] [--interval 0.01] [--kinds smooth noisy ...]

Times each compiled stage of the box metrics (``wsolbench/metrics/_levels.py``, ``_sweep.py``,
``_chunks.py``) on one core, in the order MaxBoxAcc and MaxBoxAccV2 run them (counts only, as
``box_accuracy``), on the maps of ``bench_maps.py`` of each kind, and with ``--naive`` the naive
per-threshold implementation (``naive_metrics.py``) on every 10th map. This is a diagnostic,
not a regression check; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import numpy as np
from bench_maps import KINDS, benchmark_maps
from naive_metrics import naive_box_accuracy

from wsolbench.metrics import _chunks, _levels, _sweep

V2_IOUS = np.array([0.3, 0.5, 0.7])
V1_IOUS = np.array([0.5])


def _stage_times(maps: np.ndarray, boxes: list[np.ndarray], multi: bool, thresholds: np.ndarray) -> dict[str, float]:
    """CPU seconds per map of every stage of one box metric."""
    H, W = maps.shape[1:]
    ious = V2_IOUS if multi else V1_IOUS
    ws, dvals, kmap, levels, _ = _chunks._workspace(H, W, thresholds.size, ious.size)
    band, fgpat, bgpat, order, cnt = ws[0], ws[2], ws[3], ws[6], ws[7]
    cov = levels[6]
    spent: dict[str, float] = defaultdict(float)

    def timed(name, fn, *args):
        start = time.process_time()
        out = fn(*args)
        spent[name] += time.process_time() - start
        return out

    for img, gt in zip(maps, boxes, strict=True):
        gt = np.ascontiguousarray(gt, dtype=np.int64)
        D, _ = timed("quantise", _levels._quantize, img, thresholds, band, dvals, kmap)
        pits = timed("pits, no-holes proof", _levels._pits, H, W, band)
        # the same choices as _chunks._image_boxes (the sweeps' mode: which arguments are None)
        segments = multi and pits * _chunks.SEGMENTS_PIT_SHARE >= H * W
        counts_only = cov if segments else None
        holes = levels[:3] if multi and not segments else (None, None, None)
        if pits == 0 and timed("pits, no-holes proof", _levels._no_holes, H, W, band, bgpat):
            spent["(maps proven without holes)"] += 1e-3  # shown as a count
            timed("neighbour patterns", _levels._patterns, H, W, band, fgpat, bgpat, True, False)
            timed("counting sort", _levels._sort, H, W, D, band, order, cnt)
            levels[1][:] = 0
        elif multi:
            timed("neighbour patterns", _levels._patterns, H, W, band, fgpat, bgpat, True, True)
            total = timed("counting sort", _levels._sort, H, W, D, band, order, cnt)
            bg_args = (H, W, D, ws, gt, total, ious, counts_only, *holes, None)
            timed("background sweep (holes)", _sweep._bg_sweep, *bg_args)
        else:
            timed("hole filling", _chunks._filled_bands, H, W, D, ws, gt, ious, levels, pits)
            timed("neighbour patterns", _levels._patterns, H, W, band, fgpat, bgpat, True, False)
            timed("counting sort", _levels._sort, H, W, D, band, order, cnt)
        fg_args = (H, W, D, ws, gt, ious, counts_only, *holes, *levels[3:6])
        timed("foreground sweep", _sweep._fg_sweep, *fg_args)
        cov[:] = 0
    return {name: seconds / len(maps) for name, seconds in spent.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maps", type=int, default=200, help="maps per kind")
    parser.add_argument("--interval", type=float, default=0.01, help="cam_curve_interval")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--naive", action="store_true", help="also time the naive per-threshold implementation")
    args = parser.parse_args(argv)
    thresholds = np.arange(0, 1, args.interval)
    for kind in args.kinds:
        maps, boxes, _ = benchmark_maps(args.maps, kind=kind)
        _stage_times(maps[:2], boxes[:2], True, thresholds)  # compile or load the kernels before timing
        _stage_times(maps[:2], boxes[:2], False, thresholds)
        for metric, multi in (("MaxBoxAcc", False), ("MaxBoxAccV2", True)):
            stages = _stage_times(maps, boxes, multi, thresholds)
            proven = stages.pop("(maps proven without holes)", 0.0) * len(maps) * 1e3
            print(f"\n{kind} maps, {metric}, interval {args.interval:g}: CPU ms per 224x224 map, one core")
            for name, seconds in stages.items():
                print(f"  {name:<28}{1e3 * seconds:8.3f}")
            print(f"  {'total':<28}{1e3 * sum(stages.values()):8.3f}")
            print(f"  maps proven without holes: {proven:.0f} of {len(maps)}")
            if args.naive:
                kwargs = {"iou_thresholds": (50,), "multi_contour": False} if not multi else {}
                start = time.process_time()
                naive_box_accuracy(maps[::10], boxes[::10], cam_curve_interval=args.interval, **kwargs)
                naive = (time.process_time() - start) / len(maps[::10])
                print(f"  {'naive per-threshold':<28}{1e3 * naive:8.3f}")


if __name__ == "__main__":
    main()
