"""Pixel metrics: PxAP (pixel average precision) and score map normalisation.

Definitions follow wsolevaluation (``MaskEvaluator`` in ``evaluation.py`` and
``normalize_scoremap`` in ``inference.py``):

* Histogram edges: the CAM thresholds ``np.arange(0, 1, cam_curve_interval)``
  followed by ``[1.0, 2.0, 3.0]``; the scores of object pixels (mask == 1) and of
  background pixels (mask == 0) are binned exactly as ``np.histogram`` does with
  these explicit edges (bin ``i``: ``edges[i] <= s < edges[i + 1]``, the last bin
  also holds ``s == 3``). Other mask values (e.g. 255, "ignore") are skipped.
* ``tp = cumsum(pos[::-1])``, ``fp = cumsum(neg[::-1])``, ``fn = #pos - tp``;
  ``precision = tp / (tp + fp)``, ``recall = tp / (tp + fn)``;
  ``PxAP = 100 * sum(precision[1:] * diff(recall))`` over the entries with
  ``tp + fp != 0``.

The histograms of all images are accumulated in one compiled pass (bins found
by an arithmetic guess corrected against the float edges, so the counts equal
``np.histogram``'s), instead of two ``np.histogram`` calls per image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _hist
from .boxes import _num_chunks, _run_chunks, cam_thresholds

__all__ = ["PxAPResult", "pxap", "pxap_histograms", "normalize_scoremap"]


@dataclass(frozen=True)
class PxAPResult:
    """Pixel average precision.

    Attributes:
        value: PxAP in percent.
        precision: (T + 2,) precision when predicting scores ``>= thresholds[i]`` as object
            (NaN where nothing is predicted positive).
        recall: (T + 2,) recall at the same operating points.
        thresholds: (T + 2,) descending operating points ``2, 1, 1 - dt, ..., dt, 0``.
        gt_true_hist: (T + 2,) float64 score histogram of object pixels (ascending bins).
        gt_false_hist: (T + 2,) float64 score histogram of background pixels.
    """

    value: float
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    thresholds: np.ndarray = field(repr=False)
    gt_true_hist: np.ndarray = field(repr=False)
    gt_false_hist: np.ndarray = field(repr=False)


def _edges(cam_curve_interval: float) -> np.ndarray:
    return np.append(cam_thresholds(cam_curve_interval), [1.0, 2.0, 3.0])


def pxap_histograms(scoremaps, gt_masks, *, cam_curve_interval: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Score histograms of object and background pixels (float64, like the reference).

    Args:
        scoremaps: (N, H, W) float maps in [0, 1].
        gt_masks: (N, H, W) integer masks: 1 object, 0 background, other values ignored.
        cam_curve_interval: spacing of the threshold grid.

    Returns:
        ``(gt_true_hist, gt_false_hist)``, each (T + 2,).
    """
    maps = np.asarray(scoremaps)
    masks = np.asarray(gt_masks)
    if maps.ndim != 3:
        raise ValueError(f"scoremaps must have shape (N, H, W), got {maps.shape}")
    if masks.shape != maps.shape:
        raise ValueError(f"gt_masks shape {masks.shape} differs from scoremaps shape {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        raise TypeError(f"scoremaps must be a float array, got dtype {maps.dtype}")
    if maps.dtype not in (np.float32, np.float64):
        maps = maps.astype(np.float64)
    if masks.dtype == np.bool_:
        masks = masks.view(np.uint8)
    if not np.issubdtype(masks.dtype, np.integer):
        raise TypeError(f"gt_masks must be an integer (uint8) array, got dtype {masks.dtype}")
    if masks.dtype != np.uint8:
        masks = np.where((masks == 0) | (masks == 1), masks, 255).astype(np.uint8)
    maps = np.ascontiguousarray(maps)
    masks = np.ascontiguousarray(masks)
    edges = _edges(cam_curve_interval)
    n = maps.shape[0]
    parts = np.zeros((_num_chunks(n), 2, edges.shape[0] - 1), np.int64)
    bad = np.zeros(_num_chunks(n), np.int64)

    def work(c, i0, i1):
        bad[c] = _hist.hist_chunk(maps, masks, edges, i0, i1, parts[c, 0], parts[c, 1])

    _run_chunks(n, work)
    pos, neg = parts[:, 0].sum(axis=0), parts[:, 1].sum(axis=0)
    if bad.any():
        raise ValueError("score maps must be in [0, 1] without NaN (normalize_scoremap)")
    return pos.astype(np.float64), neg.astype(np.float64)


def pxap_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """PxAP (percent), precision and recall from object / background score histograms.

    The reference's formula: TP and FP are reversed cumulative sums of the histograms, and
    the area is ``sum(precision[1:] * diff(recall))`` over the operating points where
    something is predicted positive (a right-step sum), times 100. Histograms can be summed
    over chunks of images before calling this (that is how a cache is scored).

    Raises:
        ValueError: if no pixel is labelled object, or if no pixel at all is counted.
    """
    tp = pos[::-1].cumsum()
    fn = pos.sum() - tp
    fp = neg[::-1].cumsum()
    if ((tp + fn) <= 0).all():
        raise ValueError("No positive ground truth in the eval set.")
    if ((tp + fp) <= 0).all():
        raise ValueError("No positive prediction in the eval set.")
    non_zero = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
        recall = tp / (tp + fn)
    auc = (precision[1:] * np.diff(recall))[non_zero[1:]].sum() * 100
    return float(auc), precision, recall


def pxap(scoremaps, gt_masks, *, cam_curve_interval: float = 0.01) -> PxAPResult:
    """PxAP: area under the pixel precision-recall curve (percent).

    Args:
        scoremaps: (N, H, W) float array in [0, 1], already normalised.
        gt_masks: (N, H, W) uint8 masks: 1 object, 0 background, any other value ignored.
        cam_curve_interval: spacing of the threshold grid (``np.arange(0, 1, .)``).

    Returns:
        :class:`PxAPResult`.

    Raises:
        ValueError: on NaN or out-of-range scores, if no pixel is labelled object,
            or if no pixel at all is counted.
    """
    pos, neg = pxap_histograms(scoremaps, gt_masks, cam_curve_interval=cam_curve_interval)
    auc, precision, recall = pxap_from_histograms(pos, neg)
    edges = _edges(cam_curve_interval)
    return PxAPResult(
        value=auc,
        precision=precision,
        recall=recall,
        thresholds=edges[-2::-1].copy(),
        gt_true_hist=pos,
        gt_false_hist=neg,
    )


def normalize_scoremap(cam) -> np.ndarray:
    """Min-max normalisation of CAMs, as wsolevaluation's ``normalize_scoremap``.

    Each map becomes ``(cam - cam.min()) / (cam - cam.min()).max()`` in float64. A map
    containing NaN, or a constant map, becomes all zeros: a visible outcome (such a
    map localizes nothing; its box is ``[0, 0, 0, 0]``), not an error.

    Args:
        cam: (H, W) or (N, H, W) array; the input is not modified.

    Returns:
        float64 array of the same shape, values in [0, 1].
    """
    cams = np.array(cam, dtype=np.float64, copy=True)
    if cams.ndim not in (2, 3):
        raise ValueError(f"cam must have shape (H, W) or (N, H, W), got {cams.shape}")
    flat = cams.reshape((1,) + cams.shape) if cams.ndim == 2 else cams
    for m in flat:
        if np.isnan(m).any() or m.min() == m.max():
            m[...] = 0.0
            continue
        m -= m.min()
        m /= m.max()
    return cams
