"""Shared machinery of the real-data loaders (``cub``, ``ilsvrc``, ``folder``).

* checking the common options and the data root, reading metadata files line by line;
* collecting bad samples (:class:`Problems`): an error naming the file, line and fix, or
  with ``skip_bad=True`` a skip that is recorded in ``dataset.skipped`` and announced
  by one warning line;
* opening images and masks with errors that name the file, and combining instance masks
  with an ignore mask (:func:`open_instance_masks`);
* the seeded per-class choice that caps ``val`` (``val_per_class``) and that holds images
  out of a split (:func:`per_class_subset`);
* :class:`BoxDataset`, the :class:`~wsolbench.specs.WSOLDataset` all three loaders return,
  transformed by :mod:`wsolbench_plugins.datasets._transforms`.

The YAML reader with line numbers is :mod:`wsolbench_plugins.datasets._yaml`.

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

import numpy as np
from PIL import Image

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Hierarchy, Sample, WSOLDataset
from wsolbench_plugins.datasets._images import binary_at, mask_to_box, one_line, open_image, open_mask, read_mask_file
from wsolbench_plugins.datasets._transforms import transform_sample

#: How many skipped ids the warning line lists before eliding the rest.
MAX_LISTED_IDS = 10

#: The value loaders give the ignored pixels of a ``Sample.mask`` (PxAP counts only 0 and 1).
MASK_IGNORE = 255


class SkippedSamplesWarning(UserWarning):
    """Emitted once per dataset built with ``skip_bad=True`` that skipped samples."""


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
        instance = binary_at(read_mask_file(record.root / rel, where), size)
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
        ignore = binary_at(read_mask_file(record.root / record.ignore_mask, record.mask_where[0]), size)
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
