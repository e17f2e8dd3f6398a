"""Box localization metrics: MaxBoxAcc, MaxBoxAccV2, per-image best boxes, IoU statistics.

Definitions follow wsolevaluation's ``evaluation.py`` ("Evaluating Weakly
Supervised Object Localization Methods Right", Choe et al., CVPR 2020) to the
bit; every detail below is checked against it in ``tests/metrics``:

* The score map (float, already normalised to [0, 1], handled in float64)
  becomes ``gray = (map * 255).astype(uint8)``, i.e. **truncated**.
* At CAM threshold ``t`` (``np.arange(0, 1, cam_curve_interval)``) a pixel is
  foreground when ``gray > int(t * gray.max())`` (``cv2.threshold``,
  ``THRESH_BINARY``). The largest value is therefore foreground at every
  threshold unless the whole map is below 1/255.
* Regions are the contours of ``cv2.findContours(RETR_TREE,
  CHAIN_APPROX_SIMPLE)``: one outer contour per 8-connected foreground
  component and one hole contour per 4-connected background component that does
  not touch the image border. A hole contour runs through the foreground pixels
  4-adjacent to the hole, so its box is the hole's pixel bbox grown by one pixel.
* A contour's box is ``(x, y, x + w, y + h)`` from ``cv2.boundingRect``, with the
  far corner clipped to ``(W - 1, H - 1)``: the far corner is one past the last
  pixel (a quirk of the reference, kept). An empty foreground gives the box
  ``[0, 0, 0, 0]``.
* IoU uses inclusive pixel boxes (areas ``(x1 - x0 + 1) * (y1 - y0 + 1)``), a
  non-positive union gives 0; an image's score at a threshold is the best IoU over
  all its boxes and all its GT boxes; it is correct when ``IoU >= iou / 100``.
* ``multi_contour=True`` (MaxBoxAccV2) uses every contour, holes included.
  ``multi_contour=False`` uses only ``max(contours, key=cv2.contourArea)``: the
  polygon area of the traced contour (not the pixel count) and Python's ``max``
  keeps the first maximal contour in OpenCV's order. That is the 8-connected
  component whose hole-filled area, ``sum over 2x2 windows of f(#pixels)`` with
  ``f(4) = 1, f(3) = 1/2``, is largest, ties going to the component whose first
  pixel in raster order comes last (OpenCV lists top-level contours in reverse
  raster order and hole contours never beat their parent).
* ``curves[iou][k] = 100 * (#correct images at threshold k) / N``;
  ``max_box_acc[iou] = max(curves[iou])``; ``value`` is their mean over
  ``iou_thresholds``. MaxBoxAcc = ``box_accuracy(..., iou_thresholds=(50,),
  multi_contour=False).value``; MaxBoxAccV2 = ``box_accuracy(...).value``.

All thresholds of an image are evaluated together by compiled union-find sweeps
over its pixels (``wsolbench/metrics/_sweep.py``; per-image stages in ``_levels.py``,
drivers in ``_chunks.py``) instead of one ``findContours`` per threshold, at a cost
that follows the pixels and the changes of the regions' boxes, not regions x
thresholds; the numbers are identical (``tests/metrics``
compares them with the reference and with OpenCV). Images are split into chunks
run in ``numba.get_num_threads()`` threads; the first call compiles the kernels
(about 10 s, cached on disk afterwards). :func:`box_correct_counts_both` gives the
single- and multi-contour counts of the same maps in one pass (about 20% less
work than two :func:`box_correct_counts` calls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numba
import numpy as np

from . import _chunks

__all__ = [
    "BoxAccuracy",
    "BestBoxes",
    "IoUStatistics",
    "box_accuracy",
    "box_correct_counts",
    "box_correct_counts_both",
    "best_boxes",
    "iou_matrix",
    "iou_statistics",
    "cam_thresholds",
]


def cam_thresholds(cam_curve_interval: float = 0.01) -> np.ndarray:
    """The CAM threshold grid of the reference: ``np.arange(0, 1, cam_curve_interval)``."""
    if not cam_curve_interval > 0:
        raise ValueError(f"cam_curve_interval must be positive, got {cam_curve_interval!r}")
    return np.arange(0, 1, cam_curve_interval)


@dataclass(frozen=True)
class BoxAccuracy:
    """Box accuracy over a CAM threshold grid.

    Attributes:
        thresholds: (T,) CAM thresholds ``np.arange(0, 1, cam_curve_interval)``.
        curves: ``{iou: (T,) float64}``, percent of images whose best box has
            ``IoU >= iou / 100`` at each CAM threshold.
        max_box_acc: ``{iou: float}``, maximum of each curve (percent).
        value: mean of ``max_box_acc`` over ``iou_thresholds`` (percent):
            MaxBoxAccV2 with the defaults, MaxBoxAcc with ``iou_thresholds=(50,)``
            and ``multi_contour=False``.
        iou_thresholds: the IoU thresholds, in percent.
        multi_contour: whether every contour (True) or only the largest one was used.
        num_images: N.
    """

    thresholds: np.ndarray
    curves: dict[int, np.ndarray]
    max_box_acc: dict[int, float]
    value: float
    iou_thresholds: tuple[int, ...]
    multi_contour: bool
    num_images: int

    @property
    def best_thresholds(self) -> dict[int, float]:
        """``{iou: CAM threshold}`` where each curve first reaches its maximum."""
        return {iou: float(self.thresholds[int(np.argmax(c))]) for iou, c in self.curves.items()}


@dataclass(frozen=True)
class BestBoxes:
    """Per-image boxes at one CAM threshold.

    Attributes:
        boxes: (N, 4) int64 ``x0, y0, x1, y1`` in map pixels: with
            ``multi_contour`` the box (over all contours) of best IoU with the GT
            boxes, else the box of the largest contour; ``[0, 0, 0, 0]`` when
            nothing is above the threshold.
        ious: (N,) float64, best IoU of that box against the image's GT boxes.
        threshold: the CAM threshold used.
    """

    boxes: np.ndarray
    ious: np.ndarray
    threshold: float


@dataclass(frozen=True)
class IoUStatistics:
    """IoU statistics of the correctly localized images (DANet paper, Fig. 8).

    Attributes:
        count: number of images with ``IoU >= iou_threshold``.
        fraction: ``count / N`` (0 when N == 0).
        mean: mean IoU of those images (NaN when count == 0).
        median: median IoU of those images (NaN when count == 0).
        hist: (bins,) int64 histogram of their IoUs over ``bin_edges``.
        bin_edges: (bins + 1,) float64, from ``iou_threshold`` to 1.
    """

    count: int
    fraction: float
    mean: float
    median: float
    hist: np.ndarray = field(repr=False)
    bin_edges: np.ndarray = field(repr=False)


# --------------------------------------------------------------------------------------
# input handling


def _as_maps(scoremaps) -> np.ndarray:
    maps = np.asarray(scoremaps)
    if maps.ndim != 3:
        raise ValueError(f"scoremaps must have shape (N, H, W), got {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        raise TypeError(f"scoremaps must be a float array, got dtype {maps.dtype}")
    if maps.dtype not in (np.float32, np.float64):
        maps = maps.astype(np.float64)  # e.g. float16: exact
    if maps.shape[1] < 1 or maps.shape[2] < 1:
        raise ValueError(f"empty score maps: shape {maps.shape}")
    if maps.shape[1] > 32767 or maps.shape[2] > 32767:
        raise ValueError("score maps larger than 32767 pixels per side are not supported")
    return np.ascontiguousarray(maps)


def _as_gt(gt_boxes, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Flatten GT boxes to (sum M_i, 4) int64 and offsets (N + 1,)."""
    if isinstance(gt_boxes, np.ndarray) and gt_boxes.ndim == 2:
        gt_boxes = gt_boxes[:, None, :]
    if len(gt_boxes) != n:
        raise ValueError(f"got {len(gt_boxes)} GT box sets for {n} score maps")
    parts = []
    for i, boxes in enumerate(gt_boxes):
        b = np.asarray(boxes)
        if b.ndim == 1:
            b = b[None, :]
        if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
            raise ValueError(f"GT boxes of image {i} must have shape (M >= 1, 4), got {b.shape}")
        if not np.array_equal(b, np.round(b)):
            raise ValueError(f"GT boxes of image {i} must be integer pixel corners")
        b = b.astype(np.int64)
        if (b < 0).any() or (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
            raise ValueError(f"GT boxes of image {i} must be non-negative x0, y0, x1, y1 with x1 >= x0, y1 >= y0")
        parts.append(b)
    flat = np.ascontiguousarray(np.concatenate(parts, axis=0)) if parts else np.zeros((0, 4), np.int64)
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum([len(p) for p in parts])
    return flat, offsets


def _num_chunks(n: int) -> int:
    return max(1, min(n, 4 * max(1, numba.get_num_threads())))


def _run_chunks(n: int, work: Callable[[int, int, int], None]) -> None:
    """Call ``work(c, i0, i1)`` on ``_num_chunks(n)`` contiguous chunks of ``range(n)``.

    The kernels release the GIL, so chunks run in a thread pool of
    ``numba.get_num_threads()`` threads (``NUMBA_NUM_THREADS``; default: all cores).
    """
    threads = max(1, numba.get_num_threads())
    chunks = _num_chunks(n)
    bounds = [(c, n * c // chunks, n * (c + 1) // chunks) for c in range(chunks)]
    if threads == 1 or chunks == 1:
        for b in bounds:
            work(*b)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(lambda b: work(*b), bounds))


def _run_boxes(maps, gt_flat, gt_off, thresholds, iou_fracs, multi_contour, eligible, want_k=-1):
    n = maps.shape[0]
    thresholds = np.ascontiguousarray(thresholds, dtype=np.float64)
    iou_fracs = np.ascontiguousarray(iou_fracs, dtype=np.float64)
    eligible = np.ascontiguousarray(eligible, dtype=np.bool_)
    counts = np.zeros((_num_chunks(n), eligible.shape[0], iou_fracs.shape[0], thresholds.shape[0]), np.int64)
    best_iou = np.zeros(n, np.float64)
    best_box = np.zeros((n, 4), np.int64)
    invalid = np.zeros(n, np.uint8)

    def work(c, i0, i1):
        _chunks.box_chunk(
            maps,
            gt_flat,
            gt_off,
            thresholds,
            bool(multi_contour),
            iou_fracs,
            eligible,
            i0,
            i1,
            counts[c],
            int(want_k),
            best_iou,
            best_box,
            invalid,
        )

    _run_chunks(n, work)
    if invalid.any():
        bad = np.flatnonzero(invalid)
        raise ValueError(
            f"score maps must be in [0, 1] without NaN (normalize_scoremap); offending maps: {bad[:10].tolist()}"
        )
    return counts.sum(axis=0), best_iou, best_box


def box_correct_counts(
    scoremaps,
    gt_boxes,
    *,
    thresholds: np.ndarray,
    iou_thresholds: Sequence[int],
    multi_contour: bool,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Number of correctly localized images per (subset, IoU threshold, CAM threshold).

    Args:
        scoremaps: (N, H, W) float maps in [0, 1].
        gt_boxes: N arrays (M_i, 4) of inclusive ``x0, y0, x1, y1`` GT boxes.
        thresholds: (T,) CAM thresholds.
        iou_thresholds: IoU thresholds in percent.
        multi_contour: use all contours (True) or only the largest (False).
        eligible: (S, N) bool; image i counts in subset s only if eligible[s, i].
            Default: one subset with every image.

    Returns:
        (S, A, T) int64 counts.
    """
    maps = _as_maps(scoremaps)
    n = maps.shape[0]
    gt_flat, gt_off = _as_gt(gt_boxes, n)
    if eligible is None:
        eligible = np.ones((1, n), dtype=bool)
    eligible = np.asarray(eligible, dtype=bool)
    if eligible.ndim != 2 or eligible.shape[1] != n:
        raise ValueError(f"eligible must have shape (S, {n}), got {eligible.shape}")
    iou_fracs = np.array([t / 100 for t in iou_thresholds], dtype=np.float64)
    counts, _, _ = _run_boxes(maps, gt_flat, gt_off, thresholds, iou_fracs, multi_contour, eligible)
    return counts


def _check_eligible(eligible, n: int) -> np.ndarray:
    if eligible is None:
        return np.ones((1, n), dtype=bool)
    eligible = np.ascontiguousarray(eligible, dtype=bool)
    if eligible.ndim != 2 or eligible.shape[1] != n:
        raise ValueError(f"eligible must have shape (S, {n}), got {eligible.shape}")
    return eligible


def box_correct_counts_both(
    scoremaps,
    gt_boxes,
    *,
    thresholds: np.ndarray,
    iou_thresholds: Sequence[int],
    eligible: np.ndarray | None = None,
    thresholds_v2: np.ndarray | None = None,
    iou_thresholds_v2: Sequence[int] = (30, 50, 70),
    eligible_v2: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Single- and multi-contour counts of :func:`box_correct_counts` in one pass.

    Returns ``(box_correct_counts(..., thresholds, iou_thresholds, multi_contour=False,
    eligible), box_correct_counts(..., thresholds_v2, iou_thresholds_v2,
    multi_contour=True, eligible_v2))``, identical numbers, computed together: each
    map is quantised and sorted once and the hole-filled map of the single-contour
    pick comes out of the multi-contour background sweep (about 25% less work than
    the two calls). ``thresholds_v2`` defaults to ``thresholds``.
    """
    maps = _as_maps(scoremaps)
    n = maps.shape[0]
    gt_flat, gt_off = _as_gt(gt_boxes, n)
    t1 = np.ascontiguousarray(thresholds, dtype=np.float64).reshape(-1)
    t2 = t1 if thresholds_v2 is None else np.ascontiguousarray(thresholds_v2, dtype=np.float64).reshape(-1)
    e1 = _check_eligible(eligible, n)
    e2 = _check_eligible(eligible_v2, n)
    i1 = np.array([t / 100 for t in iou_thresholds], dtype=np.float64)
    i2 = np.array([t / 100 for t in iou_thresholds_v2], dtype=np.float64)
    both = np.concatenate([t1, t2])
    rank = np.argsort(both, kind="stable")
    thr_all = np.ascontiguousarray(both[rank])
    where = np.empty_like(rank)
    where[rank] = np.arange(rank.size)
    pos_1 = np.ascontiguousarray(where[: t1.size], dtype=np.int64)
    pos_2 = np.ascontiguousarray(where[t1.size :], dtype=np.int64)
    chunks = _num_chunks(n)
    c1 = np.zeros((chunks, e1.shape[0], i1.shape[0], t1.shape[0]), np.int64)
    c2 = np.zeros((chunks, e2.shape[0], i2.shape[0], t2.shape[0]), np.int64)
    invalid = np.zeros(n, np.uint8)

    def work(c, a, b):
        _chunks.box_chunk_both(
            maps, gt_flat, gt_off, thr_all, pos_1, i1, e1, c1[c], pos_2, i2, e2, c2[c], a, b, invalid
        )

    if n:
        _run_chunks(n, work)
    if invalid.any():
        bad = np.flatnonzero(invalid)
        raise ValueError(
            f"score maps must be in [0, 1] without NaN (normalize_scoremap); offending maps: {bad[:10].tolist()}"
        )
    return c1.sum(axis=0), c2.sum(axis=0)


def box_accuracy(
    scoremaps,
    gt_boxes: Sequence[np.ndarray],
    *,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    multi_contour: bool = True,
) -> BoxAccuracy:
    """MaxBoxAcc / MaxBoxAccV2 of score maps against GT boxes.

    Args:
        scoremaps: (N, H, W) float array in [0, 1], already normalised (see
            :func:`normalize_scoremap`; not renormalised here). Any float dtype;
            computed in float64 like the reference pipeline.
        gt_boxes: N int arrays (M_i, 4), ``x0, y0, x1, y1`` inclusive pixel corners in
            map coordinates; several GT boxes per image allowed (M_i >= 1). An
            (N, 4) array means one box per image.
        cam_curve_interval: spacing of the CAM threshold grid.
        iou_thresholds: IoU thresholds in percent.
        multi_contour: True (MaxBoxAccV2): all contours, holes included; False
            (MaxBoxAcc): only the largest contour.

    Returns:
        :class:`BoxAccuracy`.

    Raises:
        ValueError: on NaN or values outside [0, 1], or malformed GT boxes.
    """
    thresholds = cam_thresholds(cam_curve_interval)
    iou_thresholds = tuple(int(t) for t in iou_thresholds)
    if not iou_thresholds:
        raise ValueError("iou_thresholds must not be empty")
    maps = _as_maps(scoremaps)
    n = maps.shape[0]
    if n == 0:
        raise ValueError("no score maps")
    counts = box_correct_counts(
        maps, gt_boxes, thresholds=thresholds, iou_thresholds=iou_thresholds, multi_contour=multi_contour
    )[0]
    curves = {iou: counts[a].astype(np.float64) * 100.0 / float(n) for a, iou in enumerate(iou_thresholds)}
    max_box_acc = {iou: float(curves[iou].max()) for iou in iou_thresholds}
    value = float(np.average([max_box_acc[iou] for iou in iou_thresholds]))
    return BoxAccuracy(
        thresholds=thresholds,
        curves=curves,
        max_box_acc=max_box_acc,
        value=value,
        iou_thresholds=iou_thresholds,
        multi_contour=bool(multi_contour),
        num_images=n,
    )


def best_boxes(scoremaps, gt_boxes: Sequence[np.ndarray], threshold: float, multi_contour: bool = True) -> BestBoxes:
    """The box each image gets at one CAM threshold, and its IoU.

    Args:
        scoremaps: (N, H, W) float array in [0, 1].
        gt_boxes: N int arrays (M_i, 4) of GT boxes (see :func:`box_accuracy`).
        threshold: CAM threshold t in [0, 1); foreground is ``gray > int(t * gray.max())``.
        multi_contour: True: the best-IoU box over all contours; False: the box
            of the largest contour (the reference's single-contour box).

    Returns:
        :class:`BestBoxes` with boxes (N, 4) and ious (N,).
    """
    t = float(threshold)
    if not 0.0 <= t < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    maps = _as_maps(scoremaps)
    n = maps.shape[0]
    gt_flat, gt_off = _as_gt(gt_boxes, n)
    _, ious, boxes = _run_boxes(
        maps, gt_flat, gt_off, np.array([t]), np.zeros(0), multi_contour, np.ones((1, n), bool), want_k=0
    )
    return BestBoxes(boxes=boxes, ious=ious, threshold=t)


def iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """IoU of every box in ``boxes_a`` (A, 4) with every box in ``boxes_b`` (B, 4).

    Same as the reference's ``calculate_multiple_iou``: inclusive integer
    ``x0, y0, x1, y1`` boxes (areas ``(x1 - x0 + 1) * (y1 - y0 + 1)``), IoU 0 where
    the union is not positive. Returns (A, B) float64.
    """
    a = np.asarray(boxes_a, dtype=np.int64).reshape(-1, 4)[:, None, :]
    b = np.asarray(boxes_b, dtype=np.int64).reshape(-1, 4)[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    union = (
        (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        - inter
    )
    degenerate = union <= 0
    iou = inter / np.where(degenerate, 1, union)
    iou[degenerate] = 0.0
    return iou


def iou_statistics(ious, *, iou_threshold: float = 0.5, bins: int = 10) -> IoUStatistics:
    """Statistics of the IoUs of correct boxes (``IoU >= iou_threshold``).

    Args:
        ious: (N,) per-image IoUs, e.g. :attr:`BestBoxes.ious`.
        iou_threshold: correctness threshold, as a fraction.
        bins: number of equal-width histogram bins between ``iou_threshold`` and 1.

    Returns:
        :class:`IoUStatistics`.
    """
    ious = np.asarray(ious, dtype=np.float64).ravel()
    correct = ious[ious >= iou_threshold]
    edges = np.linspace(iou_threshold, 1.0, int(bins) + 1)
    hist = np.histogram(correct, bins=edges)[0].astype(np.int64)
    count = int(correct.size)
    return IoUStatistics(
        count=count,
        fraction=count / ious.size if ious.size else 0.0,
        mean=float(correct.mean()) if count else float("nan"),
        median=float(np.median(correct)) if count else float("nan"),
        hist=hist,
        bin_edges=edges,
    )
