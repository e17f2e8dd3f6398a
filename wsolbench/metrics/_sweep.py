"""The union-find sweeps behind the box metrics (:mod:`wsolbench.metrics.boxes`).

The reference (wsolevaluation ``compute_bboxes_from_scoremaps``) binarises the uint8 map at
every CAM threshold and calls ``cv2.findContours(RETR_TREE)`` on it. We get the same regions
for *all* thresholds from two sweeps over the pixels sorted by band
(:mod:`wsolbench.metrics._levels`), using union-find:

* **Foreground sweep** (bands descending, 8-connectivity): each pixel joins the
  components of its already-present neighbours. Every component keeps its
  bounding box, its doubled window area and its first pixel in raster order.
  After band b the live components are the regions of threshold j = b - 1.
* **Background sweep** (MaxBoxAccV2; bands ascending, same sort, 4-connectivity,
  label 0 = the frame and everything connected to it): the other components are
  the holes OpenCV reports as hole contours (``RETR_TREE``). It can also yield the
  hole-filled bands (``filled``): it records the band of every union, and a pixel
  joins the sea at the max of its band and the link times on its label's path to label 0.

Scoring (MaxBoxAccV2 counts): a region's box, hence its best IoU with the GT boxes, changes
only at some levels. A region is queued when its box grows (or a union grows it) and scored
at the end of that band; its previous score then covers the levels since it was scored, added
to per-IoU-threshold difference counts (:func:`_emit`). A level is correct iff some box
covering it reaches the threshold. The work is proportional to box changes, not to regions x
levels; boxes too small to reach the lowest IoU threshold (area below ``tmin`` x the smallest
GT box's) are not scored at all. The exact mode keeps the per-level best box instead (every live
region scored at every level: :func:`best_boxes`, one threshold).

In the foreground sweep, along a run of pixels of the same band in one row each pixel's only
neighbour group is the previous pixel's component, whose root is still at hand: no label
lookup, no find (in the background sweep the same shortcut measured slower on CAM-like maps).

Contour facts used (all checked against cv2 in ``tests/metrics``):

* outer contour of a component: ``boundingRect`` = the component's pixel bbox;
* hole contour: it runs through the foreground pixels 4-adjacent to the hole,
  so its ``boundingRect`` is the hole's pixel bbox grown by one pixel;
* ``cv2.contourArea`` of an outer contour = sum over 2x2 windows of
  ``f(#pixels of the hole-filled component in the window)``, ``f(4) = 1,
  f(3) = 1/2``, else 0 (adding a pixel to a window that already holds c of them
  adds ``[c >= 2] / 2``);
* a hole contour's area never exceeds its parent's, parents precede children,
  nested components are smaller than their enclosing one, and top-level contours
  come in reverse raster order of their first pixel; so
  ``max(contours, key=cv2.contourArea)`` is the filled component of largest area,
  ties going to the one whose first pixel is last in raster order.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._levels import BG_GROUPS, FG_AREA2, FG_GROUPS, _neighbour_tables


@njit(cache=True, nogil=True, inline="always")
def _find(parent, a):
    r = a
    while parent[r] != r:
        r = parent[r]
    while parent[a] != r:  # path compression
        n = parent[a]
        parent[a] = r
        a = n
    return r


@njit(cache=True, nogil=True, inline="always")
def _find_t(parent, linkt, a):
    """Root of a with path halving; ``linkt[a]`` is the band at which a got linked to
    ``parent[a]``, so halving keeps the max of the two links it replaces."""
    while parent[a] != a:
        pa = parent[a]
        gp = parent[pa]
        if gp != pa:
            t = linkt[pa]
            if t > linkt[a]:
                linkt[a] = t
            parent[a] = gp
        a = pa if gp == pa else gp
    return a


@njit(cache=True, nogil=True, inline="always")
def _better(n1, d1, n2, d2):
    """n1/d1 > n2/d2 for non-negative numerators and positive denominators."""
    return n1 * d2 > n2 * d1


@njit(cache=True, nogil=True)
def _box_vs_gt(x0, y0, x1, y1, gt):
    """Best (intersection, union) of one box against all GT boxes, +1 (inclusive) areas."""
    bn = np.int64(0)
    bd = np.int64(1)
    area = (x1 - x0 + 1) * (y1 - y0 + 1)
    for g in range(gt.shape[0]):
        gx0 = gt[g, 0]
        gy0 = gt[g, 1]
        gx1 = gt[g, 2]
        gy1 = gt[g, 3]
        iw = min(x1, gx1) - max(x0, gx0) + 1
        ih = min(y1, gy1) - max(y0, gy0) + 1
        inter = np.int64(0)
        if iw > 0 and ih > 0:
            inter = np.int64(iw) * ih
        union = area + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - inter
        if union <= 0:  # degenerate (cannot happen for valid boxes): IoU 0 like the reference
            continue
        if _better(inter, union, bn, bd):
            bn = inter
            bd = union
    return bn, bd


@njit(cache=True, nogil=True, inline="always")
def _emit(v, lo, hi, iou_thr, cov):
    """A box of IoU ``v`` (float64, ``n / d``) at every threshold level lo..hi: one more box at or
    above ``iou_thr[a]`` there, as differences (``cov[a, lo] += 1``, ``cov[a, hi + 1] -= 1``).

    A level counts as correct at ``iou_thr[a]`` iff the prefix sum of ``cov[a]`` there is
    positive: the best box's IoU is at or above a threshold iff some box's is (``n / d`` is
    rounded monotonically, so the best float is the float of the best fraction)."""
    for a in range(iou_thr.shape[0]):
        if v >= iou_thr[a]:
            cov[a, lo] += 1
            cov[a, hi + 1] -= 1


@njit(cache=True, nogil=True, inline="always")
def _queue(lb, b, dmark, dlist, nq):
    """Queue label lb (its box changed in band b) once per band; returns the queue length."""
    if dmark[lb] != b:
        dmark[lb] = b
        dlist[nq] = lb
        nq += 1
    return nq


@njit(cache=True, nogil=True)
def _score_floor(iou_thr, gt):
    """``(tmin, big)``: the lowest IoU threshold, and the box area below which a box's IoU with
    every GT box is below tmin (IoU <= box area / GT area), with a margin for rounding."""
    tmin = np.inf
    for a in range(iou_thr.shape[0]):
        tmin = min(tmin, iou_thr[a])
    gmin = np.inf
    for g in range(gt.shape[0]):
        gmin = min(gmin, np.float64((gt[g, 2] - gt[g, 0] + 1) * (gt[g, 3] - gt[g, 1] + 1)))
    return tmin, tmin * gmin * (1.0 - 1e-7)


@njit(cache=True, nogil=True)
def _bg_sweep(H, W, D, ws, gt, total, iou_thr, cov, hole_n, hole_d, hole_box, filled):
    """Ascending background sweep (4-connectivity); label 0 is the sea (the frame
    and all background connected to it), every other component is a hole.

    ``order``/``cnt`` hold the ``total`` sorted pixels (all of them). The hole contours' boxes
    (hole bbox grown by one pixel, clipped) are scored into ``cov`` (counts only, :func:`_emit`):
    a hole is scored only at the levels at which its box changed, and each score covers the
    levels up to the next change; or, with ``hole_n`` (and ``cov`` None), exactly: per
    threshold j the box of best IoU into hole_n/hole_d/hole_box[j] (hole_d[j] == 0: no hole);
    with both None, not at all. The mode is chosen by passing None: numba compiles one
    specialisation per combination with the other modes' code pruned (fewer live arrays in
    the pixel loop: 15% faster than runtime flags on CAM-like maps).

    ``filled`` (``ws[1]`` or None): also the hole-filled bands into it (same values as
    :func:`_fill_holes`): every union records the band at which it happened
    (``linkt``), a pixel reaches the sea at the max of its band and the link times
    on its label's path to label 0 (D if it never does below band D).
    """
    band, bgpat, lab, linkt, order, cnt = ws[0], ws[3], ws[4], ws[5], ws[6], ws[7]
    parent, bx0, by0, bx1, by1, live, livepos = ws[8], ws[9], ws[10], ws[11], ws[12], ws[15], ws[16]
    seg, siou, dmark, dlist = ws[17], ws[18], ws[19], ws[20]
    tmin, big = _score_floor(iou_thr, gt)
    Wp = W + 2
    n = (H + 2) * Wp
    off, ngroups, rep = _neighbour_tables(Wp, BG_GROUPS)
    if hole_n is not None:
        for j in range(D):
            hole_n[j] = 0
            hole_d[j] = 0
    for i in range(n):
        lab[i] = 0
    parent[0] = 0
    nlab = 1
    nlive = 0
    acc = np.int64(0)
    for b in range(0, D):
        nq = 0
        acc += cnt[b]
        s0 = total - acc
        for jj in range(s0, s0 + cnt[b]):
            yx = order[jj]
            y = yx >> 16
            x = yx & 0xFFFF
            p = (y + 1) * Wp + x + 1
            pat = bgpat[p]
            ng = ngroups[pat]
            merged = False  # lb's box grew by a union
            if ng == 1:  # the common case
                q = p + rep[pat]
                lb = lab[q]
                if parent[lb] != lb:
                    if filled is not None:  # lab[q] must stay q's label when it was added
                        lb = _find_t(parent, linkt, lb)
                    else:
                        lb = _find(parent, lb)
                        lab[q] = lb
            elif ng == 0:
                lb = nlab
                nlab += 1
                parent[lb] = lb
                linkt[lb] = 0
                bx0[lb] = x
                bx1[lb] = x
                by0[lb] = y
                by1[lb] = y
                live[nlive] = lb
                livepos[lb] = nlive
                nlive += 1
                lab[p] = lb
                if cov is not None:
                    seg[lb] = -1
                    dmark[lb] = -1
                    if 16 >= big:  # a one-pixel hole's box is 3 x 3 (4 x 4 bounds it)
                        nq = _queue(lb, b, dmark, dlist, nq)
                continue
            else:
                if filled is not None:
                    lb = _find_t(parent, linkt, lab[p + rep[pat]])
                else:
                    lb = _find(parent, lab[p + rep[pat]])
                for g in range(2, ng + 1):
                    if filled is not None:
                        l2 = _find_t(parent, linkt, lab[p + off[BG_GROUPS[pat, g]]])
                    else:
                        l2 = _find(parent, lab[p + off[BG_GROUPS[pat, g]]])
                    if l2 != lb:
                        if l2 < lb:  # the sea (label 0) always stays the root
                            lb, l2 = l2, lb
                        parent[l2] = lb
                        linkt[l2] = b
                        k = livepos[l2]
                        nlive -= 1
                        last = live[nlive]
                        live[k] = last
                        livepos[last] = k
                        if cov is not None and seg[l2] >= 0 and siou[l2] >= tmin:  # l2's box ends at level b - 1
                            _emit(siou[l2], seg[l2], b - 1, iou_thr, cov)
                        if lb != 0:
                            if bx0[l2] < bx0[lb] or by0[l2] < by0[lb] or bx1[l2] > bx1[lb] or by1[l2] > by1[lb]:
                                merged = True
                            bx0[lb] = min(bx0[lb], bx0[l2])
                            by0[lb] = min(by0[lb], by0[l2])
                            bx1[lb] = max(bx1[lb], bx1[l2])
                            by1[lb] = max(by1[lb], by1[l2])
            lab[p] = lb
            if lb != 0:
                grown = merged
                if x < bx0[lb]:
                    bx0[lb] = x
                    grown = True
                if x > bx1[lb]:
                    bx1[lb] = x
                    grown = True
                if y < by0[lb]:
                    by0[lb] = y
                    grown = True
                if y > by1[lb]:
                    by1[lb] = y
                    grown = True
                # a box too small to reach tmin needs no score (its holes are scored once larger)
                if cov is not None and grown and (bx1[lb] - bx0[lb] + 4) * (by1[lb] - by0[lb] + 4) >= big:
                    nq = _queue(lb, b, dmark, dlist, nq)
        if cov is not None:
            # the holes whose box changed in band b: close the old box's levels, score the new one
            for t in range(nq):
                r = dlist[t]
                if parent[r] != r:  # joined another hole or the sea: closed at the union
                    continue
                if seg[r] >= 0 and siou[r] >= tmin:
                    _emit(siou[r], seg[r], b - 1, iou_thr, cov)
                cn, cd = _box_vs_gt(bx0[r] - 1, by0[r] - 1, min(bx1[r] + 2, W - 1), min(by1[r] + 2, H - 1), gt)
                siou[r] = cn / cd
                seg[r] = b
        elif hole_n is not None:
            bn = np.int64(0)
            bd = np.int64(1)
            bi = -1
            for li in range(nlive):
                r = live[li]
                cn, cd = _box_vs_gt(bx0[r] - 1, by0[r] - 1, min(bx1[r] + 2, W - 1), min(by1[r] + 2, H - 1), gt)
                if bi < 0 or _better(cn, cd, bn, bd):
                    bn = cn
                    bd = cd
                    bi = r
            if bi >= 0:
                hole_n[b] = bn
                hole_d[b] = bd
                hole_box[b, 0] = bx0[bi] - 1
                hole_box[b, 1] = by0[bi] - 1
                hole_box[b, 2] = min(bx1[bi] + 2, W - 1)
                hole_box[b, 3] = min(by1[bi] + 2, H - 1)
    if cov is not None:
        for li in range(nlive):  # holes that last to the top level
            r = live[li]
            if siou[r] >= tmin:
                _emit(siou[r], seg[r], D - 1, iou_thr, cov)
    if filled is not None:
        # join[l]: band at which label l reaches the sea (parents have smaller labels)
        join = ws[13]
        join[0] = -1
        for lb in range(1, nlab):
            pl = parent[lb]
            if pl == lb:
                join[lb] = D
            else:
                jp = join[pl]
                join[lb] = linkt[lb] if linkt[lb] > jp else jp
        for i in range(n):
            filled[i] = -1
        for y in range(H):
            row = (y + 1) * Wp + 1
            for x in range(W):
                p = row + x
                bp = band[p]
                if bp >= D:
                    filled[p] = D
                else:
                    jl = join[lab[p]]
                    filled[p] = bp if bp > jl else jl


@njit(cache=True, nogil=True)
def _fg_sweep(H, W, D, ws, gt, iou_thr, cov, hole_n, hole_d, hole_box, out_n, out_d, out_box):
    """Descending foreground sweep (8-connectivity).

    Three modes, chosen by which arguments are None (as in :func:`_bg_sweep`):

    * ``cov`` (MaxBoxAccV2 counts): every component's box goes into ``cov`` like the holes'
      (:func:`_emit`), each scored only at the levels at which it changed;
    * ``hole_n``, ``hole_d``, ``hole_box`` (MaxBoxAccV2, exact): per threshold j < D the box
      of best IoU and its (intersection, union) against the GT boxes into
      out_n/out_d/out_box[j], comparing every component's box with the best hole's;
    * both None (single contour, MaxBoxAcc): into out_*[j], the component of largest window area (ties: first pixel
    last in raster order); run on the hole-filled bands this is the reference's
    ``max(contours, key=cv2.contourArea)``. The live components are compared at the end of
    every band (keeping the largest up to date pixel by pixel measured slower on CAM-like maps).
    """
    fgpat, lab, order, cnt = ws[2], ws[4], ws[6], ws[7]
    parent, bx0, by0, bx1, by1, first, area2, live, livepos = (
        ws[8],
        ws[9],
        ws[10],
        ws[11],
        ws[12],
        ws[13],
        ws[14],
        ws[15],
        ws[16],
    )
    seg, siou, dmark, dlist = ws[17], ws[18], ws[19], ws[20]
    tmin, big = _score_floor(iou_thr, gt)
    Wp = W + 2
    n = (H + 2) * Wp
    prev = np.int32(-2)  # raster position of the previous pixel, and its root
    plb = 0
    off, ngroups, rep = _neighbour_tables(Wp, FG_GROUPS)
    for i in range(n):
        lab[i] = -1
    nlab = 0
    nlive = 0
    jj = 0
    for b in range(D, 0, -1):
        nq = 0
        s1 = jj + cnt[b]
        while jj < s1:
            yx = order[jj]
            jj += 1
            y = yx >> 16
            x = yx & 0xFFFF
            p = (y + 1) * Wp + x + 1
            pat = fgpat[p]
            ng = ngroups[pat]
            merged = False  # lb's box grew by a union
            if ng == 1:  # the common case: one group of present neighbours
                if yx == prev + 1:  # a run: the W neighbour came just before, its label is a root
                    lb = plb
                else:
                    q = p + rep[pat]
                    lb = lab[q]
                    if parent[lb] != lb:
                        lb = _find(parent, lb)
                        lab[q] = lb
            elif ng == 0:  # a new component
                lb = nlab
                nlab += 1
                parent[lb] = lb
                bx0[lb] = x
                bx1[lb] = x
                by0[lb] = y
                by1[lb] = y
                first[lb] = yx
                area2[lb] = FG_AREA2[pat]
                live[nlive] = lb
                livepos[lb] = nlive
                nlive += 1
                lab[p] = lb
                if cov is not None:
                    seg[lb] = -1
                    dmark[lb] = -1
                    if 4 >= big:  # a one-pixel component's box is at most 2 x 2
                        nq = _queue(lb, b, dmark, dlist, nq)
                prev = yx
                plb = lb
                continue
            else:  # several groups: they may belong to different components
                lb = _find(parent, lab[p + rep[pat]])
                for g in range(2, ng + 1):
                    l2 = _find(parent, lab[p + off[FG_GROUPS[pat, g]]])
                    if l2 != lb:
                        if l2 < lb:
                            lb, l2 = l2, lb
                        parent[l2] = lb
                        if cov is not None and seg[l2] >= 0 and siou[l2] >= tmin:  # l2's box ends at level b
                            _emit(siou[l2], b, seg[l2], iou_thr, cov)
                        if bx0[l2] < bx0[lb] or by0[l2] < by0[lb] or bx1[l2] > bx1[lb] or by1[l2] > by1[lb]:
                            merged = True
                        bx0[lb] = min(bx0[lb], bx0[l2])
                        by0[lb] = min(by0[lb], by0[l2])
                        bx1[lb] = max(bx1[lb], bx1[l2])
                        by1[lb] = max(by1[lb], by1[l2])
                        first[lb] = min(first[lb], first[l2])
                        area2[lb] += area2[l2]
                        k = livepos[l2]
                        nlive -= 1
                        last = live[nlive]
                        live[k] = last
                        livepos[last] = k
            grown = merged
            if x < bx0[lb]:
                bx0[lb] = x
                grown = True
            if x > bx1[lb]:
                bx1[lb] = x
                grown = True
            if y < by0[lb]:
                by0[lb] = y
                grown = True
            if y > by1[lb]:
                by1[lb] = y
                grown = True
            # a box too small to reach tmin needs no score (the component is scored once larger)
            if cov is not None and grown and (bx1[lb] - bx0[lb] + 2) * (by1[lb] - by0[lb] + 2) >= big:
                nq = _queue(lb, b, dmark, dlist, nq)
            lab[p] = lb
            prev = yx
            plb = lb
            if cov is None and hole_n is None:  # single contour
                if yx < first[lb]:
                    first[lb] = yx
                area2[lb] += FG_AREA2[pat]
        j = b - 1
        if nlive == 0:  # nothing above the threshold: the reference's box [0, 0, 0, 0]
            cn, cd = _box_vs_gt(0, 0, 0, 0, gt)
            out_n[j] = cn
            out_d[j] = cd
            out_box[j, 0] = 0
            out_box[j, 1] = 0
            out_box[j, 2] = 0
            out_box[j, 3] = 0
            if cov is not None:
                _emit(cn / cd, j, j, iou_thr, cov)
            continue
        if cov is not None:
            # the components whose box changed in band b: close the old box's levels, score the new one
            for t in range(nq):
                r = dlist[t]
                if parent[r] != r:  # merged into another one: closed at the union
                    continue
                if seg[r] >= 0 and siou[r] >= tmin:
                    _emit(siou[r], b, seg[r], iou_thr, cov)
                cn, cd = _box_vs_gt(bx0[r], by0[r], min(bx1[r] + 1, W - 1), min(by1[r] + 1, H - 1), gt)
                siou[r] = cn / cd
                seg[r] = j
        elif hole_n is not None:
            bn = np.int64(0)
            bd = np.int64(1)
            bm = -1
            for li in range(nlive):
                r = live[li]
                cn, cd = _box_vs_gt(bx0[r], by0[r], min(bx1[r] + 1, W - 1), min(by1[r] + 1, H - 1), gt)
                if bm < 0 or _better(cn, cd, bn, bd):
                    bn = cn
                    bd = cd
                    bm = r
            out_n[j] = bn
            out_d[j] = bd
            out_box[j, 0] = bx0[bm]
            out_box[j, 1] = by0[bm]
            out_box[j, 2] = min(bx1[bm] + 1, W - 1)
            out_box[j, 3] = min(by1[bm] + 1, H - 1)
            if hole_d[j] > 0 and _better(hole_n[j], hole_d[j], bn, bd):
                out_n[j] = hole_n[j]
                out_d[j] = hole_d[j]
                for c in range(4):
                    out_box[j, c] = hole_box[j, c]
        else:
            bi = live[0]  # the largest component (window area, then first pixel last in raster order)
            for li in range(1, nlive):
                r = live[li]
                if area2[r] > area2[bi] or (area2[r] == area2[bi] and first[r] > first[bi]):
                    bi = r
            cx1 = min(bx1[bi] + 1, W - 1)
            cy1 = min(by1[bi] + 1, H - 1)
            cn, cd = _box_vs_gt(bx0[bi], by0[bi], cx1, cy1, gt)
            out_n[j] = cn
            out_d[j] = cd
            out_box[j, 0] = bx0[bi]
            out_box[j, 1] = by0[bi]
            out_box[j, 2] = cx1
            out_box[j, 3] = cy1
    if cov is not None:
        for li in range(nlive):  # components that last to the lowest level
            r = live[li]
            if siou[r] >= tmin:
                _emit(siou[r], 0, seg[r], iou_thr, cov)
