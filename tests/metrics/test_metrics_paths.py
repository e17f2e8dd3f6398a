"""The kernel's shortcuts: each one is taken where it should be, and gives the naive numbers.

``_no_holes`` must never claim "no hole" for a map that has a hole at some level (checked
against an independent hole-filling, Vincent's reconstruction in ``_fill_holes``, and against
OpenCV's hole contours); maps it proves hole-free skip the background sweep, noisy maps take the
union-find hole filling for MaxBoxAcc (chosen by the share of one-pixel pits), and boxes too small for the lowest IoU threshold are not
scored. All of them must give the per-threshold OpenCV numbers (``benchmarks/naive_metrics.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wsolbench.metrics import _levels, box_accuracy, box_correct_counts_both, cam_thresholds

cv2 = pytest.importorskip("cv2")

_NAIVE = Path(__file__).resolve().parents[2] / "benchmarks" / "naive_metrics.py"
_spec = importlib.util.spec_from_file_location("naive_metrics", _NAIVE)
naive = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(naive)


def bands_of(m: np.ndarray, interval: float = 0.01) -> tuple[np.ndarray, int]:
    """The kernel's padded band array of a map, and D."""
    h, w = m.shape
    band = np.empty((h + 2) * (w + 2), np.int16)
    thr = cam_thresholds(interval)
    D, valid = _levels._quantize(
        np.ascontiguousarray(m, dtype=np.float64),
        thr,
        band,
        np.empty(thr.size + 1, np.int64),
        np.empty(thr.size, np.int64),
    )
    assert valid
    return band, D


def proven_without_holes(m: np.ndarray) -> bool:
    band, _ = bands_of(m)
    return bool(_levels._no_holes(m.shape[0], m.shape[1], band, np.empty(band.size, np.uint8)))


def has_hole_at_some_level(m: np.ndarray) -> bool:
    """OpenCV: a hole contour (a contour with a parent, RETR_CCOMP) at some CAM threshold."""
    gray = (m * 255).astype(np.uint8)
    for t in cam_thresholds(0.01):
        _, binary = cv2.threshold(gray, int(t * gray.max()), 255, cv2.THRESH_BINARY)
        hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[-1]
        if hierarchy is not None and (hierarchy[0][:, 3] >= 0).any():
            return True
    return False


def smooth_map(rng, h, w, peaks=1):
    yy, xx = np.mgrid[0:h, 0:w]
    m = np.zeros((h, w))
    for _ in range(peaks):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        sy, sx = rng.uniform(1, max(h / 2, 1.5)), rng.uniform(1, max(w / 2, 1.5))
        m += rng.uniform(0.3, 1) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    m -= m.min()
    return m / m.max()


def test_no_holes_hand_made_maps():
    cone = np.maximum(0, 1 - np.hypot(*np.mgrid[-5:6, -6:7]) / 8)
    assert proven_without_holes(cone / cone.max())
    ring = cone.copy()
    ring[4:7, 5:8] = 0  # a basin in the middle: a hole at every threshold between 0 and the rim
    assert not proven_without_holes(ring)
    assert has_hole_at_some_level(ring)
    pit = np.full((7, 7), 0.8)
    pit[3, 3] = 0.5  # one pixel lower than all its neighbours
    assert not proven_without_holes(pit)
    assert proven_without_holes(np.zeros((5, 9))) and proven_without_holes(np.ones((2, 2)))


@pytest.mark.parametrize("kind", ["smooth", "two", "pixel", "blocks"])
def test_no_holes_is_never_wrong(kind):
    rng = np.random.default_rng(["smooth", "two", "pixel", "blocks"].index(kind))
    proven = 0
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(3, 30, 2))
        if kind == "smooth":
            m = smooth_map(rng, h, w)
        elif kind == "two":
            m = smooth_map(rng, h, w, peaks=2)
        elif kind == "pixel":
            m = rng.random((h, w))
        else:
            low = rng.random((h // 4 + 1, w // 4 + 1))
            m = np.kron(low, np.ones((4, 4)))[:h, :w]
        if proven_without_holes(m):
            proven += 1
            band, D = bands_of(m)
            filled = np.empty_like(band)
            _levels._fill_holes(h, w, D, band, filled, np.empty(h * w, np.int32), np.empty(band.size, np.int32))
            assert np.array_equal(filled, band)  # hole filling changes nothing
            assert not has_hole_at_some_level(m)
    if kind == "smooth":
        assert proven >= 45  # the shortcut is taken on most single blobs


@pytest.mark.parametrize("multi", [False, True])
def test_paths_match_naive(multi):
    """Smooth maps (no-hole shortcut), noise (union-find hole filling for MaxBoxAcc), GT boxes
    large and small (small-box pruning), at two intervals."""
    rng = np.random.default_rng(11 + multi)
    h, w = 24, 28
    maps = [smooth_map(rng, h, w) for _ in range(8)] + [rng.random((h, w)) for _ in range(8)]
    assert sum(proven_without_holes(m) for m in maps[:8]) >= 5
    band, D = bands_of(maps[-1])
    assert _levels._pits(h, w, band) * 20 >= h * w  # noise takes the union-find filling
    assert all(_levels._pits(h, w, bands_of(m)[0]) == 0 for m in maps[:8] if proven_without_holes(m))
    maps = np.stack(maps)
    gts = []
    for i in range(len(maps)):
        big = i % 2 == 0
        x0, y0 = (int(v) for v in rng.integers(0, 8, 2))
        size = (int(v) for v in (rng.integers(10, 20, 2) if big else rng.integers(0, 3, 2)))
        sw, sh = size
        gts.append(np.array([[x0, y0, min(x0 + sw, w - 1), min(y0 + sh, h - 1)]]))
    for interval in (0.01, 0.05):
        ious = (30, 50, 70) if multi else (50,)
        _, counts = naive.naive_box_counts(maps, gts, interval, ious, multi)
        r = box_accuracy(maps, gts, cam_curve_interval=interval, iou_thresholds=ious, multi_contour=multi)
        for iou in ious:
            np.testing.assert_array_equal(r.curves[iou], counts[iou] * 100.0 / len(maps))
    c1, c2 = box_correct_counts_both(maps, gts, thresholds=cam_thresholds(0.01), iou_thresholds=(50,))
    _, n1 = naive.naive_box_counts(maps, gts, 0.01, (50,), False)
    _, n2 = naive.naive_box_counts(maps, gts, 0.01, (30, 50, 70), True)
    np.testing.assert_array_equal(c1[0, 0], n1[50])
    for a, iou in enumerate((30, 50, 70)):
        np.testing.assert_array_equal(c2[0, a], n2[iou])
