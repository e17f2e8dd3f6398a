"""Every metric of a run, computed from its HDF5 cache alone.

:func:`evaluate_cache` is the one code path from maps to numbers: the runner calls it
right after writing a cache and ``wsolbench eval`` calls it on an existing cache, so a
table shows the same numbers however it was produced.

Definitions (all in percent, over the N test images):

* ``cls_err_top1`` / ``cls_err_top5``: the ground-truth class is not the top-1 / not
  among the top-5 predictions.
* ``gt_known_loc``: *accuracy* of localization with the ground-truth class known: the
  box from the GT class's fused map has IoU >= 0.5 with a ground-truth box.
* ``loc_err_top1``: 100 minus the share of images whose top-1 class is right **and**
  whose box from the predicted class's map has IoU >= 0.5. When the top-1 class is right
  the predicted class *is* the GT class, so this is computed on the GT-class map.
* ``loc_err_top5``: as top-1 with "the GT class is among the top-5"; following DANet
  (and the ILSVRC protocol, where the one of five guesses that can be right is the GT
  class) the box is the GT class's.
* The box of a map at CAM threshold ``t`` is the bounding box of the largest connected
  region of ``u > int(t * max(u))`` on the uint8 map ``u = floor(255 * map)``, as in CAM,
  DANet and wsolevaluation (:mod:`wsolbench.metrics`). These three numbers are taken at
  one threshold, reported as ``cam_threshold``: the given one (any value in [0, 1)), or
  else the threshold of the grid ``0, cam_curve_interval, ...`` with the lowest
  ``loc_err_top1`` (the lowest such threshold on ties). One operating point for all three,
  as a paper tuning its threshold would have; GT-known accuracy at its *own* best
  threshold is ``maxboxacc``.
* ``maxboxacc``: MaxBoxAcc (Choe et al., CVPR 2020): the best GT-known accuracy over the
  thresholds, IoU 0.5, largest region (``gt_known_loc`` at its own best threshold).
* ``maxboxacc_v2``: MaxBoxAccV2: mean over IoU 0.3/0.5/0.7 of the best accuracy over
  thresholds, every region's box considered.
* ``pxap``: pixel average precision of the GT-class maps, only when the cache has masks.

The maps are streamed from the cache in chunks, so memory does not grow with N.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from wsolbench.cache import RunCache
from wsolbench.errors import UsageError

#: Images per chunk when streaming maps from the cache.
CHUNK_SIZE = 256

LOC_IOU = 50
V2_IOUS = (30, 50, 70)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _check_threshold(cam_threshold: float) -> float:
    t = float(cam_threshold)
    if not 0.0 <= t < 1.0:
        raise UsageError(
            f"cam_threshold must be in [0, 1), got {cam_threshold!r}: "
            "set eval.cam_threshold to e.g. 0.2, or to null for the best threshold"
        )
    return t


@dataclass
class Tallies:
    """What one streamed pass over a cache's GT-class maps accumulates.

    Attributes:
        thresholds: ``(T,)`` CAM thresholds counted.
        loc: ``(3, T)`` images with IoU >= 0.5 (largest region) among, in order: top-1
            right, top-5 right, all images.
        v2: ``(3, T')`` images localized at IoU 0.3 / 0.5 / 0.7 (every region) over the grid.
        pxap_hists: ``(object, background)`` score histograms, or None without masks.
    """

    thresholds: np.ndarray
    loc: np.ndarray
    v2: np.ndarray
    pxap_hists: tuple[np.ndarray, np.ndarray] | None


def tally(
    cache: RunCache,
    *,
    thresholds: np.ndarray,
    grid: np.ndarray,
    eligible: np.ndarray,
    cam_curve_interval: float,
    chunk_size: int = CHUNK_SIZE,
) -> Tallies:
    """Read the GT-class maps once, chunk by chunk, feeding every metric kernel."""
    from wsolbench.metrics import box_correct_counts_both, pxap_histograms

    loc = np.zeros((eligible.shape[0], len(thresholds)), dtype=np.int64)
    v2 = np.zeros((len(V2_IOUS), len(grid)), dtype=np.int64)
    hists = None
    for sl in _chunks(len(cache), chunk_size):
        maps, boxes = cache.fused_gt[sl], cache.boxes[sl]
        single, every = box_correct_counts_both(
            maps,
            boxes,
            thresholds=thresholds,
            iou_thresholds=(LOC_IOU,),
            eligible=eligible[:, sl],
            thresholds_v2=grid,
            iou_thresholds_v2=V2_IOUS,
        )
        loc += single[:, 0, :]
        v2 += every[0]
        if cache.masks is not None:
            pos, neg = pxap_histograms(maps, cache.masks[sl], cam_curve_interval=cam_curve_interval)
            hists = (pos, neg) if hists is None else (hists[0] + pos, hists[1] + neg)
    return Tallies(thresholds=thresholds, loc=loc, v2=v2, pxap_hists=hists)


def _pxap(gt_true_hist: np.ndarray, gt_false_hist: np.ndarray) -> float:
    """PxAP of summed histograms; a set without object pixels is a user error, not a crash."""
    from wsolbench.metrics import pxap_from_histograms

    try:
        return pxap_from_histograms(gt_true_hist, gt_false_hist)[0]
    except ValueError as error:
        raise UsageError(f"PxAP cannot be computed: {error} Check the dataset's masks") from None


def evaluate_cache(
    cache: RunCache,
    *,
    cam_threshold: float | None = None,
    cam_curve_interval: float = 0.01,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, float]:
    """All metrics of a run (see the module docstring for the definitions).

    Args:
        cache: From :func:`wsolbench.cache.read_cache`.
        cam_threshold: Fixed CAM threshold in [0, 1) for the top-1/top-5/GT-known
            localization; None: the grid threshold with the lowest top-1 localization error.
        cam_curve_interval: Step of the CAM threshold grid ``0, step, ..., < 1``.
        chunk_size: Images read from the cache at a time (memory: about
            ``chunk_size * H * W * 4`` bytes).

    Returns:
        ``num_images``, ``cls_err_top1``, ``cls_err_top5``, ``loc_err_top1``,
        ``loc_err_top5``, ``gt_known_loc``, ``cam_threshold``, ``maxboxacc``,
        ``maxboxacc_v2`` and, when the cache has masks, ``pxap``: plain floats (and
        ``num_images`` an int), ready for JSON.
    """
    from wsolbench.metrics import cam_thresholds, topk_correct

    n = len(cache)
    top1 = topk_correct(cache.top5, cache.labels, 1)
    top5 = topk_correct(cache.top5, cache.labels, 5)
    grid = cam_thresholds(cam_curve_interval)
    fixed = cam_threshold is not None
    thresholds = np.append(grid, _check_threshold(cam_threshold)) if fixed else grid
    counts = tally(
        cache,
        thresholds=thresholds,
        grid=grid,
        eligible=np.stack([top1, top5, np.ones(n, dtype=bool)]),
        cam_curve_interval=cam_curve_interval,
        chunk_size=chunk_size,
    )
    loc = counts.loc
    index = len(grid) if fixed else int(np.argmax(loc[0, : len(grid)]))  # first maximum: lowest threshold
    metrics: dict[str, Any] = {
        "num_images": n,
        "cls_err_top1": 100.0 - 100.0 * top1.mean(),
        "cls_err_top5": 100.0 - 100.0 * top5.mean(),
        "loc_err_top1": 100.0 - 100.0 * loc[0, index] / n,
        "loc_err_top5": 100.0 - 100.0 * loc[1, index] / n,
        "gt_known_loc": 100.0 * loc[2, index] / n,
        "cam_threshold": thresholds[index],
        "maxboxacc": 100.0 * loc[2, : len(grid)].max() / n,
        "maxboxacc_v2": np.mean(100.0 * counts.v2.max(axis=1) / n),
    }
    if counts.pxap_hists is not None:
        metrics["pxap"] = _pxap(*counts.pxap_hists)
    return {key: (int(value) if key == "num_images" else float(value)) for key, value in metrics.items()}


# --------------------------------------------------------------------------------------
# Per image
# --------------------------------------------------------------------------------------


@dataclass
class PerImage:
    """Per image, the estimated box at one CAM threshold and its IoU.

    Attributes:
        image_ids: ``N`` identifiers.
        threshold: The CAM threshold used.
        which: ``"gt"`` or ``"pred"``: whose class map the boxes come from.
        boxes: ``(N, 4)`` int64, inclusive ``x0, y0, x1, y1``: the largest region's box
            (with ``multi_contour``: the region box of highest IoU); ``[0, 0, 0, 0]``
            when nothing is above the threshold.
        iou: ``(N,)`` the best IoU of that box with the image's ground-truth boxes.
        cls_correct: ``(N,)`` bool, top-1 class right.
    """

    image_ids: list[str]
    threshold: float
    which: str
    boxes: np.ndarray
    iou: np.ndarray
    cls_correct: np.ndarray

    @property
    def loc_correct(self) -> np.ndarray:
        """``(N,)`` bool: IoU >= 0.5."""
        return self.iou >= LOC_IOU / 100.0

    def statistics(self, *, bins: int = 10, iou_threshold: float = LOC_IOU / 100.0) -> Any:
        """IoU statistics of the correct boxes (DANet, Fig. 8):
        :class:`wsolbench.metrics.IoUStatistics` (count, fraction, mean, median, histogram)."""
        from wsolbench.metrics import iou_statistics

        return iou_statistics(self.iou, iou_threshold=iou_threshold, bins=bins)


def per_image(
    cache: RunCache,
    threshold: float,
    *,
    which: str = "gt",
    multi_contour: bool = False,
    chunk_size: int = CHUNK_SIZE,
) -> PerImage:
    """Every image's box and IoU at one CAM threshold (for pictures and IoU statistics).

    Args:
        cache: The run's cache.
        threshold: CAM threshold in [0, 1), e.g. ``evaluate_cache(cache)["cam_threshold"]``.
        which: ``"gt"``: the ground-truth class's map; ``"pred"``: the predicted class's.
        multi_contour: False: the largest region's box (the localization-error box);
            True: of all region boxes, the one of highest IoU.
    """
    from wsolbench.metrics import best_boxes, topk_correct

    if which not in ("gt", "pred"):
        raise UsageError(f"which must be 'gt' or 'pred', got {which!r}")
    t = _check_threshold(threshold)
    store = cache.fused_gt if which == "gt" else cache.fused_pred
    boxes, ious = [], []
    for sl in _chunks(len(cache), chunk_size):
        result = best_boxes(store[sl], cache.boxes[sl], t, multi_contour=multi_contour)
        boxes.append(result.boxes)
        ious.append(result.ious)
    return PerImage(
        image_ids=list(cache.image_ids),
        threshold=t,
        which=which,
        boxes=np.concatenate(boxes).astype(np.int64),
        iou=np.concatenate(ious),
        cls_correct=topk_correct(cache.top5, cache.labels, 1),
    )
