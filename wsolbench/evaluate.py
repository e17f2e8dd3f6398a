"""Every metric of a run, computed from its HDF5 caches alone.

:func:`evaluate_cache` is the one code path from maps to numbers and :func:`evaluate_run`
the one from a run directory to its ``metrics.json``: the runner calls it right after
writing the caches, ``wsolbench eval`` on existing ones (with other settings if asked),
so a table shows the same numbers however it was produced.

Definitions (all in percent, over the N images of the evaluated split):

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
  one operating threshold, reported as ``cam_threshold``, chosen by the run's
  ``eval.cam_threshold`` (:class:`EvalSettings`): a fixed value in [0, 1); ``best``: the
  threshold of the grid ``0, cam_curve_interval, ...`` with the lowest ``loc_err_top1``
  on the evaluated split itself (the lowest such threshold on ties;
  :meth:`wsolbench.metrics.LocalizationCurves.best_index`), what older papers report;
  ``val``: that threshold on the val split, applied to the test split (Choe et al.,
  CVPR 2020). ``cam_threshold_from`` says which: ``"test"``, ``"val"`` or ``"fixed"``.
  GT-known accuracy at its *own* best threshold is ``maxboxacc``.
* ``maxboxacc``: MaxBoxAcc (Choe et al., CVPR 2020): the best GT-known accuracy over the
  thresholds, IoU 0.5, largest region (``gt_known_loc`` at its own best threshold).
* ``maxboxacc_v2``: MaxBoxAccV2: mean over IoU 0.3/0.5/0.7 of the best accuracy over
  thresholds, every region's box considered.
* ``pxap``: pixel average precision of the GT-class maps, only when the cache has masks.

The maps are streamed from the cache in chunks, so memory does not grow with N.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsolbench.cache import RunCache, read_cache
from wsolbench.errors import UsageError
from wsolbench.rundir import EVAL_SPLITS, RunDir

#: Images per chunk when streaming maps from the cache.
CHUNK_SIZE = 256

LOC_IOU = 50
V2_IOUS = (30, 50, 70)

#: The ``eval.*`` keys that change the metrics of existing caches (and nothing else).
METRIC_KEYS = ("cam_threshold", "cam_curve_interval", "splits")
#: The ``eval.*`` keys that change neither the caches' content nor the metrics.
NEUTRAL_KEYS = ("batch_size",)
#: The named choices of ``eval.cam_threshold`` besides a number.
THRESHOLD_RULES = ("best", "val")


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def _check_threshold(cam_threshold: float) -> float:
    from wsolbench.metrics.classification import check_cam_threshold

    try:
        return check_cam_threshold(cam_threshold)
    except ValueError:
        raise UsageError(
            f"cam_threshold must be in [0, 1), got {cam_threshold!r}: "
            "set eval.cam_threshold to e.g. 0.2, to best (best on the evaluated split) or to val (chosen on val)"
        ) from None


# --------------------------------------------------------------------------------------
# Evaluation settings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvalSettings:
    """How a run's caches become metrics: the ``eval.*`` keys that change numbers.

    None of these is part of the run's config hash: changing them re-evaluates the cached
    maps (``wsolbench eval RUN --set eval.cam_curve_interval=0.001``) or, for ``splits``,
    predicts the missing split with the trained model; nothing is retrained.

    Attributes:
        cam_threshold: The operating CAM threshold of ``loc_err_top1``, ``loc_err_top5``
            and ``gt_known_loc``: a number in [0, 1), ``"best"`` (the grid threshold with
            the lowest top-1 loc error on the evaluated split itself; config ``null`` means
            this too) or ``"val"`` (that threshold chosen on the val split and applied to
            test; needs ``val`` in ``splits``, which it implies).
        cam_curve_interval: Step of the threshold grid ``0, step, ..., < 1`` (in (0, 1)).
        splits: The evaluated splits, ``("test",)`` or ``("test", "val")``.
    """

    cam_threshold: float | str = "best"
    cam_curve_interval: float = 0.01
    splits: tuple[str, ...] = ("test",)

    @classmethod
    def from_config(cls, evaluation: Mapping[str, Any] | None) -> EvalSettings:
        """Validated settings of a config's ``eval`` section (missing keys: defaults).

        Raises:
            UsageError: one line naming the key and its allowed values.
        """
        evaluation = dict(evaluation or {})
        raw = evaluation.get("cam_threshold")
        named = raw.strip().lower() if isinstance(raw, str) else None
        if raw is None or named in THRESHOLD_RULES:
            threshold: float | str = named or "best"
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 <= raw < 1:
            threshold = float(raw)
        else:
            raise UsageError(
                f"config key 'eval.cam_threshold' must be a number in [0, 1) or null (best: the best threshold on "
                f"the evaluated split), or val (chosen on the val split, applied to test), got {raw!r}"
            )
        interval = evaluation.get("cam_curve_interval", cls.cam_curve_interval)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval < 1:
            raise UsageError(f"config key 'eval.cam_curve_interval' must be a number in (0, 1), got {interval!r}")
        splits = evaluation.get("splits", ["test"])
        if isinstance(splits, str):
            splits = [splits]
        if not isinstance(splits, (list, tuple)) or not set(splits) <= set(EVAL_SPLITS) or "test" not in splits:
            raise UsageError(
                f"config key 'eval.splits' must list test and optionally val, e.g. --set 'eval.splits=[test, val]', "
                f"got {splits!r}"
            )
        wanted = set(splits) | ({"val"} if threshold == "val" else set())
        return cls(threshold, float(interval), tuple(s for s in EVAL_SPLITS if s in wanted))

    def record(self) -> dict[str, Any]:
        """The JSON form saved in ``metrics.json`` under ``"eval"``."""
        return {
            "cam_threshold": self.cam_threshold,
            "cam_curve_interval": self.cam_curve_interval,
            "splits": list(self.splits),
        }

    def threshold_for(self, split: str, val_threshold: float | None = None) -> float | None:
        """The fixed threshold to evaluate ``split`` at, or None for its own best one."""
        if isinstance(self.cam_threshold, float):
            return self.cam_threshold
        if self.cam_threshold == "val" and split != "val":
            return val_threshold
        return None

    def threshold_from(self, split: str) -> str:
        """Where ``split``'s operating threshold comes from: ``"fixed"`` or a split name."""
        if isinstance(self.cam_threshold, float):
            return "fixed"
        return "val" if self.cam_threshold == "val" else split


