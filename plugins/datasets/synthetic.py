"""``synthetic``: a procedurally generated WSOL dataset with a 3-level class hierarchy.

Every image shows one object on a cluttered background. The object is a large *body*
with a small *head* disc at one end of its long axis:

* **order** (level 0): the body's shape and colour;
* **family** (level 1): the texture painted on the body (bands, spots, plain, ...);
* **species** (level 2): only the two colours of the head (outer ring, inner dot). Within a
  family the species differ in nothing else, and every species has its own head colours,
  so the head alone identifies all fine classes.

A classifier trained on species alone can therefore succeed by looking at the head only
(and plain CAM under-localises), while order and family labels can only be read from the
body — what hierarchical supervision (DANet's HDA) exploits.

Images are generated on the fly from ``np.random.default_rng`` seeded with
``(dataset seed, split, index)``: any item is reproducible on its own (DataLoader workers
are fine) and bit-identical on every machine (see :mod:`wsolbench_plugins.datasets._shapes`).
The class -> appearance tables depend only on the hierarchy sizes, never on the seed, so
train, val and test share classes while their images come from disjoint seed streams.
``val`` (train-fullsup: boxes and masks, for choosing hyperparameters and the CAM threshold)
has its own stream, so no val image is a train or test image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from wsolbench import hookimpl
from wsolbench.errors import UsageError
from wsolbench.specs import Hierarchy, Sample, WSOLDataset
from wsolbench_plugins.datasets._common import check_val_cap, mask_to_box, per_class_subset
from wsolbench_plugins.datasets._shapes import (
    BODY_SHAPES,
    TEXTURES,
    body_inside,
    hsv_to_rgb,
    local_coords,
    texture_on,
    triangle_inside,
    unit_vector,
)

#: Split name -> the number mixed into every item's seed (disjoint streams per split).
SPLITS = {"train": 0, "test": 1, "val": 2}

#: Bumped whenever the generator's output changes (also part of every item's seed).
GENERATOR_VERSION = 1

LEVEL_NAMES = ("order", "family", "species")
MAX_ORDERS = 12
MAX_FAMILIES = 2 * len(TEXTURES)
MAX_HEAD_COLOURS = 12  # head palette size; species <= MAX_HEAD_COLOURS ** 2

_HUE_NAMES = ("red", "orange", "yellow", "lime", "green", "jade", "cyan", "azure", "blue", "violet", "magenta", "rose")


def _hue_name(hue: float) -> str:
    return _HUE_NAMES[int(np.floor((hue % 1.0) * 12 + 0.5)) % 12]


@dataclass(frozen=True)
class Taxonomy:
    """How each class looks; fixed by the hierarchy sizes alone (not by the seed).

    Attributes:
        orders, families, species: Number of orders, families per order, species per family.
        order_hue: ``(orders,)`` body hue of each order.
        order_shape: ``(orders,)`` index into :data:`BODY_SHAPES`.
        family_texture: ``(families,)`` index into :data:`TEXTURES` (per family *within* an
            order: family ``f`` of every order has the same texture).
        family_period: ``(families,)`` texture period as a fraction of the image size.
        head_palette: ``(K, 3)`` float RGB of the head colours.
        head_codes: ``(num_species, 2)`` (outer, inner) palette indices; all rows differ.
    """

    orders: int
    families: int
    species: int
    order_hue: np.ndarray
    order_shape: np.ndarray
    family_texture: np.ndarray
    family_period: np.ndarray
    head_palette: np.ndarray
    head_codes: np.ndarray

    @property
    def num_species(self) -> int:
        return self.orders * self.families * self.species

    def split_label(self, label: int) -> tuple[int, int, int]:
        """Fine label -> (order, family within its order, species within its family)."""
        return label // (self.families * self.species), (label // self.species) % self.families, label % self.species

    def hierarchy(self) -> Hierarchy:
        """The :class:`Hierarchy` (order, family, species) with readable class names."""
        n, fs = self.num_species, self.families * self.species
        labels = np.arange(n)
        ancestors = np.stack([labels // fs, labels // self.species, labels], axis=1).astype(np.int64)
        order_names = [
            f"o{o}-{_hue_name(self.order_hue[o])}-{BODY_SHAPES[self.order_shape[o]]}" for o in range(self.orders)
        ]
        family_names = []
        for o in range(self.orders):
            for f in range(self.families):
                coarse = "-coarse" if f >= len(TEXTURES) else ""
                texture = TEXTURES[self.family_texture[f]]
                family_names.append(f"{order_names[o]}.f{f}-{texture}{coarse}")
        species_names = []
        k = len(self.head_palette)
        for c in range(n):
            outer, inner = self.head_codes[c]
            s = c % self.species
            head = f"{_hue_name(outer / k)}/{_hue_name(inner / k)}-head"
            species_names.append(f"{family_names[c // self.species]}.s{s}-{head}")
        return Hierarchy(LEVEL_NAMES, (tuple(order_names), tuple(family_names), tuple(species_names)), ancestors)


def build_taxonomy(orders: int, families: int, species: int) -> Taxonomy:
    """The appearance tables for ``orders x families x species`` classes."""
    n = orders * families * species
    k = max(2, int(np.ceil(np.sqrt(n))))
    order_hue = (np.arange(orders) + 0.5) / orders
    order_shape = np.arange(orders) % len(BODY_SHAPES)
    family_texture = np.arange(families) % len(TEXTURES)
    family_period = np.where(np.arange(families) < len(TEXTURES), 0.09, 0.15)
    head_palette = np.stack([hsv_to_rgb(i / k, 1.0, 1.0) for i in range(k)])
    # Every (outer, inner) pair is a code; a fixed permutation spreads the codes so that
    # neither head colour alone correlates with order or family.
    codes = np.array([(a, b) for a in range(k) for b in range(k)], dtype=np.int64)
    perm = np.random.default_rng(20190101).permutation(len(codes))
    head_codes = codes[perm[:n]]
    return Taxonomy(
        orders, families, species, order_hue, order_shape, family_texture, family_period, head_palette, head_codes
    )


class SyntheticItem(NamedTuple):
    """One generated image with its exact ground truth (numpy, before normalisation)."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 1 = object (body and head)
    part_mask: np.ndarray  # (H, W) uint8, 1 = head (the species part)
    box: np.ndarray  # (4,) int64 inclusive x0, y0, x1, y1 of the visible object pixels
    label: int


