"""PxAP and normalize_scoremap: hand-computed cases and edge cases."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench.metrics import normalize_scoremap, pxap, pxap_histograms


def test_pxap_perfect_and_hand_computed():
    # object pixels score 0.9, background 0.1: every operating point up to 0.1 has precision 1
    maps = np.array([[[0.9, 0.1], [0.9, 0.1]]])
    masks = np.array([[[1, 0], [1, 0]]], dtype=np.uint8)
    assert pxap(maps, masks).value == 100.0
    # scores: object 0.8 and 0.3, background 0.6 and 0.3 -> PR points (scores >= s):
    # s = 0.8: P = 1, R = 1/2; s = 0.6: P = 1/2, R = 1/2; s = 0.3: P = 1/2, R = 1
    # AP = 1 * 1/2 + 1/2 * (1 - 1/2) = 0.75
    maps = np.array([[[0.8, 0.6], [0.3, 0.3]]])
    masks = np.array([[[1, 0], [1, 0]]], dtype=np.uint8)
    r = pxap(maps, masks)
    assert r.value == 75.0
    assert r.thresholds[:3].tolist() == [2.0, 1.0, np.arange(0, 1, 0.01)[-1]]
    assert r.recall[-1] == 1.0 and r.precision[-1] == 0.5


def test_pxap_histogram_bins_and_ignored_pixels():
    edges = np.append(np.arange(0, 1, 0.01), [1.0, 2.0, 3.0])
    maps = np.array([[[0.0, 0.5, edges[30], 1.0, 0.999999]]])
    masks = np.array([[[1, 1, 0, 1, 255]]], dtype=np.uint8)
    pos, neg = pxap_histograms(maps, masks)
    assert pos[0] == 1 and pos[50] == 1 and pos[100] == 1  # 1.0 falls in [1, 2)
    assert neg[30] == 1 and neg.sum() == 1 and pos.sum() == 3  # 255 is ignored
    np.testing.assert_array_equal(pos, np.histogram(maps[masks == 1], bins=edges)[0])


def test_pxap_constant_and_zero_maps():
    masks = np.array([[[1, 0], [0, 1]]], dtype=np.uint8)
    # a constant map predicts everything at once: AP = fraction of object pixels
    assert pxap(np.full((1, 2, 2), 0.4), masks).value == 50.0
    assert pxap(np.zeros((1, 2, 2)), masks).value == 50.0


def test_pxap_errors():
    with pytest.raises(ValueError, match="No positive ground truth"):
        pxap(np.random.default_rng(0).random((1, 3, 3)), np.zeros((1, 3, 3), np.uint8))
    with pytest.raises(ValueError):
        pxap(np.full((1, 2, 2), 1.5), np.ones((1, 2, 2), np.uint8))
    with pytest.raises(ValueError):
        pxap(np.zeros((1, 2, 2)), np.ones((1, 2, 3), np.uint8))


def test_normalize_scoremap():
    cam = np.array([[1.0, 3.0], [5.0, 2.0]])
    out = normalize_scoremap(cam)
    np.testing.assert_array_equal(out, (cam - 1.0) / 4.0)
    assert cam[0, 0] == 1.0  # input untouched
    np.testing.assert_array_equal(normalize_scoremap(np.full((3, 3), 7.0)), np.zeros((3, 3)))
    nan = cam.copy()
    nan[0, 1] = np.nan
    np.testing.assert_array_equal(normalize_scoremap(nan), np.zeros((2, 2)))
    batch = np.stack([cam, np.full((2, 2), 2.0), -cam])
    out = normalize_scoremap(batch)
    np.testing.assert_array_equal(out[0], (cam - 1.0) / 4.0)
    np.testing.assert_array_equal(out[1], np.zeros((2, 2)))
    assert out[2].min() == 0.0 and out[2].max() == 1.0
    assert normalize_scoremap(cam.astype(np.float32)).dtype == np.float64
    with pytest.raises(ValueError):
        normalize_scoremap(np.zeros(3))
