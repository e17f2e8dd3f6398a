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

from pathlib import Path

from wsolbench import hookimpl
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Hierarchy
from wsolbench_plugins.datasets._common import (
    BoxDataset,
    Problems,
    check_images_exist,
    check_options,
    finish_dataset,
    require_root,
)
from wsolbench_plugins.datasets._metadata import (
    SPLITS,
    SplitFiles,
    box_records,
    metadata_folder,
    read_split,
    scan_labels,
)
from wsolbench_plugins.hierarchies import dataset_hierarchy, imagenet_class_names, imagenet_hierarchy, imagenet_wnids

NAME = "ilsvrc"
NUM_IMAGENET = 1000
CLASS_MODES = ("imagenet", "present")


def _classes(mode: str, metadata: Path, hierarchy: str | None, levels: str) -> tuple[Hierarchy, dict[int, int]]:
    """The hierarchy and ``{label in the files: fine class id}``."""
    if mode not in CLASS_MODES:
        raise UsageError(f"dataset 'ilsvrc': unknown classes={mode!r}; choose one of: {', '.join(CLASS_MODES)}")
    if mode == "imagenet":
        indices = list(range(NUM_IMAGENET))
    else:
        indices = sorted(scan_labels(metadata))
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
    val_per_class: int | None = None,
    val_seed: int = 0,
) -> BoxDataset:
    """ImageNet-1k with WSOL-evaluation metadata; hierarchy from WordNet.

    Args:
        split: ``"train"``, ``"val"`` (ImageNetV2, train-fullsup) or ``"test"`` (the ImageNet
            validation set).
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
        val_per_class: Keep at most this many ``val`` images per class (seeded choice; None or 0: all).
        val_seed: Seed of that choice.
    """
    check_options(
        NAME, split=split, splits=SPLITS, resize=resize, crop=crop, val_per_class=val_per_class, val_seed=val_seed
    )
    base = require_root(NAME, root, "the folder the ImageNet image ids are relative to")
    metadata = metadata_folder(base, metadata_root, "ILSVRC")
    files = SplitFiles.find(metadata, split, "ILSVRC", localization=split != "train")
    hier, fine_of = _classes(classes, metadata, hierarchy, hierarchy_levels)
    problems = Problems(NAME, split)
    table = read_split(files, fine_of, problems, classes_hint="0..999" if classes == "imagenet" else "see classes=")
    records = box_records(table, base, problems, need_boxes=split != "train")
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


@hookimpl
def register_datasets(register):
    """Register ``ilsvrc``."""
    register(NAME, load_ilsvrc)
