"""ImageNet-1k (ILSVRC 2012) with the WSOL-evaluation metadata layout (Choe et al., CVPR 2020).

Expected::

    <metadata_root>/<split>/image_ids.txt      <image_id>                    one per line
    <metadata_root>/<split>/class_labels.txt   <image_id>,<class index 0..999>
    <metadata_root>/<split>/image_sizes.txt    <image_id>,<width>,<height>    (optional; checks boxes early)
    <metadata_root>/<split>/localization.txt   <image_id>,<x0>,<y0>,<x1>,<y1> (one line per box; val/test)
    <root>/<image_id>                          the images, e.g. root/val/ILSVRC2012_val_00000001.JPEG

``metadata_root`` defaults to ``<root>/metadata/ILSVRC`` (copy the ``metadata/ILSVRC`` folder
of the WSOL-evaluation repository there). Splits: ``train`` (no boxes), ``val`` (the
held-out ImageNetV2 images of WSOL-evaluation) and ``test`` (the official ImageNet
validation set). Boxes are inclusive pixel corners of the original image.
``class_labels.txt`` may list more ids than ``image_ids.txt`` (the proxy subsets do): extra
entries there and in the other files are ignored.

Classes (option ``classes``):

* ``"imagenet"`` (default): the 1000 ImageNet-1k classes; labels are the class indices
  (sorted-wnid order) and the hierarchy is the shipped ``imagenet`` one (91 -> 425 -> 1000).
* ``"present"``: only the classes that occur in the ``class_labels.txt`` of any split under
  ``metadata_root``, relabelled 0..K-1 in increasing index order (so every split agrees);
  the shipped hierarchy is restricted to them. Use it for a miniature tree; labels outside
  0..999 then need ``hierarchy=flat`` or a YAML hierarchy.

A YAML hierarchy (``hierarchy=path``) names ImageNet classes by wnid (``n01440764``) or by
class index (``"0"``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    read_lines,
    require_file,
    require_root,
)
from wsolbench_plugins.hierarchies import dataset_hierarchy, imagenet_class_names, imagenet_hierarchy, imagenet_wnids

NAME = "ilsvrc"
SPLITS = ("train", "val", "test")
NUM_IMAGENET = 1000
CLASS_MODES = ("imagenet", "present")


def _ints(fields: list[str]) -> list[int] | None:
    try:
        return [int(v) for v in fields]
    except ValueError:
        return None


def _present_labels(metadata: Path) -> list[int]:
    """Sorted class indices found in any split's class_labels.txt under ``metadata``."""
    found: set[int] = set()
    for split in SPLITS:
        path = metadata / split / "class_labels.txt"
        if path.is_file():
            for _, text in read_lines(path):
                parts = [p.strip() for p in text.split(",")]
                if len(parts) == 2 and parts[1].lstrip("-").isdigit() and int(parts[1]) >= 0:
                    found.add(int(parts[1]))
    return sorted(found)


def _classes(mode: str, metadata: Path, hierarchy: str | None, levels: str) -> tuple[Hierarchy, dict[int, int]]:
    """The hierarchy and ``{label in the files: fine class id}``."""
    if mode not in CLASS_MODES:
        raise UsageError(f"dataset 'ilsvrc': unknown classes={mode!r}; choose one of: {', '.join(CLASS_MODES)}")
    if mode == "imagenet":
        indices = list(range(NUM_IMAGENET))
    else:
        indices = _present_labels(metadata)
        if not indices:
            raise WsolbenchError(
                f"{metadata}: no class_labels.txt with labels under any split; classes=present needs one"
            )
    wnids = imagenet_wnids()
    imagenet_names = imagenet_class_names()
    names = [imagenet_names[i] if i < NUM_IMAGENET else f"class_{i}" for i in indices]
    keys = [(wnids[i], str(i)) if i < NUM_IMAGENET else (str(i),) for i in indices]

    def default() -> Hierarchy:
        beyond = [i for i in indices if i >= NUM_IMAGENET]
        if beyond:
            raise WsolbenchError(
                f"{metadata}: label {beyond[0]} is not an ImageNet-1k class index (0..999); with such labels pass "
                "hierarchy=flat or a YAML hierarchy"
            )
        return imagenet_hierarchy(indices, levels=levels, class_names=names)

    hier = dataset_hierarchy(hierarchy, names, default, keys=keys)
    return hier, {label: index for index, label in enumerate(indices)}


