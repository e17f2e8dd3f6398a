"""The score maps and GT of the metric benchmarks: CAM-like maps plus a share of noisy ones.

CAM-like: a 28x28 "feature map" of one to three Gaussian blobs plus noise, upsampled
bicubically to 224x224 and min-max normalised as in wsolevaluation's inference. Every 20th map
(5%) is upsampled uniform noise instead: many small regions and holes. GT boxes (one or two per
image) and masks are drawn independently of the maps. Requires ``opencv-python-headless``.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 224


def _cam_like(rng: np.random.Generator, feat: int = 28) -> np.ndarray:
    yy, xx = np.mgrid[0:feat, 0:feat].astype(np.float64)
    base = np.zeros((feat, feat))
    for _ in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(0, feat, 2)
        sy, sx = rng.uniform(1.5, 7, 2)
        base += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 / (2 * sy**2) + (xx - cx) ** 2 / (2 * sx**2)))
    base += rng.uniform(0.01, 0.1) * rng.standard_normal((feat, feat))
    return cv2.resize(base, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def _noisy(rng: np.random.Generator) -> np.ndarray:
    return cv2.resize(rng.random((56, 56)), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)


def benchmark_maps(n: int, seed: int = 2020) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """``(maps (n, 224, 224) float64 in [0, 1], gt_boxes (n arrays (M, 4)), masks (n, 224, 224) uint8)``."""
    rng = np.random.default_rng(seed)
    maps = np.empty((n, SIZE, SIZE))
    boxes, masks = [], np.empty((n, SIZE, SIZE), np.uint8)
    for i in range(n):
        m = _noisy(rng) if i % 20 == 7 else _cam_like(rng)
        m -= m.min()
        maps[i] = m / m.max()
        b = []
        for _ in range(int(rng.integers(1, 3))):
            x0, y0 = rng.integers(0, SIZE // 2, 2)
            w, h = rng.integers(SIZE // 8, SIZE // 2, 2)
            b.append([x0, y0, min(x0 + w, SIZE - 1), min(y0 + h, SIZE - 1)])
        boxes.append(np.array(b))
        masks[i] = maps[i] > rng.uniform(0.3, 0.6)
    masks[:, :8, :8] = 255  # some ignored pixels
    return maps, boxes, masks
