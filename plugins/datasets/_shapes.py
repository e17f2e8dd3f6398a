"""Bit-reproducible rasterisation primitives for the ``synthetic`` dataset.

Everything here uses only IEEE-754 operations that are correctly rounded on every
platform (``+ - * /``, ``sqrt``, ``floor``, comparisons) on float64 arrays, and integer
arithmetic. No transcendental functions (``sin``, ``exp``, ...) are evaluated on data that
reaches an image: their last bit may differ between libm builds and SIMD code paths.
Random numbers come only from ``Generator.random`` and ``Generator.integers``, whose
output is specified bit for bit by numpy.

Shapes are evaluated on pixel centres: pixel ``(y, x)`` is the point ``(x + 0.5, y + 0.5)``.
Hard (aliased) edges keep masks exact.
"""

from __future__ import annotations

import numpy as np

#: Implicit body shapes in normalised coordinates ``p`` (along the long axis, -1..1)
#: and ``q`` (across it, -1..1); cycled over the orders.
BODY_SHAPES = ("ellipse", "box", "diamond", "egg", "blob")

#: Texture kinds; families cycle over them (then over a second, coarser period).
TEXTURES = ("bands", "spots", "plain", "checker", "stripes", "diagonal", "rings")


def unit_vector(rng: np.random.Generator) -> tuple[float, float]:
    """A direction uniform on the circle: a uniform point of the unit disc, normalised."""
    while True:
        x, y = rng.random(2) * 2.0 - 1.0
        r2 = x * x + y * y
        if 1e-6 < r2 <= 1.0:
            r = float(np.sqrt(r2))
            return float(x) / r, float(y) / r


def hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    """HSV in [0, 1] -> RGB float64 in [0, 255], piecewise linear (no trigonometry)."""
    h6 = (h % 1.0) * 6.0
    i = int(np.floor(h6)) % 6
    f = h6 - np.floor(h6)
    p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
    rgb = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]
    return np.array(rgb, dtype=np.float64) * 255.0


def local_coords(
    xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, c: float, s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates along (``u``) and across (``v``) the direction ``(c, s)`` around ``(cx, cy)``."""
    dx, dy = xs - cx, ys - cy
    return dx * c + dy * s, dy * c - dx * s


def body_inside(kind: int, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Inside test of body shape ``BODY_SHAPES[kind % len]`` in normalised coordinates."""
    kind %= len(BODY_SHAPES)
    if kind == 0:  # ellipse
        return p * p + q * q <= 1.0
    if kind == 1:  # rounded box (superellipse, exponent 4)
        p2, q2 = p * p, q * q
        return p2 * p2 + q2 * q2 <= 1.0
    if kind == 2:  # diamond with slightly bulging sides
        a, b = np.abs(p), np.abs(q)
        return a + b + 0.35 * a * b <= 1.0
    if kind == 3:  # egg: wide behind, narrow towards the head (+p)
        w = 1.15 - 0.45 * p
        return p * p + (q * q) / (w * w) <= 1.0
    # blob: ellipse with a waist in the middle
    w = 0.7 + 0.3 * p * p
    return p * p + (q * q) / (w * w) <= 1.0


def _frac(a: np.ndarray) -> np.ndarray:
    return a - np.floor(a)


def texture_on(kind: int, u: np.ndarray, v: np.ndarray, period: float, phase: np.ndarray) -> np.ndarray:
    """Pixels covered by the dark part of texture ``TEXTURES[kind]`` (``u, v`` in pixels).

    ``phase`` is a length-2 array of uniform offsets in [0, 1).
    """
    a, b = u / period + phase[0], v / period + phase[1]
    name = TEXTURES[kind % len(TEXTURES)]
    if name == "bands":  # bands across the long axis
        return _frac(a) < 0.45
    if name == "spots":
        da, db = _frac(a) - 0.5, _frac(b) - 0.5
        return da * da + db * db < 0.09
    if name == "plain":
        return np.zeros(u.shape, dtype=bool)
    if name == "checker":
        return ((np.floor(a) + np.floor(b)) % 2.0) == 0.0
    if name == "stripes":  # along the long axis
        return _frac(b) < 0.45
    if name == "diagonal":
        return _frac((a + b) * 0.7071067811865476) < 0.45
    # rings
    return _frac(np.sqrt(u * u + v * v) / period + phase[0]) < 0.45


def triangle_inside(u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Equilateral triangle of circumradius ``r`` around the origin, pointing along +u."""
    h = 0.8660254037844386  # sqrt(3) / 2, exact to the last bit as a literal
    return (u >= -0.5 * r) & (0.5 * u + h * v <= 0.5 * r) & (0.5 * u - h * v <= 0.5 * r)
