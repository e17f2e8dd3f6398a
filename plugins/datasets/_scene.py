"""Drawing one ``synthetic`` image: background, clutter and the labelled object.

The object is a body (order: shape and colour; family: texture) with one to three species
marks, discs whose two colours (ring and dot) tell the species: the head beyond the body's
front end, then a tail spot and a saddle spot on the body. Each mark has its own colour code,
so any one of them identifies the species on its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from wsolbench_plugins.datasets._shapes import (
    TEXTURES,
    body_inside,
    hsv_to_rgb,
    local_coords,
    texture_on,
    triangle_inside,
    unit_vector,
)

if TYPE_CHECKING:
    from wsolbench_plugins.datasets.synthetic import Taxonomy

#: Most species marks an object can carry (the head, a tail spot, a saddle spot).
MAX_PARTS = 3


class Renderer:
    """Draws one image from a random generator; all geometry scales with ``image_size``."""

    #: Geometry as (low, span) fractions of the image size, drawn uniformly in low + span * U.
    body_half_length = (0.28, 0.10)
    body_aspect = (0.42, 0.14)  # half width / half length
    head_radius = (0.09, 0.015)
    head_inner = 0.5  # inner dot radius / head radius
    head_offset = 1.02  # head centre distance from the body centre / body half length
    #: Centre of each species mark along the body axis / body half length: the head beyond the
    #: front end, then a tail spot and a saddle spot on the body, 0.82 half lengths apart (more
    #: than two head radii, so marks never touch).
    mark_offsets = (head_offset, -0.62, 0.2)
    body_hue_jitter = 0.25  # hue jitter range as a fraction of the hue spacing of the orders
    body_sat = (0.45, 0.25)
    body_val = (0.65, 0.30)
    distractor_radius = (0.05, 0.12)

    def __init__(self, taxonomy: Taxonomy, image_size: int, distractors: int, noise: int, parts: int = 1):
        self.taxonomy = taxonomy
        self.parts = parts
        self.size = image_size
        self.distractors = distractors
        self.noise = noise
        centres = np.arange(image_size, dtype=np.float64) + 0.5
        self.ys, self.xs = np.meshgrid(centres, centres, indexing="ij")
        self.ramp = centres / image_size - 0.5

    def _window(self, cx: float, cy: float, extent: float) -> tuple[slice, slice]:
        """Rows and columns of the pixels whose centres may lie within ``extent`` of ``(cx, cy)``.

        Shapes are evaluated on this window only (for speed); it always contains the whole
        shape, so the result is the same as evaluating on the full image.
        """
        x0, x1 = int(np.floor(cx - extent)) - 1, int(np.ceil(cx + extent)) + 1
        y0, y1 = int(np.floor(cy - extent)) - 1, int(np.ceil(cy + extent)) + 1
        n = self.size
        return slice(min(max(y0, 0), n), min(max(y1, 0), n)), slice(min(max(x0, 0), n), min(max(x1, 0), n))

    # -- pieces -----------------------------------------------------------------------------
    def _background(self, rng: np.random.Generator) -> np.ndarray:
        h, s, v = rng.random(3)
        base = hsv_to_rgb(h, 0.3 * s, 0.35 + 0.4 * v)
        grad = (rng.random((2, 3)) * 2.0 - 1.0) * 70.0
        return base + self.ramp[None, :, None] * grad[0] + self.ramp[:, None, None] * grad[1]

    def _distractor(self, rng: np.random.Generator, img: np.ndarray) -> None:
        size = self.size
        kind = int(rng.integers(5))
        cx, cy = rng.random(2) * size
        c, s = unit_vector(rng)
        r = (self.distractor_radius[0] + self.distractor_radius[1] * rng.random()) * size
        aspect = 0.3 + 0.7 * rng.random()
        h, sat, val = rng.random(3)
        colour = hsv_to_rgb(h, 0.2 + 0.8 * sat, 0.3 + 0.7 * val)
        textured = rng.random() < 0.4
        tex_kind = int(rng.integers(len(TEXTURES)))
        tex_phase = rng.random(2)
        wy, wx = self._window(cx, cy, 1.5 * r + 0.07 * size)
        sub = img[wy, wx]
        if sub.size == 0:
            return
        u, v = local_coords(self.xs[wy, wx], self.ys[wy, wx], cx, cy, c, s)
        if kind == 0:  # ellipse
            inside = (u * u) / (r * r) + (v * v) / (r * r * aspect * aspect) <= 1.0
        elif kind == 1:  # rectangle
            inside = (np.abs(u) <= r) & (np.abs(v) <= r * aspect)
        elif kind == 2:
            inside = triangle_inside(u, v, r)
        elif kind == 3:  # thin bar
            inside = (np.abs(u) <= 1.4 * r) & (np.abs(v) <= 0.06 * size)
        else:  # small disc
            rr = 0.5 * r
            inside = u * u + v * v <= rr * rr
        sub[inside] = colour
        if textured:
            dark = inside & texture_on(tex_kind, u, v, 0.09 * size, tex_phase)
            sub[dark] = colour * 0.45

    def _object(
        self, rng: np.random.Generator, img: np.ndarray, label: int, ablate: str | None
    ) -> tuple[np.ndarray, np.ndarray]:
        tax, size = self.taxonomy, self.size
        order, family, _ = tax.split_label(label)
        c, s = unit_vector(rng)
        half_len = (self.body_half_length[0] + self.body_half_length[1] * rng.random()) * size
        half_wid = half_len * (self.body_aspect[0] + self.body_aspect[1] * rng.random())
        head_r = (self.head_radius[0] + self.head_radius[1] * rng.random()) * size
        head_d = self.head_offset * half_len
        offsets = [head_d, *(f * half_len for f in self.mark_offsets[1 : self.parts])]
        # Body centre anywhere in the middle 64% of the image; every species mark must be fully
        # visible (the species would be unidentifiable otherwise). The tail may be cut off.
        lo, hi = head_r + 1.0, size - head_r - 1.0
        while True:
            cx, cy = (0.18 + 0.64 * rng.random(2)) * size
            if all(lo <= cx + c * d <= hi and lo <= cy + s * d <= hi for d in offsets):
                break
        hue_jitter, sat, val = rng.random(3)
        hue = tax.order_hue[order] + (hue_jitter - 0.5) * self.body_hue_jitter / tax.orders
        body_rgb = hsv_to_rgb(hue, self.body_sat[0] + self.body_sat[1] * sat, self.body_val[0] + self.body_val[1] * val)
        tex_phase = rng.random(2)
        head_shade = 0.85 + 0.15 * rng.random(2)
        # Every body shape fits in 1.6 half widths across and 1 half length along its axis.
        extent = max(float(np.sqrt(half_len * half_len + 2.56 * half_wid * half_wid)), head_d + head_r)
        wy, wx = self._window(cx, cy, extent)
        sub = img[wy, wx]
        u, v = local_coords(self.xs[wy, wx], self.ys[wy, wx], cx, cy, c, s)
        body = body_inside(int(tax.order_shape[order]), u / half_len, v / half_wid)
        if ablate != "body":
            sub[body] = body_rgb
            period = float(tax.family_period[family]) * size
            dark = body & texture_on(int(tax.family_texture[family]), u, v, period, tex_phase)
            sub[dark] = body_rgb * 0.45
        marks = np.zeros(u.shape, dtype=np.uint8)
        inner_r = self.head_inner * head_r
        for number, offset in enumerate(offsets, start=1):
            du = u - offset
            d2 = du * du + v * v
            disc = d2 <= head_r * head_r
            marks[disc] = number
            if ablate != "head":
                outer_code, inner_code = tax.mark_codes[number - 1, label]
                sub[disc] = tax.head_palette[outer_code] * head_shade[0]
                sub[d2 <= inner_r * inner_r] = tax.head_palette[inner_code] * head_shade[1]
        mask = np.zeros((size, size), dtype=bool)
        part = np.zeros((size, size), dtype=np.uint8)
        mask[wy, wx] = body | (marks > 0)
        part[wy, wx] = marks
        return mask, part

    # -- whole image -------------------------------------------------------------------------
    def render(
        self, rng: np.random.Generator, label: int, ablate: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3), object mask bool, species marks uint8)``.

        The marks array is 0 off the species marks and ``m`` on mark ``m`` (1 = the head, 2 =
        the tail spot, 3 = the saddle spot). ``ablate="head"`` leaves every species mark
        unpainted, ``"body"`` the body (the rest of the image is unchanged; masks are those of
        the intact object): a diagnostic of which part a classifier relies on.
        """
        img = self._background(rng)
        count = int(rng.integers(self.distractors // 2, self.distractors + 1)) if self.distractors else 0
        for _ in range(count):
            self._distractor(rng, img)
        mask, marks = self._object(rng, img, label, ablate)
        if self.noise:
            img += rng.integers(-self.noise, self.noise + 1, size=img.shape, dtype=np.int16)
        np.rint(img, out=img)
        np.clip(img, 0.0, 255.0, out=img)
        image = img.astype(np.uint8)
        return image, mask, marks
