"""Shared machinery of the real-data loaders (``cub``, ``ilsvrc``, ``folder``).

* checking the common options and the data root, reading metadata files line by line;
* collecting bad samples (:class:`Problems`): an error naming the file, line and fix, or
  with ``skip_bad=True`` a skip that is recorded in ``dataset.skipped`` and announced
  by one warning line;
* opening images and masks with errors that name the file, and combining instance masks
  with an ignore mask (:func:`open_instance_masks`);
* the seeded per-class choice that caps ``val`` (``val_per_class``) and that holds images
  out of a split (:func:`per_class_subset`);
* the transforms of the paper (Xue et al., ICCV 2019, following CAM), applied to the
  image, its boxes and its mask together (:func:`transform_sample`);
* :class:`BoxDataset`, the :class:`~wsolbench.specs.WSOLDataset` all three loaders return;
* a YAML reader that reports line numbers and refuses duplicate keys (:func:`read_yaml`).

Box convention (see :mod:`wsolbench.specs`): inclusive ``x0, y0, x1, y1`` pixel corners. A
box covers the continuous span ``[x0, x1 + 1) x [y0, y1 + 1)``; resizing scales that span
and rounds it back to pixel edges, so a box stays on the same pixels of the resized image.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from PIL import Image

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Hierarchy, Sample, WSOLDataset

#: How many skipped ids the warning line lists before eliding the rest.
MAX_LISTED_IDS = 10

#: The value loaders give the ignored pixels of a ``Sample.mask`` (PxAP counts only 0 and 1).
MASK_IGNORE = 255


class SkippedSamplesWarning(UserWarning):
    """Emitted once per dataset built with ``skip_bad=True`` that skipped samples."""


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- options


def check_options(
    name: str,
    *,
    split: str,
    splits: Sequence[str],
    resize: int,
    crop: int,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> None:
    """Raise a :class:`UsageError` for an unknown split, impossible sizes or a bad ``val`` cap."""
    check_val_cap(f"dataset {name!r}", val_per_class, val_seed)
    if split not in splits:
        raise UsageError(f"dataset {name!r}: unknown split {split!r}; choose one of: {', '.join(splits)}")
    if int(crop) < 1 or int(resize) < 1:
        raise UsageError(f"dataset {name!r}: resize={resize} and crop={crop} must be positive")
    if int(resize) < int(crop):
        raise UsageError(
            f"dataset {name!r}: resize={resize} is smaller than crop={crop}; training crops crop x crop "
            "out of the resize x resize image, so set resize >= crop"
        )


def check_val_cap(who: str, val_per_class: int | None, val_seed: int) -> None:
    """``val_per_class`` must be None or an integer >= 0, ``val_seed`` an integer >= 0.

    ``who`` starts the error message (``"dataset 'cub'"``).
    """
    for option, value in (("val_per_class", val_per_class), ("val_seed", val_seed)):
        if value is None and option == "val_per_class":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise UsageError(
                f"{who}: {option}={value!r} must be an integer >= 0"
                + (" (0 or unset: every val image)" if option == "val_per_class" else "")
            )


def per_class_subset(labels: Sequence[int] | np.ndarray, per_class: int, seed: int, *, leave: int = 0) -> np.ndarray:
    """Positions (ascending) of at most ``per_class`` items of every label, chosen at random.

    The choice of a class is a permutation seeded by ``(seed, label)`` alone, so it does not
    depend on the other classes, and a smaller ``per_class`` keeps a subset of what a larger
    one keeps. A class with fewer items keeps them all, less ``leave`` of them (items that
    must stay out of the subset). Labels must be >= 0.
    """
    labels = np.asarray(labels, dtype=np.int64)
    keep = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(label)]))
        keep.append(members[rng.permutation(len(members))[: max(0, min(per_class, len(members) - leave))]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def require_root(name: str, root: str | os.PathLike | None, what: str) -> Path:
    """The data root as a :class:`Path`; a missing option or folder is a one-line error."""
    if root is None or str(root) == "":
        raise UsageError(
            f"dataset {name!r} needs its data folder ({what}): pass --data-root PATH (dataset option root)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UsageError(
            f"dataset {name!r}: data root {str(path)!r} is not a folder; pass --data-root pointing at {what}"
        )
    return path


def require_file(path: Path, fix: str) -> Path:
    """``path`` if it is a file, else a one-line error naming it and ``fix``."""
    if not path.is_file():
        raise WsolbenchError(f"{path}: metadata file not found; {fix}")
    return path


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line_number, stripped_text)`` of every non-blank line of a UTF-8 text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise WsolbenchError(f"{path}: not a UTF-8 text file ({one_line(error)}); re-export it as UTF-8") from None
    except OSError as error:
        raise WsolbenchError(f"{path}: cannot read ({one_line(error)})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if line:
            yield number, line


def resolve_verify(skip_bad: bool, verify_images: bool | None) -> bool:
    """Whether to decode every image at construction: ``verify_images``, or ``skip_bad`` if None."""
    return bool(skip_bad) if verify_images is None else bool(verify_images)


# --------------------------------------------------------------------------- records and problems


@dataclass(slots=True, eq=False)
class Record:
    """One sample before loading: where its image is and what is known about it.

    Lean on purpose (ILSVRC train has 1.28M of them): file names are shared strings and
    only line numbers are stored per record.

    Attributes:
        image_id: The stable id (``Sample.image_id``); the image is ``root / image_id``.
        root: Folder the image id (and the mask) are relative to.
        label: Fine class id.
        boxes: ``(M, 4)`` int64 inclusive boxes in original image pixels.
        source: File that lists the image; ``line``: its line there.
        box_source: File the boxes come from; ``box_lines``: the line of each box.
        size: ``(width, height)`` the metadata claims, if any.
        mask: Mask image relative to ``root`` (same size as the image), if any.
        instance_masks: Instance mask images relative to ``root`` (nonzero = object), OR-ed
            into the sample's mask; the boxes then come from them (see :func:`open_instance_masks`).
        ignore_mask: With ``instance_masks``: an image whose nonzero pixels outside every
            instance are ignored (:data:`MASK_IGNORE`).
        mask_where: ``"file:line"`` listing each instance mask.
    """

    image_id: str
    root: Path
    label: int
    boxes: np.ndarray
    source: str
    line: int
    box_source: str = ""
    box_lines: tuple[int, ...] = ()
    size: tuple[int, int] | None = None
    mask: str | None = None
    instance_masks: tuple[str, ...] = ()
    ignore_mask: str | None = None
    mask_where: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The image file."""
        return self.root / self.image_id

    @property
    def mask_path(self) -> Path | None:
        """The mask file, if any."""
        return self.root / self.mask if self.mask else None

    @property
    def where(self) -> str:
        """``"file:line"`` that lists the image."""
        return f"{self.source}:{self.line}"

    @property
    def box_where(self) -> tuple[str, ...]:
        """Per box, ``"file:line"`` it comes from."""
        return tuple(f"{self.box_source}:{line}" for line in self.box_lines)


