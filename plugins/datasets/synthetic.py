"""``synthetic``: a procedurally generated WSOL dataset with a 3-level class hierarchy.

Every image shows one object on a cluttered background. The object is a large *body*
with a small *head* disc at one end of its long axis:

* **order** (level 0): the body's shape and colour;
* **family** (level 1): the texture painted on the body (bands, spots, plain, ...);
* **species** (level 2): only the two colours of the head (outer ring, inner dot). Within a
  family the species differ in nothing else, and every species has its own head colours,
  so the head alone identifies all fine classes.

With ``parts=2`` or ``3`` the object also carries a tail spot (and a saddle spot) on the body,
discs like the head with their own colour codes: each mark alone tells the species, so the
object has several separately discriminative parts (the case DDA's K maps are meant for).

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
from wsolbench_plugins.datasets._common import check_val_cap, per_class_subset
from wsolbench_plugins.datasets._images import mask_to_box
from wsolbench_plugins.datasets._scene import MAX_PARTS, Renderer
from wsolbench_plugins.datasets._shapes import BODY_SHAPES, TEXTURES, hsv_to_rgb

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
        mark_codes: ``(MAX_PARTS, num_species, 2)`` (outer, inner) palette indices of every
            species mark (row 0: the head); each mark has its own code table, all rows of each differ.
    """

    orders: int
    families: int
    species: int
    order_hue: np.ndarray
    order_shape: np.ndarray
    family_texture: np.ndarray
    family_period: np.ndarray
    head_palette: np.ndarray
    mark_codes: np.ndarray

    @property
    def head_codes(self) -> np.ndarray:
        """``(num_species, 2)`` the head's (outer, inner) palette indices."""
        return self.mark_codes[0]

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
    mark_codes = np.stack(
        [codes[np.random.default_rng(20190101 + m).permutation(len(codes))[:n]] for m in range(MAX_PARTS)]
    )
    return Taxonomy(
        orders,
        families,
        species,
        order_hue,
        order_shape,
        family_texture,
        family_period,
        head_palette,
        mark_codes,
    )


class SyntheticItem(NamedTuple):
    """One generated image with its exact ground truth (numpy, before normalisation)."""

    image: np.ndarray  # (H, W, 3) uint8
    mask: np.ndarray  # (H, W) uint8, 1 = object (body and head)
    part_mask: np.ndarray  # (H, W) uint8, m = species mark m (1 = head, 2 = tail, 3 = saddle), 0 = none
    box: np.ndarray  # (4,) int64 inclusive x0, y0, x1, y1 of the visible object pixels
    label: int


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
        parts: int = 1,
        items: np.ndarray | None = None,
    ):
        self.split = split
        self.seed = seed
        self.items = np.arange(length, dtype=np.int64) if items is None else np.asarray(items, dtype=np.int64)
        self.length = len(self.items)
        self.image_size = image_size
        self.taxonomy = build_taxonomy(orders, families, species)
        self.hierarchy = self.taxonomy.hierarchy()
        self.parts = parts
        self.renderer = Renderer(self.taxonomy, image_size, distractors, noise, parts)

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
        """Item ``index`` as numpy arrays, with the species marks' mask.

        ``ablate`` (``"head"``: every species mark, or ``"body"``; diagnostics only) leaves
        that part unpainted.
        """
        if ablate not in (None, "head", "body"):
            raise UsageError(f"synthetic: ablate must be None, 'head' or 'body', got {ablate!r}")
        index = self._check_index(index)
        label = self.label(index)
        image, mask, marks = self.renderer.render(self.rng(int(self.items[index])), label, ablate)
        return SyntheticItem(image, mask.astype(np.uint8), marks, mask_to_box(mask), label)

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
    parts: int = 1,
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
        parts: Species marks per object, each enough on its own to tell the species: 1 = the
            head only (the default: one discriminative part); 2 adds a tail spot, 3 also a
            saddle spot on the body (objects with several separately discriminative parts).
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
    parts = _check_int("parts", parts, 1, MAX_PARTS)
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
        parts=parts,
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


if __name__ == "__main__":  # python -m wsolbench_plugins.datasets.synthetic OUT.png [PARTS]
    import sys

    marks = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    out = sys.argv[1] if len(sys.argv) > 1 else "synthetic_samples.png"
    sample_grid(synthetic(split="train", parts=marks), scale=2).save(out)