def apply_eval_overrides(evaluation: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """An ``eval`` section with ``overrides`` (``{key: value}`` without the ``eval.`` prefix) applied.

    Only :data:`METRIC_KEYS` (and the harmless :data:`NEUTRAL_KEYS`) can change from a
    cache; any other key changes what is predicted, which needs ``wsolbench run``.
    """
    allowed = (*METRIC_KEYS, *NEUTRAL_KEYS)
    for key in overrides:
        if key not in allowed:
            raise UsageError(
                f"eval.{key} cannot change from the cache (it changes what the model predicts): "
                f"run `wsolbench run` with it instead; eval takes {', '.join('eval.' + k for k in METRIC_KEYS)}"
            )
    return {**dict(evaluation), **dict(overrides)}


# --------------------------------------------------------------------------------------
# One cache
# --------------------------------------------------------------------------------------


@dataclass
class Tallies:
    """What one streamed pass over a cache's GT-class maps accumulates.

    Attributes:
        curves: Correct localizations per threshold (largest region, IoU 0.5) of the three
            sets top-1 right, top-5 right, all images
            (:class:`wsolbench.metrics.LocalizationCurves`).
        v2: ``(3, T')`` images localized at IoU 0.3 / 0.5 / 0.7 (every region) over the
            grid, or None when not asked for.
        pxap_hists: ``(object, background)`` score histograms, or None without masks (or
            when not asked for).
    """

    curves: Any
    v2: np.ndarray | None
    pxap_hists: tuple[np.ndarray, np.ndarray] | None


def tally(
    cache: RunCache,
    *,
    thresholds: np.ndarray,
    grid: np.ndarray,
    cam_curve_interval: float,
    every_region: bool = True,
    pixels: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> Tallies:
    """Read the GT-class maps once, chunk by chunk, feeding every metric kernel.

    Args:
        cache: The run's cache.
        thresholds: ``(T,)`` thresholds of the largest-region counts (``curves``).
        grid: The threshold grid of the every-region counts (``v2``).
        cam_curve_interval: The step of the PxAP histograms.
        every_region: Also count MaxBoxAccV2's every-region boxes.
        pixels: Also histogram the scores for PxAP (when the cache has masks).
        chunk_size: Images read at a time.
    """
    from wsolbench.metrics import box_correct_counts, box_correct_counts_both, pxap_histograms
    from wsolbench.metrics.classification import LocalizationCurves, topk_sets

    eligible = topk_sets(cache.top5, cache.labels)
    loc = np.zeros((eligible.shape[0], len(thresholds)), dtype=np.int64)
    v2 = np.zeros((len(V2_IOUS), len(grid)), dtype=np.int64) if every_region else None
    hists = None
    for sl in _chunks(len(cache), chunk_size):
        maps, boxes = cache.fused_gt[sl], cache.boxes[sl]
        if every_region:
            single, every = box_correct_counts_both(
                maps,
                boxes,
                thresholds=thresholds,
                iou_thresholds=(LOC_IOU,),
                eligible=eligible[:, sl],
                thresholds_v2=grid,
                iou_thresholds_v2=V2_IOUS,
            )
            v2 += every[0]
        else:
            single = box_correct_counts(
                maps,
                boxes,
                thresholds=thresholds,
                iou_thresholds=(LOC_IOU,),
                multi_contour=False,
                eligible=eligible[:, sl],
            )
        loc += single[:, 0, :]
        if pixels and cache.masks is not None:
            pos, neg = pxap_histograms(maps, cache.masks[sl], cam_curve_interval=cam_curve_interval)
            hists = (pos, neg) if hists is None else (hists[0] + pos, hists[1] + neg)
    curves = LocalizationCurves(np.asarray(thresholds, dtype=np.float64), loc, len(cache))
    return Tallies(curves=curves, v2=v2, pxap_hists=hists)


def localization_curves(cache: RunCache, *, cam_curve_interval: float = 0.01, chunk_size: int = CHUNK_SIZE) -> Any:
    """The cache's :class:`wsolbench.metrics.LocalizationCurves` over the threshold grid
    (one streamed pass, largest-region boxes only): what pictures draw."""
    from wsolbench.metrics import cam_thresholds

    grid = cam_thresholds(cam_curve_interval)
    return tally(
        cache,
        thresholds=grid,
        grid=grid,
        cam_curve_interval=cam_curve_interval,
        every_region=False,
        pixels=False,
        chunk_size=chunk_size,
    ).curves


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
    """All metrics of one cache (see the module docstring for the definitions).

    Args:
        cache: From :func:`wsolbench.cache.read_cache`.
        cam_threshold: Fixed CAM threshold in [0, 1) for the top-1/top-5/GT-known
            localization; None: the grid threshold with the lowest top-1 localization error.
        cam_curve_interval: Step of the CAM threshold grid ``0, step, ..., < 1``.
        chunk_size: Images read from the cache at a time (memory: about
            ``chunk_size * H * W * 4`` bytes).

    Returns:
        ``num_images``, ``num_classes``, ``cls_err_top1``, ``cls_err_top5``,
        ``loc_err_top1``, ``loc_err_top5``, ``gt_known_loc``, ``cam_threshold``,
        ``maxboxacc``, ``maxboxacc_v2`` and, when the cache has masks, ``pxap``: plain
        floats (and the two counts ints), ready for JSON.
    """
    from wsolbench.metrics import cam_thresholds
    from wsolbench.metrics.classification import LocalizationCurves, topk_sets

    n = len(cache)
    grid = cam_thresholds(cam_curve_interval)
    fixed = cam_threshold is not None
    thresholds = np.append(grid, _check_threshold(cam_threshold)) if fixed else grid
    counts = tally(
        cache, thresholds=thresholds, grid=grid, cam_curve_interval=cam_curve_interval, chunk_size=chunk_size
    )
    every = counts.curves
    curves = LocalizationCurves(grid, every.counts[:, : len(grid)], n)
    index = len(grid) if fixed else curves.best_index()
    top1, top5 = (100.0 * right.mean() for right in topk_sets(cache.top5, cache.labels)[:2])
    metrics: dict[str, Any] = {
        "num_images": n,
        "num_classes": int(cache.num_classes),
        "cls_err_top1": 100.0 - top1,
        "cls_err_top5": 100.0 - top5,
        **every.at(index),
        "cam_threshold": thresholds[index],
        "maxboxacc": curves.best("gt_known")[0],
        "maxboxacc_v2": np.mean(100.0 * counts.v2.max(axis=1) / n),
    }
    if counts.pxap_hists is not None:
        metrics["pxap"] = _pxap(*counts.pxap_hists)
    return {
        key: (int(value) if key in ("num_images", "num_classes") else float(value)) for key, value in metrics.items()
    }


# --------------------------------------------------------------------------------------
# One run directory
# --------------------------------------------------------------------------------------


def run_config(run: RunDir) -> dict[str, Any]:
    """The config a run was last run or evaluated with: ``config.yaml``, else the test cache's."""
    import yaml

    try:
        config = yaml.safe_load(run.config.read_text())
    except (OSError, yaml.YAMLError):
        config = None
    if isinstance(config, dict):
        return config
    from wsolbench.cache import read_meta

    return dict(read_meta(run.cache()).config)


def evaluate_run(
    run: RunDir | str | Path,
    settings: EvalSettings | None = None,
    *,
    save: bool = True,
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, Any]:
    """The metrics of a run directory from its caches alone, saved as its ``metrics.json``.

    The test split's metrics are the top-level keys (as :func:`evaluate_cache` returns
    them) plus ``split`` (``"test"``), ``cam_threshold_from`` (``"test"``, ``"val"`` or
    ``"fixed"``) and ``eval`` (:meth:`EvalSettings.record`: the settings they were
    computed with). When val is evaluated, ``val`` holds the same keys for the val split
    (its threshold chosen on val itself unless fixed).

    Args:
        run: The run directory.
        settings: Default: the run's own (:func:`run_config`).
        save: Write ``metrics.json``.
        chunk_size: Images read from a cache at a time.

    Raises:
        UsageError: the settings need a split whose cache the run does not have.
    """
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    settings = settings or EvalSettings.from_config(run_config(run).get("eval"))
    interval = settings.cam_curve_interval
    val = None
    if "val" in settings.splits:
        path = run.cache("val")
        if not path.is_file():
            raise UsageError(
                f"run {str(run.path)!r} has no {path.name} (val was not evaluated): repeat its `wsolbench run` "
                "command with --set 'eval.splits=[test, val]' (the trained model is reused, only val is predicted)"
            )
        with read_cache(path) as cache:
            val = evaluate_cache(
                cache, cam_threshold=settings.threshold_for("val"), cam_curve_interval=interval, chunk_size=chunk_size
            )
        val.update(split="val", cam_threshold_from=settings.threshold_from("val"))
    with read_cache(run.cache("test")) as cache:
        threshold = settings.threshold_for("test", None if val is None else val["cam_threshold"])
        metrics: dict[str, Any] = evaluate_cache(
            cache, cam_threshold=threshold, cam_curve_interval=interval, chunk_size=chunk_size
        )
    metrics.update(split="test", cam_threshold_from=settings.threshold_from("test"), eval=settings.record())
    if val is not None:
        metrics["val"] = val
    if save:
        run.write_metrics(metrics)
    return metrics


def same_settings(saved: Mapping[str, Any] | None, settings: EvalSettings) -> bool:
    """Whether saved metrics were computed with ``settings`` (equal numbers, floats within 1e-12)."""
    record = (saved or {}).get("eval")
    if not isinstance(record, Mapping) or set(record) != set(settings.record()):
        return False
    for key, value in settings.record().items():
        other = record[key]
        if isinstance(value, float) and isinstance(other, (int, float)) and not isinstance(other, bool):
            if not math.isclose(value, other, rel_tol=0, abs_tol=1e-12):
                return False
        elif other != value:
            return False
    return True


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
