"""Per-image preparation of the box metrics' sweeps (:mod:`wsolbench.metrics._sweep`).

* :func:`_quantize`: the reference's uint8 map ``u = trunc(255 * map)``, the distinct integer
  thresholds ``d_0 < ... < d_{D-1}`` (``int(t * max(u))``; only these matter) and every pixel's
  *band* ``b = #{j : d_j < u}``: the pixel is foreground at threshold ``j`` iff ``b > j``.
* :func:`_patterns`: which neighbours of a pixel are "already present" in the descending
  (foreground) and ascending (background) sweeps is a local comparison of bands (ties in raster
  order), so the 8-bit neighbour pattern of every pixel is computed up front in a vectorised
  pass; lookup tables built once below give the groups of present neighbours that may belong
  to different components and the area increments.
* :func:`_sort`: pixels counting-sorted by band (raster order inside a band).
* :func:`_fill_holes`: the hole-filled bands, ``filled[p]`` = min over 4-paths from the frame
  of the max band on the path (grey reconstruction by erosion, Vincent's raster / anti-raster
  / FIFO algorithm). The 8-connected components of ``filled > j`` are the outer contours'
  filled regions, so the foreground sweep on ``filled`` gives the single-contour pick.
* :func:`_no_holes`: a cheap proof that no threshold level has a hole (then the background
  sweep and the hole filling are skipped: ``filled`` equals the bands); :func:`_pits` counts
  the one-pixel basins that disprove it even more cheaply, and tell noise from CAM-like maps.
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
def _pits(H, W, band):
    """Number of pixels below all four of their 4-neighbours (the frame, band -1, is below
    every pixel, so border pixels never count). A pit is a hole at its own level, so a map
    with one needs no :func:`_no_holes`; noise has pits at a fifth of its pixels, CAM-like
    maps at under 1%. One vectorised pass."""
    Wp = W + 2
    count = np.int64(0)
    for y in range(H):
        row = (y + 1) * Wp + 1
        up = band[row - Wp : row - Wp + W]
        mid = band[row - 1 : row + W + 1]
        dn = band[row + Wp : row + Wp + W]
        for x in range(W):
            c = mid[x + 1]
            count += np.int64((c < up[x]) & (c < dn[x]) & (c < mid[x]) & (c < mid[x + 2]))
    return count


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
