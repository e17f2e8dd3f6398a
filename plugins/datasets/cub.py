"""CUB-200-2011 (Wah et al., 2011), with the species -> family -> order taxonomy.

Two layouts are read.

**wsolevaluation's metadata** (Choe et al., CVPR 2020): ``metadata_root`` is its
``metadata/CUB`` folder (default ``<root>/metadata/CUB`` when ``root`` is not an official
``CUB_200_2011`` folder), with ``train/``, ``val/``, ``test/`` each holding
``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` and ``localization.txt`` (see
:mod:`wsolbench_plugins.datasets._metadata`); the images are at ``<root>/<image id>``
(``<root>/001.Black_footed_Albatross/...jpg``). ``val`` there is CUBV2, images collected by
Choe et al.; train and test are CUB-200-2011's. The classes are the labels of the
metadata, named by their images' folder (``001.Black_footed_Albatross``).

**The official archive**, ``root`` = its ``CUB_200_2011`` folder::

    images.txt              <image_id> <relative path under images/>
    image_class_labels.txt  <image_id> <class_id>          (class ids are 1-based, from classes.txt)
    train_test_split.txt    <image_id> <1 = train, 0 = test>
    bounding_boxes.txt      <image_id> <x> <y> <width> <height>   (float pixels)
    classes.txt             <class_id> <class name, e.g. 001.Black_footed_Albatross>
    images/<class folder>/<file>.jpg

Box conversion to inclusive corners: ``x0 = floor(x)``, ``y0 = floor(y)``,
``x1 = ceil(x + width) - 1``, ``y1 = ceil(y + height) - 1`` (a box ``width`` pixels wide
covers pixels ``x .. x + width - 1``); width and height must be positive.

Labels are the rank of the class id in ``classes.txt`` (0-based). ``Sample.image_id`` is
the image's path relative to ``images/`` (as in the WSOL-evaluation metadata). The archive
has no ``val`` split: ``holdout_per_class=N`` holds out N training images of every class
(always leaving one for training), chosen at random with ``holdout_seed`` independently of
the file order, as ``val``; ``train`` then leaves them out.
"""

from __future__ import annotations

import math
from pathlib import Path

from wsolbench import hookimpl
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Hierarchy
from wsolbench_plugins.datasets._common import (
    BoxDataset,
    Problems,
    Record,
    box_problem,
    boxes_array,
    check_images_exist,
    check_options,
    finish_dataset,
    per_class_subset,
    read_lines,
    require_file,
    require_root,
)
from wsolbench_plugins.datasets._metadata import (
    SplitFiles,
    box_records,
    metadata_folder,
    present_classes,
    read_split,
)
from wsolbench_plugins.hierarchies import cub_hierarchy, dataset_hierarchy

NAME = "cub"
SPLITS = ("train", "val", "test")
FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt", "classes.txt")


def convert_box(x: float, y: float, width: float, height: float) -> tuple[int, int, int, int]:
    """CUB ``x y width height`` (float pixels) -> inclusive ``x0, y0, x1, y1``."""
    x0, y0 = math.floor(x), math.floor(y)
    return x0, y0, max(x0, math.ceil(x + width) - 1), max(y0, math.ceil(y + height) - 1)


def _is_official(root: Path) -> bool:
    return any((root / name).is_file() for name in FILES) or (root / "CUB_200_2011" / "images.txt").is_file()


def _check_root(root: Path) -> None:
    missing = [name for name in FILES if not (root / name).is_file()]
    if not missing:
        if not (root / "images").is_dir():
            raise WsolbenchError(f"{root / 'images'}: image folder not found; extract the CUB_200_2011 archive there")
        return
    nested = root / "CUB_200_2011"
    if (nested / "images.txt").is_file():
        raise WsolbenchError(
            f"{root / missing[0]}: metadata file not found; the data is one level down: pass --data-root {nested}"
        )
    require_file(
        root / missing[0],
        "pass --data-root pointing at the CUB_200_2011 folder of the official archive, or at the image folder with "
        "metadata_root=<wsolevaluation>/metadata/CUB",
    )


