"""Compiled (numba) kernels behind :mod:`wsolbench.metrics`.

Box metrics
-----------
The reference (wsolevaluation ``compute_bboxes_from_scoremaps``) binarises the
uint8 map ``u = trunc(255 * map)`` at every CAM threshold ``t`` (foreground:
``u > int(t * max(u))``) and calls ``cv2.findContours(RETR_TREE)`` on it. We get
the same regions for *all* thresholds from two sweeps over the pixels, using
union-find:

* Only the distinct integer thresholds ``d_0 < ... < d_{D-1}`` matter. A pixel's
  *band* ``b = #{j : d_j < u}`` says it is foreground at threshold ``j`` iff
  ``b > j``. Pixels are counting-sorted by band (raster order inside a band).
* **Foreground sweep** (bands descending, 8-connectivity): each pixel joins the
  components of its already-present neighbours. Every component keeps its
  bounding box, its doubled window area and its first pixel in raster order.
  After band b the live components are the regions of threshold j = b - 1.
* **Background sweep** (MaxBoxAccV2 only; bands ascending, same sort,
  4-connectivity, label 0 = the frame and everything connected to it): the other
  components are the holes OpenCV reports as hole contours (``RETR_TREE``).
* **Hole-filled map** (MaxBoxAcc only): ``filled[p]`` = min over 4-paths from the
  frame of the max band on the path (grey reconstruction by erosion, Vincent's
  raster / anti-raster / FIFO algorithm). The 8-connected components of
  ``filled > j`` are the outer contours' filled regions, so the foreground sweep
  on ``filled`` gives the single-contour pick. When both metrics are wanted
  (``box_chunk_both``) the background sweep yields ``filled`` as a by-product
  instead: it records the band of every union, and a pixel joins the sea at the
  max of its band and the link times on its label's path to label 0.

Which neighbours are "already present" is a local comparison of bands (ties in
raster order), so the 8-bit neighbour pattern of every pixel is computed up front
in a vectorised pass; lookup tables built once below give the groups of present
neighbours that may belong to different components and the area increments.

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

PxAP
----
``hist_chunk`` bins every score exactly as ``np.histogram`` does with explicit
(non-uniform) edges: bin ``i`` holds ``edges[i] <= v < edges[i+1]``, the last
bin also holds ``v == edges[-1]``; an arithmetic guess of the bin is corrected
by comparisons with the float edges, in a branch-free (vectorised) pass per row
followed by a scalar counting pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# --------------------------------------------------------------------------------------
# Neighbourhood lookup tables. Ring positions in raster order around the pixel p:
#   0 NW  1 N  2 NE
#   3 W   .    4 E
#   5 SW  6 S  7 SE
# A pattern is an 8-bit mask of ring positions that are already present.
_RING_DY = (-1, -1, -1, 0, 0, 1, 1, 1)
_RING_DX = (-1, 0, 1, -1, 1, -1, 0, 1)
# the four 2x2 windows containing p, as ring positions of their other three pixels
_WINDOWS = ((0, 1, 3), (1, 2, 4), (3, 5, 6), (4, 6, 7))


def _groups(pattern: int, connectivity: int) -> list[int]:
    """Representative ring positions of the groups of present neighbours that are
    connected through the ring itself (so they are already in one component)."""
    present = [(pattern >> i) & 1 for i in range(8)]
    if connectivity == 4:
        members = [i for i in (1, 3, 4, 6) if present[i]]
        adjacent = lambda a, b: abs(_RING_DY[a] - _RING_DY[b]) + abs(_RING_DX[a] - _RING_DX[b]) == 1  # noqa: E731
        nodes = [i for i in range(8) if present[i]]
    else:
        members = [i for i in range(8) if present[i]]
        adjacent = lambda a, b: max(abs(_RING_DY[a] - _RING_DY[b]), abs(_RING_DX[a] - _RING_DX[b])) == 1  # noqa: E731
        nodes = members
    parent = {i: i for i in nodes}

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for a in nodes:
        for b in nodes:
            if a < b and adjacent(a, b):
                parent[find(a)] = find(b)
    reps = {}
    for i in members:
        reps.setdefault(find(i), i)
    return sorted(reps.values())


def _build_tables():
    fg_groups = np.zeros((256, 5), np.int8)
    bg_groups = np.zeros((256, 5), np.int8)
    fg_area2 = np.zeros(256, np.int8)
    for pat in range(256):
        for table, conn in ((fg_groups, 8), (bg_groups, 4)):
            reps = _groups(pat, conn)
            table[pat, 0] = len(reps)
            table[pat, 1 : 1 + len(reps)] = reps
        counts = [sum((pat >> i) & 1 for i in w) for w in _WINDOWS]
        # doubled area: a window holding c others goes from f2(c) to f2(c + 1), f2 = (0, 0, 0, 1, 2)
        fg_area2[pat] = sum(1 for c in counts if c >= 2)
    return fg_groups, bg_groups, fg_area2


FG_GROUPS, BG_GROUPS, FG_AREA2 = _build_tables()


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


@njit(cache=True, nogil=True)
def _neighbour_tables(Wp, groups):
    """The 8 neighbour offsets in a padded row-major map of width ``Wp``, and per 8-neighbour
    pattern the number of neighbour groups and one representative offset (from ``groups``)."""
    off = np.array([-Wp - 1, -Wp, -Wp + 1, -1, 1, Wp - 1, Wp, Wp + 1], np.int64)
    ngroups = np.empty(256, np.int64)
    rep = np.zeros(256, np.int64)
    for pat in range(256):
        ngroups[pat] = groups[pat, 0]
        if ngroups[pat] > 0:
            rep[pat] = off[groups[pat, 1]]
    return off, ngroups, rep


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


@njit(cache=True, nogil=True)
def _quantize(img, thr_t, band, dvals, kmap):
    """uint8 quantisation ``trunc(255 * v)``, distinct thresholds and bands.

    Returns ``(D, valid)``: ``dvals[:D]`` are the distinct integer thresholds
    ``int(t * max)`` (sorted), ``kmap[k]`` the index of threshold k among
    them, ``band`` (padded, frame -1) the number of distinct thresholds below each
    pixel's uint8 value. ``valid`` is False if a value is NaN or outside [0, 1].
    """
    H, W = img.shape
    Wp = W + 2
    valid = True
    top = 0
    for y in range(H):
        row = (y + 1) * Wp + 1
        for x in range(W):
            v = np.float64(img[y, x])
            if not (v >= 0.0 and v <= 1.0):
                valid = False
                v = 0.0
            q = np.int64(v * 255.0)
            band[row + x] = q
            top = max(top, q)
    T = thr_t.shape[0]
    # insertion sort of int(t * max) (the grid is already sorted: linear time), then unique
    srt = np.empty(T, np.int64)
    for k in range(T):
        d = np.int64(thr_t[k] * np.float64(top))
        i = k
        while i > 0 and srt[i - 1] > d:
            srt[i] = srt[i - 1]
            i -= 1
        srt[i] = d
    D = 0
    for k in range(T):
        if D == 0 or srt[k] != dvals[D - 1]:
            dvals[D] = srt[k]
            D += 1
    for k in range(T):
        d = np.int64(thr_t[k] * np.float64(top))
        lo = 0
        hi = D - 1
        while lo < hi:  # binary search of d in dvals[:D]
            mid = (lo + hi) // 2
            if dvals[mid] < d:
                lo = mid + 1
            else:
                hi = mid
        kmap[k] = lo
    lut = np.empty(256, np.int16)
    j = 0
    for v in range(256):
        while j < D and dvals[j] < v:
            j += 1
        lut[v] = j
    for y in range(H):
        row = (y + 1) * Wp + 1
        for x in range(W):
            band[row + x] = lut[band[row + x]]
    for x in range(Wp):
        band[x] = -1
        band[(H + 1) * Wp + x] = -1
    for y in range(H + 2):
        band[y * Wp] = -1
        band[y * Wp + W + 1] = -1
    return D, valid


@njit(cache=True, nogil=True)
def _patterns(H, W, band, fgpat, bgpat, want_fg, want_bg):
    """8-bit neighbour patterns of every pixel (row-wise, vectorisable). Returns (with
    ``want_bg``) the number of pixels that start a background component (no 4-neighbour
    handled before them).

    Neighbour q of p is handled before p in the descending (foreground) sweep iff
    band[q] > band[p], or band[q] == band[p] and q precedes p in raster order; the
    ascending (background) sweep mirrors this. The frame (band -1) is never
    foreground and always background.
    """
    Wp = W + 2
    starts = np.int64(0)
    for y in range(H):
        row = (y + 1) * Wp + 1
        up = band[row - Wp - 1 : row - Wp + 1 + W]
        mid = band[row - 1 : row + 1 + W]
        dn = band[row + Wp - 1 : row + Wp + 1 + W]
        if want_fg:
            out = fgpat[row : row + W]
            for x in range(W):
                b = mid[x + 1]
                v = np.uint8(up[x] >= b)
                v |= np.uint8(up[x + 1] >= b) << np.uint8(1)
                v |= np.uint8(up[x + 2] >= b) << np.uint8(2)
                v |= np.uint8(mid[x] >= b) << np.uint8(3)
                v |= np.uint8(mid[x + 2] > b) << np.uint8(4)
                v |= np.uint8(dn[x] > b) << np.uint8(5)
                v |= np.uint8(dn[x + 1] > b) << np.uint8(6)
                v |= np.uint8(dn[x + 2] > b) << np.uint8(7)
                out[x] = v
        if want_bg:
            out = bgpat[row : row + W]
            for x in range(W):
                b = mid[x + 1]
                v = np.uint8(up[x] <= b)
                v |= np.uint8(up[x + 1] <= b) << np.uint8(1)
                v |= np.uint8(up[x + 2] <= b) << np.uint8(2)
                v |= np.uint8(mid[x] <= b) << np.uint8(3)
                v |= np.uint8(mid[x + 2] < b) << np.uint8(4)
                v |= np.uint8(dn[x] < b) << np.uint8(5)
                v |= np.uint8(dn[x + 1] < b) << np.uint8(6)
                v |= np.uint8(dn[x + 2] < b) << np.uint8(7)
                out[x] = v
                starts += np.int64((v & np.uint8(0x5A)) == 0)  # none of N, W, E, S
    return starts


@njit(cache=True, nogil=True)
def _no_holes(H, W, band, dr):
    """True if no threshold level has a hole, proven cheaply; False if not proven.

    No level has a hole iff every pixel has a 4-path to the frame along which the bands do
    not increase ("drains"): a hole's pixels are below the threshold and cut off from the
    frame by pixels above it, and conversely a pixel that does not drain lies in a
    basin whose lowest plateau is a hole at its own level. One downward and one upward pass
    over the rows mark (in ``dr``, padded) the pixels that drain through their N (S)
    neighbour, directly or by a detour through their NW / NE (SW / SE) neighbour; rows only
    read the row before, so the passes vectorise. Smooth maps (one or a few blobs) usually
    drain this way; a map with holes, or with detours these passes miss, gets False.
    """
    if H < 3 or W < 3:
        return True
    Wp = W + 2
    dr[Wp + 1 : Wp + 1 + W] = 1  # border pixels drain into the frame
    dr[H * Wp + 1 : H * Wp + 1 + W] = 1
    for y in range(2, H):
        dr[y * Wp + 1] = 1
        dr[y * Wp + 2 : y * Wp + W] = 0
        dr[y * Wp + W] = 1
    n = W - 2  # inner pixels of a row: padded positions 2 .. W - 1
    for k in range(2 * (H - 2)):
        y = 2 + k if k < H - 2 else 2 * H - 3 - k  # rows 2 .. H - 1, then back up
        p = y * Wp + 2
        q = p - Wp if k < H - 2 else p + Wp  # the row done just before
        d = dr[p : p + n]
        _drain_row(band[p - 1 : p + n + 1], band[q - 1 : q + n + 1], dr[q - 1 : q + n + 1], d, d)
    ok = np.uint8(1)
    for y in range(2, H):
        row = dr[y * Wp + 2 : y * Wp + W]
        for x in range(n):
            ok &= row[x]
    return ok == 1


@njit(cache=True, nogil=True, inline="always")
def _drain_row(b, bq, dq, d, cur):
    """One row of :func:`_no_holes`: ``cur[x] = d[x] | (pixel x + 1 of the slices drains
    through the previous row)``; b, bq, dq: this row's bands, the previous row's bands and
    drain marks, from one pixel before to one after (few distinct slices: it vectorises)."""
    for x in range(cur.shape[0]):
        c = b[x + 1]
        q = bq[x + 1]
        up = np.uint8(q <= c)
        v = dq[x + 1] & up
        v |= dq[x] & ((up & np.uint8(bq[x] <= q)) | (np.uint8(bq[x] <= b[x]) & np.uint8(b[x] <= c)))
        v |= dq[x + 2] & ((up & np.uint8(bq[x + 2] <= q)) | (np.uint8(bq[x + 2] <= b[x + 2]) & np.uint8(b[x + 2] <= c)))
        cur[x] = d[x] | v


@njit(cache=True, nogil=True)
def _sort(H, W, D, band, order, cnt):
    """Counting sort of the pixels by band, descending, raster order inside a band.

    ``cnt[b]`` counts the pixels of band b; the segment of band b in ``order`` starts
    at ``sum(cnt[c] for c > b)``. Entries are ``y << 16 | x``. Returns H * W.
    """
    Wp = W + 2
    for b in range(D + 2):
        cnt[b] = 0
    for y in range(H):
        row = (y + 1) * Wp + 1
        for x in range(W):
            p = row + x
            cnt[band[p]] += 1
    start = np.empty(D + 2, np.int64)
    s = 0
    for b in range(D, -1, -1):
        start[b] = s
        s += cnt[b]
    for y in range(H):
        row = (y + 1) * Wp + 1
        for x in range(W):
            p = row + x
            b = band[p]
            order[start[b]] = (y << 16) | x
            start[b] += 1
    return s


@njit(cache=True, nogil=True)
def _fill_holes(H, W, D, band, filled, queue, inq):
    """Hole-filled bands (grey-level reconstruction by erosion from the frame,
    4-connectivity; Vincent's hybrid algorithm: raster scan, anti-raster scan, FIFO).

    ``filled[p]`` = min over 4-paths from the frame to p of the max band on the path:
    p is background connected to the border ("sea") exactly at thresholds
    j >= filled[p]; ``filled[p] > band[p]`` marks the pixels that are in a hole at
    some threshold. Bands ``filled`` define the hole-filled components whose
    contours are the reference's outer contours.
    """
    Wp = W + 2
    n = (H + 2) * Wp
    for x in range(Wp):
        filled[x] = -1
        filled[(H + 1) * Wp + x] = -1
    for y in range(1, H + 1):
        filled[y * Wp] = -1
        filled[y * Wp + W + 1] = -1
    for i in range(n):
        inq[i] = 0
    # A raster and an anti-raster scan, then a FIFO for what the scans could not reach.
    # min / max are written as d & (d >> 31) so that they cannot become mispredicted
    # branches (bands are int16: no overflow in int32).
    # raster scan: causal neighbours N, W (the running value stays in a register); the
    # initial value of the inner pixels (D, never below a band) never wins the min
    for y in range(H):
        row = (y + 1) * Wp + 1
        left = np.int32(-1)
        for x in range(W):
            p = row + x
            d = np.int32(filled[p - Wp]) - left
            v = left + (d & (d >> 31))
            d = v - np.int32(band[p])
            v -= d & (d >> 31)
            filled[p] = v
            left = v
    # anti-raster scan: causal neighbours S, E; queue the pixels that can still
    # lower a neighbour
    qt = 0
    for y in range(H - 1, -1, -1):
        row = (y + 1) * Wp + 1
        right = np.int32(-1)
        bright = np.int32(-1)
        for x in range(W - 1, -1, -1):
            p = row + x
            fs = np.int32(filled[p + Wp])
            v = np.int32(filled[p])
            d = fs - v
            v += d & (d >> 31)
            d = right - v
            v += d & (d >> 31)
            b = np.int32(band[p])
            d = v - b
            v -= d & (d >> 31)
            filled[p] = v
            lower = ((fs > v) & (fs > np.int32(band[p + Wp]))) | ((right > v) & (right > bright))
            right = v
            bright = b
            if lower:
                queue[qt] = p
                inq[p] = 1
                qt += 1
    # FIFO propagation (circular buffer)
    qh = 0
    cap = queue.shape[0]
    size = qt
    while size > 0:
        p = queue[qh]
        qh += 1
        if qh == cap:
            qh = 0
        size -= 1
        inq[p] = 0
        v = filled[p]
        for d in range(4):
            if d == 0:
                q = p - Wp
            elif d == 1:
                q = p - 1
            elif d == 2:
                q = p + 1
            else:
                q = p + Wp
            fq = filled[q]
            if fq > v and fq != band[q]:
                b = band[q]
                filled[q] = v if v > b else b
                if inq[q] == 0:  # each pixel at most once in the queue: size <= H * W
                    inq[q] = 1
                    tail = qh + size
                    if tail >= cap:
                        tail -= cap
                    queue[tail] = q
                    size += 1


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
def _bg_sweep(H, W, D, ws, gt, total, score, exact, iou_thr, cov, hole_n, hole_d, hole_box, want_fill):
    """Ascending background sweep (4-connectivity); label 0 is the sea (the frame
    and all background connected to it), every other component is a hole.

    ``order``/``cnt`` hold the ``total`` sorted pixels (all of them). ``score``: score the
    hole contours' boxes (hole bbox grown by one pixel, clipped), either ``exact``ly, per
    threshold j the box of best IoU into hole_n/hole_d/hole_box[j] (hole_d[j] == 0: no hole),
    or, for counts only, into ``cov`` (:func:`_emit`): a hole is scored only at the levels at
    which its box changed, and each score covers the levels up to the next change.

    ``want_fill``: also the hole-filled bands into ``ws[1]`` (same values as
    :func:`_fill_holes`): every union records the band at which it happened
    (``linkt``), a pixel reaches the sea at the max of its band and the link times
    on its label's path to label 0 (D if it never does below band D).
    """
    band, bgpat, lab, linkt, order, cnt = ws[0], ws[3], ws[4], ws[5], ws[6], ws[7]
    parent, bx0, by0, bx1, by1, live, livepos = ws[8], ws[9], ws[10], ws[11], ws[12], ws[15], ws[16]
    seg, siou, dmark, dlist = ws[17], ws[18], ws[19], ws[20]
    track = score and not exact
    tmin, big = _score_floor(iou_thr, gt)
    Wp = W + 2
    n = (H + 2) * Wp
    off, ngroups, rep = _neighbour_tables(Wp, BG_GROUPS)
    for j in range(D):
        hole_n[j] = 0
        hole_d[j] = 0
    for i in range(n):
        lab[i] = 0
    parent[0] = 0
    nlab = 1
    prev = np.int32(-2)  # raster position of the previous pixel, and its root
    plb = 0
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
                if yx == prev + 1:  # a run: the W neighbour came just before, its label is a root
                    lb = plb
                else:
                    q = p + rep[pat]
                    lb = lab[q]
                    if parent[lb] != lb:
                        if want_fill:  # lab[q] must stay q's label when it was added
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
                if track:
                    seg[lb] = -1
                    dmark[lb] = -1
                    if 16 >= big:  # a one-pixel hole's box is 3 x 3 (4 x 4 bounds it)
                        nq = _queue(lb, b, dmark, dlist, nq)
                prev = yx
                plb = lb
                continue
            else:
                if want_fill:
                    lb = _find_t(parent, linkt, lab[p + rep[pat]])
                else:
                    lb = _find(parent, lab[p + rep[pat]])
                for g in range(2, ng + 1):
                    if want_fill:
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
                        if track and seg[l2] >= 0 and siou[l2] >= tmin:  # l2's box ends at level b - 1
                            _emit(siou[l2], seg[l2], b - 1, iou_thr, cov)
                        if lb != 0:
                            if bx0[l2] < bx0[lb] or by0[l2] < by0[lb] or bx1[l2] > bx1[lb] or by1[l2] > by1[lb]:
                                merged = True
                            bx0[lb] = min(bx0[lb], bx0[l2])
                            by0[lb] = min(by0[lb], by0[l2])
                            bx1[lb] = max(bx1[lb], bx1[l2])
                            by1[lb] = max(by1[lb], by1[l2])
            lab[p] = lb
            prev = yx
            plb = lb
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
                if track and grown and (bx1[lb] - bx0[lb] + 4) * (by1[lb] - by0[lb] + 4) >= big:
                    nq = _queue(lb, b, dmark, dlist, nq)
        if track:
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
        elif score:
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
    if track:
        for li in range(nlive):  # holes that last to the top level
            r = live[li]
            if siou[r] >= tmin:
                _emit(siou[r], seg[r], D - 1, iou_thr, cov)
    if want_fill:
        # join[l]: band at which label l reaches the sea (parents have smaller labels)
        filled, join = ws[1], ws[13]
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
def _fg_sweep(H, W, D, ws, gt, multi, exact, iou_thr, cov, hole_n, hole_d, hole_box, out_n, out_d, out_box):
    """Descending foreground sweep (8-connectivity).

    ``multi``: every component and (through the background sweep) every hole contour counts.
    ``exact``: per threshold j < D the box of best IoU and its (intersection, union) against
    the GT boxes into out_n/out_d/out_box[j], comparing every component's box with the best
    hole's (hole_*); otherwise (counts only) the components' boxes go into ``cov`` like the
    holes' (:func:`_emit`), each scored only at the levels at which it changed.

    Not ``multi``: into out_*[j], the component of largest window area (ties: first pixel
    last in raster order); run on the hole-filled bands this is the reference's
    ``max(contours, key=cv2.contourArea)``. The largest one is kept up to date as pixels
    arrive (areas never shrink); only when its key may have dropped below another's (equal
    area, earlier first pixel) are the live components compared at the end of the band.
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
    track = multi and not exact
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
    # single contour: the largest component bi and its key (area2, first); stale: bi may be wrong
    bi = -1
    ba = np.int64(0)
    bf = np.int32(0)
    stale = False
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
                if track:
                    seg[lb] = -1
                    dmark[lb] = -1
                    if 4 >= big:  # a one-pixel component's box is at most 2 x 2
                        nq = _queue(lb, b, dmark, dlist, nq)
                if not multi and not stale and (bi < 0 or area2[lb] > ba or (area2[lb] == ba and yx > bf)):
                    bi = lb
                    ba = area2[lb]
                    bf = yx
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
                        if track and seg[l2] >= 0 and siou[l2] >= tmin:  # l2's box ends at level b
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
            if track and grown and (bx1[lb] - bx0[lb] + 2) * (by1[lb] - by0[lb] + 2) >= big:
                nq = _queue(lb, b, dmark, dlist, nq)
            lab[p] = lb
            prev = yx
            plb = lb
            if not multi:
                if yx < first[lb]:
                    first[lb] = yx
                area2[lb] += FG_AREA2[pat]
                if not stale:
                    if bi == lb or parent[bi] != bi:  # the largest one grew (or was merged into lb)
                        if area2[lb] > ba or first[lb] == bf:
                            bi = lb
                            ba = area2[lb]
                            bf = first[lb]
                        else:  # same area, earlier first pixel: another one may win the tie now
                            stale = True
                    elif area2[lb] > ba or (area2[lb] == ba and first[lb] > bf):
                        bi = lb
                        ba = area2[lb]
                        bf = first[lb]
        j = b - 1
        if nlive == 0:  # nothing above the threshold: the reference's box [0, 0, 0, 0]
            cn, cd = _box_vs_gt(0, 0, 0, 0, gt)
            out_n[j] = cn
            out_d[j] = cd
            out_box[j, 0] = 0
            out_box[j, 1] = 0
            out_box[j, 2] = 0
            out_box[j, 3] = 0
            if track:
                _emit(cn / cd, j, j, iou_thr, cov)
            continue
        if track:
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
        elif multi:
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
            if stale:
                bi = live[0]
                for li in range(1, nlive):
                    r = live[li]
                    if area2[r] > area2[bi] or (area2[r] == area2[bi] and first[r] > first[bi]):
                        bi = r
                ba = area2[bi]
                bf = first[bi]
                stale = False
            cx1 = min(bx1[bi] + 1, W - 1)
            cy1 = min(by1[bi] + 1, H - 1)
            cn, cd = _box_vs_gt(bx0[bi], by0[bi], cx1, cy1, gt)
            out_n[j] = cn
            out_d[j] = cd
            out_box[j, 0] = bx0[bi]
            out_box[j, 1] = by0[bi]
            out_box[j, 2] = cx1
            out_box[j, 3] = cy1
    if track:
        for li in range(nlive):  # components that last to the lowest level
            r = live[li]
            if siou[r] >= tmin:
                _emit(siou[r], 0, seg[r], iou_thr, cov)


