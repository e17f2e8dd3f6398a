"""Pictures of runs, from their caches alone (``wsolbench show``), like the DANet paper's figures.

Per run, in ``out/<run name>/``:

* ``overlays.png`` (Fig. 9): the fused map of the predicted class over the image, the
  ground-truth box(es) in yellow and the predicted box in red (largest region of that map
  at the run's CAM threshold, the box of ``loc_err_top1``), with its IoU in the title.
* ``<name>.png`` for each extra map the method keeps in the cache
  (:meth:`wsolbench.specs.Method.extra_maps`), its maps side by side then the fused map:
  ``levels.png`` (DANet's Fig. 5: each head's map of the ground-truth class's ancestor) for
  every multi-head method, ``k_maps.png`` (Fig. 7: the K discrepant maps) for DDA's family.

For all runs together, in ``out/``:

* ``iou_histogram.png`` (Fig. 8): the IoUs of the correct boxes (IoU >= 0.5, ground-truth
  class map at each run's CAM threshold), one series per run.
* ``maxboxacc_curve.png``: box accuracy (IoU 0.5, largest region, ground-truth class map)
  against the CAM threshold, one curve per run; its maximum is MaxBoxAcc.

The cache holds maps, not images: the images are regenerated from the dataset named in
the cache's config (same split, same index; the image ids are checked). When that is not
possible (real data absent, dataset changed) the maps are drawn on a grey background and
one :class:`PicturesWarning` says why. The CAM threshold is the run's ``cam_threshold``
from ``metrics.json`` beside the cache, or else the one its evaluation settings choose
(:func:`wsolbench.evaluate.evaluate_run`); every number drawn comes from
:mod:`wsolbench.evaluate`, this module only draws.

Drawing uses matplotlib's ``Figure`` with the Agg canvas directly (no pyplot, no global
backend change), so it works headless and in threads.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wsolbench.cache import CACHE_FILENAME, RunCache, read_cache
from wsolbench.errors import UsageError
from wsolbench.rundir import RunDir

#: IoU (fraction) above which a box is correct.
CORRECT_IOU = 0.5
#: Images read from a cache at a time for the whole-run statistics.
CHUNK_SIZE = 256
#: Opacity of a map drawn over its image, and over the grey stand-in when there is no image.
ALPHA = 0.5
ALPHA_NO_IMAGE = 0.85
#: Narrowest picture (inches); figure titles are wrapped to the picture's width.
MIN_WIDTH = 4.5
#: Average width of a title character (inches) at the title font size, for wrapping.
_TITLE_CHAR = 0.075
#: Panel side in inches (at :data:`DPI`): 64-px images are shown about 3.5x, nearest-neighbour.
PANEL = 2.3
DPI = 100
GT_COLOUR = "yellow"
PRED_COLOUR = "red"
GREY = 0.5
#: PNG metadata: no software version, so the same pictures give the same bytes.
_PNG_METADATA = {"Software": None}


class PicturesWarning(UserWarning):
    """Pictures were drawn without something (e.g. the images, when the dataset cannot be built)."""


@dataclass
class _Run:
    """One run as drawn: its cache, names, threshold, picked images and statistics."""

    run_dir: Path
    name: str
    cache: RunCache
    label: str = ""
    threshold: float = 0.0
    threshold_source: str = ""
    curves: Any = None  # wsolbench.metrics.LocalizationCurves over the threshold grid
    gt_ious: np.ndarray = field(default_factory=lambda: np.zeros(0))
    picked: list[int] = field(default_factory=list)
    images: list[np.ndarray] | None = None
    images_note: str = ""


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def write_pictures(
    run_dirs: Sequence[Path], out: Path, *, n: int = 8, ids: Sequence[str] | None = None, seed: int = 0
) -> list[Path]:
    """Write every picture of ``run_dirs`` under ``out`` and return the written paths.

    Args:
        run_dirs: Run directories (or their ``cache.h5`` files).
        out: Output folder: ``out/<run name>/overlays.png`` and one ``<extra map>.png`` per run and
            ``out/{iou_histogram,maxboxacc_curve}.png`` comparing the runs.
        n: Images drawn at random per run when ``ids`` is not given (fewer if the run has fewer).
        ids: Draw these image ids (in this order) instead; each must be in every run.
        seed: Seed of the random pick (``numpy.random.default_rng(seed)``): runs on the
            same test set get the same images.

    Raises:
        UsageError: no run, ``n < 1``, an empty or unknown id (one line naming it).
        CacheError: a cache that cannot be read.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise UsageError("show: name at least one run folder")
    if ids is not None:
        ids = list(dict.fromkeys(str(i) for i in ids))  # unique, in the given order
        if not ids:
            raise UsageError("show: --ids needs at least one image id")
    elif int(n) < 1:
        raise UsageError(f"show: --n must be at least 1, got {n}")
    out = Path(out)
    runs: list[_Run] = []
    try:
        for run_dir, name in zip(run_dirs, _unique_names(run_dirs), strict=True):
            cache_path = run_dir if run_dir.is_file() else run_dir / CACHE_FILENAME
            runs.append(_Run(run_dir=cache_path.parent, name=name, cache=read_cache(cache_path)))
        for run in runs:  # check every id before drawing anything
            run.picked = pick_indices(run.cache.image_ids, n=int(n), ids=ids, seed=int(seed), run=run.name)
        _set_labels(runs)
        written: list[Path] = []
        for run in runs:
            _statistics(run)
            run.images, run.images_note = _load_images(run.cache, run.picked)
            if run.images is None:
                warnings.warn(f"{run.name}: {run.images_note}; maps drawn on grey", PicturesWarning, stacklevel=2)
            folder = out / run.name
            folder.mkdir(parents=True, exist_ok=True)
            written.append(_save(_overlays_figure(run), folder / "overlays.png"))
            for name in run.cache.extra_maps:
                written.append(_save(_extra_maps_figure(run, name), folder / f"{name}.png"))
        out.mkdir(parents=True, exist_ok=True)
        written.append(_save(_histogram_figure(runs), out / "iou_histogram.png"))
        written.append(_save(_curve_figure(runs), out / "maxboxacc_curve.png"))
        return written
    finally:
        for run in runs:
            run.cache.close()