class _Table:
    """One ``<id> <fields...>`` metadata file: per id its fields and line, and per-id problems."""

    def __init__(self, path: Path, fields: int, issues: dict[str, str], known: dict[str, str] | None):
        self.path = path
        self.values: dict[str, tuple[list[str], int]] = {}
        name = path.name
        for line, text in read_lines(path):
            parts = text.split(maxsplit=fields)
            image_id = parts[0]
            if known is not None and image_id not in known:
                raise WsolbenchError(
                    f"{path}:{line}: image id {image_id!r} is not in images.txt; the metadata files do not belong "
                    "together — use the files of one CUB_200_2011 archive"
                )
            if image_id in self.values:
                issues.setdefault(
                    image_id,
                    f"{path}:{line}: duplicate image id {image_id!r} (first at line {self.values[image_id][1]}); "
                    f"each id must appear once in {name}",
                )
                continue
            if len(parts) != fields + 1:
                issues.setdefault(
                    image_id, f"{path}:{line}: expected '<image_id>' and {fields} field(s), got {text!r}; fix the line"
                )
            self.values[image_id] = (parts[1:], line)


def _read_classes(path: Path) -> tuple[list[str], list[str], dict[str, int]]:
    """Class names and ``file:line`` in class-id order, and ``{class_id: label}``."""
    entries: list[tuple[int, str, int]] = []
    seen: dict[int, int] = {}
    for line, text in read_lines(path):
        parts = text.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise WsolbenchError(f"{path}:{line}: expected '<class_id> <class_name>', got {text!r}; fix the line")
        class_id = int(parts[0])
        if class_id in seen:
            raise WsolbenchError(
                f"{path}:{line}: duplicate class id {class_id} (first at line {seen[class_id]}); keep one entry"
            )
        seen[class_id] = line
        entries.append((class_id, parts[1].strip(), line))
    if not entries:
        raise WsolbenchError(f"{path}: no classes listed; use the classes.txt of the CUB_200_2011 archive")
    entries.sort()
    names = [name for _, name, _ in entries]
    where = [f"{path}:{line}" for _, _, line in entries]
    return names, where, {str(class_id): label for label, (class_id, _, _) in enumerate(entries)}


