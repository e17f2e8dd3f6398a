"""Class hierarchies (hook ``register_hierarchies``) and the helpers datasets use to build them.

Registered hierarchies:

* ``cub`` — CUB-200-2011: 11 orders -> 37 families -> 200 species, from the shipped table
  ``data/cub200_taxonomy.csv`` (two orders are merged pairs, ``Apodiformes+Coraciiformes``
  and ``Suliformes+Piciformes``, which gives the 11 orders of the DANet paper).
* ``imagenet`` — ImageNet-1k from WordNet (``data/imagenet1k_hierarchy.csv``). The table
  keeps one WordNet path per class; its coarse columns are ``group_le100`` (the highest
  ancestor whose subtree holds at most 100 of the 1000 classes: 91 groups) and
  ``group_le10`` (at most 10 classes: 425 groups). The default levels are
  ``group_le100 -> group_le10 -> class``: unlike fixed-depth cuts (``parent_1up``,
  ``grandparent_2up``), these groupings are nested and of bounded size whatever the depth of
  a class in WordNet. Option ``levels`` picks other columns; inconsistent picks are refused.
* ``yaml`` — a user file (option ``path``); format in :func:`load_hierarchy_yaml`.

All of them are validated on load: every class has an entry, every coarse class has exactly
one parent (no class with two parents), no cycles, no empty names or levels. Errors are one
line naming the file, the line and the fix.

Class ids at coarse levels are given in order of first appearance along the fine classes.
"""

from __future__ import annotations

import csv
import functools
import io
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from wsolbench import hookimpl
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Hierarchy
from wsolbench_plugins.datasets._yaml import YamlMap, read_yaml, yaml_line

DATA_PACKAGE = "wsolbench_plugins"
CUB_TAXONOMY = "data/cub200_taxonomy.csv"
IMAGENET_HIERARCHY = "data/imagenet1k_hierarchy.csv"
CUB_COLUMNS = ("order", "family")
IMAGENET_COLUMNS = ("group_le100", "group_le10", "grandparent_2up", "parent_1up")
YAML_KEYS = ("levels", "classes", "parents", "name", "description")


# --------------------------------------------------------------------------- building and validation


def build_hierarchy(
    level_names: Sequence[str],
    fine_names: Sequence[str],
    paths: Sequence[Sequence[Hashable]],
    *,
    where: Sequence[str],
    source: str,
    display: Sequence[dict[Hashable, str]] | None = None,
) -> Hierarchy:
    """Validate a hierarchy given as per-class ancestor paths and build it.

    Args:
        level_names: Level names, coarse to fine, the fine level included.
        fine_names: Names of the fine classes (index = fine class id).
        paths: Per fine class, the keys of its ancestors, coarse to fine (``depth - 1`` of them).
        where: Per fine class, ``"file:line"`` where it is defined (for messages).
        source: The file the hierarchy comes from (for messages not about one class).
        display: Per coarse level, ``{key: name}``; keys are their own names by default.

    Raises:
        WsolbenchError: No level or class, duplicate level or class names, a path of the
            wrong length or with an empty name, or a coarse class with two parents.
    """
    levels = tuple(str(name) for name in level_names)
    if not levels:
        raise WsolbenchError(f"{source}: the hierarchy has no levels; list them coarse to fine, the fine level last")
    if any(not name.strip() for name in levels):
        raise WsolbenchError(f"{source}: a level name is empty; give every level a name")
    repeated = [name for name, count in Counter(levels).items() if count > 1]
    if repeated:
        raise WsolbenchError(f"{source}: level {repeated[0]!r} is listed twice; level names must be unique")
    if not fine_names:
        raise WsolbenchError(f"{source}: the hierarchy has no classes; every level needs at least one class")
    depth = len(levels)
    first_at: dict[str, int] = {}
    for index, name in enumerate(fine_names):
        if name in first_at:
            raise WsolbenchError(
                f"{where[index]}: class {name!r} is listed twice (also at {where[first_at[name]]}); keep one entry"
            )
        first_at[name] = index

    ids: list[dict[Hashable, int]] = [{} for _ in range(depth - 1)]
    parent_of: list[dict[Hashable, tuple[Hashable, int]]] = [{} for _ in range(depth - 1)]
    ancestors = np.zeros((len(fine_names), depth), dtype=np.int64)
    for index, (name, path) in enumerate(zip(fine_names, paths, strict=True)):
        path = tuple(path)
        if len(path) != depth - 1:
            raise WsolbenchError(
                f"{where[index]}: class {name!r} has {len(path)} ancestors but levels {list(levels)} need "
                f"{depth - 1} (one per level above {levels[-1]!r}, coarse to fine)"
            )
        for level, key in enumerate(path):
            if key is None or not str(key).strip():
                raise WsolbenchError(f"{where[index]}: class {name!r} has an empty {levels[level]!r}; give it a name")
            if level > 0:
                parent = path[level - 1]
                known = parent_of[level].setdefault(key, (parent, index))
                if known[0] != parent:
                    label = display[level].get(key, key) if display else key
                    old = display[level - 1].get(known[0], known[0]) if display else known[0]
                    new = display[level - 1].get(parent, parent) if display else parent
                    raise WsolbenchError(
                        f"{where[index]}: {levels[level]} {str(label)!r} has two parents at level "
                        f"{levels[level - 1]!r}: {str(old)!r} (class {fine_names[known[1]]!r}, "
                        f"{where[known[1]]}) and {str(new)!r} (class {name!r}); a class must have exactly "
                        "one parent — fix one of the two entries"
                    )
            ancestors[index, level] = ids[level].setdefault(key, len(ids[level]))
        ancestors[index, depth - 1] = index

    class_names = []
    for level in range(depth - 1):
        names = display[level] if display else {}
        class_names.append(tuple(str(names.get(key, key)) for key in ids[level]))
    class_names.append(tuple(str(name) for name in fine_names))
    return Hierarchy(levels, tuple(class_names), ancestors)


