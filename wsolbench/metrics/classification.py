"""Classification error and the classic localization errors (CAM / DANet papers).

* ``topk_error``: percent of images whose true class is not among the k top
  predictions.
* Top-1 / Top-5 localization: an image is correct when its true class is among
  the top-1 / top-5 predictions AND the box from the true class's score map has
  IoU >= 0.5 with a GT box. GT-known localization (CorLoc) drops the
  classification condition. The box is the one :mod:`wsolbench.metrics.boxes`
  defines (largest contour by default, as in the CAM/DANet protocol; best over
  all contours with ``multi_contour=True``), so "IoU >= 0.5 at a CAM threshold"
  means exactly the reference's MaxBoxAcc criterion.

The operating CAM threshold of the three localization numbers is chosen in one place,
:meth:`LocalizationCurves.best_index`: the grid threshold with the lowest top-1
localization error (the lowest threshold on ties). :func:`localization_errors` (maps in
memory) and :func:`wsolbench.evaluate.evaluate_cache` (maps streamed from a run's cache)
both count correct images per threshold into a :class:`LocalizationCurves` and read
every number off it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .boxes import _as_maps, box_correct_counts, cam_thresholds

__all__ = [
    "topk_correct",
    "topk_error",
    "LocalizationCurves",
    "LocalizationErrors",
    "localization_curves",
    "localization_errors",
]


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


#: Names of the image sets of :class:`LocalizationCurves`, in the order of its count rows.
CURVE_SETS = ("top1", "top5", "gt_known")


@dataclass(frozen=True)
class LocalizationCurves:
    """Correctly localized images at every CAM threshold of a grid, for three image sets.

    An image counts in ``top1`` when its top-1 class is right and its box (from the
    ground-truth class's map) has IoU >= the IoU threshold with a GT box; in ``top5`` when
    the GT class is among the top-5 and the box is right; in ``gt_known`` when the box is
    right (class known). Counts of chunks of images add up (``a + b``), so a streamed
    evaluation builds one from its chunks.

    Attributes:
        thresholds: ``(T,)`` CAM thresholds, increasing.
        counts: ``(3, T)`` int64: rows ``top1``, ``top5``, ``gt_known`` (:data:`CURVE_SETS`).
        num_images: ``N``, the denominator of every percentage.
    """

    thresholds: np.ndarray
    counts: np.ndarray
    num_images: int

    def __post_init__(self) -> None:
        if self.counts.shape != (len(CURVE_SETS), len(self.thresholds)):
            raise ValueError(f"counts must have shape (3, {len(self.thresholds)}), got {self.counts.shape}")

    def __add__(self, other: LocalizationCurves) -> LocalizationCurves:
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ValueError("cannot add localization curves over different threshold grids")
        return LocalizationCurves(self.thresholds, self.counts + other.counts, self.num_images + other.num_images)

    def accuracy(self, which: str) -> np.ndarray:
        """``(T,)`` percent of the N images correct in set ``which`` (``top1``, ``top5``, ``gt_known``)."""
        if self.num_images == 0:
            raise ValueError("no images")
        return self.counts[CURVE_SETS.index(which)] * 100.0 / float(self.num_images)

    def best_index(self) -> int:
        """The operating threshold's index: the lowest top-1 localization error of the grid,
        the lowest threshold on ties. Every "best CAM threshold" in wsolbench is this one."""
        return int(np.argmax(self.counts[0]))

    @property
    def best_threshold(self) -> float:
        """``thresholds[best_index()]``."""
        return float(self.thresholds[self.best_index()])

    def best(self, which: str) -> tuple[float, float]:
        """``(best accuracy in percent, its threshold)`` of set ``which``, the lowest threshold on ties.

        ``best("gt_known")[0]`` is MaxBoxAcc when the curves use IoU 0.5 and the largest region.
        """
        curve = self.accuracy(which)
        index = int(np.argmax(curve))
        return float(curve[index]), float(self.thresholds[index])

    def at(self, index: int) -> dict[str, float]:
        """``loc_err_top1``, ``loc_err_top5``, ``gt_known_loc`` (percent) at threshold ``index``."""
        top1, top5, known = (float(self.accuracy(which)[index]) for which in CURVE_SETS)
        return {"loc_err_top1": 100.0 - top1, "loc_err_top5": 100.0 - top5, "gt_known_loc": known}


def topk_sets(logits_or_topk_preds, labels, topk: tuple[int, int] = (1, 5)) -> np.ndarray:
    """``(3, N)`` bool: the ``eligible`` rows of :class:`LocalizationCurves`' sets (top-1 right,
    top-5 right, every image), for :func:`wsolbench.metrics.box_correct_counts`."""
    c1 = topk_correct(logits_or_topk_preds, labels, topk[0])
    c5 = topk_correct(logits_or_topk_preds, labels, topk[1])
    return np.stack([c1, c5, np.ones(c1.shape[0], dtype=bool)])


def localization_curves(
    scoremaps,
    gt_boxes: Sequence[np.ndarray],
    logits_or_topk_preds,
    labels,
    *,
    thresholds: np.ndarray | None = None,
    cam_curve_interval: float = 0.01,
    iou_threshold: int = 50,
    multi_contour: bool = False,
    topk: tuple[int, int] = (1, 5),
) -> LocalizationCurves:
    """Counts of correctly localized images per CAM threshold (maps in memory).

    Args:
        scoremaps: ``(N, H, W)`` float maps in [0, 1] of the TRUE class of each image.
        gt_boxes: N int arrays ``(M_i, 4)`` of inclusive ``x0, y0, x1, y1`` GT boxes.
        logits_or_topk_preds: ``(N, C)`` class scores or ``(N, K)`` top predictions
            (see :func:`topk_correct`).
        labels: ``(N,)`` true classes.
        thresholds: ``(T,)`` CAM thresholds; default the grid of ``cam_curve_interval``.
        cam_curve_interval: Step of the default grid ``0, step, ..., < 1``.
        iou_threshold: IoU threshold in percent.
        multi_contour: False: the largest region's box; True: the best of all regions.
        topk: The two k of "top-1" and "top-5".
    """
    maps = _as_maps(scoremaps)
    eligible = topk_sets(logits_or_topk_preds, labels, topk)
    if eligible.shape[1] != maps.shape[0]:
        raise ValueError(f"{eligible.shape[1]} predictions for {maps.shape[0]} score maps")
    grid = cam_thresholds(cam_curve_interval) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    counts = box_correct_counts(
        maps,
        gt_boxes,
        thresholds=grid,
        iou_thresholds=(iou_threshold,),
        multi_contour=multi_contour,
        eligible=eligible,
    )[:, 0, :]
    return LocalizationCurves(grid, counts, maps.shape[0])


@dataclass(frozen=True)
class LocalizationErrors:
    """Top-1 / Top-5 localization error and GT-known localization accuracy.

    All values in percent. ``*_curve`` arrays are over ``thresholds``; the plain values
    are at the operating threshold ``cam_threshold``: the one given (evaluated as given,
    it need not lie on the grid) or else :meth:`LocalizationCurves.best_index`'s (lowest
    top-1 localization error); ``best_*`` are each curve's best over the grid and
    ``best_threshold_*`` the grid threshold where it is first reached.

    Attributes:
        thresholds: (T,) CAM threshold grid.
        top1_loc_error_curve: (T,) top-1 localization error per threshold.
        top5_loc_error_curve: (T,) top-5 localization error per threshold.
        gt_known_loc_curve: (T,) GT-known localization accuracy (CorLoc) per threshold.
        cam_threshold: the operating threshold.
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


