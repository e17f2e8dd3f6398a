"""Exact equality with the reference implementation (clovaai/wsolevaluation).

``reference_values.json`` holds numbers produced by the *unmodified*
``evaluation.py`` of wsolevaluation (commit in the file) with numpy 1.23.5 and
opencv-python-headless 4.5.5, on maps that are regenerated here from seeds. The
driver that made it lived outside the repository: it imported ``evaluation.py``
with stub modules for ``torch.utils.data``, ``config`` and ``data_loaders``,
built ``BoxEvaluator`` / ``MaskEvaluator`` objects without their metadata
loading (``cam_threshold_list = list(np.arange(0, 1, interval))``, GT boxes per
image id, ``get_mask`` patched to return our masks), called ``accumulate`` on
every map and ``compute`` at the end, and stored ``num_correct`` (counts per
CAM threshold), MaxBoxAcc / PxAP values, the score histograms and, for small
cases, the single-contour boxes of ``compute_bboxes_from_scoremaps``. It
executed the generator block below (between the markers) to make the maps, and
the file stores a SHA-256 of each case's maps so a drifting generator fails
loudly instead of comparing different maps.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from wsolbench.metrics import best_boxes, box_accuracy, pxap, pxap_histograms

REFERENCE = Path(__file__).with_name("reference_values.json")


# --- case generator (also executed by the reference driver) ---------------------------
def _upsample(low, h, w):
    """Bilinear upsampling with elementwise numpy only (bit-identical across versions)."""
    lh, lw = low.shape
    ys = np.clip((np.arange(h) + 0.5) * lh / h - 0.5, 0, lh - 1)
    xs = np.clip((np.arange(w) + 0.5) * lw / w - 0.5, 0, lw - 1)
    y0 = np.minimum(np.floor(ys).astype(np.int64), max(lh - 2, 0))
    x0 = np.minimum(np.floor(xs).astype(np.int64), max(lw - 2, 0))
    y1 = np.minimum(y0 + 1, lh - 1)
    x1 = np.minimum(x0 + 1, lw - 1)
    fy = (ys - y0)[:, None]
    fx = (xs - x0)[None, :]
    a = low[y0][:, x0]
    b = low[y0][:, x1]
    c = low[y1][:, x0]
    d = low[y1][:, x1]
    return (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * c + fx * d)


def _normalize(m):
    m = m - m.min()
    top = m.max()
    return m / top if top > 0 else m


def make_map(rng, kind, h, w):
    """One (h, w) float64 map in [0, 1] of the given kind."""
    if kind == "smooth":  # CAM-like: low-resolution noise, upsampled, peaky
        r = int(rng.integers(3, 9))
        low = rng.random((r, r))
        return _normalize(_upsample(low * low * low, h, w))
    if kind == "noisy":  # many small regions and holes
        return _normalize(_upsample(rng.random((max(h // 3, 2), max(w // 3, 2))), h, w) + 0.3 * rng.random((h, w)))
    if kind == "pixel":  # independent pixels: single-pixel regions, area ties
        return rng.random((h, w))
    if kind == "blocky":  # plateaus and exact level ties
        low = np.floor(rng.random((h // 4 + 1, w // 4 + 1)) * 6) / 5
        return np.kron(low, np.ones((4, 4)))[:h, :w]
    if kind == "rings":  # concentric rings: nested components and holes
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        cy, cx = rng.random(2) * np.array([h, w])
        rad = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        wave = np.abs(np.mod(rad / rng.uniform(1.5, 4.0), 2.0) - 1.0)  # triangle wave: no libm calls
        return _normalize(wave + 0.2 * rng.random((h, w)))
    if kind == "const":
        return np.full((h, w), float(rng.choice([0.0, 0.3, 0.5, 1.0])))
    if kind == "zero":
        return np.zeros((h, w))
    if kind == "lowmax":  # maximum below 1: int(t * max) with max < 255
        return _normalize(_upsample(rng.random((4, 4)), h, w)) * rng.uniform(0.05, 0.9)
    if kind == "tiny":  # everything below 1/255: empty foreground, box [0, 0, 0, 0]
        return rng.random((h, w)) * 0.0039
    raise ValueError(kind)


def make_boxes(rng, h, w, max_boxes):
    boxes = []
    for _ in range(int(rng.integers(1, max_boxes + 1))):
        x0, x1 = np.sort(rng.integers(0, w, 2))
        y0, y1 = np.sort(rng.integers(0, h, 2))
        if rng.random() < 0.2:  # touching the border
            x1, y1 = w - 1, h - 1
        boxes.append([int(x0), int(y0), int(x1), int(y1)])
    return np.array(boxes, dtype=np.int64)


def make_case(spec):
    """Maps (N, H, W), GT boxes (N arrays (M, 4)) and masks (N, H, W) uint8 of a case."""
    rng = np.random.default_rng(spec["seed"])
    n, h, w = spec["n"], spec["h"], spec["w"]
    kinds = spec["kinds"]
    maps = np.empty((n, h, w))
    boxes = []
    for i in range(n):
        maps[i] = make_map(rng, kinds[i % len(kinds)], h, w)
        boxes.append(make_boxes(rng, h, w, spec.get("max_boxes", 3)))
    u = rng.random((n, h, w))
    masks = np.where(u < 0.1, 255, (rng.random((n, h, w)) < maps * 0.8 + 0.1).astype(np.int64)).astype(np.uint8)
    return maps, boxes, masks


CASES = [
    {"name": "smooth", "seed": 1, "n": 24, "h": 40, "w": 48, "kinds": ["smooth"]},
    {"name": "noisy", "seed": 2, "n": 16, "h": 33, "w": 29, "kinds": ["noisy"]},
    {"name": "pixel", "seed": 3, "n": 16, "h": 12, "w": 15, "kinds": ["pixel"]},
    {"name": "blocky", "seed": 4, "n": 16, "h": 30, "w": 30, "kinds": ["blocky"]},
    {"name": "rings", "seed": 5, "n": 12, "h": 41, "w": 37, "kinds": ["rings"]},
    {"name": "degenerate", "seed": 6, "n": 12, "h": 9, "w": 11, "kinds": ["const", "zero", "tiny", "lowmax"]},
    {
        "name": "mixed",
        "seed": 7,
        "n": 30,
        "h": 28,
        "w": 28,
        "max_boxes": 5,
        "kinds": ["smooth", "noisy", "pixel", "blocky", "rings", "lowmax"],
    },
    {"name": "thin", "seed": 8, "n": 10, "h": 1, "w": 23, "kinds": ["noisy", "smooth"]},
    {"name": "interval_0.05", "seed": 9, "n": 12, "h": 25, "w": 31, "kinds": ["smooth", "noisy"], "interval": 0.05},
    {
        "name": "interval_0.001",
        "seed": 10,
        "n": 6,
        "h": 20,
        "w": 20,
        "kinds": ["smooth", "noisy", "rings"],
        "interval": 0.001,
    },
]
# --- end case generator ----------------------------------------------------------------


def maps_digest(maps):
    return hashlib.sha256(np.ascontiguousarray(maps, dtype=np.float64).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


def _case(reference, name):
    for spec, entry in zip(CASES, reference["cases"], strict=True):
        if spec["name"] == name:
            assert entry["spec"] == spec, "CASES and reference_values.json disagree"
            maps, boxes, masks = make_case(spec)
            assert maps_digest(maps) == entry["maps_sha256"], "map generator drifted"
            return spec, entry, maps, boxes, masks
    raise KeyError(name)


def test_reference_file_covers_cases(reference):
    assert [e["spec"]["name"] for e in reference["cases"]] == [c["name"] for c in CASES]


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
@pytest.mark.parametrize("mode", ["multi", "single"])
def test_box_counts_equal_reference(reference, name, mode):
    spec, entry, maps, boxes, _ = _case(reference, name)
    ref = entry["box"][mode]
    r = box_accuracy(
        maps,
        boxes,
        cam_curve_interval=spec.get("interval", 0.01),
        iou_thresholds=ref["iou_thresholds"],
        multi_contour=(mode == "multi"),
    )
    n = maps.shape[0]
    for iou in ref["iou_thresholds"]:
        counts = np.rint(r.curves[iou] * n / 100.0).astype(np.int64)
        np.testing.assert_array_equal(counts, np.array(ref["num_correct"][str(iou)]))
        expected_curve = np.array(ref["num_correct"][str(iou)], dtype=np.float64) * 100.0 / float(n)
        np.testing.assert_array_equal(r.curves[iou], expected_curve)
    assert r.value == ref["value"]
    assert [r.max_box_acc[i] for i in ref["iou_thresholds"]] == ref["max_box_acc"]


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
def test_maxboxacc_50_single_equals_reference(reference, name):
    spec, entry, maps, boxes, _ = _case(reference, name)
    r = box_accuracy(
        maps, boxes, cam_curve_interval=spec.get("interval", 0.01), iou_thresholds=(50,), multi_contour=False
    )
    assert r.value == entry["box"]["single"]["max_box_acc"][1]


@pytest.mark.parametrize("name", [c["name"] for c in CASES])
def test_pxap_equals_reference(reference, name):
    spec, entry, maps, _, masks = _case(reference, name)
    ref = entry["pxap"]
    pos, neg = pxap_histograms(maps, masks, cam_curve_interval=spec.get("interval", 0.01))
    np.testing.assert_array_equal(pos, np.array(ref["gt_true_hist"], dtype=np.float64))
    np.testing.assert_array_equal(neg, np.array(ref["gt_false_hist"], dtype=np.float64))
    if ref["value"] is None:  # the reference raised (no positive prediction / GT)
        with pytest.raises(ValueError):
            pxap(maps, masks, cam_curve_interval=spec.get("interval", 0.01))
    else:
        assert pxap(maps, masks, cam_curve_interval=spec.get("interval", 0.01)).value == ref["value"]


@pytest.mark.parametrize("name", [e for e in ("pixel", "blocky", "rings", "degenerate", "thin")])
def test_single_contour_boxes_equal_reference(reference, name):
    """Box of ``compute_bboxes_from_scoremaps(..., multi_contour_eval=False)`` per image and threshold."""
    spec, entry, maps, boxes, _ = _case(reference, name)
    ref_boxes = np.array(entry["single_boxes"])  # (N, K, 4) at thresholds entry["single_box_thresholds"]
    for k, t in enumerate(entry["single_box_thresholds"]):
        got = best_boxes(maps, boxes, t, multi_contour=False).boxes
        np.testing.assert_array_equal(got, ref_boxes[:, k, :], err_msg=f"threshold {t}")