# --------------------------------------------------------------------------------------
# Runs: names, picks, thresholds, statistics, images
# --------------------------------------------------------------------------------------


def _unique_names(run_dirs: Sequence[Path]) -> list[str]:
    """Folder names of the runs (``<name>-2``, ... when two runs share one)."""
    names: list[str] = []
    for path in run_dirs:
        base = (path.parent if path.is_file() else path).resolve().name or "run"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def _set_labels(runs: list[_Run]) -> None:
    """Legend labels ``method/backbone``, extended only as far as needed to tell runs apart."""

    def label(run: _Run, detail: int) -> str:
        meta = run.cache.meta
        text = f"{meta.method or '?'}/{meta.backbone or '?'}"
        if detail >= 1:
            text += f" ({meta.dataset}, seed {meta.seed})"
        if detail >= 2:
            text += f" [{run.name}]"
        return text

    for detail in range(3):
        labels = [label(run, detail) for run in runs]
        if len(set(labels)) == len(labels) or detail == 2:
            break
    for run, text in zip(runs, labels, strict=True):
        run.label = text


def pick_indices(image_ids: Sequence[str], *, n: int, ids: Sequence[str] | None, seed: int, run: str = "") -> list[int]:
    """Indices of the images to draw: those of ``ids`` (in that order), or else ``min(n, N)``
    indices drawn without replacement by ``numpy.random.default_rng(seed)``, sorted.

    Raises:
        UsageError: an id not in ``image_ids`` (the first one is named), or no images.
    """
    where = f" in run {run}" if run else ""
    if ids is not None:
        index = {image_id: i for i, image_id in enumerate(image_ids)}
        unknown = [i for i in ids if i not in index]
        if unknown:
            example = f"; its ids look like {image_ids[0]!r}" if len(image_ids) else ""
            raise UsageError(f"unknown image id {unknown[0]!r}{where} ({len(image_ids)} images{example})")
        return [index[i] for i in ids]
    if not len(image_ids):
        raise UsageError(f"no images to draw{where}: the cache is empty")
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(len(image_ids), size=min(int(n), len(image_ids)), replace=False))