def load_cub(
    *,
    split: str,
    root: str | None = None,
    metadata_root: str | None = None,
    resize: int = 256,
    crop: int = 224,
    hierarchy: str | None = None,
    hierarchy_levels: str = "order,family",
    skip_bad: bool = False,
    verify_images: bool | None = None,
    holdout_per_class: int = 0,
    holdout_seed: int = 0,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> BoxDataset:
    """CUB-200-2011 (official layout, or wsolevaluation's metadata); hierarchy species -> family -> order.

    Args:
        split: ``"train"``, ``"val"`` (train-fullsup: CUBV2 with the metadata, else the
            held-out images, see ``holdout_per_class``) or ``"test"``.
        root: The ``CUB_200_2011`` folder, or with wsolevaluation's metadata the folder the
            image ids are relative to.
        metadata_root: wsolevaluation's ``metadata/CUB`` folder (default ``<root>/metadata/CUB``
            when ``root`` is not an official ``CUB_200_2011`` folder).
        resize: Training images are resized to ``resize x resize`` before the random crop.
        crop: Network input size (training crop; val/test images are resized to it).
        hierarchy: None: the shipped CUB taxonomy; ``"flat"``; or a YAML hierarchy path.
        hierarchy_levels: Coarse levels of the shipped taxonomy (``"order,family"``, ``"family"``, ...).
        skip_bad: Skip bad samples (listed in ``dataset.skipped`` and one warning) instead of failing.
        verify_images: Decode every image at construction (default: as ``skip_bad``).
        holdout_per_class: Official layout only: hold out this many training images of every
            class (at most all but one) as ``val``; ``train`` leaves them out. 0: no ``val``.
        holdout_seed: Seed of the held-out choice (changing it changes ``train`` too).
        val_per_class: Keep at most this many ``val`` images per class (seeded choice; None or 0: all).
        val_seed: Seed of that choice.
    """
    check_options(
        NAME, split=split, splits=SPLITS, resize=resize, crop=crop, val_per_class=val_per_class, val_seed=val_seed
    )
    for option, value in (("holdout_per_class", holdout_per_class), ("holdout_seed", holdout_seed)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UsageError(f"dataset 'cub': {option}={value!r} must be an integer >= 0")
    base = require_root(NAME, root, "the CUB_200_2011 folder")
    if metadata_root or (not _is_official(base) and (base / "metadata" / "CUB").is_dir()):
        if holdout_per_class:
            raise UsageError(
                "dataset 'cub': holdout_per_class applies to the official CUB_200_2011 layout only; wsolevaluation's "
                "metadata has its own val split (CUBV2): drop the option"
            )
        metadata = metadata_folder(base, metadata_root, "CUB")
        classes = present_classes(metadata)
        names, where = list(classes.names), list(classes.where)
        problems = Problems(NAME, split)
        table = read_split(
            SplitFiles.find(metadata, split, "CUB", localization=split != "train"),
            classes.fine_of,
            problems,
            classes_hint="labels are integers >= 0",
        )
        records = box_records(table, base, problems, need_boxes=split != "train")
    else:
        _check_root(base)
        if split == "val" and not holdout_per_class:
            raise UsageError(
                "dataset 'cub': the official CUB_200_2011 archive has no val split; pass holdout_per_class=N to hold "
                "out N training images per class (the protocol uses 5), or use wsolevaluation's metadata with CUBV2 "
                "(metadata_root=PATH)"
            )
        names, where, records, problems = _official_records(base, split, holdout_per_class, holdout_seed)
    hier: Hierarchy = dataset_hierarchy(
        hierarchy, names, lambda: cub_hierarchy(names, levels=hierarchy_levels, where=where)
    )
    check_images_exist([r for r in records if r.image_id not in problems], problems)
    return finish_dataset(
        NAME,
        split,
        records,
        problems,
        hier,
        resize=resize,
        crop=crop,
        skip_bad=skip_bad,
        verify_images=verify_images,
        val_per_class=val_per_class,
        val_seed=val_seed,
    )


def _holdout(
    images: _Table, labels: _Table, splits: _Table, label_of: dict[str, int], per_class: int, seed: int
) -> set[str]:
    """Ids of the training images held out as ``val``: per class a seeded choice of
    ``per_class`` (all but one at most), independent of the order of the files."""
    candidates = []
    for image_id, (fields, _) in images.values.items():
        flag = splits.values.get(image_id, ([None], 0))[0]
        label = labels.values.get(image_id, ([None], 0))[0]
        if flag and flag[0] == "1" and label and label[0] in label_of and fields:
            candidates.append((fields[0], image_id, label_of[label[0]]))
    if not per_class or not candidates:
        return set()
    candidates.sort()
    chosen = per_class_subset([label for _, _, label in candidates], per_class, seed, leave=1)
    return {candidates[i][1] for i in chosen}


def _official_records(
    base: Path, split: str, holdout_per_class: int, holdout_seed: int
) -> tuple[list[str], list[str], list[Record], Problems]:
    """Class names and ``file:line``, records and problems of ``split`` in the official layout."""
    class_names, class_where, label_of = _read_classes(base / "classes.txt")
    issues: dict[str, str] = {}
    images = _Table(base / "images.txt", 1, issues, None)
    known = {image_id: fields[0] if fields else "" for image_id, (fields, _) in images.values.items()}
    labels = _Table(base / "image_class_labels.txt", 1, issues, known)
    splits = _Table(base / "train_test_split.txt", 1, issues, known)
    boxes = _Table(base / "bounding_boxes.txt", 4, issues, known)
    held_out = _holdout(images, labels, splits, label_of, holdout_per_class, holdout_seed)

    path_ids: dict[str, tuple[str, int]] = {}
    for image_id, (fields, line) in images.values.items():
        if fields:
            first = path_ids.setdefault(fields[0], (image_id, line))
            if first[0] != image_id:
                message = (
                    f"{images.path}:{line}: ids {first[0]!r} (line {first[1]}) and {image_id!r} list the same image "
                    f"{fields[0]!r}; each image must appear once"
                )
                issues.setdefault(first[0], message)
                issues.setdefault(image_id, message)

    records: list[Record] = []
    problems = Problems(NAME, split)
    image_root, images_source, boxes_source = base / "images", str(images.path), str(boxes.path)
    for image_id, (fields, line) in images.values.items():
        where = f"{images.path}:{line}"
        rel = fields[0] if fields else ""
        split_entry = splits.values.get(image_id)
        flag = split_entry[0][0] if split_entry and split_entry[0] else None
        if flag is not None and flag not in ("0", "1"):
            issues.setdefault(
                image_id, f"{splits.path}:{split_entry[1]}: is_train must be 1 or 0, got {flag!r}; fix the line"
            )
            flag = None
        if flag is not None and {"0": "test", "1": "val" if image_id in held_out else "train"}[flag] != split:
            continue  # belongs to another split
        problem = issues.get(image_id)
        if problem is None and flag is None:
            problem = (
                f"{where}: image {image_id!r} has no entry in {splits.path.name}; add '{image_id} 1' or '{image_id} 0'"
            )
        label = -1
        if problem is None:
            label_entry = labels.values.get(image_id)
            if label_entry is None:
                problem = f"{where}: image {image_id!r} has no class in {labels.path.name}; add '{image_id} <class_id>'"
            elif label_entry[0][0] not in label_of:
                problem = (
                    f"{labels.path}:{label_entry[1]}: class id {label_entry[0][0]!r} of image {image_id!r} is not "
                    "in classes.txt; use a class id listed there"
                )
            else:
                label = label_of[label_entry[0][0]]
        box = None
        box_line = 0
        if problem is None:
            box_entry = boxes.values.get(image_id)
            if box_entry is None:
                problem = (
                    f"{where}: image {image_id!r} has no box in {boxes.path.name}; add '{image_id} x y width height'"
                )
            else:
                box_line = box_entry[1]
                box_where = f"{boxes.path}:{box_line}"
                try:
                    x, y, w, h = (float(v) for v in box_entry[0])
                    if not all(math.isfinite(v) for v in (x, y, w, h)):
                        raise ValueError
                except ValueError:
                    problem = (
                        f"{box_where}: expected numbers '<id> x y width height', got {box_entry[0]!r}; fix the line"
                    )
                else:
                    if w <= 0 or h <= 0:
                        problem = (
                            f"{box_where}: box of image {image_id!r} has width {w:g} and height {h:g}; both must be "
                            "positive (x1 < x0 otherwise)"
                        )
                    else:
                        box = convert_box(x, y, w, h)
                        bad = box_problem(box, None)
                        if bad:
                            problem = f"{box_where}: image {image_id!r}: {bad}"
        record = Record(
            image_id=rel or image_id,
            root=image_root,
            label=label,
            boxes=boxes_array([box] if box is not None else []),
            source=images_source,
            line=line,
            box_source=boxes_source,
            box_lines=(box_line,) if box is not None else (),
        )
        records.append(record)
        if problem is not None:
            problems.add(record.image_id, problem)

    return class_names, class_where, records, problems


@hookimpl
def register_datasets(register):
    """Register ``cub``."""
    register(NAME, load_cub)
