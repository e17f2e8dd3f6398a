"""Agreement with OpenCV: the contour facts the kernel relies on, and the naive
per-threshold oracle (``benchmarks/naive_metrics.py``) on random maps."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from wsolbench.metrics import best_boxes, box_accuracy, pxap, pxap_histograms

cv2 = pytest.importorskip("cv2")

_NAIVE = Path(__file__).resolve().parents[2] / "benchmarks" / "naive_metrics.py"
_spec = importlib.util.spec_from_file_location("naive_metrics", _NAIVE)
naive = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(naive)


def random_binary(rng, h, w):
    if rng.random() < 0.5:
        return rng.random((h, w)) < rng.random()
    low = rng.random((h // 3 + 1, w // 3 + 1))
    m = np.kron(low, np.ones((3, 3)))[:h, :w] + 0.3 * rng.random((h, w))
    return m > np.quantile(m, rng.random())


def window_area(mask):
    """sum over 2x2 windows of f(#pixels), f(4) = 1, f(3) = 1/2."""
    m = np.pad(mask.astype(np.int64), 1)
    c = m[:-1, :-1] + m[1:, :-1] + m[:-1, 1:] + m[1:, 1:]
    return (c == 4).sum() + 0.5 * (c == 3).sum()


def fill(mask):
    """mask plus every background pixel not 4-connected to the border."""
    pad = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    flood = np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8)
    cv2.floodFill(pad, flood, (0, 0), 2, flags=4)
    return (pad != 2)[1:-1, 1:-1]


def test_contour_facts():
    """Outer contours = 8-connected components (bbox, filled window area); hole contours =
    4-connected background components off the border, bbox grown by 1; contour order:
    parents first, top-level in reverse raster order of the first pixel; holes never beat
    their parent, so max(contours, key=contourArea) is a top-level contour."""
    rng = np.random.default_rng(0)
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 22, 2))
        fg = random_binary(rng, h, w)
        contours, hier = cv2.findContours(fg.astype(np.uint8), cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2:]
        n8, lab8 = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        bg = np.pad(~fg, 1, constant_values=True).astype(np.uint8)
        n4, lab4 = cv2.connectedComponents(bg, connectivity=4)
        border = set(np.unique(np.r_[lab4[0], lab4[-1], lab4[:, 0], lab4[:, -1]]).tolist())
        outer, holes = [], []
        for k in range(1, n8):
            comp = lab8 == k
            ys, xs = np.nonzero(comp)
            rect = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            outer.append((tuple(int(v) for v in rect), window_area(fill(comp)), int(ys[0] * w + xs[0])))
        for k in range(1, n4):
            if k in border or not (lab4 == k).any():
                continue
            ys, xs = np.nonzero(lab4 == k)
            ys, xs = ys - 1, xs - 1
            holes.append(
                (int(xs.min() - 1), int(ys.min() - 1), int(xs.max() - xs.min() + 3), int(ys.max() - ys.min() + 3))
            )
        depth = []
        for i in range(len(contours)):
            d, j = 0, hier[0][i][3]
            while j >= 0:
                d, j = d + 1, hier[0][j][3]
            depth.append(d)
        got_outer = sorted(
            (cv2.boundingRect(c), cv2.contourArea(c)) for c, d in zip(contours, depth, strict=True) if d % 2 == 0
        )
        got_holes = sorted(cv2.boundingRect(c) for c, d in zip(contours, depth, strict=True) if d % 2 == 1)
        assert got_outer == sorted((o[0], o[1]) for o in outer)
        assert got_holes == sorted(holes)
        for i, d in enumerate(depth):
            parent = hier[0][i][3]
            if parent >= 0:
                assert parent < i
                if d % 2 == 1:
                    assert cv2.contourArea(contours[i]) <= cv2.contourArea(contours[parent])
        tops = [i for i, d in enumerate(depth) if d == 0]
        firsts = [min(int(y) * w + int(x) for x, y in contours[i].reshape(-1, 2)) for i in tops]
        assert firsts == sorted(firsts, reverse=True)
        if contours:
            assert depth[max(range(len(contours)), key=lambda i: cv2.contourArea(contours[i]))] == 0


