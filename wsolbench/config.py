"""Run configuration: defaults <- dataset preset <- YAML file <- ``--set`` <- flags, validated.

A config is a nested dict. The component sections (``method``, ``backbone``, ``head``,
``dataset``) hold a ``name`` plus that component's declared options (the keyword-only
arguments of its factory); ``train`` and ``eval`` hold the runner's settings. Every key
is checked: an unknown key, a value of the wrong type or a number outside its range
(:data:`RANGES`) is a one-line :class:`~wsolbench.errors.UsageError` naming the key and
what is allowed.

The ``dataset`` section also takes ``hierarchy``, handled by the core for every dataset:
the name of a registered hierarchy (``wsolbench list hierarchies``), or a mapping with its
``name`` and options (``{name: imagenet, levels: group_le10}``). It replaces the dataset's
own class hierarchy (fine class ``i`` of the hierarchy is label ``i`` of the dataset; the
fine class counts must agree). Any other value goes to a dataset that declares a
``hierarchy`` option of its own (``flat``, a YAML path).
"""

from __future__ import annotations

import copy
import json
import math
import re
import types
import typing
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wsolbench.errors import UsageError
from wsolbench.registry import Registry

COMPONENT_SECTIONS = {"method": "methods", "backbone": "backbones", "head": "heads", "dataset": "datasets"}

