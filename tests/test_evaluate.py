"""evaluate_cache on small constructed caches whose answers are computed by hand."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from wsolbench.cache import CacheMeta, CacheWriter, read_cache
from wsolbench.errors import UsageError
from wsolbench.evaluate import evaluate_cache, per_image

S = 10  # maps are S x S
C = 6
GT_BOX = np.array([[5, 5, 9, 9]])  # bottom-right 5x5 square, touching the image border


def square_map(core: tuple[slice, slice]) -> np.ndarray:
    """A 0.3 "halo" over the whole map, 1.0 on ``core``, one 0 pixel (so min 0, max 1).

    Thresholds below 0.30 keep the halo (box = whole image, IoU 0.25 with GT_BOX); from
    0.30 on only the core survives (``int(0.3 * 255) = 76`` and the halo is ``floor(76.5)
    = 76``, not above it).
    """
    m = np.full((S, S), 0.3, dtype=np.float32)
    m[core] = 1.0
    m[0, S - 1] = 0.0
    return m


GOOD = square_map((slice(5, 10), slice(5, 10)))  # core == GT box: IoU 1 from t = 0.30 on
BAD = square_map((slice(0, 3), slice(0, 3)))  # core far from the object: IoU 0


def logits_ranking(order: list[int]) -> np.ndarray:
    """Logits whose decreasing order is ``order``."""
    logits = np.zeros(C, dtype=np.float32)
    logits[order] = np.arange(C, 0, -1)
    return logits


# image: label, class ranking, GT-class map
CASES = [
    (0, [0, 1, 2, 3, 4, 5], GOOD),  # top-1 right, map good: every localization right
    (1, [2, 1, 0, 3, 4, 5], GOOD),  # top-1 wrong, GT 2nd: top-5 loc right, top-1 loc wrong
    (3, [3, 0, 1, 2, 4, 5], BAD),  # top-1 right, map bad: every localization wrong
    (4, [0, 1, 2, 3, 5, 4], GOOD),  # GT ranked 6th: classification wrong, GT-known right
]


def build(tmp_path: Path, *, masks: bool) -> Path:
    n = len(CASES)
    path = tmp_path / "cache.h5"
    with CacheWriter(
        path,
        meta=CacheMeta(method="cam", backbone="vgg16", dataset="toy", config={"seed": 0}),
        num_images=n,
        map_size=(S, S),
        num_classes=C,
        has_masks=masks,
    ) as writer:
        for i, (label, order, gt_map) in enumerate(CASES):
            mask = np.zeros((1, S, S), np.uint8)
            mask[0, 5:, 5:] = 1
            writer.write_batch(
                image_ids=[f"im{i}"],
                labels=[label],
                logits=logits_ranking(order)[None],
                fused_pred=(GOOD if order[0] != label else gt_map)[None],
                fused_gt=gt_map[None],
                boxes=[GT_BOX],
                masks=mask if masks else None,
            )
    return path


def write_cache(tmp_path: Path, maps, boxes, labels, logits, masks=None) -> Path:
    """One batch of same-map (predicted = GT class) images written to ``tmp_path/cache.h5``."""
    n, h, w = maps.shape
    path = tmp_path / "cache.h5"
    meta = CacheMeta(method="cam", backbone="x", dataset="y")
    with CacheWriter(
        path, meta=meta, num_images=n, map_size=(h, w), num_classes=C, has_masks=masks is not None
    ) as writer:
        writer.write_batch(
            image_ids=[str(i) for i in range(n)],
            labels=labels,
            logits=logits,
            fused_pred=maps,
            fused_gt=maps,
            boxes=boxes,
            masks=masks,
        )
    return path


def test_best_threshold_numbers(tmp_path: Path) -> None:
    with read_cache(build(tmp_path, masks=False)) as cache:
        metrics = evaluate_cache(cache, chunk_size=3)  # chunks of 3 and 1: counts must add up
    assert metrics["num_images"] == 4
    assert metrics["cls_err_top1"] == 50.0  # images 1 and 3
    assert metrics["cls_err_top5"] == 25.0  # image 3
    assert metrics["cam_threshold"] == pytest.approx(0.30)  # first threshold dropping the halo
    assert metrics["loc_err_top1"] == 75.0  # only image 0
    assert metrics["loc_err_top5"] == 50.0  # images 0 and 1
    assert metrics["gt_known_loc"] == 75.0  # images 0, 1, 3
    assert metrics["maxboxacc"] == 75.0
    assert metrics["maxboxacc_v2"] == 75.0  # IoU 1 for the good maps, < 0.3 for the bad one
    assert "pxap" not in metrics  # no masks


def test_fixed_threshold(tmp_path: Path) -> None:
    with read_cache(build(tmp_path, masks=False)) as cache:
        low = evaluate_cache(cache, cam_threshold=0.2)  # halo kept: every box is the whole image
        high = evaluate_cache(cache, cam_threshold=0.555)  # need not be on the grid
        with pytest.raises(UsageError, match=r"cam_threshold must be in \[0, 1\)"):
            evaluate_cache(cache, cam_threshold=1.0)
    assert low["cam_threshold"] == pytest.approx(0.2)
    assert (low["loc_err_top1"], low["loc_err_top5"], low["gt_known_loc"]) == (100.0, 100.0, 0.0)
    assert low["maxboxacc"] == 75.0  # threshold-free metrics do not move
    assert (high["loc_err_top1"], high["loc_err_top5"], high["gt_known_loc"]) == (75.0, 50.0, 75.0)
    assert high["cam_threshold"] == 0.555


def test_pxap_by_hand(tmp_path: Path) -> None:
    # object pixels: 75 at 1.0 (good maps), 25 at 0.3 (bad map)
    # background:     9 at 1.0 (bad core), 3 * 74 + 65 = 287 at 0.3, 4 at 0.0
    # PR points from the top: (P = 75/84, R = 0.75), (P = 100/396, R = 1.0)
    expected = 100 * (0.75 * 75 / 84 + 0.25 * 100 / 396)
    with read_cache(build(tmp_path, masks=True)) as cache:
        metrics = evaluate_cache(cache)
    assert metrics["pxap"] == pytest.approx(expected, abs=1e-9)
    assert metrics["loc_err_top1"] == 75.0  # float32 GT maps give the same boxes


def test_agrees_with_box_accuracy_on_random_maps(tmp_path: Path) -> None:
    from wsolbench.metrics import box_accuracy

    rng = np.random.default_rng(3)
    n, h, w = 23, 20, 24
    yy, xx = np.mgrid[0:h, 0:w]
    maps = []
    for _ in range(n):
        m = sum(
            np.exp(-((yy - rng.uniform(0, h)) ** 2 + (xx - rng.uniform(0, w)) ** 2) / (2 * rng.uniform(1, 4) ** 2))
            for _ in range(3)
        )
        maps.append((m - m.min()) / (m.max() - m.min()))
    maps = np.asarray(maps, dtype=np.float32)
    boxes = []
    for _ in range(n):
        x0, y0 = rng.integers(0, w // 2), rng.integers(0, h // 2)
        boxes.append(np.array([[x0, y0, x0 + rng.integers(2, w // 2), y0 + rng.integers(2, h // 2)]]))
    labels = rng.integers(0, C, n)
    logits = rng.normal(size=(n, C)).astype(np.float32)
    path = write_cache(tmp_path, maps, boxes, labels, logits)
    with read_cache(path) as cache:
        metrics = evaluate_cache(cache, chunk_size=4)
        mba = box_accuracy(maps, boxes, iou_thresholds=(50,), multi_contour=False)
        assert metrics["maxboxacc"] == pytest.approx(mba.value, abs=1e-9)
        assert metrics["maxboxacc_v2"] == pytest.approx(box_accuracy(maps, boxes).value, abs=1e-9)
        # top-1 loc at the chosen threshold from the per-image boxes
        t = metrics["cam_threshold"]
        images = per_image(cache, t)
        top1 = logits.argmax(1) == labels
        assert metrics["loc_err_top1"] == pytest.approx(100 * (1 - np.mean(top1 & images.loc_correct)), abs=1e-9)
        assert metrics["gt_known_loc"] == pytest.approx(100 * np.mean(images.loc_correct), abs=1e-9)
        assert metrics["gt_known_loc"] == pytest.approx(mba.curves[50][int(round(t / 0.01))], abs=1e-9)


def test_per_image_boxes_and_iou_statistics(tmp_path: Path) -> None:
    with read_cache(build(tmp_path, masks=False)) as cache:
        images = per_image(cache, 0.5)
        pred = per_image(cache, 0.5, which="pred")
    assert images.image_ids == ["im0", "im1", "im2", "im3"]
    np.testing.assert_allclose(images.iou, [1.0, 1.0, 0.0, 1.0])
    for i in (0, 1, 3):
        np.testing.assert_array_equal(images.boxes[i], GT_BOX[0])
    assert images.boxes[2][0] == 0 and images.boxes[2][1] == 0  # the bad map's box is top-left
    np.testing.assert_array_equal(images.cls_correct, [True, False, True, False])
    np.testing.assert_allclose(pred.iou, [1.0, 1.0, 0.0, 1.0])
    np.testing.assert_array_equal(images.loc_correct, [True, True, False, True])
    stats = images.statistics()  # correct localizations only (IoU >= 0.5): DANet Fig. 8
    assert stats.count == 3 and stats.fraction == 0.75 and stats.mean == 1.0 and stats.median == 1.0
    assert stats.hist.sum() == 3 and stats.hist[-1] == 3


def test_streamed_pxap_and_localization_match_the_metrics_module(tmp_path: Path) -> None:
    from wsolbench.metrics import localization_errors, pxap

    rng = np.random.default_rng(5)
    n, h, w = 11, 16, 16
    maps = rng.random((n, h, w)).astype(np.float32)
    maps[:, 0, 0], maps[:, -1, -1] = 0.0, 1.0
    masks = (rng.random((n, h, w)) < 0.4).astype(np.uint8)
    masks[rng.random((n, h, w)) < 0.05] = 255  # ignored pixels
    boxes = [np.array([[2, 3, 9, 12]])] * n
    labels, logits = rng.integers(0, C, n), rng.normal(size=(n, C)).astype(np.float32)
    path = write_cache(tmp_path, maps, boxes, labels, logits, masks)
    with read_cache(path) as cache:
        metrics = evaluate_cache(cache, cam_threshold=0.35, chunk_size=4)
    assert metrics["pxap"] == pytest.approx(pxap(maps, masks).value, abs=1e-9)
    reference = localization_errors(maps, boxes, logits, labels, cam_threshold=0.35)
    assert metrics["loc_err_top1"] == pytest.approx(reference.top1_loc_error, abs=1e-9)
    assert metrics["loc_err_top5"] == pytest.approx(reference.top5_loc_error, abs=1e-9)
    assert metrics["gt_known_loc"] == pytest.approx(reference.gt_known_loc, abs=1e-9)
    assert metrics["cls_err_top1"] == pytest.approx(reference.top1_cls_error, abs=1e-9)
    assert metrics["cls_err_top5"] == pytest.approx(reference.top5_cls_error, abs=1e-9)
    assert metrics["maxboxacc"] == pytest.approx(reference.best_gt_known_loc, abs=1e-9)


def test_cache_and_in_memory_metrics_choose_the_same_operating_threshold(tmp_path: Path) -> None:
    from wsolbench.metrics import localization_errors

    rng = np.random.default_rng(11)
    n, h, w = 17, 16, 16
    yy, xx = np.mgrid[0:h, 0:w]
    maps = np.asarray(
        [
            (m - m.min()) / (m.max() - m.min())
            for m in (
                np.exp(-((yy - rng.uniform(2, 14)) ** 2 + (xx - rng.uniform(2, 14)) ** 2) / 8)
                + 0.3 * rng.random((h, w))
                for _ in range(n)
            )
        ],
        dtype=np.float32,
    )
    boxes = [np.array([[x, y, x + 6, y + 5]]) for x, y in rng.integers(0, 8, (n, 2))]
    labels, logits = rng.integers(0, C, n), rng.normal(size=(n, C)).astype(np.float32)
    with read_cache(write_cache(tmp_path, maps, boxes, labels, logits)) as cache:
        metrics = evaluate_cache(cache, chunk_size=5)
    reference = localization_errors(maps, boxes, logits, labels)  # no threshold given: the same rule
    assert metrics["cam_threshold"] == reference.cam_threshold
    assert metrics["loc_err_top1"] == pytest.approx(reference.top1_loc_error, abs=1e-9)
    assert metrics["loc_err_top5"] == pytest.approx(reference.top5_loc_error, abs=1e-9)
    assert metrics["gt_known_loc"] == pytest.approx(reference.gt_known_loc, abs=1e-9)
    assert metrics["num_classes"] == C


# -- selection on val, evaluation settings of a run directory ----------------------------


def banded_map(halo: float, core: tuple[slice, slice], hot: tuple[slice, slice] | None = None) -> np.ndarray:
    """``halo`` everywhere, ``1.0`` on ``core``, optionally a 1.0 ``hot`` spot elsewhere, one 0 pixel."""
    m = np.full((S, S), halo, dtype=np.float32)
    m[core] = 1.0 if hot is None else 0.6
    if hot is not None:
        m[hot] = 1.0
    m[0, S - 1] = 0.0
    return m


ON_GT = (slice(5, 10), slice(5, 10))
# right from t = 0.60 on: below it the 0.6 halo (u = 153) makes the whole image one region
LATE = banded_map(0.6, ON_GT)
# right below t = 0.60: the 0.6 object is the largest region; from 0.60 on only the 3x3 hot spot is left
EARLY = banded_map(0.0, ON_GT, hot=(slice(0, 3), slice(0, 3)))
# right from t = 0.30 on (the halo of square_map)
MIDDLE = GOOD


def write_split(path: Path, maps: list[np.ndarray], split: str, config: dict) -> None:
    """A cache of ``maps`` (GT-class = predicted-class map), every image classified right."""
    meta = CacheMeta(method="cam", backbone="x", dataset="toy", config=config, split=split)
    with CacheWriter(path, meta=meta, num_images=len(maps), map_size=(S, S), num_classes=C) as writer:
        for i, m in enumerate(maps):
            writer.write_batch(
                image_ids=[f"{split}/{i}"],
                labels=[i % C],
                logits=logits_ranking([i % C, *[c for c in range(C) if c != i % C]])[None],
                fused_pred=m[None],
                fused_gt=m[None],
                boxes=[GT_BOX],
            )


def toy_run(root: Path, *, eval_section: dict | None = None, val: bool = True) -> Path:
    """A run folder: val maps that localize from t = 0.60 on, test maps that mostly stop there."""
    config = {"method": {"name": "cam"}, "seed": 0, "eval": eval_section or {}}
    root.mkdir(parents=True)
    write_split(root / "cache.h5", [EARLY, EARLY, EARLY, MIDDLE], "test", config)
    if val:
        write_split(root / "cache-val.h5", [LATE, LATE], "val", config)
    return root


def test_threshold_chosen_on_val_is_applied_to_test(tmp_path: Path) -> None:
    from wsolbench.evaluate import EvalSettings, evaluate_run

    run = toy_run(tmp_path / "run")
    on_test = evaluate_run(run, EvalSettings.from_config({"cam_threshold": "best"}))
    # test's own best: from 0.30 every map is right (EARLY until 0.60, MIDDLE from 0.30); lowest on ties
    assert on_test["cam_threshold"] == pytest.approx(0.30) and on_test["cam_threshold_from"] == "test"
    assert (on_test["gt_known_loc"], on_test["loc_err_top1"], on_test["loc_err_top5"]) == (100.0, 0.0, 0.0)
    assert "val" not in on_test and on_test["split"] == "test"

    on_val = evaluate_run(run, EvalSettings.from_config({"cam_threshold": "val"}))
    # val's best is 0.60 (LATE is right only there and above); at 0.60 only MIDDLE of test is right
    assert on_val["val"]["cam_threshold"] == pytest.approx(0.60) and on_val["val"]["gt_known_loc"] == 100.0
    assert on_val["cam_threshold"] == pytest.approx(0.60) and on_val["cam_threshold_from"] == "val"
    assert (on_val["gt_known_loc"], on_val["loc_err_top1"], on_val["loc_err_top5"]) == (25.0, 75.0, 75.0)
    assert on_val["maxboxacc"] == on_test["maxboxacc"] == 100.0  # threshold-free numbers do not move
    assert on_val["eval"] == {"cam_threshold": "val", "cam_curve_interval": 0.01, "splits": ["test", "val"]}
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == on_val  # what was computed is what was saved

    fixed = evaluate_run(run, EvalSettings.from_config({"cam_threshold": 0.7, "splits": ["test", "val"]}))
    assert fixed["cam_threshold_from"] == "fixed" and fixed["val"]["cam_threshold_from"] == "fixed"
    assert fixed["cam_threshold"] == fixed["val"]["cam_threshold"] == pytest.approx(0.7)


def test_val_settings_without_a_val_cache_are_one_line_errors(tmp_path: Path) -> None:
    from wsolbench.evaluate import EvalSettings, evaluate_run

    run = toy_run(tmp_path / "run", val=False)
    with pytest.raises(UsageError, match=r"has no cache-val\.h5 .*eval\.splits=\[test, val\]"):
        evaluate_run(run, EvalSettings.from_config({"cam_threshold": "val"}))
    for bad, needle in [
        ({"cam_threshold": "vall"}, "'eval.cam_threshold' must be a number in [0, 1)"),
        ({"cam_threshold": 1.0}, "'eval.cam_threshold' must be a number in [0, 1)"),
        ({"cam_curve_interval": 0}, "'eval.cam_curve_interval' must be a number in (0, 1)"),
        ({"splits": ["val"]}, "'eval.splits' must list test"),
        ({"splits": ["train", "test"]}, "'eval.splits' must list test"),
    ]:
        with pytest.raises(UsageError) as error:
            EvalSettings.from_config(bad)
        assert needle in str(error.value) and "\n" not in str(error.value)


def test_eval_command_applies_settings_from_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wsolbench.cli.main import main

    run = toy_run(tmp_path / "runs" / "a", eval_section={"cam_curve_interval": 0.01})
    assert main(["eval", str(run)]) == 0  # the run's own settings: best on test
    first = json.loads((run / "metrics.json").read_text())
    assert first["eval"]["cam_threshold"] == "best" and first["cam_threshold"] == pytest.approx(0.30)
    out = capsys.readouterr().out
    assert "on the test split itself (the older papers' protocol" in out

    assert main(["eval", str(run / "cache.h5"), "--cam-threshold", "val", "--set", "eval.cam_curve_interval=0.05"]) == 0
    second = json.loads((run / "metrics.json").read_text())
    assert second["eval"] == {"cam_threshold": "val", "cam_curve_interval": 0.05, "splits": ["test", "val"]}
    assert second["cam_threshold"] == pytest.approx(0.60) and second["gt_known_loc"] == 25.0
    assert "chosen on" not in capsys.readouterr().out.splitlines()[0]  # one run: said in the note, not a column

    assert main(["table", str(run), "--split", "val", "--format", "csv"]) == 0
    (row,) = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert (row["split"], row["CAM threshold"], row["gt_known_loc"]) == ("val", "best on val", "100.0")
    assert main(["table", str(run), "--split", "val"]) == 0
    assert "Val split. Top-1/Top-5 Loc Err and GT-known Loc at the CAM threshold" in capsys.readouterr().out

    other = toy_run(tmp_path / "runs" / "b")
    assert main(["eval", str(other)]) == 0
    capsys.readouterr()
    assert main(["table", str(tmp_path / "runs"), "--no-group"]) == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0]
    assert "CAM threshold" in header and "grid" in header  # the rows were evaluated differently: marked
    assert "chosen on val" in table and "best on test" in table and "Rows were evaluated differently" in table

    for args, needle in [
        (["--set", "train.lr=0.1"], "eval changes evaluation settings only"),
        (["--set", "eval.save_maps=false"], "eval.save_maps cannot change from the cache"),
        (["--cam-threshold", "2"], "'eval.cam_threshold' must be a number in [0, 1)"),
    ]:
        assert main(["eval", str(run), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err
    assert json.loads((run / "metrics.json").read_text()) == second  # a rejected eval changes nothing