def check_cam_threshold(cam_threshold: float) -> float:
    """``cam_threshold`` as a float in [0, 1); ``ValueError`` otherwise."""
    try:
        t = float(cam_threshold)
    except (TypeError, ValueError):
        t = float("nan")
    if not 0.0 <= t < 1.0:
        raise ValueError(f"cam_threshold must be in [0, 1), got {cam_threshold!r}")
    return t


def localization_errors(
    scoremaps,
    gt_boxes: Sequence[np.ndarray],
    logits_or_topk_preds,
    labels,
    *,
    cam_threshold: float | None = None,
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
        cam_threshold: A fixed CAM threshold in [0, 1) for the plain values; None
            (default): the grid threshold with the lowest top-1 localization error, the
            choice :func:`wsolbench.evaluate.evaluate_cache` makes.
        cam_curve_interval: spacing of the threshold grid for the best values.
        iou_threshold: IoU threshold in percent.
        multi_contour: False (default): the largest contour's box; True: best over
            all contours.
        topk: the two k of "top-1" and "top-5".

    Returns:
        :class:`LocalizationErrors`.
    """
    maps = _as_maps(scoremaps)
    if maps.shape[0] == 0:
        raise ValueError("no score maps")
    grid = cam_thresholds(cam_curve_interval)
    fixed = cam_threshold is not None
    thresholds = np.append(grid, check_cam_threshold(cam_threshold)) if fixed else grid
    every = localization_curves(
        maps,
        gt_boxes,
        logits_or_topk_preds,
        labels,
        thresholds=thresholds,
        iou_threshold=iou_threshold,
        multi_contour=multi_contour,
        topk=topk,
    )
    curves = LocalizationCurves(grid, every.counts[:, : len(grid)], every.num_images)
    index = len(grid) if fixed else curves.best_index()
    at = every.at(index)
    b1, t1 = curves.best("top1")
    b5, t5 = curves.best("top5")
    bg, tg = curves.best("gt_known")
    eligible = topk_sets(logits_or_topk_preds, labels, topk)
    return LocalizationErrors(
        thresholds=grid,
        top1_loc_error_curve=100.0 - curves.accuracy("top1"),
        top5_loc_error_curve=100.0 - curves.accuracy("top5"),
        gt_known_loc_curve=curves.accuracy("gt_known"),
        cam_threshold=float(thresholds[index]),
        top1_loc_error=at["loc_err_top1"],
        top5_loc_error=at["loc_err_top5"],
        gt_known_loc=at["gt_known_loc"],
        best_top1_loc_error=100.0 - b1,
        best_top5_loc_error=100.0 - b5,
        best_gt_known_loc=bg,
        best_threshold_top1=t1,
        best_threshold_top5=t5,
        best_threshold_gt_known=tg,
        top1_cls_error=float(100.0 - 100.0 * eligible[0].mean()),
        top5_cls_error=float(100.0 - 100.0 * eligible[1].mean()),
        iou_threshold=int(iou_threshold),
        multi_contour=bool(multi_contour),
    )
