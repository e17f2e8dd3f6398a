"""Top-k error and the Top-1 / Top-5 / GT-known localization metrics."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench.metrics import localization_errors, topk_correct, topk_error


def test_topk_error_from_logits_and_predictions():
    logits = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    labels = np.array([1, 1, 0])
    assert topk_error(logits, labels, 1) == pytest.approx(100 * 2 / 3)
    assert topk_error(logits, labels, 2) == pytest.approx(100 * 1 / 3)
    assert topk_error(logits, labels, 3) == 0.0
    preds = np.array([[1, 0], [0, 1], [2, 1]])
    assert topk_correct(preds, labels, 1).tolist() == [True, False, False]
    assert topk_correct(preds, labels, 2).tolist() == [True, True, False]
    assert topk_error(np.array([1, 0, 0]), labels, 1) == pytest.approx(100 / 3)
    # ties: stable, the lower class index first
    assert topk_correct(np.array([[0.5, 0.5]]), np.array([0]), 1).tolist() == [True]
    with pytest.raises(ValueError):
        topk_error(preds, labels, 3)


def square_map(h, w, box):
    m = np.zeros((h, w))
    x0, y0, x1, y1 = box
    m[y0 : y1 + 1, x0 : x1 + 1] = 1.0
    return m


def test_localization_errors_hand_computed():
    # image 0: map covers the GT exactly (box (2, 2, 6, 6) vs GT (2, 2, 5, 5): IoU 16/25 >= 0.5), top-1 correct
    # image 1: map far from the GT (IoU 0), top-1 correct
    # image 2: map on the GT, true class only second -> top-5 correct, top-1 wrong
    maps = np.stack(
        [square_map(10, 10, (2, 2, 5, 5)), square_map(10, 10, (0, 0, 1, 1)), square_map(10, 10, (2, 2, 5, 5))]
    )
    gts = [np.array([[2, 2, 5, 5]]), np.array([[6, 6, 9, 9]]), np.array([[2, 2, 5, 5]])]
    logits = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.1, 0.3]])
    labels = np.array([0, 1, 2])
    r = localization_errors(maps, gts, logits, labels, cam_threshold=0.5)
    assert r.top1_cls_error == pytest.approx(100 / 3)
    assert r.top5_cls_error == 0.0
    assert r.gt_known_loc == pytest.approx(200 / 3)  # images 0 and 2
    assert r.top1_loc_error == pytest.approx(200 / 3)  # only image 0 is correct for top-1 loc
    assert r.top5_loc_error == pytest.approx(100 / 3)
    assert r.best_gt_known_loc == pytest.approx(200 / 3)
    assert r.gt_known_loc_curve.shape == r.thresholds.shape == (100,)
    assert r.best_threshold_gt_known == 0.0
    # all thresholds give the same boxes on binary maps
    assert np.all(r.top1_loc_error_curve == r.top1_loc_error)


def random_case(seed: int = 0, n: int = 30, size: int = 16, classes: int = 4):
    """Blob maps at random places, one GT box each, random logits."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    maps, gts = [], []
    for _ in range(n):
        cy, cx, r = rng.uniform(3, size - 3), rng.uniform(3, size - 3), rng.uniform(1.5, 4)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r)) + 0.3 * rng.random((size, size))
        maps.append((m - m.min()) / (m.max() - m.min()))
        x0, y0 = rng.integers(0, size // 2, 2)
        gts.append(np.array([[x0, y0, x0 + rng.integers(3, size // 2), y0 + rng.integers(3, size // 2)]]))
    return np.asarray(maps), gts, rng.normal(size=(n, classes)), rng.integers(0, classes, n)


def test_default_operating_threshold_is_the_best_one_not_0_2():
    maps, gts, logits, labels = random_case()
    r = localization_errors(maps, gts, logits, labels)
    # the operating point is the grid threshold of lowest top-1 loc error, as evaluate_cache's
    assert r.cam_threshold == r.best_threshold_top1
    assert r.top1_loc_error == r.best_top1_loc_error == r.top1_loc_error_curve.min()
    index = int(np.flatnonzero(r.top1_loc_error_curve == r.top1_loc_error_curve.min())[0])  # lowest on ties
    assert r.cam_threshold == pytest.approx(r.thresholds[index])
    assert r.gt_known_loc == r.gt_known_loc_curve[index] and r.top5_loc_error == r.top5_loc_error_curve[index]
    assert r.cam_threshold != pytest.approx(0.2)  # this case's best is elsewhere: the old default differed


def test_localization_curves_count_by_hand_and_add_up_over_chunks():
    from wsolbench.metrics import LocalizationCurves, localization_curves

    maps = np.stack(
        [square_map(10, 10, (2, 2, 5, 5)), square_map(10, 10, (0, 0, 1, 1)), square_map(10, 10, (2, 2, 5, 5))]
    )
    gts = [np.array([[2, 2, 5, 5]]), np.array([[6, 6, 9, 9]]), np.array([[2, 2, 5, 5]])]
    logits = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.6, 0.1, 0.3]])
    labels = np.array([0, 1, 2])
    whole = localization_curves(maps, gts, logits, labels, cam_curve_interval=0.25)
    np.testing.assert_array_equal(whole.thresholds, [0.0, 0.25, 0.5, 0.75])
    np.testing.assert_array_equal(whole.counts, [[1] * 4, [2] * 4, [2] * 4])  # top-1: image 0; top-5, known: 0, 2
    assert whole.best_index() == 0  # a tie everywhere: the lowest threshold
    assert whole.at(0) == {"loc_err_top1": pytest.approx(200 / 3), "loc_err_top5": pytest.approx(100 / 3),
                           "gt_known_loc": pytest.approx(200 / 3)}  # fmt: skip
    parts = [
        localization_curves(maps[s], gts[s], logits[s], labels[s], cam_curve_interval=0.25)
        for s in (slice(0, 2), slice(2, 3))
    ]
    summed = parts[0] + parts[1]
    assert summed.num_images == 3 and np.array_equal(summed.counts, whole.counts)
    with pytest.raises(ValueError, match="different threshold grids"):
        whole + localization_curves(maps, gts, logits, labels, cam_curve_interval=0.5)
    with pytest.raises(ValueError, match="shape"):
        LocalizationCurves(np.zeros(2), np.zeros((3, 3), np.int64), 1)
