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