#: How a threshold's origin reads in picture titles (``cam_threshold_from`` of ``metrics.json``).
_THRESHOLD_ORIGIN = {"test": "best on test", "val": "chosen on val", "fixed": "fixed"}


def _statistics(run: _Run) -> None:
    """The run's accuracy curve, its CAM threshold and every GT-class box's IoU at it.

    All numbers come from :mod:`wsolbench.evaluate` (this module only draws): the curve
    is :func:`~wsolbench.evaluate.localization_curves` (GT-known box accuracy, IoU 0.5,
    largest region, on the grid of the settings the metrics were computed with); the
    threshold is ``cam_threshold`` of ``metrics.json``, else the one the run's settings
    choose (:func:`~wsolbench.evaluate.evaluate_run`, nothing saved); the IoUs are
    :func:`~wsolbench.evaluate.per_image`'s at that threshold.
    """
    from wsolbench.evaluate import EvalSettings, evaluate_run, localization_curves, per_image, run_config

    rundir = RunDir(run.run_dir)
    saved = rundir.read_metrics() or {}
    recorded = saved.get("eval")
    try:
        settings = EvalSettings.from_config(
            recorded if isinstance(recorded, Mapping) else run_config(rundir).get("eval")
        )
    except UsageError:
        settings = EvalSettings()
    run.curves = localization_curves(run.cache, cam_curve_interval=settings.cam_curve_interval, chunk_size=CHUNK_SIZE)
    threshold = saved.get("cam_threshold")
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool) and 0.0 <= threshold < 1.0:
        run.threshold_source = _THRESHOLD_ORIGIN.get(str(saved.get("cam_threshold_from")), "metrics.json")
    else:
        metrics = evaluate_run(rundir, settings, save=False)
        threshold = metrics["cam_threshold"]
        run.threshold_source = _THRESHOLD_ORIGIN[metrics["cam_threshold_from"]]
    run.threshold = float(threshold)
    run.gt_ious = per_image(run.cache, run.threshold, chunk_size=CHUNK_SIZE).iou


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return (text.splitlines()[0] if text else "") or type(error).__name__


def _load_images(cache: RunCache, indices: Sequence[int]) -> tuple[list[np.ndarray] | None, str]:
    """The picked images as ``(H, W, 3)`` uint8 at the maps' size, re-created from the dataset.

    Returns ``(images, "")``, or ``(None, why not)`` when the dataset cannot be built or no
    longer matches the cache (other length or ids).
    """
    config = dict(cache.meta.config) if isinstance(cache.meta.config, Mapping) else {}
    section = config.get("dataset")
    if not (isinstance(section, Mapping) and section.get("name")):
        config["dataset"] = {"name": cache.meta.dataset}
    name = str(config["dataset"]["name"])
    if not name:
        return None, "no images (the cache names no dataset)"
    split = cache.meta.split or "test"
    try:
        from wsolbench.registry import default_registry
        from wsolbench.train import build_dataset

        dataset = build_dataset(config, default_registry(), split)
        normalization = cache.meta.extra.get("normalization")
        if normalization:  # the statistics the run's images were normalised with (its backbone's)
            dataset.normalization = tuple(tuple(float(v) for v in row) for row in normalization)
        if len(dataset) != len(cache):
            return None, (
                f"no images (dataset {name!r} split {split!r} has {len(dataset)} images, the cache {len(cache)})"
            )
        images = []
        for i in indices:
            sample = dataset[i]
            if str(sample.image_id) != cache.image_ids[i]:
                return None, (
                    f"no images (dataset {name!r} item {i} is {sample.image_id!r}, the cache's {cache.image_ids[i]!r})"
                )
            raw = getattr(dataset, "raw_image", None)
            image = np.asarray(raw(i)) if callable(raw) else _tensor_to_uint8(dataset.denormalize(sample.image))
            images.append(_fit(image, cache.map_size))
    except Exception as error:  # pictures must work from the cache alone: say why and go on
        return None, f"no images (dataset {name!r} cannot be built: {_first_line(error)})"
    return images, ""


def _tensor_to_uint8(image: Any) -> np.ndarray:
    """``(3, H, W)`` image in [0, 1] -> ``(H, W, 3)`` uint8."""
    rgb = image.detach().cpu().float().permute(1, 2, 0).numpy()
    return np.rint(rgb * 255.0).astype(np.uint8)