def _image_boxes(img, thr_t, gt, multi, exact, iou_thr, ws, dvals, kmap, levels):
    """One image, all thresholds: for the D distinct thresholds, exactly (``exact``, or single
    contour) out_n/out_d/out_box[j] (``levels[3:6]``), otherwise (multi contour, counts only)
    the coverage counts ``levels[6]`` at ``iou_thr``. Returns ``(D, valid)``.

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
    if _no_holes(H, W, band, bgpat):
        _patterns(H, W, band, fgpat, bgpat, True, False)
        _sort(H, W, D, band, order, cnt)
        hole_d[:] = 0
    elif multi:
        # one sort serves both sweeps; the background sweep finds the holes
        _patterns(H, W, band, fgpat, bgpat, True, True)
        total = _sort(H, W, D, band, order, cnt)
        _bg_sweep(H, W, D, ws, gt, total, True, exact, iou_thr, cov, *levels[:3], False)
    else:
        # single contour: components of the hole-filled map
        _filled_bands(H, W, D, ws, gt, iou_thr, levels)
        _patterns(H, W, band, fgpat, bgpat, True, False)
        _sort(H, W, D, band, order, cnt)
    _fg_sweep(H, W, D, ws, gt, multi, exact, iou_thr, cov, *levels[:6])
    return D, valid


def _filled_bands(H, W, D, ws, gt, iou_thr, levels):
    """Replace the bands by the hole-filled bands. Vincent's FIFO reconstruction
    (:func:`_fill_holes`) is faster on most maps, the background sweep's by-product on maps
    where a tenth of the pixels or more start a background component (noise: 2x faster)."""
    band, filled, bgpat, lab, order, cnt = ws[0], ws[1], ws[3], ws[4], ws[6], ws[7]
    if _patterns(H, W, band, ws[2], bgpat, False, True) * 10 >= H * W:
        total = _sort(H, W, D, band, order, cnt)
        _bg_sweep(H, W, D, ws, gt, total, False, False, iou_thr, levels[6], *levels[:3], True)
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
        D, valid = _image_boxes(maps[i], thr_t, gt, multi, exact, iou_thr, ws, dvals, kmap, levels)
        if not valid:
            invalid[i] = 1
        if multi and not exact:
            _tally_cov(cov, D, kmap, iou_thr, eligible, i, counts)
        else:
            _tally(out_n, out_d, D, kmap, iou, iou_thr, eligible, i, counts)
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
    sort, and takes the hole-filled map from the background sweep (``want_fill``)
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
        if _no_holes(H, W, band, bgpat):  # the hole-filled bands are the bands
            _patterns(H, W, band, fgpat, bgpat, True, False)
            _sort(H, W, D, band, order, cnt)
            _fg_sweep(H, W, D, ws, gt, True, False, iou_2, cov, *levels[:6])
        else:
            _patterns(H, W, band, fgpat, bgpat, True, True)
            total = _sort(H, W, D, band, order, cnt)
            _bg_sweep(H, W, D, ws, gt, total, True, False, iou_2, cov, *levels[:3], True)
            _fg_sweep(H, W, D, ws, gt, True, False, iou_2, cov, *levels[:6])
            band[:] = filled
            _patterns(H, W, band, fgpat, bgpat, True, False)
            _sort(H, W, D, band, order, cnt)
        _tally_cov(cov, D, kmap[pos_2], iou_2, elig_2, i, counts_2)
        _fg_sweep(H, W, D, ws, gt, False, False, iou_1, cov, *levels[:6])
        _tally(out_n, out_d, D, kmap[pos_1], iou, iou_1, elig_1, i, counts_1)


# --------------------------------------------------------------------------------------
# PxAP histograms


@njit(cache=True, nogil=True)
def _bins_row(row, grow, dt, inv, ncam, stride, kb):
    """Bin of every score of one row plus ``stride`` times its class (0 background,
    1 object, 2 ignored) into kb, for edges ``k * dt`` (k < ncam) then 1, 2, 3.

    Branch-free so that it vectorises: a guess ``int(v / dt)`` is moved by at most one
    bin by comparisons with the edges, recomputed as ``k * dt`` (the caller checks
    that these equal the actual edges). Returns ``(#invalid scores, #scores whose
    guess was off by more than one bin)``; invalid scores are binned as 0.
    """
    W = row.shape[0]
    nbad = 0
    miss = 0
    for x in range(W):
        v = np.float64(row[x])
        ok = (v >= 0.0) & (v <= 1.0)
        nbad += np.int64(~ok)
        v = v if ok else 0.0
        k = min(np.int64(v * inv), ncam - 1)
        k -= np.int64(v < np.float64(k) * dt)
        k += np.int64((v >= np.float64(k + 1) * dt) & (k + 1 < ncam))
        miss += np.int64(v < np.float64(k) * dt) | np.int64((v >= np.float64(k + 1) * dt) & (k + 1 < ncam))
        k = ncam if v == 1.0 else k
        kb[x] = k + min(np.int64(grow[x]), 2) * stride
    return nbad, miss


@njit(cache=True, nogil=True)
def hist_chunk(maps, masks, edges, i0, i1, pos, neg):
    """Histograms of images i0..i1-1 into pos/neg; returns the number of invalid scores.

    Row by row: a vectorised pass computes every pixel's bin (:func:`_bins_row`), a
    scalar pass counts them into four interleaved copies of the histograms (which
    breaks the store-to-load chains of equal neighbours). Rows where the arithmetic
    guess is not within one bin, and grids whose edges are not ``k * dt``, take an
    exact linear search instead.
    """
    nb = edges.shape[0] - 1
    ncam = nb - 2  # number of arange edges below 1.0
    H = maps.shape[1]
    W = maps.shape[2]
    dt = edges[1] - edges[0] if ncam > 1 else 1.0
    inv = 1.0 / dt
    fast = edges[0] == 0.0 and edges[ncam] == 1.0
    for k in range(ncam):
        if edges[k] != np.float64(k) * dt:
            fast = False
    stride = nb + 1
    S3 = 3 * stride
    h = np.zeros(4 * S3, np.int64)
    kb = np.empty(W, np.int64)
    bad = 0
    for i in range(i0, i1):
        for y in range(H):
            row = maps[i, y]
            grow = masks[i, y]
            miss = 1
            if fast:
                nbad, miss = _bins_row(row, grow, dt, inv, ncam, stride, kb)
                bad += nbad
            if miss:
                nbad = 0
                for x in range(W):
                    v = np.float64(row[x])
                    if not (v >= 0.0 and v <= 1.0):  # NaN or outside [0, 1]: invalid score map
                        nbad += 1
                        v = 0.0
                    k = 0
                    while k < nb - 1 and v >= edges[k + 1]:
                        k += 1
                    kb[x] = k + min(np.int64(grow[x]), 2) * stride
                if not fast:
                    bad += nbad
            for x in range(W):
                h[(x & 3) * S3 + kb[x]] += 1
    for r in range(4):
        for k in range(nb):
            neg[k] += h[r * S3 + k]
            pos[k] += h[r * S3 + stride + k]
    return bad