def _parse_levels(option: str, allowed: Sequence[str], hierarchy: str) -> tuple[str, ...]:
    """A ``levels`` option: comma-separated column names, coarse to fine (empty = flat)."""
    columns = tuple(part.strip() for part in str(option).split(",") if part.strip())
    for column in columns:
        if column not in allowed:
            raise UsageError(
                f"hierarchy {hierarchy!r}: unknown level column {column!r} in levels={option!r}; "
                f"choose coarse-to-fine columns among: {', '.join(allowed)}"
            )
    if len(set(columns)) != len(columns):
        raise UsageError(f"hierarchy {hierarchy!r}: levels={option!r} repeats a column; list each column once")
    return columns


def _unique_names(pairs: Sequence[tuple[Hashable, str]]) -> dict[Hashable, str]:
    """``{key: name}`` with ``" (key)"`` appended to names that several keys share."""
    mapping = dict(pairs)
    counts = Counter(mapping.values())
    return {key: (f"{name} ({key})" if counts[name] > 1 else name) for key, name in mapping.items()}


# --------------------------------------------------------------------------- shipped tables


def _build_shipped(hierarchy: str, option: str, level_names, fine_names, paths, **kwargs) -> Hierarchy:
    """:func:`build_hierarchy` for a shipped table: a conflict can only come from the ``levels`` pick."""
    try:
        return build_hierarchy(level_names, fine_names, paths, **kwargs)
    except WsolbenchError as error:
        if "has two parents" not in str(error):
            raise
        raise UsageError(
            f"hierarchy {hierarchy!r}: levels={option!r} do not nest ({str(error).split('; a class must')[0]}); "
            "pick columns where each "
            "coarser one contains the finer one (see the default)"
        ) from None


@functools.cache
def _read_table(resource: str) -> tuple[str, tuple[tuple[int, dict[str, str]], ...]]:
    """Rows of a shipped CSV as ``(line_number, row)``, and the name used in messages."""
    label = f"{DATA_PACKAGE}/{resource}"
    try:
        text = resources.files(DATA_PACKAGE).joinpath(resource).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as error:
        raise WsolbenchError(f"{label}: shipped table missing ({error}); reinstall wsolbench") from None
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for row in reader:
        rows.append((reader.line_num, {key: (value or "").strip() for key, value in row.items()}))
    return label, tuple(rows)


def cub_hierarchy(
    class_names: Sequence[str] | None = None,
    *,
    levels: str = "order,family",
    where: Sequence[str] | None = None,
) -> Hierarchy:
    """The shipped CUB-200-2011 taxonomy, for all 200 species or for ``class_names``.

    Args:
        class_names: The dataset's classes (CUB names such as ``"001.Black_footed_Albatross"``;
            a name without its ``NNN.`` prefix also matches). None: all 200, in id order.
        levels: Coarse levels, coarse to fine, among ``order`` and ``family``.
        where: Per class, ``"file:line"`` naming where the dataset lists it (for messages).
    """
    label, rows = _read_table(CUB_TAXONOMY)
    columns = _parse_levels(levels, CUB_COLUMNS, "cub")
    by_name = {row["class_name"]: (line, row) for line, row in rows}
    by_short = {name.split(".", 1)[-1]: entry for name, entry in by_name.items()}
    if class_names is None:
        class_names = [row["class_name"] for _, row in rows]
        where = [f"{label}:{line}" for line, _ in rows]
    where = list(where) if where is not None else [f"class {name!r}" for name in class_names]
    paths = []
    for index, name in enumerate(class_names):
        entry = by_name.get(name) or by_short.get(str(name).split(".", 1)[-1])
        if entry is None:
            raise WsolbenchError(
                f"{where[index]}: class {name!r} has no entry in the shipped CUB taxonomy ({label}); use the "
                "official CUB-200-2011 class names, or pass hierarchy=<your.yaml> or hierarchy=flat"
            )
        paths.append(tuple(entry[1][column] for column in columns))
    return _build_shipped("cub", levels, (*columns, "species"), list(class_names), paths, where=where, source=label)


def imagenet_hierarchy(
    indices: Sequence[int] | None = None,
    *,
    levels: str = "group_le100,group_le10",
    class_names: Sequence[str] | None = None,
) -> Hierarchy:
    """The shipped ImageNet-1k WordNet hierarchy, for all 1000 classes or for ``indices``.

    Args:
        indices: ImageNet-1k class indices (0..999, sorted-wnid order) of the fine classes;
            None: all 1000. Coarse levels keep only the groups these classes use.
        levels: Coarse levels, coarse to fine, among the table's columns ``group_le100``,
            ``group_le10``, ``grandparent_2up`` and ``parent_1up``.
        class_names: Names of the fine classes; default: the ImageNet names, with the wnid
            appended to the few names two classes share (``"crane (n02012849)"``).
    """
    label, rows = _read_table(IMAGENET_HIERARCHY)
    columns = _parse_levels(levels, IMAGENET_COLUMNS, "imagenet")
    indices = list(range(len(rows))) if indices is None else [int(i) for i in indices]
    for index in indices:
        if not 0 <= index < len(rows):
            raise WsolbenchError(
                f"class index {index} is not an ImageNet-1k class (0..{len(rows) - 1}); use ImageNet-1k labels, "
                "or hierarchy=flat / a YAML hierarchy"
            )
    fine = _unique_names([(row["wnid"], row["name"]) for _, row in rows])
    display = [_unique_names([(row[column], row[f"{column}_name"]) for _, row in rows]) for column in columns]
    picked = [rows[i] for i in indices]
    names = list(class_names) if class_names is not None else [fine[row["wnid"]] for _, row in picked]
    paths = [tuple(row[column] for column in columns) for _, row in picked]
    where = [f"{label}:{line}" for line, _ in picked]
    return _build_shipped(
        "imagenet", levels, (*columns, "class"), names, paths, where=where, source=label, display=display
    )


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k wnids, index = class id."""
    return [row["wnid"] for _, row in _read_table(IMAGENET_HIERARCHY)[1]]


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names, index = class id; shared names get their wnid appended."""
    rows = _read_table(IMAGENET_HIERARCHY)[1]
    names = _unique_names([(row["wnid"], row["name"]) for _, row in rows])
    return [names[row["wnid"]] for _, row in rows]


# --------------------------------------------------------------------------- YAML hierarchies


def _key(value: object, path: Path, line: int, what: str) -> str:
    """A YAML scalar used as a class name: strings and numbers; anything else must be quoted."""
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
        raise WsolbenchError(
            f"{path}:{line}: {what} {value!r} is not a name; write names as strings (quote yes/no/null/on/off)"
        )
    text = str(value).strip()
    if not text:
        raise WsolbenchError(f"{path}:{line}: {what} is empty; give it a name")
    return text


def _yaml_table(path: Path, data: YamlMap, levels: tuple[str, ...], wanted: set[str] | None):
    """``{fine_key: (ancestor_names, line)}`` from the ``classes`` or the ``parents`` form."""
    depth = len(levels)
    table: dict[str, tuple[tuple[str, ...], int]] = {}
    if "classes" in data:
        classes = data["classes"]
        if not isinstance(classes, dict) or not classes:
            raise WsolbenchError(
                f"{path}:{yaml_line(data, 'classes')}: 'classes' must map each fine class to its ancestors, "
                f"e.g. 'Cardinal: [Passeriformes, Cardinalidae]'"
            )
        for raw, value in classes.items():
            line = yaml_line(classes, raw)
            name = _key(raw, path, line, "class")
            if value is None:
                value = []
            elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
                value = [value]
            if not isinstance(value, list):
                raise WsolbenchError(
                    f"{path}:{line}: the ancestors of class {name!r} must be a list [{', '.join(levels[:-1])}]"
                )
            if len(value) != depth - 1:
                raise WsolbenchError(
                    f"{path}:{line}: class {name!r} lists {len(value)} ancestors but levels {list(levels)} need "
                    f"{depth - 1}: [{', '.join(levels[:-1])}], coarse to fine"
                )
            ancestors = tuple(_key(v, path, line, f"{levels[i]} of class {name!r}") for i, v in enumerate(value))
            if name in table:
                raise WsolbenchError(
                    f"{path}:{line}: class {name!r} is listed twice (first at line {table[name][1]}); keep one entry"
                )
            table[name] = (ancestors, line)
        return table

    parents_raw = data["parents"]
    if not isinstance(parents_raw, dict) or not parents_raw:
        raise WsolbenchError(
            f"{path}:{yaml_line(data, 'parents')}: 'parents' must map each class to its parent, e.g. "
            "'Cardinal: Cardinalidae' and 'Cardinalidae: Passeriformes'"
        )
    parents: dict[str, str] = {}
    lines: dict[str, int] = {}
    for raw, value in parents_raw.items():
        line = yaml_line(parents_raw, raw)
        child = _key(raw, path, line, "class")
        if isinstance(value, list):
            raise WsolbenchError(
                f"{path}:{line}: {child!r} has several parents {value!r}; a class must have exactly one parent"
            )
        if child in parents:
            raise WsolbenchError(f"{path}:{line}: {child!r} is listed twice (first at line {lines[child]}); keep one")
        parents[child] = _key(value, path, line, f"parent of {child!r}")
        lines[child] = line
    if wanted is None:
        has_children = set(parents.values())
        leaves = [child for child in parents if child not in has_children]
    else:
        leaves = [child for child in parents if child in wanted]
    for leaf in leaves:
        chain = [leaf]
        while chain[-1] in parents:
            nxt = parents[chain[-1]]
            if nxt in chain:
                loop = " -> ".join([*chain[chain.index(nxt) :], nxt])
                raise WsolbenchError(
                    f"{path}:{lines[chain[-1]]}: cycle in parents: {loop}; a class cannot be its own ancestor"
                )
            chain.append(nxt)
        ancestors = tuple(reversed(chain[1:]))
        if len(ancestors) != depth - 1:
            raise WsolbenchError(
                f"{path}:{lines[leaf]}: class {leaf!r} has {len(ancestors)} ancestors "
                f"({' -> '.join(chain)}) but levels {list(levels)} need {depth - 1}; every fine class must "
                "reach a top-level class in exactly that many steps"
            )
        table[leaf] = (ancestors, lines[leaf])
    return table


