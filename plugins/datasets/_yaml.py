"""A YAML reader that reports line numbers and refuses duplicate keys (:func:`read_yaml`),
for the hand-written metadata of ``folder`` datasets and hierarchy files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from wsolbench.errors import WsolbenchError
from wsolbench_plugins.datasets._images import one_line


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