DEFAULTS: dict[str, Any] = {
    "method": {"name": "cam"},
    "backbone": {"name": "vgg16"},
    "head": {"name": "wsol"},
    "dataset": {"name": "synthetic"},
    "train": {
        "epochs": 100,
        "batch_size": 30,
        "lr": 0.001,  # learning rate of the (pretrained) backbone
        "head_lr_mult": 10.0,  # the new head layers learn this much faster
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,
        "lr_decay_epochs": [80],
        "lr_decay": 0.1,
        "workers": None,  # DataLoader processes; null: chosen at run time (0 on CPU, up to 8 on CUDA)
        "log_every": 20,
    },
    "eval": {
        "batch_size": 64,
        "cam_curve_interval": 0.01,
        "cam_threshold": None,  # a number in [0, 1), null/best (best on the evaluated split) or val (chosen on val)
        "splits": ["test"],  # the evaluated splits: test, optionally val (wsolbench.evaluate.EvalSettings)
        "save_maps": True,  # store the method's extra maps (per level, per k) in the cache
    },
    "seed": 0,
    "device": "auto",
    "amp": False,
    "channels_last": False,
}


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric config key.

    Attributes:
        kind: ``int`` or ``float`` (a float key accepts ints too; never bools).
        bounds: ``">= 1"``, ``"> 0"`` or an interval such as ``"[0, 1)"``.
        null: What ``null`` means where it is allowed (empty: not allowed).
        each: The value is a list and every item must be in range.
        names: Words also accepted instead of a number (any case).
    """

    kind: type
    bounds: str
    null: str = ""
    each: bool = False
    names: tuple[str, ...] = ()

    def contains(self, value: Any) -> bool:
        """Is ``value`` (one number, not a list) of the right kind, finite and within the bounds, or a name?"""
        if isinstance(value, str):
            return value.strip().lower() in self.names
        if isinstance(value, bool) or not isinstance(value, int if self.kind is int else (int, float)):
            return False
        if not math.isfinite(value):
            return False
        if self.bounds[0] in "[(":
            low, high = (float(part) for part in self.bounds[1:-1].split(","))
            above = value >= low if self.bounds[0] == "[" else value > low
            below = value <= high if self.bounds[-1] == "]" else value < high
            return above and below
        operator, limit = self.bounds.split()
        return value >= float(limit) if operator == ">=" else value > float(limit)

    def describe(self) -> str:
        """``"an int >= 1"``, ``"a number in [0, 1) or null (the best threshold)"``, ..."""
        what = ("ints" if self.each else "an int") if self.kind is int else ("numbers" if self.each else "a number")
        where = f"in {self.bounds}" if self.bounds[0] in "[(" else self.bounds
        text = f"a list of {what} {where}" if self.each else f"{what} {where}"
        text += "".join(f", {name}" for name in self.names)
        return f"{text} or null ({self.null})" if self.null else text


#: The valid range of every numeric key of the run config, checked by :func:`validate`.
RANGES: dict[str, Range] = {
    "train.epochs": Range(int, ">= 1"),
    "train.batch_size": Range(int, ">= 1"),
    "train.lr": Range(float, "> 0"),
    "train.head_lr_mult": Range(float, "> 0"),
    "train.momentum": Range(float, "[0, 1)"),
    "train.weight_decay": Range(float, ">= 0"),
    "train.lr_decay_epochs": Range(int, ">= 1", each=True),
    "train.lr_decay": Range(float, "(0, 1]"),
    "train.workers": Range(int, ">= 0", null="chosen at run time"),
    "train.log_every": Range(int, ">= 1"),
    "eval.batch_size": Range(int, ">= 1"),
    "eval.cam_curve_interval": Range(float, "(0, 1)"),
    "eval.cam_threshold": Range(float, "[0, 1)", null="best", names=("best", "val")),
    "seed": Range(int, "[0, 4294967296)"),
}

#: Old keys still accepted (with a FutureWarning): old dotted key -> the key it became.
#: Both are booleans; an old key set to false makes the new one false.
DEPRECATED_KEYS: dict[str, str] = {
    "eval.save_level_maps": "eval.save_maps",
    "eval.save_k_maps": "eval.save_maps",
}


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, except that ``1e-3`` is a float (PyYAML's YAML 1.1 reads a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """``"method.k=4"`` -> ``(["method", "k"], 4)``; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. --set train.epochs=5")
    try:
        value = _load_yaml_text(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def set_dotted(config: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``config[a][b]... = value`` for ``path = [a, b, ...]``, creating sections."""
    node = config
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"config key {'.'.join(path)!r}: {part!r} is a value, not a section")
        node = child
    node[path[-1]] = value


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep merge: sections merge key by key, values of ``override`` win."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing or malformed file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file {str(path)!r} does not exist: check the path given to --config")
    try:
        data = _load_yaml_text(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UsageError(
            f"config file {str(path)!r}{where} is not valid YAML ({getattr(error, 'problem', error)}): fix the syntax"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(
            f"config file {str(path)!r} must be a mapping of sections (method:, train:, ...), not {type(data).__name__}"
        )
    return data


def _shorthand(config: dict[str, Any]) -> dict[str, Any]:
    """Allow ``method: danet`` for ``method: {name: danet}``."""
    out = dict(config)
    for section in COMPONENT_SECTIONS:
        if isinstance(out.get(section), str):
            out[section] = {"name": out[section]}
    return out


def resolve(
    registry: Registry,
    *,
    file: str | Path | None = None,
    base: Mapping[str, Any] | None = None,
    sets: Iterable[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fully resolved, validated config of a run.

    Args:
        registry: Where component names and their declared options are looked up.
        file: Optional YAML config file.
        base: Optional config mapping applied under the file (a sweep grid's ``base``).
        sets: ``KEY=VALUE`` assignments with dotted keys (``--set``).
        flags: Dotted key -> value from dedicated command-line flags (already typed);
            ``None`` values are ignored.
    """
    user = merge(_shorthand(dict(base or {})), _shorthand(load_yaml(file)) if file else {})
    for assignment in sets:
        path, value = parse_set(assignment)
        set_dotted(user, path, value)
    for key, value in (flags or {}).items():
        if value is not None:
            set_dotted(user, key.split("."), value)
    user = _shorthand(user)
    dataset_name = (user.get("dataset") or {}).get("name", DEFAULTS["dataset"]["name"])
    preset = getattr(registry.get("datasets", dataset_name).factory, "train_preset", {})
    config = upgrade_deprecated(merge(merge(DEFAULTS, preset), user))
    validate(config, registry)
    return config


def upgrade_deprecated(config: Mapping[str, Any], *, warn: bool = True) -> dict[str, Any]:
    """A copy of ``config`` with the :data:`DEPRECATED_KEYS` replaced by the keys they became.

    Args:
        config: A config (the user's, or one stored with an older run).
        warn: Emit one :class:`FutureWarning` per old key found.

    Raises:
        UsageError: An old key holds something other than a boolean.
    """
    out = copy.deepcopy(dict(config))
    for old, new in DEPRECATED_KEYS.items():
        section, key = old.split(".")
        values = out.get(section)
        if not isinstance(values, dict) or key not in values:
            continue
        value = values.pop(key)
        if not isinstance(value, bool):
            raise UsageError(f"config key {old!r} must be of type bool, got {value!r}; better, use {new!r}")
        if warn:
            warnings.warn(
                f"config key {old!r} is deprecated and will be removed: use {new!r} instead",
                FutureWarning,
                stacklevel=3,
            )
        new_section, new_key = new.split(".")
        target = out.setdefault(new_section, {})
        target[new_key] = target.get(new_key, True) and value
    return out


def _annotation_ok(value: Any, annotation: Any) -> bool:
    """Does ``value`` fit a simple annotation (``bool | str``, ``int``, ``list[int]``, ``X | None``)?"""
    options = (
        typing.get_args(annotation)
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
        else (annotation,)
    )
    for option in options:
        origin = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return True
        if isinstance(origin, type) and origin is not type(None):
            sample = {bool: False, int: 0, float: 0.0, str: "", list: [], tuple: ()}.get(origin)
            if sample is None or _type_ok(value, sample):
                return True
    return False


def _type_ok(value: Any, default: Any) -> bool:
    if default is None:
        return True
    if value is None:  # null only where the default is null (or the annotation allows None)
        return False
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _check_keys(
    section: str, values: Mapping[str, Any], allowed: Mapping[str, Any], types: Mapping[str, Any] | None = None
) -> None:
    for key, value in values.items():
        dotted = f"{section}.{key}" if section else key
        if key not in allowed:
            raise UsageError(
                f"unknown config key {dotted!r}; allowed keys{' in ' + section if section else ''}: {', '.join(sorted(allowed))}"
            )
        default = allowed[key]
        if isinstance(default, dict) and not isinstance(value, dict):
            raise UsageError(
                f"config key {dotted!r} is a section; set its keys, e.g. {dotted}.{next(iter(default), 'name')}=..."
            )
        if dotted in RANGES:  # its Range checks the type too
            continue
        annotation = (types or {}).get(key)
        fits = _annotation_ok(value, annotation) if annotation is not None else _type_ok(value, default)
        if not isinstance(default, dict) and not fits:
            raise UsageError(
                f"config key {dotted!r} must be of type {_type_name(annotation, default)} (like {default!r}), got {value!r}"
            )


def _type_name(annotation: Any, default: Any) -> str:
    if annotation is None:
        return type(default).__name__
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _check_ranges(config: Mapping[str, Any]) -> None:
    for dotted, valid in RANGES.items():
        node: Any = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        value = node
        if value is None and valid.null:
            continue
        items = value if valid.each and isinstance(value, (list, tuple)) else [value]
        if (valid.each and not isinstance(value, (list, tuple))) or not all(valid.contains(v) for v in items):
            raise UsageError(f"config key {dotted!r} must be {valid.describe()}, got {value!r}")


def validate(config: Mapping[str, Any], registry: Registry) -> None:
    """Raise :class:`UsageError` on the first unknown key, wrongly typed value or number out of range."""
    _check_keys("", config, DEFAULTS)
    for section in ("train", "eval"):
        _check_keys(section, config[section], DEFAULTS[section])
    _check_ranges(config)
    for section, kind in COMPONENT_SECTIONS.items():
        values = dict(config[section])
        component = registry.get(kind, str(values.pop("name", "")))
        if section == "dataset":
            _check_hierarchy(values, component, registry)
        _check_keys(section, values, {"name": "", **component.options}, component.option_types)


def selected_hierarchy(dataset_section: Mapping[str, Any], registry: Registry) -> tuple[str, dict[str, Any]] | None:
    """The registered hierarchy that ``dataset.hierarchy`` selects, as ``(name, options)``.

    None: the key is absent, null, or a value for the dataset's own ``hierarchy`` option
    (anything that is neither a mapping nor a registered hierarchy's name).
    """
    value = dataset_section.get("hierarchy")
    if isinstance(value, Mapping):
        return str(value.get("name", "")), {key: v for key, v in value.items() if key != "name"}
    if isinstance(value, str) and value.lower() in registry.names("hierarchies"):
        return value, {}
    return None


def _check_hierarchy(values: dict[str, Any], dataset: Any, registry: Registry) -> None:
    """Validate ``dataset.hierarchy`` and remove it from ``values`` unless it is the dataset's own option."""
    if "hierarchy" not in values:
        return
    choice = selected_hierarchy(values, registry)
    if choice is not None:
        values.pop("hierarchy")
        name, options = choice
        try:
            hierarchy = registry.get("hierarchies", name)
        except UsageError as error:
            raise UsageError(f"dataset.hierarchy: {error}") from None
        _check_keys("dataset.hierarchy", options, {"name": "", **hierarchy.options}, hierarchy.option_types)
    elif "hierarchy" not in dataset.options:
        value = values.pop("hierarchy")
        if value is not None:
            try:
                registry.get("hierarchies", str(value))
            except UsageError as error:
                raise UsageError(
                    f"dataset.hierarchy: {error}; dataset {dataset.name!r} has no hierarchy option of its own"
                ) from None


def dataset_options(config: Mapping[str, Any], registry: Registry) -> dict[str, Any]:
    """The dataset factory's keyword arguments: the section's options less the core's ``hierarchy``."""
    options = component_options(config, "dataset")
    if "hierarchy" in options and (
        selected_hierarchy(config["dataset"], registry) is not None
        or "hierarchy" not in registry.get("datasets", config["dataset"]["name"]).options
    ):
        del options["hierarchy"]
    return options


def component_options(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The options of a component section without its ``name``."""
    return {key: value for key, value in config[section].items() if key != "name"}


def dump(config: Mapping[str, Any]) -> str:
    """The config as YAML text (saved with every run)."""
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
