"""WSOL metrics, identical to wsolevaluation's ``evaluation.py`` and fast.

* :func:`box_accuracy`: MaxBoxAcc (``iou_thresholds=(50,), multi_contour=False``)
  and MaxBoxAccV2 (defaults), with the full accuracy curves.
* :func:`pxap`: pixel average precision (PxAP) from GT masks.
* :func:`normalize_scoremap`: the reference's min-max CAM normalisation.
* :func:`best_boxes`, :func:`iou_statistics`, :func:`iou_matrix`: per-image boxes
  and IoUs at one threshold, for tables and pictures.
* :func:`topk_error`, :func:`localization_errors`: classification error, Top-1 /
  Top-5 localization error and GT-known localization (CorLoc);
  :func:`localization_curves` their counts over the threshold grid, whose
  :meth:`LocalizationCurves.best_index` is the one operating-threshold choice.

Conventions: score maps are (N, H, W) floats in [0, 1]; boxes are integer
``x0, y0, x1, y1`` inclusive pixel corners in map coordinates; accuracies and
errors are percentages.
"""

from .boxes import (
    BestBoxes,
    BoxAccuracy,
    IoUStatistics,
    best_boxes,
    box_accuracy,
    box_correct_counts,
    box_correct_counts_both,
    cam_thresholds,
    iou_matrix,
    iou_statistics,
)
from .classification import (
    LocalizationCurves,
    LocalizationErrors,
    localization_curves,
    localization_errors,
    topk_correct,
    topk_error,
)
from .pixels import PxAPResult, normalize_scoremap, pxap, pxap_from_histograms, pxap_histograms

__all__ = [
    "BestBoxes",
    "BoxAccuracy",
    "IoUStatistics",
    "LocalizationCurves",
    "LocalizationErrors",
    "PxAPResult",
    "best_boxes",
    "box_accuracy",
    "box_correct_counts",
    "box_correct_counts_both",
    "cam_thresholds",
    "iou_matrix",
    "iou_statistics",
    "localization_curves",
    "localization_errors",
    "normalize_scoremap",
    "pxap",
    "pxap_from_histograms",
    "pxap_histograms",
    "topk_correct",
    "topk_error",
]