def load_ilsvrc(
    *,
    split: str,
    root: str | None = None,
    metadata_root: str | None = None,
    classes: str = "imagenet",
    resize: int = 256,
    crop: int = 224,
    hierarchy: str | None = None,
    hierarchy_levels: str = "group_le100,group_le10",
    skip_bad: bool = False,
    verify_images: bool | None = None,
) -> BoxDataset:
    """ImageNet-1k with WSOL-evaluation metadata; hierarchy from WordNet.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: Folder the image ids are relative to.
        metadata_root: Folder holding ``train/``, ``val/``, ``test/`` metadata
            (default ``<root>/metadata/ILSVRC``).
        classes: ``"imagenet"`` (all 1000) or ``"present"`` (only the labels in the metadata).
        resize: Training images are resized to ``resize x resize`` before the random crop.
        crop: Network input size (training crop; val/test images are resized to it).
        hierarchy: None: the shipped ImageNet hierarchy; ``"flat"``; or a YAML hierarchy path.
        hierarchy_levels: Coarse columns of the shipped hierarchy, coarse to fine.
        skip_bad: Skip bad samples (listed in ``dataset.skipped`` and one warning) instead of failing.
        verify_images: Decode every image at construction (default: as ``skip_bad``).
    """
    check_options(NAME, split=split, splits=SPLITS, resize=resize, crop=crop)
    base = require_root(NAME, root, "the folder the ImageNet image ids are relative to")
    metadata = Path(metadata_root).expanduser() if metadata_root else base / "metadata" / "ILSVRC"
    if not metadata.is_dir():
        raise WsolbenchError(
            f"{metadata}: metadata folder not found; copy WSOL-evaluation's metadata/ILSVRC there or pass "
            "metadata_root=PATH"
        )
    folder = metadata / split
    fix = f"put the WSOL-evaluation metadata for split {split!r} in {folder} (or pass metadata_root=PATH)"
    ids_path = require_file(folder / "image_ids.txt", fix)
    labels_path = require_file(folder / "class_labels.txt", fix)
    sizes_path = folder / "image_sizes.txt"
    boxes_path = folder / "localization.txt"
    if split != "train":
        require_file(boxes_path, f"split {split!r} needs boxes: {fix}")
    hier, fine_of = _classes(classes, metadata, hierarchy, hierarchy_levels)

    problems = Problems(NAME, split)
    order: list[str] = []
    listed: dict[str, int] = {}
    for line, image_id in read_lines(ids_path):
        if image_id in listed:
            problems.add(
                image_id,
                f"{ids_path}:{line}: duplicate image id {image_id!r} (first at line {listed[image_id]}); list each "
                "image once",
            )
            continue
        listed[image_id] = line
        order.append(image_id)

    labels: dict[str, tuple[int, int]] = {}
    for image_id, line, text, parts in _first_rows(labels_path, listed, problems, "label"):
        value = _ints(parts[1:]) if len(parts) == 2 else None
        if value is None:
            problems.add(
                image_id, f"{labels_path}:{line}: expected '<image_id>,<class index>', got {text!r}; fix the line"
            )
        elif value[0] not in fine_of:
            problems.add(
                image_id,
                f"{labels_path}:{line}: class index {value[0]} of image {image_id!r} is not one of the dataset's "
                f"classes ({'0..999' if classes == 'imagenet' else 'see classes='}); fix the label",
            )
        labels[image_id] = (fine_of.get(value[0], -1) if value else -1, line)

    sizes: dict[str, tuple[tuple[int, int], int]] = {}
    if sizes_path.is_file():
        for image_id, line, text, parts in _first_rows(sizes_path, listed, problems, "size"):
            value = _ints(parts[1:]) if len(parts) == 3 else None
            if value is None or min(value) < 1:
                problems.add(image_id, f"{sizes_path}:{line}: expected '<image_id>,<width>,<height>', got {text!r}")
                continue
            sizes[image_id] = ((value[0], value[1]), line)

    boxes: dict[str, list[tuple[list[int], int]]] = {}
    if boxes_path.is_file():
        for line, text in read_lines(boxes_path):
            parts = [p.strip() for p in text.split(",")]
            image_id = parts[0]
            if image_id not in listed:
                continue
            where = f"{boxes_path}:{line}"
            value = _ints(parts[1:]) if len(parts) == 5 else None
            if value is None:
                problems.add(image_id, f"{where}: expected '<image_id>,<x0>,<y0>,<x1>,<y1>' (integers), got {text!r}")
                continue
            size = sizes[image_id][0] if image_id in sizes else None
            bad = box_problem(value, size)
            if bad:
                problems.add(image_id, f"{where}: image {image_id!r}: {bad}")
            boxes.setdefault(image_id, []).append((value, line))

    records: list[Record] = []
    ids_source, boxes_source = str(ids_path), str(boxes_path)
    for image_id in order:
        where = f"{ids_path}:{listed[image_id]}"
        if image_id not in labels:
            problems.add(
                image_id, f"{where}: image {image_id!r} has no class in {labels_path}; add '{image_id},<index>'"
            )
        if split != "train" and image_id not in boxes:
            problems.add(
                image_id,
                f"{where}: image {image_id!r} has no box in {boxes_path}; evaluation needs at least one box per image",
            )
        entries = boxes.get(image_id, [])
        records.append(
            Record(
                image_id=image_id,
                root=base,
                label=labels.get(image_id, (-1, 0))[0],
                boxes=boxes_array([box for box, _ in entries]),
                source=ids_source,
                line=listed[image_id],
                box_source=boxes_source,
                box_lines=tuple(line for _, line in entries),
                size=sizes[image_id][0] if image_id in sizes else None,
            )
        )
    check_images_exist([r for r in records if r.image_id not in problems], problems)
    return finish_dataset(
        NAME, split, records, problems, hier, resize=resize, crop=crop, skip_bad=skip_bad, verify_images=verify_images
    )


def _first_rows(
    path: Path, listed: Mapping[str, int], problems: Problems, what: str
) -> Iterator[tuple[str, int, str, list[str]]]:
    """``(image_id, line, text, fields)`` of the rows of a one-row-per-image metadata file that
    name a listed image; a repeated image id is reported (``what``: "label", "size") and skipped."""
    first: dict[str, int] = {}
    for line, text in read_lines(path):
        parts = [p.strip() for p in text.split(",")]
        image_id = parts[0]
        if image_id not in listed:
            continue
        if image_id in first:
            problems.add(
                image_id,
                f"{path}:{line}: duplicate image id {image_id!r} (first at line {first[image_id]}); give "
                f"each image one {what}",
            )
            continue
        first[image_id] = line
        yield image_id, line, text, parts


@hookimpl
def register_datasets(register):
    """Register ``ilsvrc``."""
    register(NAME, load_ilsvrc)