#: The boxes of every box-less sample (shared, read-only).
NO_BOXES = np.zeros((0, 4), dtype=np.int64)
NO_BOXES.flags.writeable = False


def boxes_array(boxes: Sequence[Sequence[int]]) -> np.ndarray:
    """A ``(M, 4)`` int64 array (the shared :data:`NO_BOXES` when there are none)."""
    if len(boxes) == 0:
        return NO_BOXES
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def box_problem(box: Sequence[int], size: tuple[int, int] | None) -> str | None:
    """What is wrong with an inclusive box in an image of ``size = (w, h)``, or None.

    ``size=None`` checks only the order of the corners and negative coordinates.
    """
    x0, y0, x1, y1 = (int(v) for v in box)
    text = f"box x0,y0,x1,y1 = {x0},{y0},{x1},{y1}"
    if x1 < x0 or y1 < y0:
        return f"{text} has x1 < x0 or y1 < y0; corners must satisfy x0 <= x1 and y0 <= y1 (inclusive pixels)"
    if size is None:
        if x0 < 0 or y0 < 0:
            return f"{text} has negative coordinates; pixels start at 0"
        return None
    w, h = size
    if x0 < 0 or y0 < 0 or x1 > w - 1 or y1 > h - 1:
        return f"{text} lies outside the {w}x{h} image (x must be in 0..{w - 1}, y in 0..{h - 1}); fix the box"
    return None