def _fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` as ``(H, W, 3)`` uint8 of the maps' ``size`` (resized bilinearly if it differs)."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3]
    if image.dtype != np.uint8:
        scale = 255.0 if image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(np.rint(image.astype(np.float64) * scale), 0, 255).astype(np.uint8)
    if image.shape[:2] != tuple(size):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
    return image


# --------------------------------------------------------------------------------------
# Drawing helpers
# --------------------------------------------------------------------------------------


def _figure(width: float, height: float, *, constrained: bool = True) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained" if constrained else None)


def _wrap(lines: Sequence[str], width_inches: float) -> str:
    """Title lines wrapped to a figure width."""
    import textwrap

    width = max(20, int(width_inches / _TITLE_CHAR))
    return "\n".join(textwrap.fill(line, width) for line in lines if line)


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI, metadata=_PNG_METADATA)
    return path


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


@dataclass
class _Grid:
    """A figure of ``rows x cols`` image panels laid out by hand (fast, and nothing clipped)."""

    fig: Any
    axes: np.ndarray  # (rows, cols) of Axes


def _panel_grid(
    rows: int,
    cols: int,
    *,
    map_size: tuple[int, int],
    header: Sequence[str],
    side: float,
    panel_title: float = 0.0,
    first_title: float = 0.0,
    left: float = 0.1,
    gap: float = 0.08,
) -> _Grid:
    """Panels of ``side`` inches (longer side; the maps' aspect kept) in a grid, a wrapped
    figure title above, a colorbar on the right.

    ``panel_title``: inches above every panel for its title; ``first_title``: above the
    first row only (column titles); ``left``: margin for row labels.
    """
    h, w = map_size
    pw, ph = (side, side * h / w) if w >= h else (side * w / h, side)
    cbar_gap, cbar_w, right = 0.15, 0.14, 0.75  # colorbar: gap, bar, ticks and label
    width = max(MIN_WIDTH, left + cols * pw + (cols - 1) * gap + cbar_gap + cbar_w + right)
    text = _wrap(header, width)
    title_h = 0.1 + 0.18 * (text.count("\n") + 1) + 0.08
    grid_h = first_title + rows * (ph + panel_title) + (rows - 1) * gap
    height = title_h + grid_h + 0.12
    fig = _figure(width, height, constrained=False)
    fig.text(0.5, 1 - 0.1 / height, text, ha="center", va="top", fontsize=10)
    x_start = (width - (cols * pw + (cols - 1) * gap + cbar_gap + cbar_w + right) - left) / 2 + left  # centred
    axes = np.empty((rows, cols), dtype=object)
    top = height - title_h - first_title
    for r in range(rows):
        y = top - panel_title - ph - r * (ph + panel_title + gap)
        for c in range(cols):
            x = x_start + c * (pw + gap)
            axes[r, c] = fig.add_axes((x / width, y / height, pw / width, ph / height))
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar_h = min(grid_h, max(1.2, 0.6 * grid_h))
    x = x_start + cols * pw + (cols - 1) * gap + cbar_gap
    y = (top - (rows * (ph + panel_title) + (rows - 1) * gap) / 2) - bar_h / 2
    cax = fig.add_axes((x / width, y / height, cbar_w / width, bar_h / height))
    fig.colorbar(ScalarMappable(norm=Normalize(0.0, 1.0), cmap="jet"), cax=cax, label="map value")
    return _Grid(fig, axes)


def _background(run: _Run, k: int) -> np.ndarray:
    if run.images is not None:
        return run.images[k]
    h, w = run.cache.map_size
    return np.full((h, w, 3), GREY, dtype=np.float32)


def _alpha(run: _Run) -> float:
    return ALPHA if run.images is not None else ALPHA_NO_IMAGE


def _upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A coarse ``(h, w)`` map resized bilinearly (half-pixel centres, like the model's
    ``F.interpolate(..., align_corners=False)``) to ``size``; an image-sized map as it is."""
    heat = np.asarray(heat, dtype=np.float32)
    if heat.shape == tuple(size):
        return heat
    from PIL import Image

    return np.asarray(Image.fromarray(heat, mode="F").resize((size[1], size[0]), Image.BILINEAR))


def _show(ax: Any, image: np.ndarray, heat: np.ndarray | None = None, *, alpha: float = ALPHA) -> None:
    """``image`` with ``heat`` (jet, resized to the image) over it, both nearest-neighbour:
    the pixels of small images stay visible as pixels."""
    h, w = image.shape[:2]
    ax.imshow(image, interpolation="nearest")
    if heat is not None:
        ax.imshow(_upsample(heat, (h, w)), cmap="jet", vmin=0.0, vmax=1.0, alpha=alpha, interpolation="nearest")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])


def _box(ax: Any, box: Sequence[int], colour: str, width: float = 2.0, zorder: float = 3.0) -> None:
    """An inclusive ``x0, y0, x1, y1`` pixel box, drawn on the pixels' outer edges.

    Not clipped and above the axes frame, so a box along the image border (a whole-image
    prediction, an object cut off by the border) stays fully visible.
    """
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = (int(v) for v in box)
    ax.add_patch(
        Rectangle(
            (x0 - 0.5, y0 - 0.5),
            x1 - x0 + 1,
            y1 - y0 + 1,
            fill=False,
            edgecolor=colour,
            linewidth=width,
            clip_on=False,
            zorder=zorder,
        )
    )


def _gt_boxes(ax: Any, run: _Run, index: int, width: float = 2.0) -> None:
    for box in run.cache.boxes[index]:
        _box(ax, box, GT_COLOUR, width)


def _header(run: _Run) -> str:
    meta = run.cache.meta
    head = f"{run.name}: {meta.method}/{meta.backbone} on {meta.dataset} ({meta.split})"
    if run.images is None:
        head += " — no images, maps on grey"
    return head


def _grid(count: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(count, max_cols))
    return int(math.ceil(count / cols)), cols


# --------------------------------------------------------------------------------------
# Per-run figures
# --------------------------------------------------------------------------------------


def _overlays_figure(run: _Run) -> Any:
    """Fig. 9: predicted-class fused map over the image, GT boxes (yellow), predicted box (red)."""
    from wsolbench.metrics import best_boxes

    cache, picked = run.cache, run.picked
    maps = cache.fused_pred[picked]
    pred = best_boxes(maps, [cache.boxes[i] for i in picked], run.threshold, multi_contour=False)
    rows, cols = _grid(len(picked))
    header = [
        _header(run),
        "fused map of the predicted class; yellow: ground truth; red: predicted box "
        f"(largest region) at CAM threshold {run.threshold:.2f} ({run.threshold_source})",
    ]
    grid = _panel_grid(rows, cols, map_size=cache.map_size, header=header, side=PANEL, panel_title=0.42, gap=0.12)
    for k, ax in enumerate(grid.axes.flat):
        if k >= len(picked):
            ax.set_axis_off()
            continue
        i = picked[k]
        _show(ax, _background(run, k), maps[k], alpha=_alpha(run))
        _gt_boxes(ax, run, i)
        _box(ax, pred.boxes[k], PRED_COLOUR, zorder=4.0)
        gt_class, pred_class = int(cache.labels[i]), int(cache.top5[i, 0])
        iou = float(pred.ious[k])
        right = pred_class == gt_class and iou >= CORRECT_IOU
        verdict = "cls ok" if pred_class == gt_class else "cls wrong"
        ax.set_title(
            f"{_short(cache.image_ids[i])}\nIoU {iou:.2f}  gt {gt_class} pred {pred_class} ({verdict})",
            fontsize=8.5,
            color="darkgreen" if right else "darkred",
        )
    return grid.fig


def _map_rows_figure(run: _Run, columns: list[tuple[str, Any]], title: str) -> Any:
    """One row per picked image: the image with its GT box, then one map per column.

    ``columns``: ``(title, maps)`` where ``maps[k]`` is the map of the k-th picked image.
    """
    picked = run.picked
    rows, cols = len(picked), len(columns) + 1
    side = 1.5 if cols > 6 else 1.8
    grid = _panel_grid(
        rows, cols, map_size=run.cache.map_size, header=[_header(run), title], side=side, first_title=0.25, left=0.3
    )
    axes = grid.axes
    for k, i in enumerate(picked):
        image = _background(run, k)
        _show(axes[k, 0], image)
        _gt_boxes(axes[k, 0], run, i, width=1.5)
        axes[k, 0].set_ylabel(_short(run.cache.image_ids[i], 18), fontsize=8)
        for c, (_, maps) in enumerate(columns, start=1):
            _show(axes[k, c], image, maps[k], alpha=_alpha(run))
    axes[0, 0].set_title("image", fontsize=9)
    for c, (name, _) in enumerate(columns, start=1):
        axes[0, c].set_title(name, fontsize=9)
    return grid.fig


def _extra_maps_figure(run: _Run, name: str) -> Any:
    """One of the method's extra maps (e.g. DANet's per-level maps, Fig. 5, or its K maps, Fig. 7),
    map by map side by side, then the fused map of the ground-truth class."""
    extra, picked = run.cache.extra_maps[name], run.picked
    maps = extra.store[picked]  # (n, M, h, w)
    columns = [(_map_title(j, title), maps[:, j]) for j, title in enumerate(extra.names)]
    columns.append(("fused (GT class)", run.cache.fused_gt[picked]))
    h, w = maps.shape[-2:]
    return _map_rows_figure(
        run, columns, f"{name}: the method's maps of the ground-truth class ({h}x{w}, each min-max normalised)"
    )


def _map_title(index: int, name: str) -> str:
    """``"1:family"`` (a level's name) -> ``"level 1: family"``; other names kept as they are."""
    head, sep, rest = str(name).partition(":")
    if sep and head.strip().isdigit() and rest.strip():
        return f"level {head.strip()}: {rest.strip()}"
    return str(name) or str(index)


# --------------------------------------------------------------------------------------
# Comparison figures
# --------------------------------------------------------------------------------------


def _histogram_figure(runs: list[_Run]) -> Any:
    """Fig. 8: IoU of the correct boxes, in % of each run's test images, one bar series per run."""
    from wsolbench.metrics import iou_statistics

    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    width = (1.0 - CORRECT_IOU) / 10
    bar = width / (len(runs) + 0.5)
    for r, run in enumerate(runs):
        stats = iou_statistics(run.gt_ious, iou_threshold=CORRECT_IOU, bins=10)
        share = 100.0 * stats.hist / max(1, len(run.gt_ious))
        mean = f", mean IoU {stats.mean:.2f}" if stats.count else ""
        label = f"{run.label} @ {run.threshold:.2f}: {stats.fraction * 100:.1f}% correct{mean}"
        left = stats.bin_edges[:-1] + (width - bar * len(runs)) / 2 + r * bar
        ax.bar(left, share, width=bar, align="edge", label=label, color=f"C{r % 10}")
    ax.set_xlim(CORRECT_IOU, 1.0)
    ax.set_xticks(np.linspace(CORRECT_IOU, 1.0, 11))
    ax.set_xlabel("IoU of the box with the ground truth (correct boxes: IoU >= 0.5)")
    ax.set_ylabel("% of the test images")
    ax.set_title("IoU of correct localizations (ground-truth class map at each run's CAM threshold)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def _curve_figure(runs: list[_Run]) -> Any:
    """Box accuracy (IoU 0.5, GT-class map, largest region) against the CAM threshold, per run."""
    fig = _figure(7.0, 4.4)
    ax = fig.add_subplot()
    for r, run in enumerate(runs):
        colour = f"C{r % 10}"
        maxboxacc, at = run.curves.best("gt_known")
        ax.plot(
            run.curves.thresholds,
            run.curves.accuracy("gt_known"),
            color=colour,
            label=f"{run.label}: MaxBoxAcc {maxboxacc:.1f} @ {at:.2f}",
        )
        ax.plot(at, maxboxacc, "o", color=colour)
        ax.axvline(run.threshold, color=colour, linestyle=":", linewidth=1)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 100.0)
    ax.set_xlabel("CAM threshold (dotted: the run's threshold)")
    ax.set_ylabel("box accuracy at IoU 0.5 (%)")
    ax.set_title("GT-known box accuracy vs CAM threshold (dot: MaxBoxAcc)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig
