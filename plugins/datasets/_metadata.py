"""wsolevaluation's metadata layout (Choe et al., CVPR 2020), read by ``ilsvrc``, ``cub`` and ``openimages``.

One folder per split under the dataset's metadata folder (``metadata/ILSVRC``,
``metadata/CUB``, ``metadata/OpenImages`` in the wsolevaluation repository)::

    <metadata>/<split>/image_ids.txt      <image_id>                      one per line
    <metadata>/<split>/class_labels.txt   <image_id>,<integer class label>
    <metadata>/<split>/image_sizes.txt    <image_id>,<width>,<height>      (optional; may be empty)
    <metadata>/<split>/localization.txt   boxes  <image_id>,<x0>,<y0>,<x1>,<y1>   (one line per box)
                                          or masks  <image_id>,<mask>,<ignore mask>  (one line per instance)

The image ids are paths relative to the data root. ``class_labels.txt`` and the other
files may list more ids than ``image_ids.txt`` (the proxy subsets do): entries of ids
that are not listed are ignored. wsolevaluation's splits are ``train`` (train-weaksup),
``val`` (train-fullsup: ImageNetV2, CUBV2, OpenImages30k val) and ``test``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wsolbench.errors import WsolbenchError
from wsolbench_plugins.datasets._common import Problems, Record, box_problem, boxes_array, read_lines, require_file

#: wsolevaluation's split folders.
SPLITS = ("train", "val", "test")


def metadata_folder(base: Path, metadata_root: str | os.PathLike | None, default: str) -> Path:
    """The metadata folder: ``metadata_root``, or ``<base>/metadata/<default>``; a one-line error if absent."""
    metadata = Path(metadata_root).expanduser() if metadata_root else base / "metadata" / default
    if not metadata.is_dir():
        raise WsolbenchError(
            f"{metadata}: metadata folder not found; copy wsolevaluation's metadata/{default} there or pass "
            "metadata_root=PATH"
        )
    return metadata


@dataclass(frozen=True)
class SplitFiles:
    """The metadata files of one split (``sizes`` and ``localization`` may be absent)."""

    split: str
    folder: Path
    ids: Path
    labels: Path
    sizes: Path
    localization: Path

    @classmethod
    def find(cls, metadata: Path, split: str, default: str, *, localization: bool) -> SplitFiles:
        """The files of ``split``; missing ids or labels (or ``localization`` when required) are an error."""
        folder = metadata / split
        fix = f"put wsolevaluation's metadata/{default}/{split} files in {folder} (or pass metadata_root=PATH)"
        files = cls(
            split,
            folder,
            require_file(folder / "image_ids.txt", fix),
            require_file(folder / "class_labels.txt", fix),
            folder / "image_sizes.txt",
            folder / "localization.txt",
        )
        if localization:
            require_file(files.localization, f"split {split!r} needs localization: {fix}")
        return files


def _ints(fields: list[str]) -> list[int] | None:
    try:
        return [int(v) for v in fields]
    except ValueError:
        return None


def fields_of(text: str) -> list[str]:
    """The comma-separated fields of a metadata line, stripped."""
    return [part.strip() for part in text.split(",")]


# --------------------------------------------------------------------------- classes


@dataclass
class LabelInfo:
    """What the metadata says about one integer class label."""

    folders: set[str] = field(default_factory=set)
    where: str = ""


def scan_labels(metadata: Path) -> dict[int, LabelInfo]:
    """Every non-negative label of every split's ``class_labels.txt``, with the folders of its images.

    The folder of an image is the last folder of its id (``001.Black_footed_Albatross`` for
    ``001.Black_footed_Albatross/x.jpg``, ``01226z`` for ``train/01226z/x.jpg``); ``where`` is
    the first ``file:line`` giving the label. Malformed lines are left to the split's reader.
    """
    found: dict[int, LabelInfo] = {}
    for split in SPLITS:
        path = metadata / split / "class_labels.txt"
        if not path.is_file():
            continue
        for line, text in read_lines(path):
            parts = fields_of(text)
            if len(parts) != 2 or not parts[1].isdigit():
                continue
            info = found.setdefault(int(parts[1]), LabelInfo(where=f"{path}:{line}"))
            info.folders.add(os.path.basename(os.path.dirname(parts[0])))
    return found


@dataclass(frozen=True)
class Classes:
    """The classes of a dataset read from its metadata.

    Attributes:
        labels: The labels of the files, ascending; class id = position.
        names: Per class, the folder its images are in (``class_<label>`` if they are in
            several folders or in none).
        where: Per class, the ``file:line`` that first gives its label.
        fine_of: ``{label in the files: class id}``.
    """

    labels: tuple[int, ...]
    names: tuple[str, ...]
    where: tuple[str, ...]
    fine_of: Mapping[int, int]


def present_classes(metadata: Path) -> Classes:
    """The labels found in any split's ``class_labels.txt``, numbered 0..K-1 in increasing order.

    With the full metadata (labels 0..K-1 all present) the numbering is the files' own.
    """
    found = scan_labels(metadata)
    if not found:
        raise WsolbenchError(
            f"{metadata}: no class_labels.txt with '<image_id>,<label>' lines under train/, val/ or test/; copy "
            "wsolevaluation's metadata there"
        )
    labels = tuple(sorted(found))
    names = tuple(
        next(iter(found[label].folders))
        if len(found[label].folders) == 1 and "" not in found[label].folders
        else f"class_{label}"
        for label in labels
    )
    return Classes(labels, names, tuple(found[label].where for label in labels), {v: i for i, v in enumerate(labels)})


# --------------------------------------------------------------------------- one split


@dataclass
class SplitTable:
    """Ids, labels and sizes of one split.

    Attributes:
        files: Where they come from.
        order: The listed image ids, in ``image_ids.txt`` order (duplicates dropped).
        listed: ``{image_id: line in image_ids.txt}``.
        labels: ``{image_id: (class id or -1, line)}``.
        sizes: ``{image_id: ((width, height), line)}`` of the images ``image_sizes.txt`` gives.
    """

    files: SplitFiles
    order: list[str] = field(default_factory=list)
    listed: dict[str, int] = field(default_factory=dict)
    labels: dict[str, tuple[int, int]] = field(default_factory=dict)
    sizes: dict[str, tuple[tuple[int, int], int]] = field(default_factory=dict)

    def where(self, image_id: str) -> str:
        """``file:line`` of ``image_ids.txt`` listing ``image_id``."""
        return f"{self.files.ids}:{self.listed[image_id]}"

    def size(self, image_id: str) -> tuple[int, int] | None:
        """The ``(width, height)`` the metadata gives, if any."""
        entry = self.sizes.get(image_id)
        return entry[0] if entry else None


def read_split(files: SplitFiles, fine_of: Mapping[int, int], problems: Problems, *, classes_hint: str) -> SplitTable:
    """Read ``image_ids.txt``, ``class_labels.txt`` and ``image_sizes.txt`` of one split.

    Problems (duplicate ids, malformed lines, labels not in ``fine_of``: ``classes_hint``
    says which labels are valid) are recorded in ``problems`` against the image id.
    """
    table = SplitTable(files)
    for line, image_id in read_lines(files.ids):
        if image_id in table.listed:
            problems.add(
                image_id,
                f"{files.ids}:{line}: duplicate image id {image_id!r} (first at line {table.listed[image_id]}); list "
                "each image once",
            )
            continue
        table.listed[image_id] = line
        table.order.append(image_id)

    for image_id, line, text, parts in first_rows(files.labels, table.listed, problems, "label"):
        value = _ints(parts[1:]) if len(parts) == 2 else None
        if value is None:
            problems.add(
                image_id, f"{files.labels}:{line}: expected '<image_id>,<class index>', got {text!r}; fix the line"
            )
        elif value[0] not in fine_of:
            problems.add(
                image_id,
                f"{files.labels}:{line}: class index {value[0]} of image {image_id!r} is not one of the dataset's "
                f"classes ({classes_hint}); fix the label",
            )
        table.labels[image_id] = (fine_of.get(value[0], -1) if value else -1, line)

    if files.sizes.is_file():
        for image_id, line, text, parts in first_rows(files.sizes, table.listed, problems, "size"):
            value = _ints(parts[1:]) if len(parts) == 3 else None
            if value is None or min(value) < 1:
                problems.add(image_id, f"{files.sizes}:{line}: expected '<image_id>,<width>,<height>', got {text!r}")
                continue
            table.sizes[image_id] = ((value[0], value[1]), line)

    for image_id in table.order:
        if image_id not in table.labels:
            problems.add(
                image_id,
                f"{table.where(image_id)}: image {image_id!r} has no class in {files.labels}; add '{image_id},<index>'",
            )
    return table


def first_rows(
    path: Path, listed: Mapping[str, int], problems: Problems, what: str
) -> Iterator[tuple[str, int, str, list[str]]]:
    """``(image_id, line, text, fields)`` of the rows of a one-row-per-image metadata file that
    name a listed image; a repeated image id is reported (``what``: "label", "size") and skipped."""
    first: dict[str, int] = {}
    for line, text in read_lines(path):
        parts = fields_of(text)
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


def box_records(table: SplitTable, base: Path, problems: Problems, *, need_boxes: bool) -> list[Record]:
    """The records of a split whose ``localization.txt`` (if present) holds boxes.

    Boxes are inclusive ``x0,y0,x1,y1`` pixels of the original image, one line per box;
    they are checked against ``image_sizes.txt`` where it gives the size. ``need_boxes``:
    every image must have at least one box (val and test).
    """
    path = table.files.localization
    boxes: dict[str, list[tuple[list[int], int]]] = {}
    if path.is_file():
        for line, text in read_lines(path):
            parts = fields_of(text)
            image_id = parts[0]
            if image_id not in table.listed:
                continue
            where = f"{path}:{line}"
            value = _ints(parts[1:]) if len(parts) == 5 else None
            if value is None:
                problems.add(image_id, f"{where}: expected '<image_id>,<x0>,<y0>,<x1>,<y1>' (integers), got {text!r}")
                continue
            bad = box_problem(value, table.size(image_id))
            if bad:
                problems.add(image_id, f"{where}: image {image_id!r}: {bad}")
            boxes.setdefault(image_id, []).append((value, line))

    records: list[Record] = []
    ids_source, boxes_source = str(table.files.ids), str(path)
    for image_id in table.order:
        if need_boxes and image_id not in boxes:
            problems.add(
                image_id,
                f"{table.where(image_id)}: image {image_id!r} has no box in {path}; evaluation needs at least one "
                "box per image",
            )
        entries = boxes.get(image_id, [])
        records.append(
            Record(
                image_id=image_id,
                root=base,
                label=table.labels.get(image_id, (-1, 0))[0],
                boxes=boxes_array([box for box, _ in entries]),
                source=ids_source,
                line=table.listed[image_id],
                box_source=boxes_source,
                box_lines=tuple(line for _, line in entries),
                size=table.size(image_id),
            )
        )
    return records
