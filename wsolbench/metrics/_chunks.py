"""Per-image and per-chunk drivers of the box metrics: workspace, stage order, tallies.

:func:`box_chunk` and :func:`box_chunk_both` run images ``i0..i1-1`` of a chunk (chunks run in
threads: every kernel releases the GIL) through :mod:`wsolbench.metrics._levels` and
:mod:`wsolbench.metrics._sweep` and add their correct counts per (subset, IoU threshold, CAM
threshold).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._levels import _fill_holes, _no_holes, _patterns, _pits, _quantize, _sort
from ._sweep import _bg_sweep, _fg_sweep


@njit(cache=True, nogil=True)
def _level_buffers(T, A):
    """Per-level buffers sized for T thresholds (at most 256 distinct levels, plus 2) and A IoU
    thresholds: best-IoU fractions (numerator, denominator) and boxes for holes and for outer
    regions (exact per-level results), and the coverage counts ``cov`` (A, levels) of
    :func:`_emit` (counts only)."""
    nd = min(T, 256) + 2
    hole_box = np.zeros((nd, 4), np.int64)
    out_box = np.zeros((nd, 4), np.int64)
    return (
        np.zeros(nd, np.int64),
        np.zeros(nd, np.int64),
        hole_box,
        np.zeros(nd, np.int64),
        np.ones(nd, np.int64),
        out_box,
        np.zeros((A, nd), np.int32),
    )


@njit(cache=True, nogil=True)
def _alloc(H, W):
    """Per-thread workspace for maps of size (H, W), padded by a one-pixel frame.

    Layout: 0 band, 1 filled, 2 fgpat, 3 bgpat, 4 lab, 5 link times (per label), 6 order, 7 cnt,
    then per-label arrays 8 parent, 9-12 bbox x0 y0 x1 y1, 13 first pixel,
    14 doubled area, 15 live list, 16 position in the live list, and for the scoring of
    changed regions only (:func:`_emit`): 17 level of the current box's score, 18 that IoU,
    19 last band the label was queued in, 20 the queue of changed labels.
    """
    Wp = W + 2
    n = (H + 2) * Wp
    npx = H * W
    m = npx + 2
    band = np.empty(n, np.int16)
    filled = np.empty(n, np.int16)
    fgpat = np.zeros(n, np.uint8)
    bgpat = np.zeros(n, np.uint8)
    lab = np.empty(n, np.int32)
    linkt = np.empty(m, np.int32)
    order = np.empty(npx, np.int32)
    cnt = np.empty(260, np.int64)
    parent = np.empty(m, np.int32)
    bx0 = np.empty(m, np.int32)
    by0 = np.empty(m, np.int32)
    bx1 = np.empty(m, np.int32)
    by1 = np.empty(m, np.int32)
    first = np.empty(m, np.int32)
    area2 = np.empty(m, np.int64)
    live = np.empty(m, np.int32)
    livepos = np.empty(m, np.int32)
    seg = np.empty(m, np.int32)
    siou = np.empty(m, np.float64)
    dmark = np.empty(m, np.int32)
    dlist = np.empty(m, np.int32)
    return (
        band,
        filled,
        fgpat,
        bgpat,
        lab,
        linkt,
        order,
        cnt,
        parent,
        bx0,
        by0,
        bx1,
        by1,
        first,
        area2,
        live,
        livepos,
        seg,
        siou,
        dmark,
        dlist,
    )


#: MaxBoxAccV2 counts score regions by level segments (:func:`_sweep._emit`) on maps with pits
#: (:func:`_levels._pits`) at 1 / SEGMENTS_PIT_SHARE of the pixels or more; on smoother maps,
#: with few regions per level, scoring every region at every level is cheaper (measured: 5%
#: on CAM-like maps, while segments are 2x faster on noise).
SEGMENTS_PIT_SHARE = 100


def _image_boxes(img, thr_t, gt, multi, exact, iou_thr, ws, dvals, kmap, levels):
    """One image, all thresholds: for the D distinct thresholds either out_n/out_d/out_box[j]
    (``levels[3:6]``: single contour, ``exact``, or a multi-contour map with few pits) or the
    coverage counts ``levels[6]`` at ``iou_thr``. Returns ``(D, valid, per_level)``:
    ``per_level`` says which of the two holds the result.

    A map proven to have no holes at any level (:func:`_no_holes`, most smooth maps) needs
    neither the background sweep nor hole filling. The stages are called one by one from
    Python on purpose: a numba function that calls them gets its own linked copies of them,
    and those ran about 20% slower than the stand-alone kernels once loaded from numba's disk
    cache (measured here, numba 0.68). Dispatch costs about 20 us per image.
    """
    H, W = img.shape
    band, fgpat, bgpat, order, cnt = ws[0], ws[2], ws[3], ws[6], ws[7]
    hole_d, cov = levels[1], levels[6]
    D, valid = _quantize(img, thr_t, band, dvals, kmap)
    pits = _pits(H, W, band)
    per_level = not multi or exact or pits * SEGMENTS_PIT_SHARE < H * W
    # the sweeps' mode is chosen by which arguments are None (see _sweep._fg_sweep)
    counts_only = None if per_level else cov
    holes = levels[:3] if multi and per_level else (None, None, None)
    if pits == 0 and _no_holes(H, W, band, bgpat):
        _patterns(H, W, band, fgpat, bgpat, True, False)
        _sort(H, W, D, band, order, cnt)
        hole_d[:] = 0
    elif multi:
        # one sort serves both sweeps; the background sweep finds the holes
        _patterns(H, W, band, fgpat, bgpat, True, True)
        total = _sort(H, W, D, band, order, cnt)
        _bg_sweep(H, W, D, ws, gt, total, iou_thr, counts_only, *holes, None)
    else:
        # single contour: components of the hole-filled map
        _filled_bands(H, W, D, ws, gt, iou_thr, levels, pits)
        _patterns(H, W, band, fgpat, bgpat, True, False)
        _sort(H, W, D, band, order, cnt)
    _fg_sweep(H, W, D, ws, gt, iou_thr, counts_only, *holes, *levels[3:6])
    return D, valid, per_level


def _filled_bands(H, W, D, ws, gt, iou_thr, levels, pits):
    """Replace the bands by the hole-filled bands. Vincent's FIFO reconstruction
    (:func:`_fill_holes`) is faster on most maps, the background sweep's by-product on maps
    with ``pits`` (:func:`_pits`) at 5% of the pixels or more (noise: 2x faster)."""
    band, filled, bgpat, lab, order, cnt = ws[0], ws[1], ws[3], ws[4], ws[6], ws[7]
    if pits * 20 >= H * W:
        _patterns(H, W, band, ws[2], bgpat, False, True)
        total = _sort(H, W, D, band, order, cnt)
        _bg_sweep(H, W, D, ws, gt, total, iou_thr, None, None, None, None, filled)
    else:
        _fill_holes(H, W, D, band, filled, order, lab)
    band[:] = filled


def _workspace(H, W, T, A):
    """Per-thread buffers: the sweep workspace, dvals, kmap, the per-level buffers and IoUs."""
    levels = _level_buffers(T, A)
    return _alloc(H, W), np.empty(T + 1, np.int64), np.empty(T, np.int64), levels, np.empty(levels[3].shape[0])


def box_chunk(
    maps, gt_flat, gt_off, thr_t, multi, iou_thr, eligible, i0, i1, counts, want_k, best_iou, best_box, invalid
):
    """Images i0..i1-1: counts[s, a, k] += 1 when image i is eligible[s, i] and its best
    IoU at CAM threshold k is >= iou_thr[a]; when want_k >= 0 also the best IoU and
    box at threshold index want_k into best_iou/best_box[i]; invalid[i] = 1 for maps
    with NaN or values outside [0, 1]. The kernels release the GIL: chunks run in threads."""
    _, H, W = maps.shape
    ws, dvals, kmap, levels, iou = _workspace(H, W, thr_t.shape[0], iou_thr.shape[0])
    out_n, out_d, out_box, cov = levels[3:]
    exact = want_k >= 0
    for i in range(i0, i1):
        gt = gt_flat[gt_off[i] : gt_off[i + 1]]
        D, valid, per_level = _image_boxes(maps[i], thr_t, gt, multi, exact, iou_thr, ws, dvals, kmap, levels)
        if not valid:
            invalid[i] = 1
        if per_level:
            _tally(out_n, out_d, D, kmap, iou, iou_thr, eligible, i, counts)
        else:
            _tally_cov(cov, D, kmap, iou_thr, eligible, i, counts)
        if exact:
            j = kmap[want_k]
            best_iou[i] = out_n[j] / out_d[j]
            best_box[i] = out_box[j]


@njit(cache=True, nogil=True)
def _tally(out_n, out_d, D, kmap, iou, iou_thr, eligible, i, counts):
    """counts[s, a, k] += 1 when image i is eligible[s, i] and its best IoU at the
    threshold k (distinct threshold kmap[k]) is >= iou_thr[a]."""
    for j in range(D):
        iou[j] = out_n[j] / out_d[j]
    S = eligible.shape[0]
    A = iou_thr.shape[0]
    for k in range(kmap.shape[0]):
        v = iou[kmap[k]]
        for a in range(A):
            if v >= iou_thr[a]:
                for s in range(S):
                    if eligible[s, i]:
                        counts[s, a, k] += 1


@njit(cache=True, nogil=True)
def _tally_cov(cov, D, kmap, iou_thr, eligible, i, counts):
    """:func:`_tally` from the coverage counts of :func:`_emit` (level j is correct at
    iou_thr[a] iff ``cov[a, :j + 1].sum() > 0``), then clears ``cov`` for the next image."""
    A = iou_thr.shape[0]
    S = eligible.shape[0]
    for a in range(A):
        run = 0
        for j in range(D + 1):
            run += cov[a, j]
            cov[a, j] = 1 if run > 0 else 0
    for k in range(kmap.shape[0]):
        j = kmap[k]
        for a in range(A):
            if cov[a, j]:
                for s in range(S):
                    if eligible[s, i]:
                        counts[s, a, k] += 1
    for a in range(A):
        for j in range(D + 1):
            cov[a, j] = 0


def box_chunk_both(
    maps, gt_flat, gt_off, thr_all, pos_1, iou_1, elig_1, counts_1, pos_2, iou_2, elig_2, counts_2, i0, i1, invalid
):
    """Both box metrics of images i0..i1-1 in one pass per image.

    ``thr_all``: the sorted union of both threshold grids, ``pos_1`` / ``pos_2`` the
    position of each grid's thresholds in it. Set 1 is single-contour (MaxBoxAcc:
    counts_1 as :func:`box_chunk` with ``multi=False``), set 2 multi-contour
    (MaxBoxAccV2: counts_2). Shares the quantisation, the neighbour patterns and the
    sort, and takes the hole-filled map from the background sweep (``filled``)
    instead of :func:`_fill_holes`.
    """
    _, H, W = maps.shape
    ws, dvals, kmap, levels, iou = _workspace(H, W, thr_all.shape[0], iou_2.shape[0])
    band, filled, fgpat, bgpat, order, cnt = ws[0], ws[1], ws[2], ws[3], ws[6], ws[7]
    out_n, out_d, cov = levels[3], levels[4], levels[6]
    for i in range(i0, i1):
        gt = gt_flat[gt_off[i] : gt_off[i + 1]]
        D, valid = _quantize(maps[i], thr_all, band, dvals, kmap)
        if not valid:
            invalid[i] = 1
        pits = _pits(H, W, band)
        per_level = pits * SEGMENTS_PIT_SHARE < H * W
        counts_only = None if per_level else cov
        holes = levels[:3] if per_level else (None, None, None)
        if pits == 0 and _no_holes(H, W, band, bgpat):  # the hole-filled bands are the bands
            _patterns(H, W, band, fgpat, bgpat, True, False)
            _sort(H, W, D, band, order, cnt)
            levels[1][:] = 0
            _fg_sweep(H, W, D, ws, gt, iou_2, counts_only, *holes, *levels[3:6])
        else:
            _patterns(H, W, band, fgpat, bgpat, True, True)
            total = _sort(H, W, D, band, order, cnt)
            _bg_sweep(H, W, D, ws, gt, total, iou_2, counts_only, *holes, filled)
            _fg_sweep(H, W, D, ws, gt, iou_2, counts_only, *holes, *levels[3:6])
            band[:] = filled
            _patterns(H, W, band, fgpat, bgpat, True, False)
            _sort(H, W, D, band, order, cnt)
        if per_level:
            _tally(out_n, out_d, D, kmap[pos_2], iou, iou_2, elig_2, i, counts_2)
        else:
            _tally_cov(cov, D, kmap[pos_2], iou_2, elig_2, i, counts_2)
        _fg_sweep(H, W, D, ws, gt, iou_1, None, None, None, None, *levels[3:6])
        _tally(out_n, out_d, D, kmap[pos_1], iou, iou_1, elig_1, i, counts_1)
