"""Run configuration: defaults <- dataset preset <- YAML file <- ``--set`` <- flags, validated.

A config is a nested dict. The component sections (``method``, ``backbone``, ``head``,
``dataset``) hold a ``name`` plus that component's declared options (the keyword-only
arguments of its factory); ``train`` and ``eval`` hold the runner's settings. Every key
is checked: an unknown key or a value of the wrong type is a one-line
:class:`~wsolbench.errors.UsageError` naming the key and the allowed keys.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from collections.abc import Iterable, Mapping
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
        "workers": 0,
        "log_every": 20,
    },
    "eval": {
        "batch_size": 64,
        "cam_curve_interval": 0.01,
        "cam_threshold": None,  # None: report the localization errors at the best threshold
        "save_level_maps": True,
        "save_k_maps": True,
    },
    "seed": 0,
    "device": "auto",
    "amp": False,
    "channels_last": False,
}


def parse_set(assignment: str) -> tuple[list[str], Any]:
    """``"method.k=4"`` -> ``(["method", "k"], 4)``; the value is parsed as YAML."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--set {assignment!r}: expected KEY=VALUE with a dotted key, e.g. --set train.epochs=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
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
        data = yaml.safe_load(path.read_text())
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
    config = merge(merge(DEFAULTS, preset), user)
    validate(config, registry)
    return config


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
    if default is None or value is None:
        return True
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


def validate(config: Mapping[str, Any], registry: Registry) -> None:
    """Raise :class:`UsageError` on the first unknown key or wrongly typed value."""
    _check_keys("", config, DEFAULTS)
    for section in ("train", "eval"):
        _check_keys(section, config[section], DEFAULTS[section])
    for section, kind in COMPONENT_SECTIONS.items():
        values = dict(config[section])
        component = registry.get(kind, str(values.pop("name", "")))
        _check_keys(section, values, {"name": "", **component.options}, component.option_types)


def component_options(config: Mapping[str, Any], section: str) -> dict[str, Any]:
    """The options of a component section without its ``name``."""
    return {key: value for key, value in config[section].items() if key != "name"}


def dump(config: Mapping[str, Any]) -> str:
    """The config as YAML text (saved with every run)."""
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)
