"""Classification error and the classic localization errors (CAM / DANet papers).

* ``topk_error``: percent of images whose true class is not among the k top
  predictions.
* Top-1 / Top-5 localization: an image is correct when its true class is among
  the top-1 / top-5 predictions AND the box from the true class's score map has
  IoU >= 0.5 with a GT box. GT-known localization (CorLoc) drops the
  classification condition. The box is the one :mod:`wsolbench.metrics.boxes`
  defines (largest contour by default, as in the CAM/DANet protocol; best over
  all contours with ``multi_contour=True``), so "IoU >= 0.5 at a CAM threshold"
  means exactly the reference's MaxBoxAcc criterion. Each is reported at a fixed
  CAM threshold and at the best threshold of the grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import _as_maps, box_correct_counts, cam_thresholds

__all__ = ["topk_correct", "topk_error", "LocalizationErrors", "localization_errors"]


def topk_correct(logits_or_topk_preds, labels, k: int = 1) -> np.ndarray:
    """Per-image flag: is the true label among the top-k predictions?

    Args:
        logits_or_topk_preds: (N, C) float scores (logits or probabilities), or
            (N, K) integer class indices sorted best first (K >= k), or (N,)
            integer top-1 predictions. With scores, ties are broken towards the
            lower class index (stable sort), and k larger than the number of classes
            means every class counts.
        labels: (N,) integer true classes.
        k: how many top predictions count.

    Returns:
        (N,) bool.
    """
    preds = np.asarray(logits_or_topk_preds)
    labels = np.asarray(labels).reshape(-1)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if preds.ndim == 1:
        preds = preds[:, None]
    if preds.ndim != 2 or preds.shape[0] != labels.shape[0]:
        raise ValueError(f"predictions {preds.shape} do not match labels {labels.shape}")
    if np.issubdtype(preds.dtype, np.floating):
        top = np.argsort(-preds, axis=1, kind="stable")[:, :k]  # k > C: every class counts
    elif np.issubdtype(preds.dtype, np.integer):
        if k > preds.shape[1]:
            raise ValueError(f"k={k} but only {preds.shape[1]} predictions per image were given")
        top = preds[:, :k]
    else:
        raise TypeError(f"predictions must be float scores or integer class indices, got {preds.dtype}")
    return (top == labels[:, None]).any(axis=1)


def topk_error(logits_or_topk_preds, labels, k: int = 1) -> float:
    """Top-k classification error in percent (see :func:`topk_correct` for the inputs)."""
    correct = topk_correct(logits_or_topk_preds, labels, k)
    if correct.size == 0:
        raise ValueError("no images")
    return float(100.0 - 100.0 * correct.mean())


@dataclass(frozen=True)
class LocalizationErrors:
    """Top-1 / Top-5 localization error and GT-known localization accuracy.

    All values in percent. ``*_curve`` arrays are over ``thresholds``; the
    plain values are at the fixed CAM threshold ``cam_threshold`` (evaluated as
    given, it need not lie on the grid); ``best_*`` are the best over the grid and
    ``best_threshold_*`` the grid threshold where it is first reached.

    Attributes:
        thresholds: (T,) CAM threshold grid.
        top1_loc_error_curve: (T,) top-1 localization error per threshold.
        top5_loc_error_curve: (T,) top-5 localization error per threshold.
        gt_known_loc_curve: (T,) GT-known localization accuracy (CorLoc) per threshold.
        cam_threshold: the fixed threshold.
        top1_loc_error: at ``cam_threshold``.
        top5_loc_error: at ``cam_threshold``.
        gt_known_loc: at ``cam_threshold`` (CorLoc).
        best_top1_loc_error, best_top5_loc_error, best_gt_known_loc: best over the grid.
        best_threshold_top1, best_threshold_top5, best_threshold_gt_known: their thresholds.
        top1_cls_error, top5_cls_error: classification errors.
        iou_threshold: correctness threshold on IoU, in percent (50).
        multi_contour: whether all contours were used.
    """

    thresholds: np.ndarray
    top1_loc_error_curve: np.ndarray
    top5_loc_error_curve: np.ndarray
    gt_known_loc_curve: np.ndarray
    cam_threshold: float
    top1_loc_error: float
    top5_loc_error: float
    gt_known_loc: float
    best_top1_loc_error: float
    best_top5_loc_error: float
    best_gt_known_loc: float
    best_threshold_top1: float
    best_threshold_top5: float
    best_threshold_gt_known: float
    top1_cls_error: float
    top5_cls_error: float
    iou_threshold: int
    multi_contour: bool


def localization_errors(
    scoremaps,
    gt_boxes: Sequence[np.ndarray],
    logits_or_topk_preds,
    labels,
    *,
    cam_threshold: float = 0.2,
    cam_curve_interval: float = 0.01,
    iou_threshold: int = 50,
    multi_contour: bool = False,
    topk: tuple[int, int] = (1, 5),
) -> LocalizationErrors:
    """Top-1 / Top-5 localization error and GT-known localization (CorLoc).

    Args:
        scoremaps: (N, H, W) float maps in [0, 1] of the TRUE class of each image.
        gt_boxes: N int arrays (M_i, 4) of inclusive ``x0, y0, x1, y1`` GT boxes.
        logits_or_topk_preds: (N, C) class scores or (N, K) top predictions (see
            :func:`topk_correct`).
        labels: (N,) true classes.
        cam_threshold: the fixed CAM threshold for the ``at_threshold`` values.
        cam_curve_interval: spacing of the threshold grid for the best values.
        iou_threshold: IoU threshold in percent.
        multi_contour: False (default): the largest contour's box; True: best over
            all contours.
        topk: the two k of "top-1" and "top-5".

    Returns:
        :class:`LocalizationErrors`.
    """
    maps = _as_maps(scoremaps)
    n = maps.shape[0]
    if n == 0:
        raise ValueError("no score maps")
    k1, k5 = topk
    c1 = topk_correct(logits_or_topk_preds, labels, k1)
    c5 = topk_correct(logits_or_topk_preds, labels, k5)
    if c1.shape[0] != n:
        raise ValueError(f"{c1.shape[0]} predictions for {n} score maps")
    grid = cam_thresholds(cam_curve_interval)
    t = float(cam_threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"cam_threshold must be in [0, 1), got {cam_threshold!r}")
    thresholds = np.append(grid, t)  # the last entry is the fixed threshold
    eligible = np.stack([c1, c5, np.ones(n, bool)])
    counts = box_correct_counts(
        maps,
        gt_boxes,
        thresholds=thresholds,
        iou_thresholds=(iou_threshold,),
        multi_contour=multi_contour,
        eligible=eligible,
    )[:, 0, :]
    acc = counts.astype(np.float64) * 100.0 / float(n)
    top1_err, top5_err, gt_known = 100.0 - acc[0], 100.0 - acc[1], acc[2]

    def best_min(curve):
        i = int(np.argmin(curve))
        return float(curve[i]), float(grid[i])

    def best_max(curve):
        i = int(np.argmax(curve))
        return float(curve[i]), float(grid[i])

    b1, t1 = best_min(top1_err[:-1])
    b5, t5 = best_min(top5_err[:-1])
    bg, tg = best_max(gt_known[:-1])
    return LocalizationErrors(
        thresholds=grid,
        top1_loc_error_curve=top1_err[:-1],
        top5_loc_error_curve=top5_err[:-1],
        gt_known_loc_curve=gt_known[:-1],
        cam_threshold=t,
        top1_loc_error=float(top1_err[-1]),
        top5_loc_error=float(top5_err[-1]),
        gt_known_loc=float(gt_known[-1]),
        best_top1_loc_error=b1,
        best_top5_loc_error=b5,
        best_gt_known_loc=bg,
        best_threshold_top1=t1,
        best_threshold_top5=t5,
        best_threshold_gt_known=tg,
        top1_cls_error=float(100.0 - 100.0 * c1.mean()),
        top5_cls_error=float(100.0 - 100.0 * c5.mean()),
        iou_threshold=int(iou_threshold),
        multi_contour=bool(multi_contour),
    )
