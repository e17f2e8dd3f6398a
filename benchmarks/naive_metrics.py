"""Straightforward per-threshold WSOL metrics: the speed baseline and a test oracle.

This module evaluates the same definitions as :mod:`wsolbench.metrics` the obvious
way, as in wsolevaluation's ``evaluation.py`` (Choe et al., CVPR 2020): for every
image and every CAM threshold it binarises the uint8 map with ``cv2.threshold``,
traces the regions with ``cv2.findContours`` and turns contours into boxes with
``cv2.boundingRect``; PxAP takes one ``np.histogram`` per image and class. It is
independent of the union-find kernel in ``wsolbench/metrics/_sweep.py`` and is
used by ``tests/metrics`` (agreement on random maps) and by
``benchmarks/test_bench_metrics.py`` (the side-by-side speed baseline).

Requires ``opencv-python-headless``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

__all__ = [
    "naive_boxes_at_thresholds",
    "naive_box_counts",
    "naive_box_accuracy",
    "naive_pxap_histograms",
    "naive_pxap",
    "naive_iou_matrix",
]


def naive_iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes_a`` (A, 4) with every box in ``boxes_b`` (B, 4).

    Boxes are inclusive ``x0, y0, x1, y1`` pixel corners, so areas carry ``+1``;
    a non-positive union (impossible for valid boxes) gives IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.int64)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.int64)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    bad = union <= 0
    iou = inter / np.where(bad, 1, union)
    iou[bad] = 0.0
    return iou


def naive_boxes_at_thresholds(
    scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool
) -> list[np.ndarray]:
    """Boxes (K, 4) estimated at each CAM threshold, one ``findContours`` per threshold."""
    height, width = scoremap.shape
    gray = (np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8)
    top = int(gray.max())
    result = []
    for t in thresholds:
        _, binary = cv2.threshold(gray, int(float(t) * top), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if len(contours) == 0:
            result.append(np.zeros((1, 4), dtype=np.int64))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        result.append(np.asarray(boxes, dtype=np.int64))
    return result


def naive_box_counts(
    scoremaps: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    multi_contour: bool = True,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Thresholds and, per IoU threshold, the number of correct images at each CAM threshold."""
    thresholds = np.arange(0, 1, cam_curve_interval)
    counts = {iou: np.zeros(len(thresholds), dtype=np.int64) for iou in iou_thresholds}
    for scoremap, gt in zip(scoremaps, gt_boxes, strict=True):
        gt = np.asarray(gt, dtype=np.int64).reshape(-1, 4)
        per_threshold = naive_boxes_at_thresholds(scoremap, thresholds, multi_contour)
        best = np.array([naive_iou_matrix(boxes, gt).max() for boxes in per_threshold])
        for iou in iou_thresholds:
            counts[iou] += best >= iou / 100
    return thresholds, counts


def naive_box_accuracy(
    scoremaps: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    multi_contour: bool = True,
) -> tuple[float, dict[int, np.ndarray]]:
    """``(value, curves)``: mean over IoU thresholds of the max box accuracy (percent)."""
    _, counts = naive_box_counts(scoremaps, gt_boxes, cam_curve_interval, iou_thresholds, multi_contour)
    curves = {iou: c.astype(np.float64) * 100.0 / float(len(scoremaps)) for iou, c in counts.items()}
    value = float(np.average([curves[iou].max() for iou in iou_thresholds]))
    return value, curves


def naive_pxap_histograms(
    scoremaps: np.ndarray, gt_masks: np.ndarray, cam_curve_interval: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Score histograms of object (mask 1) and background (mask 0) pixels, one ``np.histogram`` each."""
    edges = np.append(np.arange(0, 1, cam_curve_interval), [1.0, 2.0, 3.0])
    pos = np.zeros(len(edges) - 1, dtype=np.float64)
    neg = np.zeros(len(edges) - 1, dtype=np.float64)
    for scoremap, mask in zip(scoremaps, gt_masks, strict=True):
        scoremap = np.asarray(scoremap, dtype=np.float64)
        pos += np.histogram(scoremap[mask == 1], bins=edges)[0]
        neg += np.histogram(scoremap[mask == 0], bins=edges)[0]
    return pos, neg


def naive_pxap(scoremaps: np.ndarray, gt_masks: np.ndarray, cam_curve_interval: float = 0.01) -> float:
    """Pixel average precision (percent) from the per-image histograms."""
    pos, neg = naive_pxap_histograms(scoremaps, gt_masks, cam_curve_interval)
    tp = pos[::-1].cumsum()
    fn = pos.sum() - tp
    fp = neg[::-1].cumsum()
    valid = (tp + fp) != 0
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[valid[1:]].sum() * 100)
