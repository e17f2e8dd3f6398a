"""The score maps and GT of the metric benchmarks, by kind of map.

Kinds (all 224 x 224, float64, min-max normalised to [0, 1] as in wsolevaluation's inference):

* ``mixed`` (the default; what ``test_bench_metrics.py`` runs): CAM-like maps, a 28x28 "feature
  map" of one to three Gaussian blobs plus noise upsampled bicubically, and every 20th map (5%)
  upsampled 56x56 uniform noise: many small regions and holes.
* ``smooth``: one Gaussian blob on a 28x28 feature map, upsampled bicubically, no noise.
* ``noisy``: the same blob plus 30% uniform per-pixel noise (``0.7 * blob + 0.3 * U(0, 1)``):
  a few hundred speckle regions and holes at every threshold.
* ``rings``: concentric rings (``cos`` of the distance to one to three centres, period 8-20 px)
  under a Gaussian envelope: every threshold cuts many annuli, each with a hole.
* ``noise``: pure uniform per-pixel noise, thousands of one-pixel regions and holes.

GT boxes (one or two per image) and masks are drawn independently of the maps. Requires
``opencv-python-headless``.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 224
KINDS = ("mixed", "smooth", "noisy", "rings", "noise")


def _cam_like(rng: np.random.Generator, feat: int = 28, blobs: int | None = None, noise: bool = True) -> np.ndarray:
    yy, xx = np.mgrid[0:feat, 0:feat].astype(np.float64)
    base = np.zeros((feat, feat))
    for _ in range(int(rng.integers(1, 4)) if blobs is None else blobs):
        cy, cx = rng.uniform(0, feat, 2)
        sy, sx = rng.uniform(1.5, 7, 2)
        base += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    if noise:
        base += rng.uniform(0.01, 0.1) * rng.standard_normal((feat, feat))
    return cv2.resize(base, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _upsampled_noise(rng: np.random.Generator) -> np.ndarray:
    return cv2.resize(rng.random((56, 56)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _normalised(m: np.ndarray) -> np.ndarray:
    m = m - m.min()
    return m / m.max()


def _rings(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    m = np.zeros((SIZE, SIZE))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, SIZE, 2)
        r = np.hypot(yy - cy, xx - cx)
        sigma = rng.uniform(40, 90)
        m += np.exp(-(r**2) / (2 * sigma**2)) * (0.5 + 0.5 * np.cos(2 * np.pi * r / rng.uniform(8, 20)))
    return m


def _map(rng: np.random.Generator, kind: str, i: int) -> np.ndarray:
    if kind == "mixed":
        return _upsampled_noise(rng) if i % 20 == 7 else _cam_like(rng)
    if kind == "smooth":
        return _cam_like(rng, blobs=1, noise=False)
    if kind == "noisy":
        return 0.7 * _normalised(_cam_like(rng, blobs=1, noise=False)) + 0.3 * rng.random((SIZE, SIZE))
    if kind == "rings":
        return _rings(rng)
    if kind == "noise":
        return rng.random((SIZE, SIZE))
    raise ValueError(f"unknown kind of benchmark map {kind!r}; choose one of {', '.join(KINDS)}")


def benchmark_maps(n: int, seed: int = 2020, kind: str = "mixed") -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``(maps (n, 224, 224) float64 in [0, 1], gt_boxes (n arrays (M, 4)), masks (n, 224, 224) uint8)``.

    ``kind``: one of :data:`KINDS` (see the module docstring). Deterministic for a given seed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind of benchmark map {kind!r}; choose one of {', '.join(KINDS)}")
    rng = np.random.default_rng(seed)
    maps = np.empty((n, SIZE, SIZE))
    boxes, masks = [], np.empty((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        maps[i] = _normalised(_map(rng, kind, i))
        b = []
        for _ in range(int(rng.integers(1, 3))):
            x0, y0 = rng.integers(0, SIZE // 2, 2)
            w, h = rng.integers(SIZE // 8, SIZE // 2, 2)
            b.append([x0, y0, min(x0 + w, SIZE - 1), min(y0 + h, SIZE - 1)])
        boxes.append(np.array(b))
        masks[i] = maps[i] > rng.uniform(0.3, 0.6)
    masks[:, :8, :8] = 255  # some ignored pixels
    return maps, boxes, masks
