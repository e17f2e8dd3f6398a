"""Compiled PxAP histograms (:mod:`wsolbench.metrics.pixels`).

``hist_chunk`` bins every score exactly as ``np.histogram`` does with explicit
(non-uniform) edges: bin ``i`` holds ``edges[i] <= v < edges[i+1]``, the last
bin also holds ``v == edges[-1]``; an arithmetic guess of the bin is corrected
by comparisons with the float edges, in a branch-free (vectorised) pass per row
followed by a scalar counting pass.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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