def random_map(rng, kind, h, w):
    if kind == "pixel":
        return rng.random((h, w))
    if kind == "levels":
        return np.floor(rng.random((h, w)) * 4) / 3
    if kind == "blocks":
        low = rng.random((h // 4 + 1, w // 4 + 1))
        return np.kron(low, np.ones((4, 4)))[:h, :w] * 0.8 + 0.2 * rng.random((h, w))
    m = cv2.resize(rng.random((5, 5)) ** 3, (w, h), interpolation=cv2.INTER_CUBIC)
    m -= m.min()
    return m / m.max()


def random_gt(rng, h, w):
    out = []
    for _ in range(int(rng.integers(1, 4))):
        x0, x1 = np.sort(rng.integers(0, w, 2))
        y0, y1 = np.sort(rng.integers(0, h, 2))
        out.append([x0, y0, x1, y1])
    return np.array(out)


@pytest.mark.parametrize("kind", ["pixel", "levels", "blocks", "cam"])
@pytest.mark.parametrize("multi", [False, True])
def test_box_curves_match_naive(kind, multi):
    rng = np.random.default_rng(hash((kind, multi)) % 2**32)
    h, w = (int(v) for v in rng.integers(8, 26, 2))
    maps = np.stack([random_map(rng, kind, h, w) for _ in range(24)])
    maps[0] *= 0.3  # max below 255
    gts = [random_gt(rng, h, w) for _ in range(24)]
    _, counts = naive.naive_box_counts(maps, gts, 0.01, (30, 50, 70), multi)
    r = box_accuracy(maps, gts, multi_contour=multi)
    for iou in (30, 50, 70):
        np.testing.assert_array_equal(r.curves[iou], counts[iou] * 100.0 / len(maps))


@pytest.mark.parametrize("multi", [False, True])
def test_best_boxes_match_naive(multi):
    rng = np.random.default_rng(7 + multi)
    thresholds = np.arange(0, 1, 0.01)
    for kind in ("pixel", "levels", "blocks", "cam"):
        maps = np.stack([random_map(rng, kind, 17, 23) for _ in range(8)])
        gts = [random_gt(rng, 17, 23) for _ in range(8)]
        for k in (0, 13, 37, 50, 71, 99):
            got = best_boxes(maps, gts, thresholds[k], multi_contour=multi)
            for i in range(len(maps)):
                boxes = naive.naive_boxes_at_thresholds(maps[i], thresholds[k : k + 1], multi)[0]
                ious = naive.naive_iou_matrix(boxes, gts[i]).max(axis=1)
                assert got.ious[i] == ious.max()
                if not multi:
                    assert got.boxes[i].tolist() == boxes[0].tolist()
                else:
                    assert got.boxes[i].tolist() in boxes[ious == ious.max()].tolist()


def _maps_on_bin_edges(interval: float, rng: np.random.Generator) -> np.ndarray:
    """Random maps whose first pixels are every edge of the ``interval`` grid, its float
    neighbours on both sides, 0, 1 and the float just below 1."""
    grid = np.arange(0, 1, interval)
    special = np.concatenate(
        [grid, np.nextafter(grid, 1), np.nextafter(grid[1:], -1), [0.0, 1.0, np.nextafter(1.0, 0)]]
    )
    side = int(np.ceil(np.sqrt(special.size / 6))) + 2
    maps = rng.random((6, side, side))
    maps.reshape(-1)[: special.size] = special
    return maps


@pytest.mark.parametrize("interval", [0.01, 0.05, 0.001, 0.3, 0.007, 1e-4])
def test_pxap_matches_naive_and_np_histogram_edges(interval):
    rng = np.random.default_rng(3)
    maps = _maps_on_bin_edges(interval, rng)
    masks = rng.integers(0, 3, maps.shape).astype(np.uint8)  # 0, 1 and 2 (ignored)
    pos, neg = pxap_histograms(maps, masks, cam_curve_interval=interval)
    npos, nneg = naive.naive_pxap_histograms(maps, masks, interval)
    np.testing.assert_array_equal(pos, npos)
    np.testing.assert_array_equal(neg, nneg)
    assert pxap(maps, masks, cam_curve_interval=interval).value == naive.naive_pxap(maps, masks, interval)