class Problems:
    """Bad samples found while reading a dataset, keyed by image id."""

    def __init__(self, name: str, split: str):
        self.name = name
        self.split = split
        self.bad: dict[str, str] = {}

    def add(self, image_id: str, message: str) -> None:
        """Record that ``image_id`` is bad (the first reason is kept)."""
        self.bad.setdefault(image_id, one_line(message))

    def __contains__(self, image_id: str) -> bool:
        return image_id in self.bad

    def finish(self, records: list[Record], skip_bad: bool) -> tuple[list[Record], dict[str, str]]:
        """Drop the bad records (``skip_bad``) and warn, or raise the first problem.

        Returns:
            The good records in their original order, and ``{image_id: reason}`` of the
            skipped ones.
        """
        if not self.bad:
            return records, {}
        # report in dataset order (then anything not among the records)
        rank = {record.image_id: index for index, record in reversed(list(enumerate(records)))}
        self.bad = dict(sorted(self.bad.items(), key=lambda item: rank.get(item[0], len(rank))))
        first = next(iter(self.bad.values()))
        count = len(self.bad)
        if not skip_bad:
            more = f" ({count - 1} more bad samples after this one)" if count > 1 else ""
            raise WsolbenchError(f"{first}{more}; or set skip_bad=true to skip bad samples")
        ids = list(self.bad)
        listed = ", ".join(ids[:MAX_LISTED_IDS]) + (
            f", ... ({count - MAX_LISTED_IDS} more)" if count > MAX_LISTED_IDS else ""
        )
        warnings.warn(
            f"dataset {self.name!r} split {self.split!r}: skipped {count} bad sample{'s' if count > 1 else ''} "
            f"(skip_bad=true): {listed}; first problem: {first}",
            SkippedSamplesWarning,
            stacklevel=3,
        )
        return [r for r in records if r.image_id not in self.bad], dict(self.bad)


def existing_files(paths: Sequence[str]) -> set[str]:
    """Which of ``paths`` are files, with one directory listing per parent folder."""
    by_parent: dict[str, list[tuple[str, str]]] = {}
    for path in paths:
        parent, name = os.path.split(path)
        by_parent.setdefault(parent, []).append((path, name))
    found: set[str] = set()
    for parent, children in by_parent.items():
        try:
            with os.scandir(parent or ".") as entries:
                names = {entry.name for entry in entries if entry.is_file()}
        except OSError:
            continue
        found.update(path for path, name in children if name in names)
    return found


def check_images_exist(records: Sequence[Record], problems: Problems) -> None:
    """Mark every record whose image file is missing (one directory listing per folder)."""
    paths = [os.path.normpath(os.path.join(r.root, r.image_id)) for r in records]
    present = existing_files(paths)
    for record, path in zip(records, paths, strict=True):
        if path not in present:
            problems.add(
                record.image_id,
                f"{record.where}: image {record.image_id!r} is listed but its file {str(record.path)!r} is missing; "
                "restore the file or remove the entry",
            )


# --------------------------------------------------------------------------- images


