"""A custom dataset: a folder of images plus one CSV or YAML annotation file.

CSV (header required; one row per box, so an image with several boxes has several rows)::

    image,label,x0,y0,x1,y1,split
    birds/a.jpg,cardinal,12,30,140,118,train
    birds/b.jpg,blue_jay,,,,,train          <- no box (allowed in train only)
    birds/c.jpg,cardinal,5,5,60,70,test
    birds/c.jpg,cardinal,80,10,120,50,test  <- a second box of the same image

An optional ``mask`` column names a mask image (same size as the image; 0 background, 1 or
255 object, other values ignored).

YAML (one entry per image)::

    images:
      - {image: birds/a.jpg, label: cardinal, split: train, boxes: [[12, 30, 140, 118]]}
      - {image: birds/c.jpg, label: cardinal, split: test, boxes: [[5, 5, 60, 70], [80, 10, 120, 50]],
         mask: masks/c.png}

Paths are relative to ``root``; boxes are inclusive integer pixel corners ``x0,y0,x1,y1`` of
the original image; splits are ``train``, ``val`` or ``test`` (val/test images need a box).
Classes are the distinct labels of the whole file in sorted order (label = index), so
every split agrees; their hierarchy is flat unless ``hierarchy=`` names a YAML hierarchy.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

from wsolbench import hookimpl
from wsolbench.errors import WsolbenchError
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
    require_root,
)
from wsolbench_plugins.datasets._images import one_line
from wsolbench_plugins.datasets._yaml import YamlMap, read_yaml, yaml_line
from wsolbench_plugins.hierarchies import dataset_hierarchy

NAME = "folder"
SPLITS = ("train", "val", "test")
COLUMNS = ("image", "label", "x0", "y0", "x1", "y1", "split")
OPTIONAL_COLUMNS = ("mask",)
ENTRY_KEYS = ("image", "label", "split", "boxes", "mask")
DEFAULT_FILES = ("annotations.csv", "annotations.yaml", "annotations.yml")


@dataclass
class _Row:
    """One box (or one box-less image) of the annotation file."""

    where: str
    line: int
    image: str
    label: str
    split: str
    box: tuple[int, int, int, int] | None
    mask: str


def _resolve_annotations(base: Path, annotations: str | None) -> Path:
    if not annotations:
        for name in DEFAULT_FILES:
            if (base / name).is_file():
                return base / name
        raise WsolbenchError(
            f"{base}: no annotation file; add {DEFAULT_FILES[0]} (or .yaml) there or pass annotations=PATH "
            "(format in docs/datasets.md)"
        )
    path = Path(annotations).expanduser()
    if not path.is_absolute() and not path.is_file():
        path = base / path
    if not path.is_file():
        raise WsolbenchError(f"{path}: annotation file not found; pass annotations=PATH of a CSV or YAML file")
    return path


def _coordinate(value: object) -> int:
    """An integer pixel coordinate from a CSV string or a YAML number."""
    if isinstance(value, bool):
        raise ValueError
    number = float(value)
    if not math.isfinite(number) or number != int(number):
        raise ValueError
    return int(number)


def _box(values: list[object], where: str) -> tuple[tuple[int, int, int, int] | None, str | None]:
    """``(box, None)`` or ``(None, problem)``; four empty values are no box."""
    if all(v is None or str(v).strip() == "" for v in values):
        return None, None
    try:
        box = tuple(_coordinate(v) for v in values)
    except (TypeError, ValueError):
        return None, (
            f"{where}: box {', '.join(map(str, values))} must be four integer pixel coordinates x0,y0,x1,y1 "
            "(or all four empty for no box)"
        )
    problem = box_problem(box, None)
    return (None, f"{where}: {problem}") if problem else (box, None)


def _read_csv(path: Path, issues: dict[str, str]) -> list[_Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise WsolbenchError(f"{path}: not a UTF-8 text file ({one_line(error)}); re-export it as UTF-8") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None:
        raise WsolbenchError(f"{path}: empty annotation file; its first line must be {','.join(COLUMNS)}")
    columns = [c.strip().lower() for c in header]
    missing = [c for c in COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(columns)) != len(columns):
        what = (
            f"missing column {missing[0]!r}"
            if missing
            else (f"unknown column {unknown[0]!r}" if unknown else "a repeated column")
        )
        raise WsolbenchError(
            f"{path}:1: {what}; the header must be {','.join(COLUMNS)} (plus optional {','.join(OPTIONAL_COLUMNS)})"
        )
    rows = []
    for fields in reader:
        line = reader.line_num
        if not any(f.strip() for f in fields):
            continue
        where = f"{path}:{line}"
        fields = [f.strip() for f in fields]
        position = columns.index("image")
        image = fields[position] if position < len(fields) else ""
        if len(fields) != len(columns):
            key = image or f"<line {line}>"
            issues.setdefault(key, f"{where}: expected {len(columns)} fields ({','.join(columns)}), got {len(fields)}")
            rows.append(_Row(where, line, key, "", "", None, ""))
            continue
        value = dict(zip(columns, fields, strict=True))
        rows.append(
            _row(
                where,
                line,
                value["image"],
                value["label"],
                value["split"],
                [value[c] for c in ("x0", "y0", "x1", "y1")],
                value.get("mask", ""),
                issues,
            )
        )
    return rows


def _row(where, line, image, label, split, box_values, mask, issues) -> _Row:
    image = str(image or "").strip()
    label = "" if label is None else str(label).strip()
    split = str(split or "").strip().lower()
    key = image or f"<{where}>"
    if not image:
        issues.setdefault(key, f"{where}: empty image path; give the image's path relative to the data root")
    if not label:
        issues.setdefault(key, f"{where}: image {image!r} has no label; give its class name")
    if split not in SPLITS:
        issues.setdefault(key, f"{where}: image {image!r} has split {split!r}; use one of {', '.join(SPLITS)}")
    box, problem = _box(box_values, where)
    if problem:
        issues.setdefault(key, f"{problem} (image {image!r})")
    return _Row(where, line, key, label, split, box, str(mask or "").strip())


def _read_yaml(path: Path, issues: dict[str, str]) -> list[_Row]:
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise WsolbenchError(
            f"{path}: an annotation YAML is a mapping with a list 'images' of entries "
            "{image, label, split, boxes, mask}; see docs/datasets.md"
        )
    extra = [k for k in data if k != "images"]
    if extra:
        raise WsolbenchError(
            f"{path}:{yaml_line(data, extra[0])}: unknown key {extra[0]!r}; the file has only 'images'"
        )
    images = data["images"]
    rows = []
    first: dict[str, int] = {}
    for entry, line in zip(images, images.item_lines, strict=True):
        where = f"{path}:{line}"
        if not isinstance(entry, YamlMap):
            raise WsolbenchError(f"{where}: an image entry must be a mapping with keys {', '.join(ENTRY_KEYS)}")
        unknown = [k for k in entry if k not in ENTRY_KEYS]
        if unknown:
            raise WsolbenchError(
                f"{path}:{yaml_line(entry, unknown[0])}: unknown key {unknown[0]!r}; "
                f"entries take {', '.join(ENTRY_KEYS)}"
            )
        image = str(entry.get("image") or "").strip()
        if image in first:
            issues.setdefault(
                image,
                f"{where}: image {image!r} has a second entry (first at line {first[image]}); give each image one "
                "entry listing all its boxes",
            )
            continue
        first[image] = line
        boxes = entry.get("boxes") or []
        if not isinstance(boxes, list) or any(not isinstance(b, list) or len(b) != 4 for b in boxes):
            issues.setdefault(image or f"<{where}>", f"{where}: 'boxes' must be a list of [x0, y0, x1, y1] lists")
            boxes = []
        for box in boxes or [[None] * 4]:
            rows.append(
                _row(where, line, image, entry.get("label"), entry.get("split"), list(box), entry.get("mask"), issues)
            )
    return rows


def load_folder(
    *,
    split: str,
    root: str | None = None,
    annotations: str | None = None,
    resize: int = 256,
    crop: int = 224,
    hierarchy: str | None = None,
    skip_bad: bool = False,
    verify_images: bool | None = None,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> BoxDataset:
    """A folder of images with a CSV/YAML annotation file (image,label,x0,y0,x1,y1,split).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: The image folder (paths in the annotation file are relative to it).
        annotations: The annotation file (absolute, or relative to ``root``); default
            ``annotations.csv`` / ``annotations.yaml`` in ``root``.
        resize: Training images are resized to ``resize x resize`` before the random crop.
        crop: Network input size (training crop; val/test images are resized to it).
        hierarchy: None or ``"flat"``: no hierarchy; else a YAML hierarchy path.
        skip_bad: Skip bad samples (listed in ``dataset.skipped`` and one warning) instead of failing.
        verify_images: Decode every image at construction (default: as ``skip_bad``).
        val_per_class: Keep at most this many ``val`` images per class (seeded choice; None or 0: all).
        val_seed: Seed of that choice.
    """
    check_options(
        NAME, split=split, splits=SPLITS, resize=resize, crop=crop, val_per_class=val_per_class, val_seed=val_seed
    )
    base = require_root(NAME, root, "the image folder")
    path = _resolve_annotations(base, annotations)
    issues: dict[str, str] = {}
    rows = _read_csv(path, issues) if path.suffix.lower() == ".csv" else _read_yaml(path, issues)
    if not rows:
        raise WsolbenchError(f"{path}: no images listed; add one line per box (format in docs/datasets.md)")

    class_names = sorted({row.label for row in rows if row.label})
    hier: Hierarchy = dataset_hierarchy(hierarchy, class_names, lambda: Hierarchy.flat(class_names))
    label_of = {name: index for index, name in enumerate(class_names)}

    groups: dict[str, list[_Row]] = {}
    for row in rows:
        groups.setdefault(row.image, []).append(row)
    records: list[Record] = []
    problems = Problems(NAME, split)
    source = str(path)
    for image, group in groups.items():
        head = group[0]
        for row in group[1:]:
            for field, what in (("label", "label"), ("split", "split"), ("mask", "mask")):
                if getattr(row, field) != getattr(head, field):
                    issues.setdefault(
                        image,
                        f"{row.where}: image {image!r} has {what} {getattr(row, field)!r} but {getattr(head, field)!r} "
                        f"at {head.where}; all rows of an image must agree",
                    )
        splits = {row.split for row in group}
        if image not in issues and head.split != split:
            continue
        if image in issues and split not in splits and splits <= set(SPLITS):
            continue
        boxes = [row.box for row in group if row.box is not None]
        if image not in issues and split != "train" and not boxes:
            issues[image] = f"{head.where}: {split} image {image!r} has no box; evaluation needs at least one box"
        record = Record(
            image_id=image,
            root=base,
            label=label_of.get(head.label, -1),
            boxes=boxes_array(boxes),
            source=source,
            line=head.line,
            box_source=source,
            box_lines=tuple(row.line for row in group if row.box is not None),
            mask=head.mask or None,
        )
        records.append(record)
        if image in issues:
            problems.add(image, issues[image])
    check_images_exist([r for r in records if r.image_id not in problems], problems)
    for record in records:
        if record.mask_path is not None and record.image_id not in problems and not record.mask_path.is_file():
            problems.add(
                record.image_id,
                f"{record.where}: mask file {str(record.mask_path)!r} of image {record.image_id!r} is missing",
            )
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


@hookimpl
def register_datasets(register):
    """Register ``folder``."""
    register(NAME, load_folder)