def load_hierarchy_yaml(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    *,
    keys: Sequence[Sequence[str]] | None = None,
) -> Hierarchy:
    """Read and validate a YAML class hierarchy.

    Format (levels coarse to fine, the fine level last)::

        levels: [order, family, species]
        classes:                       # fine class: [its ancestors, coarse to fine]
          Cardinal: [Passeriformes, Cardinalidae]
          Blue_Jay: [Passeriformes, Corvidae]

    or, equivalently, one parent per class (``parents`` instead of ``classes``)::

        levels: [order, family, species]
        parents:
          Cardinal: Cardinalidae
          Cardinalidae: Passeriformes

    Args:
        path: The YAML file.
        class_names: The dataset's fine classes (in label order). Each must have an entry;
            entries for other classes are ignored. None: the file's fine classes, in file
            order (the ``classes`` keys, or the ``parents`` leaves).
        keys: Per class, the keys that may name it in the file (default: its name).

    Raises:
        WsolbenchError: One line naming the file, the line and the fix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise WsolbenchError(f"{path}: hierarchy file not found; pass the path of a YAML hierarchy (docs/datasets.md)")
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise WsolbenchError(f"{path}: a hierarchy file is a mapping with keys 'levels' and 'classes' (or 'parents')")
    unknown = [key for key in data if key not in YAML_KEYS]
    if unknown:
        raise WsolbenchError(
            f"{path}:{yaml_line(data, unknown[0])}: unknown key {unknown[0]!r}; allowed keys: {', '.join(YAML_KEYS)}"
        )
    raw_levels = data.get("levels")
    if not isinstance(raw_levels, list) or not raw_levels:
        raise WsolbenchError(
            f"{path}:{yaml_line(data, 'levels')}: 'levels' must list the level names coarse to fine, the fine "
            "level last, e.g. levels: [order, family, species]"
        )
    levels = tuple(_key(v, path, yaml_line(data, "levels"), "level") for v in raw_levels)
    if ("classes" in data) == ("parents" in data):
        raise WsolbenchError(f"{path}: give exactly one of 'classes' (class: [ancestors]) or 'parents' (class: parent)")
    wanted = None
    if class_names is not None:
        keys = [tuple(k) for k in keys] if keys is not None else [(str(name),) for name in class_names]
        wanted = {k for ks in keys for k in ks}
    table = _yaml_table(path, data, levels, wanted)
    if class_names is None:
        names = list(table)
        entries = [table[name] for name in names]
    else:
        names = [str(name) for name in class_names]
        entries = []
        section = "classes" if "classes" in data else "parents"
        for name, class_keys in zip(names, keys, strict=True):
            entry = next((table[k] for k in class_keys if k in table), None)
            if entry is None:
                raise WsolbenchError(
                    f"{path}:{yaml_line(data, section)}: class {name!r} of the dataset has no entry; add it under "
                    f"'{section}' (as {class_keys[0]!r}) — every class must be covered"
                )
            entries.append(entry)
    return build_hierarchy(
        levels,
        names,
        [ancestors for ancestors, _ in entries],
        where=[f"{path}:{line}" for _, line in entries],
        source=str(path),
    )


def dataset_hierarchy(
    option: str | None,
    class_names: Sequence[str],
    default: Callable[[], Hierarchy],
    *,
    keys: Sequence[Sequence[str]] | None = None,
) -> Hierarchy:
    """The hierarchy a dataset's ``hierarchy=`` option asks for.

    ``None`` or ``""``: ``default()`` (the dataset's built-in hierarchy); ``"flat"``: one
    level, no parents; anything else: the path of a YAML hierarchy covering ``class_names``.
    """
    if option is None or str(option).strip() == "":
        return default()
    if str(option).strip().lower() == "flat":
        return Hierarchy.flat([str(name) for name in class_names])
    path = Path(str(option)).expanduser()
    if not path.is_file():
        raise UsageError(
            f"hierarchy={option!r}: no such file; pass the path of a YAML hierarchy (docs/datasets.md) or 'flat'"
        )
    return load_hierarchy_yaml(path, class_names, keys=keys)


# --------------------------------------------------------------------------- plugin


def cub(*, levels: str = "order,family") -> Hierarchy:
    """CUB-200-2011 taxonomy: 11 orders -> 37 families -> 200 species (shipped table)."""
    return cub_hierarchy(levels=levels)


def imagenet(*, levels: str = "group_le100,group_le10") -> Hierarchy:
    """ImageNet-1k WordNet groups: 91 groups (<=100 classes) -> 425 groups (<=10) -> 1000 classes."""
    return imagenet_hierarchy(levels=levels)


def yaml_file(*, path: str = "") -> Hierarchy:
    """A hierarchy read from a YAML file (option path; format in docs/datasets.md)."""
    if not path:
        raise UsageError("hierarchy 'yaml' needs the file: set hierarchy option path=PATH.yaml")
    return load_hierarchy_yaml(path)


@hookimpl
def register_hierarchies(register):
    """Register the ``cub``, ``imagenet`` and ``yaml`` hierarchies."""
    register("cub", cub)
    register("imagenet", imagenet)
    register("yaml", yaml_file)