def open_image(path: Path, where: str) -> Image.Image:
    """Open and fully decode an image as RGB; a missing or corrupt file is a one-line error."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise WsolbenchError(
            f"{path}: image file is missing (listed at {where}); restore it or remove the entry"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise WsolbenchError(
            f"{path}: cannot decode image ({one_line(error)}); the file is truncated or corrupt "
            f"(listed at {where}): re-download or re-export it"
        ) from None


def read_mask_file(path: Path, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as a ``(H, W)`` uint8 array of its grey values; a missing or corrupt file is a one-line error.

    Args:
        path: The mask file.
        where: ``"file:line"`` listing it (for messages).
        size: ``(width, height)`` it must have (None: any).
    """
    try:
        with Image.open(path) as image:
            image.load()
            if size is not None and image.size != size:
                raise WsolbenchError(
                    f"{path}: mask is {image.size[0]}x{image.size[1]} but its image is {size[0]}x{size[1]} "
                    f"(listed at {where}); masks must have the image's size"
                )
            return np.array(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise WsolbenchError(
            f"{path}: mask file is missing (listed at {where}); restore it or remove the mask"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise WsolbenchError(
            f"{path}: cannot decode mask ({one_line(error)}) (listed at {where}); re-export it"
        ) from None


def open_mask(path: Path, where: str, size: tuple[int, int]) -> np.ndarray:
    """A mask file as a ``(H, W)`` uint8 array: 0 background, 1 object (255 is read as 1), other values ignore."""
    array = read_mask_file(path, where, size)
    array[array == 255] = 1
    return array


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Inclusive ``x0, y0, x1, y1`` (int64) of the nonzero pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.int64)


def _binary_at(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``array > 0`` as a bool mask of ``size = (w, h)``, resized nearest-neighbour if needed."""
    binary = array > 0
    if binary.shape != (size[1], size[0]):
        resized = Image.fromarray(binary.view(np.uint8)).resize(size, Image.NEAREST)
        binary = np.asarray(resized).astype(bool)
    return binary


def open_instance_masks(record: Record, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The record's instance masks combined into one ``Sample.mask``, and a box per instance.

    As wsolevaluation's ``get_mask``: a pixel is object (1) if it is nonzero in any instance
    mask; it is ignored (:data:`MASK_IGNORE`) if it is nonzero in the ignore mask and in no
    instance; else background (0). A mask of another size than the image is first resized
    to it (nearest neighbour), as the reference resizes every mask on its own.

    Returns:
        ``(H, W)`` uint8 mask at the image's ``size = (w, h)``, and the ``(M, 4)`` inclusive
        boxes around the object pixels of each non-empty instance (a wsolbench addition: the
        box metrics need boxes; :func:`load_record` uses them when the record has none).

    Raises:
        WsolbenchError: a mask is missing or corrupt, or no instance has an object pixel.
    """
    union = np.zeros((size[1], size[0]), dtype=bool)
    boxes = []
    for rel, where in zip(record.instance_masks, record.mask_where, strict=True):
        instance = _binary_at(read_mask_file(record.root / rel, where), size)
        if instance.any():
            union |= instance
            boxes.append(mask_to_box(instance))
    if not boxes:
        raise WsolbenchError(
            f"{record.where}: no instance mask of image {record.image_id!r} has an object pixel "
            f"({', '.join(record.mask_where)}); fix the masks or remove the image"
        )
    mask = union.astype(np.uint8)
    if record.ignore_mask:
        ignore = _binary_at(read_mask_file(record.root / record.ignore_mask, record.mask_where[0]), size)
        mask[ignore & ~union] = MASK_IGNORE
    return mask, boxes_array(boxes)


def load_record(record: Record) -> tuple[Image.Image, np.ndarray, np.ndarray | None]:
    """The record's decoded image, boxes and mask (None without one), in original pixels.

    Raises:
        WsolbenchError: a missing or corrupt file, a size that differs from the metadata's,
            a box outside the image.
    """
    image = open_image(record.path, record.where)
    problem = check_record_image(record, image.size)
    if problem:
        raise WsolbenchError(problem)
    if record.instance_masks:
        mask, boxes = open_instance_masks(record, image.size)
        return image, record.boxes if len(record.boxes) else boxes, mask
    mask = open_mask(record.mask_path, record.where, image.size) if record.mask else None
    return image, record.boxes, mask


def check_record_image(record: Record, image_size: tuple[int, int]) -> str | None:
    """Problem of a record given its image's real ``(w, h)``: size mismatch or a box outside."""
    if record.size is not None and tuple(record.size) != tuple(image_size):
        return (
            f"{record.where}: image {record.image_id!r} is {image_size[0]}x{image_size[1]} but the metadata says "
            f"{record.size[0]}x{record.size[1]}; fix the size entry"
        )
    for box, where in zip(record.boxes, record.box_where, strict=True):
        problem = box_problem(box, image_size)
        if problem:
            return f"{where}: image {record.image_id!r}: {problem}"
    return None


def verify_records(records: Sequence[Record], problems: Problems) -> None:
    """Decode every image (and mask) now, marking corrupt ones and boxes outside the real image."""
    for record in records:
        if record.image_id in problems:
            continue
        try:
            load_record(record)
        except WsolbenchError as error:
            problems.add(record.image_id, str(error))


# --------------------------------------------------------------------------- transforms


def scale_boxes(boxes: np.ndarray, sx: float, sy: float, width: int, height: int) -> np.ndarray:
    """Scale inclusive boxes by ``(sx, sy)`` into a ``width x height`` image.

    The span ``[x0, x1 + 1)`` becomes ``[round(x0 * sx), round((x1 + 1) * sx))``; a box
    keeps at least one pixel and stays inside the image.
    """
    if len(boxes) == 0:
        return boxes_array([])
    b = boxes.astype(np.float64)
    x0 = np.floor(b[:, 0] * sx + 0.5)
    y0 = np.floor(b[:, 1] * sy + 0.5)
    x1 = np.floor((b[:, 2] + 1) * sx + 0.5) - 1
    y1 = np.floor((b[:, 3] + 1) * sy + 0.5) - 1
    x0 = np.clip(x0, 0, width - 1)
    y0 = np.clip(y0, 0, height - 1)
    x1 = np.clip(np.maximum(x1, x0), 0, width - 1)
    y1 = np.clip(np.maximum(y1, y0), 0, height - 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def crop_boxes(boxes: np.ndarray, left: int, top: int, size: int) -> np.ndarray:
    """Shift boxes into a ``size x size`` crop at ``(left, top)`` and clip them to it.

    Boxes are never dropped: a box entirely outside the crop collapses onto the nearest
    crop border (a one-pixel-wide line), so the number of boxes never changes.
    """
    if len(boxes) == 0:
        return boxes
    shifted = boxes - np.array([left, top, left, top], dtype=np.int64)
    return np.clip(shifted, 0, size - 1)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror boxes horizontally in an image ``width`` pixels wide."""
    if len(boxes) == 0:
        return boxes
    out = boxes.copy()
    out[:, 0] = width - 1 - boxes[:, 2]
    out[:, 2] = width - 1 - boxes[:, 0]
    return out


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` float tensor in [0, 1] (the dataset normalises it)."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def transform_sample(
    image: Image.Image,
    boxes: np.ndarray,
    mask: np.ndarray | None,
    *,
    train: bool,
    resize: int,
    crop: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The paper's transforms, applied to the image, its boxes and its mask together.

    * train: resize to ``resize x resize`` (bilinear), a random ``crop x crop`` crop, a
      random horizontal flip (probability 0.5);
    * test: resize straight to ``crop x crop``.

    Boxes are scaled, shifted by the crop offset and clipped, and mirrored with the image;
    masks use nearest interpolation. The crop offset and the flip are drawn from torch's
    global RNG, so DataLoader worker seeding makes them reproducible.

    Returns:
        ``(3, crop, crop)`` image in [0, 1], ``(M, 4)`` int64 boxes, ``(crop, crop)`` uint8
        mask or None.
    """
    width, height = image.size
    size = resize if train else crop
    image = image.resize((size, size), Image.BILINEAR)
    boxes = scale_boxes(boxes, size / width, size / height, size, size)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
    if train:
        top = int(torch.randint(0, size - crop + 1, (1,)).item())
        left = int(torch.randint(0, size - crop + 1, (1,)).item())
        flip = bool(torch.rand(1).item() < 0.5)
        image = image.crop((left, top, left + crop, top + crop))
        boxes = crop_boxes(boxes, left, top, crop)
        if mask is not None:
            mask = mask[top : top + crop, left : left + crop]
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            boxes = flip_boxes(boxes, crop)
            if mask is not None:
                mask = mask[:, ::-1]
    mask_tensor = torch.from_numpy(np.array(mask, dtype=np.uint8, copy=True)) if mask is not None else None
    return image_to_tensor(image), torch.from_numpy(np.array(boxes, dtype=np.int64, copy=True)), mask_tensor


# --------------------------------------------------------------------------- the dataset


class BoxDataset(WSOLDataset):
    """Images + labels + boxes (+ masks) read from :class:`Record` items, transformed on access.

    Attributes:
        name: Dataset name (``"cub"``, ...).
        split: ``"train"``, ``"val"`` or ``"test"``.
        records: The samples, in order.
        hierarchy: The class hierarchy (its last level are the labels).
        skipped: ``{image_id: reason}`` of the samples left out by ``skip_bad=True``.
        has_masks: Every sample has a mask.
    """

    def __init__(
        self,
        name: str,
        split: str,
        records: list[Record],
        hierarchy: Hierarchy,
        *,
        resize: int,
        crop: int,
        skipped: dict[str, str] | None = None,
    ):
        self.name = name
        self.split = split
        self.records = records
        self.hierarchy = hierarchy
        self.resize = int(resize)
        self.crop = int(crop)
        self.skipped = dict(skipped or {})
        self.has_masks = bool(records) and all(r.mask or r.instance_masks for r in records)

    @property
    def train(self) -> bool:
        """Whether the random training transforms apply (split ``"train"``)."""
        return self.split == "train"

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the fine classes (index = label)."""
        return self.hierarchy.class_names[-1]

    @property
    def num_classes(self) -> int:
        """Number of fine classes."""
        return len(self.hierarchy.class_names[-1])

    @property
    def image_ids(self) -> list[str]:
        """Ids of the samples, in order."""
        return [r.image_id for r in self.records]

    def labels(self) -> np.ndarray:
        """Fine labels of the samples, in order (no image is read)."""
        return np.array([r.label for r in self.records], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        try:
            image, boxes, mask = load_record(record)
        except WsolbenchError as error:
            raise WsolbenchError(
                f"{error}; or set skip_bad=true to check every image up front and skip bad ones"
            ) from None
        tensor, boxes, mask_tensor = transform_sample(
            image, boxes, mask, train=self.train, resize=self.resize, crop=self.crop
        )
        return Sample(
            image=self.normalize(tensor),
            label=int(record.label),
            boxes=boxes,
            mask=mask_tensor,
            image_id=record.image_id,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, samples={len(self)}, "
            f"classes={self.num_classes}, skipped={len(self.skipped)})"
        )


# --------------------------------------------------------------------------- YAML with line numbers


class YamlMap(dict):
    """A YAML mapping that remembers its line and each key's line (1-based)."""

    line: int = 0
    key_lines: dict[Any, int]


class YamlList(list):
    """A YAML sequence that remembers its line and each item's line (1-based)."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader building :class:`YamlMap` / :class:`YamlList` and refusing duplicate keys."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> YamlMap:
    loader.flatten_mapping(node)
    out = YamlMap()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise WsolbenchError(f"{loader.name}:{line}: a mapping key must be a plain value; quote it") from None
        if key in out:
            raise WsolbenchError(
                f"{loader.name}:{line}: duplicate key {key!r} (first at line {out.key_lines[key]}); "
                "each key may appear once — merge or remove one entry"
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
    return out


def _construct_list(loader: _LineLoader, node: yaml.SequenceNode) -> YamlList:
    out = YamlList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)


def read_yaml(path: Path) -> Any:
    """Parse a YAML file into :class:`YamlMap` / :class:`YamlList` (with line numbers).

    Syntax errors and duplicate keys are one-line :class:`WsolbenchError` naming file and line.
    """
    try:
        with open(path, encoding="utf-8-sig") as stream:
            loader = _LineLoader(stream)
            loader.name = str(path)
            try:
                return loader.get_single_data()
            finally:
                loader.dispose()
    except FileNotFoundError:
        raise WsolbenchError(f"{path}: file not found") from None
    except UnicodeDecodeError as error:
        raise WsolbenchError(f"{path}: not a UTF-8 text file ({one_line(error)}); re-save it as UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or error
        raise WsolbenchError(f"{path}{line}: invalid YAML ({one_line(problem)}); fix the syntax") from None


def yaml_line(container: Any, key: Any = None) -> int:
    """Line of a key of a :class:`YamlMap` (or of the container itself); 0 if unknown."""
    if key is not None and isinstance(container, YamlMap):
        return container.key_lines.get(key, container.line)
    return getattr(container, "line", 0)


def finish_dataset(
    name: str,
    split: str,
    records: list[Record],
    problems: Problems,
    hierarchy: Hierarchy,
    *,
    resize: int,
    crop: int,
    skip_bad: bool,
    verify_images: bool | None,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> BoxDataset:
    """Decode the images if asked (``verify_images``), then raise on or skip (``skip_bad``)
    every recorded problem, cap ``val`` at ``val_per_class`` images per class (a seeded
    :func:`per_class_subset` of the good records), and build the dataset."""
    if resolve_verify(skip_bad, verify_images):
        verify_records(records, problems)
    records, skipped = problems.finish(records, skip_bad)
    if split == "val" and val_per_class:
        records = [records[i] for i in per_class_subset([r.label for r in records], val_per_class, val_seed)]
    return BoxDataset(name, split, records, hierarchy, resize=resize, crop=crop, skipped=skipped)