class Renderer:
    """Draws one image from a random generator; all geometry scales with ``image_size``."""

    #: Geometry as (low, span) fractions of the image size, drawn uniformly in low + span * U.
    body_half_length = (0.28, 0.10)
    body_aspect = (0.42, 0.14)  # half width / half length
    head_radius = (0.09, 0.015)
    head_inner = 0.5  # inner dot radius / head radius
    head_offset = 1.02  # head centre distance from the body centre / body half length
    body_hue_jitter = 0.25  # hue jitter range as a fraction of the hue spacing of the orders
    body_sat = (0.45, 0.25)
    body_val = (0.65, 0.30)
    distractor_radius = (0.05, 0.12)

    def __init__(self, taxonomy: Taxonomy, image_size: int, distractors: int, noise: int):
        self.taxonomy = taxonomy
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
        # Body centre anywhere in the middle 64% of the image; the head must be fully
        # visible (the species would be unidentifiable otherwise). The tail may be cut off.
        while True:
            cx, cy = (0.18 + 0.64 * rng.random(2)) * size
            hx, hy = cx + c * head_d, cy + s * head_d
            lo, hi = head_r + 1.0, size - head_r - 1.0
            if lo <= hx <= hi and lo <= hy <= hi:
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
        du = u - head_d
        d2 = du * du + v * v
        head = d2 <= head_r * head_r
        inner_r = self.head_inner * head_r
        inner = d2 <= inner_r * inner_r
        outer_code, inner_code = tax.head_codes[label]
        if ablate != "head":
            sub[head] = tax.head_palette[outer_code] * head_shade[0]
            sub[inner] = tax.head_palette[inner_code] * head_shade[1]
        mask = np.zeros((size, size), dtype=bool)
        part = np.zeros((size, size), dtype=bool)
        mask[wy, wx] = body | head
        part[wy, wx] = head
        return mask, part

    # -- whole image -------------------------------------------------------------------------
    def render(
        self, rng: np.random.Generator, label: int, ablate: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(image uint8 (H, W, 3), object mask bool, head mask bool)``.

        ``ablate="head"`` or ``"body"`` leaves that part of the object unpainted (the rest
        of the image is unchanged; masks are those of the intact object): a diagnostic of
        which part a classifier relies on.
        """
        img = self._background(rng)
        count = int(rng.integers(self.distractors // 2, self.distractors + 1)) if self.distractors else 0
        for _ in range(count):
            self._distractor(rng, img)
        mask, head = self._object(rng, img, label, ablate)
        if self.noise:
            img += rng.integers(-self.noise, self.noise + 1, size=img.shape, dtype=np.int16)
        np.rint(img, out=img)
        np.clip(img, 0.0, 255.0, out=img)
        image = img.astype(np.uint8)
        return image, mask, head


class SyntheticDataset(WSOLDataset):
    """The generated dataset of one split (see the module docstring).

    Items are generated on access and not cached: a 64 px item takes about 0.4 ms (a small
    fraction of a training step, hidden by DataLoader workers), while a cache would hold
    ~130 MB per 8000 items in every worker process. There is no augmentation.

    Positions (``dataset[i]``) map to generator items (``items[i]``, the number in the
    image id); they are the same unless ``val_per_class`` picked a subset of ``val``.
    """

    has_masks = True

    def __init__(
        self,
        *,
        split: str,
        seed: int,
        length: int,
        image_size: int,
        orders: int,
        families: int,
        species: int,
        distractors: int,
        noise: int,
        items: np.ndarray | None = None,
    ):
        self.split = split
        self.seed = seed
        self.items = np.arange(length, dtype=np.int64) if items is None else np.asarray(items, dtype=np.int64)
        self.length = len(self.items)
        self.image_size = image_size
        self.taxonomy = build_taxonomy(orders, families, species)
        self.hierarchy = self.taxonomy.hierarchy()
        self.renderer = Renderer(self.taxonomy, image_size, distractors, noise)

    def __len__(self) -> int:
        return self.length

    def label(self, index: int) -> int:
        """Fine label at position ``index``: its item number ``% num_classes`` (exactly balanced classes)."""
        return int(self.items[index]) % self.taxonomy.num_species

    def labels(self) -> np.ndarray:
        """All fine labels of the split, without generating images."""
        return self.items % self.taxonomy.num_species

    @property
    def image_ids(self) -> list[str]:
        """The items' ``Sample.image_id``, in order, without generating images."""
        return [f"{self.split}/{int(item):06d}" for item in self.items]

    def rng(self, index: int) -> np.random.Generator:
        """The generator of item ``index``, seeded by (version, dataset seed, split, index)."""
        entropy = [GENERATOR_VERSION, self.seed, SPLITS[self.split], index]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _check_index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic {self.split} index {index} out of range (length {self.length})")
        return index

    def generate(self, index: int, *, ablate: str | None = None) -> SyntheticItem:
        """Item ``index`` as numpy arrays, with the head (species part) mask.

        ``ablate`` (``"head"`` or ``"body"``, diagnostics only) leaves that part unpainted.
        """
        if ablate not in (None, "head", "body"):
            raise UsageError(f"synthetic: ablate must be None, 'head' or 'body', got {ablate!r}")
        index = self._check_index(index)
        label = self.label(index)
        image, mask, head = self.renderer.render(self.rng(int(self.items[index])), label, ablate)
        return SyntheticItem(image, mask.astype(np.uint8), head.astype(np.uint8), mask_to_box(mask), label)

    def raw_image(self, index: int) -> np.ndarray:
        """The ``(H, W, 3)`` uint8 RGB image of item ``index`` (for pictures)."""
        return self.generate(index).image

    def __getitem__(self, index: int) -> Sample:
        index = self._check_index(index)
        item = self.generate(index)
        image = torch.from_numpy(item.image).permute(2, 0, 1).float().div_(255.0)
        return Sample(
            image=self.normalize(image),
            label=item.label,
            boxes=torch.from_numpy(item.box).view(1, 4),
            mask=torch.from_numpy(item.mask),
            image_id=f"{self.split}/{int(self.items[index]):06d}",
        )


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UsageError(f"synthetic: {name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise UsageError(f"synthetic: {name} must be {bound}, got {value}")
    return int(value)


def synthetic(
    *,
    split: str = "train",
    root: object = None,
    seed: int = 0,
    num_train: int = 8000,
    num_test: int = 1000,
    num_val: int = 500,
    image_size: int = 64,
    orders: int = 4,
    families: int = 3,
    species: int = 3,
    distractors: int = 6,
    noise: int = 10,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> SyntheticDataset:
    """Generated objects whose species is told only by a small head (needs no download).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (disjoint seed streams).
        root: Ignored (nothing is read from disk); accepted like every dataset's ``root``.
        seed: Dataset seed; the same seed gives bit-identical items on every machine.
        num_train, num_test, num_val: Number of images of each split.
        image_size: Side of the square images in pixels (>= 32).
        orders, families, species: Hierarchy sizes: orders, families per order, species
            per family (``orders * families * species`` fine classes).
        distractors: Maximum number of clutter shapes per image (between half that and it).
        noise: Amplitude of the uniform per-pixel noise (0..255 scale).
        val_per_class: Keep at most this many ``val`` images per class (a seeded choice among
            the ``num_val`` items; None or 0: all).
        val_seed: Seed of that choice.
    """
    del root  # nothing on disk
    check_val_cap("synthetic", val_per_class, val_seed)
    if split not in SPLITS:
        raise UsageError(f"synthetic: unknown split {split!r}; use one of: {', '.join(SPLITS)}")
    seed = _check_int("seed", seed, 0)
    num_train = _check_int("num_train", num_train, 1)
    num_test = _check_int("num_test", num_test, 1)
    num_val = _check_int("num_val", num_val, 1)
    image_size = _check_int("image_size", image_size, 32, 1024)
    orders = _check_int("orders", orders, 1, MAX_ORDERS)
    families = _check_int("families", families, 1, MAX_FAMILIES)
    species = _check_int("species", species, 1)
    distractors = _check_int("distractors", distractors, 0, 64)
    noise = _check_int("noise", noise, 0, 128)
    total = orders * families * species
    if total < 2:
        raise UsageError("synthetic: orders * families * species must be >= 2 classes")
    if total > MAX_HEAD_COLOURS**2:
        raise UsageError(
            f"synthetic: {total} species is too many for distinct head colours (max {MAX_HEAD_COLOURS**2})"
        )
    length = {"train": num_train, "val": num_val, "test": num_test}[split]
    items = None
    if split == "val" and val_per_class:
        items = per_class_subset(np.arange(length) % total, val_per_class, val_seed)
    return SyntheticDataset(
        split=split,
        seed=seed,
        length=length,
        image_size=image_size,
        orders=orders,
        families=families,
        species=species,
        distractors=distractors,
        noise=noise,
        items=items,
    )


#: CPU-sized training defaults of ``--dataset synthetic`` (merged under the user's settings).
#: Everything trains from scratch here (no pretrained weights), so one learning rate for body
#: and heads, a larger one than the paper's fine-tuning rate, and a step decay before the end.
#: 2,000 training images x 2 epochs keep the README's VGG16 command within minutes on a CPU;
#: benchmarks/ablation.yaml uses 8,000 images x 4 epochs with tinycnn for the real comparison.
synthetic.train_preset = {
    "train": {"epochs": 2, "batch_size": 32, "lr": 0.01, "head_lr_mult": 1.0, "lr_decay_epochs": [1]},
    "dataset": {"num_train": 2000, "num_test": 500},
}


def synthetic_hierarchy(*, orders: int = 4, families: int = 3, species: int = 3) -> Hierarchy:
    """The hierarchy of :func:`synthetic` for the given sizes, without building a dataset."""
    return synthetic(orders=orders, families=families, species=species, num_train=1).hierarchy


@hookimpl
def register_datasets(register):
    """Register the ``synthetic`` dataset."""
    register("synthetic", synthetic)


def sample_grid(dataset: SyntheticDataset, *, scale: int = 2, gap: int = 2):
    """A PIL image of one item per fine class (rows = orders) with the ground-truth boxes.

    Item ``label`` of the split is used for class ``label``; the box is drawn in yellow
    around its inclusive pixel extent.
    """
    from PIL import Image, ImageDraw

    tax = dataset.taxonomy
    rows, cols = tax.orders, tax.families * tax.species
    side = dataset.image_size * scale
    sheet = Image.new("RGB", (cols * (side + gap) - gap, rows * (side + gap) - gap), (255, 255, 255))
    for label in range(min(tax.num_species, len(dataset))):
        item = dataset.generate(label)
        tile = Image.fromarray(item.image).resize((side, side), Image.NEAREST)
        x0, y0, x1, y1 = (int(v) for v in item.box)
        ImageDraw.Draw(tile).rectangle(
            [x0 * scale, y0 * scale, (x1 + 1) * scale - 1, (y1 + 1) * scale - 1], outline=(255, 255, 0), width=scale
        )
        row, col = divmod(label, cols)
        sheet.paste(tile, (col * (side + gap), row * (side + gap)))
    return sheet


if __name__ == "__main__":  # python -m wsolbench_plugins.datasets.synthetic OUT.png
    import sys

    sample_grid(synthetic(split="train"), scale=2).save(sys.argv[1] if len(sys.argv) > 1 else "synthetic_samples.png")
