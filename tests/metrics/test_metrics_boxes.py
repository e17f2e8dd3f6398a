"""Box metrics: hand-computed cases (worked out on paper) and input handling."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench.metrics import best_boxes, box_accuracy, cam_thresholds, iou_matrix, iou_statistics


def from_gray(gray) -> np.ndarray:
    """Score map whose uint8 version ``trunc(255 * map)`` is exactly ``gray``."""
    g = np.asarray(gray, dtype=np.float64)
    return np.where(g >= 255, 1.0, (g + 0.5) / 255.0)


def one(m):
    return np.asarray(m, dtype=np.float64)[None]


def boxes_at(gray, t, gt=((0, 0, 0, 0),), multi=False):
    r = best_boxes(one(from_gray(gray)), [np.array(gt)], t, multi_contour=multi)
    return r.boxes[0].tolist(), float(r.ious[0])


def test_square_region_box_and_iou():
    # 5x5 map, a 2x2 square at x, y in {1, 2}: boundingRect (1, 1, 2, 2) -> box (1, 1, 1+2, 1+2) = (1, 1, 3, 3)
    g = np.zeros((5, 5))
    g[1:3, 1:3] = 255
    box, iou = boxes_at(g, 0.5, gt=[(1, 1, 2, 2)])
    assert box == [1, 1, 3, 3]
    # inclusive areas: box 3 * 3 = 9, GT 2 * 2 = 4, intersection 4 -> 4 / 9
    assert iou == 4 / 9
    for multi in (False, True):
        assert boxes_at(g, 0.0, gt=[(1, 1, 3, 3)], multi=multi) == ([1, 1, 3, 3], 1.0)


def test_box_far_corner_clipped_at_border():
    g = np.zeros((5, 5))
    g[3:5, 3:5] = 255  # x + w = 5 -> clipped to W - 1 = 4
    assert boxes_at(g, 0.3)[0] == [3, 3, 4, 4]
    g = np.zeros((5, 5))
    g[0, 0] = 255
    assert boxes_at(g, 0.3)[0] == [0, 0, 1, 1]


def test_two_gt_boxes_best_one_counts():
    g = np.zeros((5, 5))
    g[1:3, 1:3] = 255
    r = best_boxes(one(from_gray(g)), [np.array([[3, 3, 4, 4], [1, 1, 3, 3]])], 0.5, multi_contour=False)
    assert r.ious[0] == 1.0
    acc = box_accuracy(one(from_gray(g)), [np.array([[3, 3, 4, 4], [1, 1, 3, 3]])], iou_thresholds=(50,))
    assert acc.max_box_acc[50] == 100.0
    assert acc.curves[50].tolist() == [100.0] * 100


def test_constant_map_is_one_full_box():
    # constant 0.5 -> gray 127 everywhere; int(t * 127) < 127 for t < 1, so all pixels are foreground
    m = np.full((6, 8), 0.5)
    for t in (0.0, 0.5, 0.99):
        r = best_boxes(one(m), [np.array([[0, 0, 7, 5]])], t, multi_contour=False)
        assert r.boxes[0].tolist() == [0, 0, 7, 5]  # (0, 0, 0 + 8, 0 + 6) clipped
        assert r.ious[0] == 1.0


def test_all_zero_map_gives_box_zero():
    m = np.zeros((6, 8))
    r = best_boxes(one(m), [np.array([[0, 0, 1, 1]])], 0.3)
    assert r.boxes[0].tolist() == [0, 0, 0, 0]
    assert r.ious[0] == 1 / 4  # the [0, 0, 0, 0] box is one pixel, inside the 2x2 GT box
    acc = box_accuracy(one(m), [np.array([[0, 0, 0, 0]])], iou_thresholds=(50,))
    assert acc.max_box_acc[50] == 100.0  # IoU([0,0,0,0], [0,0,0,0]) = 1: the reference counts it
    # below 1/255 everywhere is the same: gray is all zero
    r = best_boxes(one(np.full((6, 8), 0.0039)), [np.array([[0, 0, 1, 1]])], 0.0)
    assert r.boxes[0].tolist() == [0, 0, 0, 0]


def test_threshold_edge_value_equal_to_int_t_max_is_background():
    # max gray 200: at t = 0.5 the threshold is int(0.5 * 200) = 100; 100 is background, 101 foreground
    g = np.zeros((5, 9))
    g[2, 8] = 200
    g[2, 1] = 100
    g[2, 4] = 101
    assert boxes_at(g, 0.5, multi=True)[0] in ([4, 2, 5, 3], [8, 2, 8, 3])
    r = best_boxes(one(from_gray(g)), [np.array([[1, 2, 2, 3]])], 0.5, multi_contour=True)
    assert r.ious[0] == 0.0  # the pixel at gray 100 is not foreground
    r = best_boxes(one(from_gray(g)), [np.array([[4, 2, 5, 3]])], 0.5, multi_contour=True)
    assert r.ious[0] == 1.0
    # t = 0.49: int(0.49 * 200) = 98 -> the 100 pixel is foreground now
    r = best_boxes(one(from_gray(g)), [np.array([[1, 2, 2, 3]])], 0.49, multi_contour=True)
    assert r.ious[0] == 1.0


def test_gray_is_truncated_not_rounded():
    # 0.999 * 255 = 254.7 -> 254; 0.5 * 255 = 127.5 -> 127. With max 254: int(0.5 * 254) = 127,
    # so 0.5 is background at t = 0.5 (it would be foreground if 127.5 were rounded to 128).
    m = np.zeros((3, 7))
    m[1, 1] = 0.999
    m[1, 5] = 0.5
    r = best_boxes(one(m), [np.array([[5, 1, 6, 2]])], 0.5, multi_contour=True)
    assert r.ious[0] == 0.0
    r = best_boxes(one(m), [np.array([[5, 1, 6, 2]])], 0.49, multi_contour=True)
    assert r.ious[0] == 1.0


def test_max_below_255_scales_thresholds():
    # max gray 10: int(t * 10); at t = 0.55 the threshold is 5, so gray 6 is foreground and 5 is not
    g = np.zeros((4, 6))
    g[1, 1] = 10
    g[1, 3] = 6
    g[2, 5] = 5
    r = best_boxes(one(from_gray(g)), [np.array([[3, 1, 4, 2]])], 0.55, multi_contour=True)
    assert r.ious[0] == 1.0
    r = best_boxes(one(from_gray(g)), [np.array([[5, 2, 5, 3]])], 0.55, multi_contour=True)
    assert r.ious[0] == 0.0


def test_hole_contour_box_is_hole_bbox_grown_by_one():
    # 9x9: square of foreground x, y in 1..7 with a 2x2 hole at 3..4
    g = np.zeros((9, 9))
    g[1:8, 1:8] = 255
    g[3:5, 3:5] = 0
    gt = [(2, 2, 5, 5)]
    # outer: (1, 1, 1 + 7, 1 + 7) = (1, 1, 8, 8), IoU = 16 / 64
    assert boxes_at(g, 0.5, gt, multi=False) == ([1, 1, 8, 8], 16 / 64)
    # hole 3..4 -> contour through 2..5 -> boundingRect (2, 2, 4, 4) -> box (2, 2, 6, 6), IoU = 16 / 25
    assert boxes_at(g, 0.5, gt, multi=True) == ([2, 2, 6, 6], 16 / 25)
    acc_multi = box_accuracy(one(from_gray(g)), [np.array(gt)], iou_thresholds=(50,), multi_contour=True)
    acc_single = box_accuracy(one(from_gray(g)), [np.array(gt)], iou_thresholds=(50,), multi_contour=False)
    assert (acc_multi.value, acc_single.value) == (100.0, 0.0)


def test_diagonal_neighbours_connect_foreground_but_not_background():
    # two pixels touching at a corner are one region (8-connectivity)
    g = np.zeros((4, 4))
    g[1, 1] = g[2, 2] = 255
    assert boxes_at(g, 0.5)[0] == [1, 1, 3, 3]
    # a background pixel enclosed by 4-neighbours but open diagonally is still a hole (4-connected background)
    g = np.full((5, 5), 255.0)
    g[0, :] = 0
    g[2, 2] = 0
    g[1, 1] = 0  # diagonal to (2, 2): does not connect it to the outside
    assert boxes_at(g, 0.5, [(1, 1, 3, 3)], multi=True) == ([1, 1, 4, 4], 9 / 16)


def test_single_contour_uses_polygon_area_not_pixel_count():
    # a diagonal line of 5 pixels has contour area 0, a 2x2 block (4 pixels) has area 1: the block wins
    g = np.zeros((8, 8))
    for i in range(5):
        g[i, i] = 255
    g[5:7, 0:2] = 255
    assert boxes_at(g, 0.5)[0] == [0, 5, 2, 7]
    # a 1x6 bar (area 0) loses to a 2x2 block (area 1) as well
    g = np.zeros((8, 8))
    g[0, 0:6] = 255
    g[5:7, 1:3] = 255
    assert boxes_at(g, 0.5)[0] == [1, 5, 3, 7]
    # a 3x3 L-shape missing one corner: area 4 - 0.5 = 3.5 beats a 2x3 block (area 2)
    g = np.zeros((10, 10))
    g[0:3, 0:3] = 255
    g[2, 2] = 0
    g[6:8, 5:8] = 255
    assert boxes_at(g, 0.5)[0] == [0, 0, 3, 3]


def test_single_contour_ties_go_to_last_region_in_raster_order():
    # equal areas: OpenCV lists top-level contours in reverse raster order of their first
    # pixel and max() keeps the first maximal one -> the region starting last wins
    g = np.zeros((6, 6))
    g[1, 1] = g[3, 4] = g[4, 0] = 255  # three single pixels, area 0
    assert boxes_at(g, 0.5)[0] == [0, 4, 1, 5]
    g = np.zeros((7, 7))
    g[0:2, 4:6] = 255  # first pixel (0, 4)
    g[3:5, 0:2] = 255  # first pixel (3, 0): later in raster order
    assert boxes_at(g, 0.5)[0] == [0, 3, 2, 5]
    g = np.zeros((7, 7))
    g[3:5, 0:2] = 255
    g[3:5, 4:6] = 255  # same row: starts at (3, 4), later
    assert boxes_at(g, 0.5)[0] == [4, 3, 6, 5]


def test_single_contour_hole_and_nested_region_never_win():
    # thin ring (area 4 filled) around a hole holding one pixel: the ring's contour is chosen
    g = np.zeros((7, 7))
    g[1:6, 1:6] = 255
    g[2:5, 2:5] = 0
    g[3, 3] = 255
    assert boxes_at(g, 0.5)[0] == [1, 1, 6, 6]
    # a larger region nested inside a hole is still smaller than its enclosing filled region
    g = np.zeros((12, 12))
    g[1:11, 1:11] = 255
    g[2:10, 2:10] = 0
    g[3:9, 3:9] = 255
    assert boxes_at(g, 0.5)[0] == [1, 1, 11, 11]


def test_curves_and_values_definitions():
    g = np.zeros((10, 10))
    g[2:8, 2:8] = 128
    g[4:6, 4:6] = 255
    maps = np.stack([from_gray(g), from_gray(g)])
    gts = [np.array([[2, 2, 7, 7]]), np.array([[4, 4, 5, 5]])]
    r = box_accuracy(maps, gts, iou_thresholds=(30, 50, 70), multi_contour=False)
    assert r.thresholds.tolist() == np.arange(0, 1, 0.01).tolist()
    # int(t * 255) <= 127: the 6x6 block, box (2, 2, 8, 8): IoU 36/49 with GT 1, 4/49 with GT 2
    # int(t * 255) >= 128: the 2x2 core, box (4, 4, 6, 6): IoU 9/36 with GT 1, 4/9 with GT 2
    low = r.thresholds * 255 < 128
    inner = ~low
    assert np.all(r.curves[70][low] == 50.0) and np.all(r.curves[70][inner] == 0.0)
    assert np.all(r.curves[30][inner] == 50.0) and np.all(r.curves[50][inner] == 0.0)
    assert r.max_box_acc == {30: 50.0, 50: 50.0, 70: 50.0}
    assert r.value == 50.0
    assert r.best_thresholds[30] == 0.0


def test_iou_matrix_matches_reference_conventions():
    a = np.array([[1, 2, 5, 6]])
    b = np.array([[3, 1, 4, 5]])
    assert iou_matrix(a, b)[0, 0] == 8 / 27  # the reference's own unit test value
    np.testing.assert_array_equal(iou_matrix(np.zeros((3, 4)), np.zeros((5, 4))), np.ones((3, 5)))
    eye = np.array([[1, 1, 3, 3], [4, 4, 5, 5]])
    np.testing.assert_array_equal(iou_matrix(eye, eye), np.eye(2))


def test_iou_statistics():
    s = iou_statistics([0.2, 0.55, 0.75, 0.95, 1.0], iou_threshold=0.5, bins=5)
    assert s.count == 4 and s.fraction == 0.8
    assert s.mean == pytest.approx(0.8125) and s.median == pytest.approx(0.85)
    assert s.hist.tolist() == [1, 0, 1, 0, 2]
    empty = iou_statistics([0.1], iou_threshold=0.5)
    assert empty.count == 0 and np.isnan(empty.mean)


def test_input_validation():
    m = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        box_accuracy(m + 2.0, [np.array([[0, 0, 1, 1]])])
    bad = m.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError):
        box_accuracy(bad, [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match="GT boxes"):
        box_accuracy(m, [np.zeros((0, 4))])
    with pytest.raises(ValueError, match="GT boxes"):
        box_accuracy(m, [np.array([[2, 0, 1, 1]])])
    with pytest.raises(ValueError, match="N, H, W"):
        box_accuracy(m[0], [np.array([[0, 0, 1, 1]])])
    with pytest.raises(TypeError):
        box_accuracy(m.astype(np.int64), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError):
        cam_thresholds(0.0)


def test_dtypes_and_box_array_forms_agree():
    rng = np.random.default_rng(0)
    m = rng.random((4, 9, 11))
    gts = np.array([[1, 1, 5, 6], [0, 0, 10, 8], [3, 2, 4, 4], [2, 2, 9, 7]])
    ref = box_accuracy(m, list(gts[:, None, :]))
    assert box_accuracy(m, gts).curves[50].tolist() == ref.curves[50].tolist()
    # float32 maps are evaluated in float64 like the reference pipeline
    m32 = m.astype(np.float32)
    assert box_accuracy(m32, gts).value == box_accuracy(m32.astype(np.float64), gts).value


def test_box_correct_counts_any_threshold_order_and_subsets():
    from wsolbench.metrics import box_correct_counts

    rng = np.random.default_rng(5)
    maps = rng.random((6, 12, 14))
    gts = [np.array([[2, 2, 9, 8]]), np.array([[0, 0, 5, 5], [6, 6, 13, 11]])] * 3
    thresholds = np.array([0.7, 0.1, 0.5, 0.1, 0.33, 0.0])  # unsorted, with a duplicate
    eligible = np.array([[True] * 6, [True, False] * 3])
    counts = box_correct_counts(
        maps, gts, thresholds=thresholds, iou_thresholds=(30, 50), multi_contour=False, eligible=eligible
    )
    assert counts.shape == (2, 2, 6)
    for k, t in enumerate(thresholds):
        ious = best_boxes(maps, gts, t, multi_contour=False).ious
        for a, iou in enumerate((0.3, 0.5)):
            assert counts[0, a, k] == (ious >= iou).sum()
            assert counts[1, a, k] == (ious[eligible[1]] >= iou).sum()
