"""OpenImages30k (Choe et al., CVPR 2020): 100 classes of OpenImagesV5 with instance masks.

The layout of a user who followed wsolevaluation's README (``OpenImages_images.zip`` and
``OpenImages_annotations.zip`` unzipped into one folder, its ``metadata/OpenImages`` copied
next to them)::

    <root>/<image id>                       train/01226z/ed9d2feb6d44cff3.jpg
    <root>/<mask path>                      val/01226z/32fdab44f6e415f1_m01226z_7dab3053.png
    <metadata_root>/<split>/image_ids.txt   <image id>
    <metadata_root>/<split>/class_labels.txt  <image id>,<class label>
    <metadata_root>/<split>/image_sizes.txt   <image id>,<width>,<height>  (optional; empty in the release)
    <metadata_root>/<split>/localization.txt  <image id>,<mask>,<ignore mask>  (val and test)

``metadata_root`` defaults to ``<root>/metadata/OpenImages``. Splits: ``train`` (29,819
images, labels only), ``val`` (train-fullsup, 2,500) and ``test`` (5,000).
``localization.txt`` has one line per object instance; the ignore mask is named on the
image's first line and the field is empty on its other lines.

The sample's mask (as wsolevaluation's ``get_mask``): object (1) where any instance mask is
nonzero, ignored (:data:`~wsolbench_plugins.datasets._common.MASK_IGNORE`, skipped by PxAP)
where the ignore mask is nonzero outside every instance, background (0) elsewhere; a mask of
another size than its image is resized to it, and the transforms resize masks with nearest
neighbour. PxAP is the dataset's metric. Boxes are a wsolbench addition (the release has
none; the box metrics need them): one box around the object pixels of each instance.

The classes are the labels found in the metadata (100 in the release; a miniature copy
has fewer), numbered 0..K-1 in increasing label order and named by their images' folder
(the OpenImages class id, e.g. ``01226z`` for ``/m/01226z``). The hierarchy is flat unless
``hierarchy=`` names a YAML hierarchy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from wsolbench import hookimpl
from wsolbench.specs import Hierarchy
from wsolbench_plugins.datasets._common import (
    NO_BOXES,
    BoxDataset,
    Problems,
    Record,
    check_images_exist,
    check_options,
    existing_files,
    finish_dataset,
    read_lines,
    require_root,
)
from wsolbench_plugins.datasets._metadata import (
    SPLITS,
    SplitFiles,
    SplitTable,
    fields_of,
    metadata_folder,
    present_classes,
    read_split,
)
from wsolbench_plugins.hierarchies import dataset_hierarchy

NAME = "openimages"


@dataclass
class _Masks:
    """The mask files of one image: ``(path, line)`` per instance, and the ignore mask."""

    instances: list[tuple[str, int]] = field(default_factory=list)
    ignore: tuple[str, int] | None = None


def _read_masks(table: SplitTable, problems: Problems) -> dict[str, _Masks]:
    """``{image_id: its masks}`` from ``localization.txt`` (lines ``image,mask,ignore``)."""
    path = table.files.localization
    out: dict[str, _Masks] = {}
    if not path.is_file():
        return out
    for line, text in read_lines(path):
        parts = fields_of(text)
        image_id = parts[0]
        if image_id not in table.listed:
            continue
        where = f"{path}:{line}"
        if len(parts) != 3 or not parts[1]:
            problems.add(
                image_id,
                f"{where}: expected '<image_id>,<mask>,<ignore mask>' (the ignore field empty on an image's extra "
                f"lines), got {text!r}; fix the line",
            )
            continue
        entry = out.setdefault(image_id, _Masks())
        if parts[2]:
            if entry.ignore is not None and entry.ignore[0] != parts[2]:
                problems.add(
                    image_id,
                    f"{where}: image {image_id!r} has a second ignore mask {parts[2]!r} (first at line "
                    f"{entry.ignore[1]}); an image has one ignore mask: leave the field empty on its other lines",
                )
            entry.ignore = entry.ignore or (parts[2], line)
        if all(mask != parts[1] for mask, _ in entry.instances):
            entry.instances.append((parts[1], line))
    return out


def load_openimages(
    *,
    split: str,
    root: str | None = None,
    metadata_root: str | None = None,
    resize: int = 256,
    crop: int = 224,
    hierarchy: str | None = None,
    skip_bad: bool = False,
    verify_images: bool | None = None,
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> BoxDataset:
    """OpenImages30k (wsolevaluation's layout): instance masks with ignore regions; PxAP.

    Args:
        split: ``"train"``, ``"val"`` (train-fullsup) or ``"test"``.
        root: The folder of the images and masks (the image ids and mask paths are relative to it).
        metadata_root: Folder holding ``train/``, ``val/``, ``test/`` metadata
            (default ``<root>/metadata/OpenImages``).
        resize: Training images are resized to ``resize x resize`` before the random crop.
        crop: Network input size (training crop; val/test images are resized to it).
        hierarchy: None or ``"flat"``: no hierarchy; else a YAML hierarchy path.
        skip_bad: Skip bad samples (listed in ``dataset.skipped`` and one warning) instead of failing.
        verify_images: Decode every image and mask at construction (default: as ``skip_bad``).
        val_per_class: Keep at most this many ``val`` images per class (seeded choice; None or 0: all).
        val_seed: Seed of that choice.
    """
    check_options(
        NAME, split=split, splits=SPLITS, resize=resize, crop=crop, val_per_class=val_per_class, val_seed=val_seed
    )
    base = require_root(NAME, root, "the OpenImages folder holding the images and masks")
    metadata = metadata_folder(base, metadata_root, "OpenImages")
    classes = present_classes(metadata)
    names = list(classes.names)
    hier = dataset_hierarchy(hierarchy, names, lambda: Hierarchy.flat(names))
    files = SplitFiles.find(metadata, split, "OpenImages", localization=split != "train")
    problems = Problems(NAME, split)
    table = read_split(files, classes.fine_of, problems, classes_hint="labels are integers >= 0")
    masks = _read_masks(table, problems)

    records: list[Record] = []
    ids_source, masks_source = str(files.ids), str(files.localization)
    for image_id in table.order:
        entry = masks.get(image_id)
        if entry is None and split != "train":
            problems.add(
                image_id,
                f"{table.where(image_id)}: image {image_id!r} has no mask in {files.localization}; add "
                f"'{image_id},<mask>,<ignore mask>' (PxAP needs the masks of every {split} image)",
            )
        records.append(
            Record(
                image_id=image_id,
                root=base,
                label=table.labels.get(image_id, (-1, 0))[0],
                boxes=NO_BOXES,
                source=ids_source,
                line=table.listed[image_id],
                size=table.size(image_id),
                instance_masks=tuple(mask for mask, _ in entry.instances) if entry else (),
                ignore_mask=entry.ignore[0] if entry and entry.ignore else None,
                mask_where=tuple(f"{masks_source}:{line}" for _, line in entry.instances) if entry else (),
            )
        )
    check_images_exist([r for r in records if r.image_id not in problems], problems)
    _check_masks_exist([r for r in records if r.image_id not in problems], problems)
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


def _check_masks_exist(records: list[Record], problems: Problems) -> None:
    """Mark every record one of whose mask files is missing (one directory listing per folder)."""
    wanted = []
    for record in records:
        where = list(record.mask_where) + ([record.mask_where[0]] if record.ignore_mask else [])
        rels = list(record.instance_masks) + ([record.ignore_mask] if record.ignore_mask else [])
        wanted.extend(
            (record, rel, at, os.path.normpath(os.path.join(record.root, rel)))
            for rel, at in zip(rels, where, strict=True)
        )
    present = existing_files([path for *_, path in wanted])
    for record, rel, at, path in wanted:
        if path not in present:
            problems.add(
                record.image_id,
                f"{at}: mask {rel!r} of image {record.image_id!r} is missing ({path}); restore it from wsolevaluation's "
                "OpenImages annotations or remove the line",
            )


@hookimpl
def register_datasets(register):
    """Register ``openimages``."""
    register(NAME, load_openimages)
