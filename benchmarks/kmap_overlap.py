"""How different are a run's K maps? (DANet's Fig. 7 claim, as one number per run.)

DDA asks the K maps of a class to be mutually exclusive, so that together they cover more of
the object. For each test image this reads the K maps of the ground-truth class that DDA's
family keeps in the cache (extra map ``k_maps``, each min-max normalised) and computes:

* ``iou``: the mean pairwise IoU of the maps' foreground regions (map >= ``threshold``):
  1 when all K maps light up the same pixels, 0 when they cover disjoint parts;
* ``cosine``: the mean pairwise cosine similarity of the maps (the quantity L_D penalises);
* ``union_gain``: the union of the K foregrounds over their mean size: 1 when they coincide,
  up to K when they are disjoint (how much more of the image the K maps cover together).

Usage: ``python benchmarks/kmap_overlap.py RUN_DIR [RUN_DIR ...]`` prints one line per run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from wsolbench.cache import read_cache


def pairwise_overlap(maps: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """``(K, h, w)`` maps in [0, 1] -> mean pairwise foreground IoU, cosine and the union gain."""
    k = maps.shape[0]
    if k < 2:
        raise ValueError("pairwise overlap needs at least two maps")
    fg = maps.reshape(k, -1) >= threshold
    flat = maps.reshape(k, -1).astype(np.float64)
    inter = fg[:, None, :] & fg[None, :, :]
    union = fg[:, None, :] | fg[None, :, :]
    upper = np.triu_indices(k, 1)
    iou = inter.sum(-1)[upper] / np.maximum(union.sum(-1)[upper], 1)
    norms = np.linalg.norm(flat, axis=1)
    cosine = (flat @ flat.T)[upper] / np.maximum(np.outer(norms, norms)[upper], 1e-12)
    mean_size = fg.sum(-1).mean()
    gain = fg.any(0).sum() / mean_size if mean_size > 0 else 1.0
    return {"iou": float(iou.mean()), "cosine": float(cosine.mean()), "union_gain": float(gain)}


def run_overlap(run_dir: Path, threshold: float = 0.5) -> dict[str, float]:
    """The mean of :func:`pairwise_overlap` over a run's test images."""
    with read_cache(run_dir) as cache:
        if "k_maps" not in cache.extra_maps:
            raise SystemExit(f"{run_dir}: the cache keeps no K maps (not a DDA-family run with eval.save_maps)")
        store = cache.extra_maps["k_maps"].store
        values = [pairwise_overlap(store[i], threshold) for i in range(len(cache))]
    return {key: float(np.mean([v[key] for v in values])) for key in values[0]}


if __name__ == "__main__":
    for path in sys.argv[1:]:
        result = run_overlap(Path(path))
        print(f"{Path(path).name}: " + ", ".join(f"{key} {value:.3f}" for key, value in result.items()))
