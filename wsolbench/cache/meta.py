"""The cache's identity: schema version, config hash, training-split fingerprint and metadata."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import h5py
import numpy as np

from wsolbench.errors import WsolbenchError
from wsolbench.rundir import CACHE_FILENAME as _CACHE_FILENAME

#: Version of the file layout this wsolbench writes and reads.
SCHEMA_VERSION = 2

#: Older layouts this wsolbench still reads (schema 1: per-level and K maps under fixed names).
READABLE_SCHEMAS = (1, 2)

#: Name of a run's (test split) cache file inside its run directory (:mod:`wsolbench.rundir`).
CACHE_FILENAME = _CACHE_FILENAME

#: Config keys that do not change the trained model and are left out of :func:`config_hash`:
#: a dotted path (``"train.workers"``) drops that key, ``"<section>.*"`` the whole section,
#: a plain name (no dot) the key at every depth. Evaluation settings (``eval.*``) apply when
#: a run's caches are evaluated, and the data folder (``dataset.root``) is replaced by a
#: fingerprint of the training split (:func:`dataset_fingerprint`), so neither retrains.
NON_RESULT_KEYS: tuple[str, ...] = (
    "device",
    "quiet",
    "verbose",
    "output_dir",
    "out_dir",
    "run_dir",
    "train.workers",
    "train.log_every",
    "eval.*",
    "dataset.root",
)


#: How every "rebuild the cache" error message ends.
REBUILD_HINT = "re-run `wsolbench eval` on the run directory to rebuild it"


class CacheError(WsolbenchError):
    """A cache file is missing, unreadable, from another schema version or inconsistent."""


# --------------------------------------------------------------------------------------
# Config hash
# --------------------------------------------------------------------------------------


def _canonical(value: Any, *, hashing: bool = True) -> Any:
    """JSON-ready form: tuples -> lists, numpy -> Python, paths -> str; for hashing also
    integral floats -> ints (``1.0`` and ``1`` hash alike)."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v, hashing=hashing) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_canonical(v, hashing=hashing) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and hashing and math.isfinite(value) and value.is_integer():
        return int(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"config value {value!r} of type {type(value).__name__} cannot be stored in a cache")


def _drop_keys(config: Mapping[str, Any], exclude: Iterable[str], prefix: str = "") -> dict[str, Any]:
    exclude = set(exclude)
    plain = {key for key in exclude if "." not in key}
    out = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if dotted in exclude or f"{dotted}.*" in exclude or str(key) in plain:
            continue
        out[key] = _drop_keys(value, exclude, f"{dotted}.") if isinstance(value, Mapping) else value
    return out


def config_hash(
    config: Mapping[str, Any], *, exclude: Iterable[str] = NON_RESULT_KEYS, dataset_fingerprint: str | None = None
) -> str:
    """Stable sha256 (hex) of what a run's trained model depends on.

    The config is reduced to canonical JSON (keys sorted, no whitespace, tuples as lists,
    integral floats as ints so ``1`` and ``1.0`` hash alike) after removing ``exclude``
    (see :data:`NON_RESULT_KEYS`); with ``dataset_fingerprint`` (the training split's,
    :func:`dataset_fingerprint`) it is hashed too, under the top-level key
    ``"dataset_fingerprint"``. Two runs with the same hash train the same model, so a run
    or sweep reuses the run folder of this hash (and only re-evaluates or re-predicts
    when evaluation settings differ).
    """
    reduced = _canonical(_drop_keys(config, exclude))
    if dataset_fingerprint is not None:
        reduced["dataset_fingerprint"] = str(dataset_fingerprint)
    text = json.dumps(reduced, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def dataset_fingerprint(dataset: Any) -> str:
    """sha256 (hex) of a built dataset split's identity: its items' ids and labels, in order,
    and its class hierarchy (level names, class names, ancestors).

    It stands for the data in the config hash instead of the folder the data lives in, so
    moving the data does not retrain, while a different list of images or labels does. The
    pixels are not read. A dataset makes this cheap by offering ``image_ids`` (a sequence of
    ``str``, or a method returning one) and ``labels()`` (the fine labels; an array or a
    method); otherwise every item is loaded once (``dataset[i].image_id`` / ``.label``).
    """
    digest = hashlib.sha256()
    hierarchy = getattr(dataset, "hierarchy", None)
    if hierarchy is not None:
        described = {
            "levels": list(hierarchy.level_names),
            "classes": [list(names) for names in hierarchy.class_names],
            "ancestors": np.asarray(hierarchy.ancestors).tolist(),
        }
        digest.update(json.dumps(described, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n")
    ids, labels = _identity(dataset)
    if len(ids) != len(labels):
        raise ValueError(f"dataset gives {len(ids)} image ids but {len(labels)} labels")
    for image_id, label in zip(ids, labels):
        digest.update(f"{image_id}\t{int(label)}\n".encode())
    return digest.hexdigest()


def _identity(dataset: Any) -> tuple[Sequence[str], Sequence[int]]:
    """``(image ids, fine labels)`` of a dataset, without loading images when it can say them."""
    ids = getattr(dataset, "image_ids", None)
    labels = getattr(dataset, "labels", None)
    ids = ids() if callable(ids) else ids
    labels = labels() if callable(labels) else labels
    if ids is not None and labels is not None:
        return [str(i) for i in ids], [int(v) for v in np.asarray(labels).reshape(-1)]
    samples = [dataset[i] for i in range(len(dataset))]
    return [str(s.image_id) for s in samples], [int(s.label) for s in samples]


# --------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _library_version() -> str:
    from wsolbench import __version__

    return __version__


@dataclass
class CacheMeta:
    """What produced a cache: stored as attributes of the HDF5 file's root.

    Attributes:
        method, backbone, dataset: Component names (``config[section]["name"]``).
        config: The full resolved config of the run.
        seed: The run's seed (``config["seed"]`` by default).
        split: The evaluated split.
        plugin_versions: ``{plugin or distribution name: version}`` of the plugins used.
        library_version: wsolbench's version (filled in when empty).
        config_hash: The run's hash (:func:`config_hash` with the training split's
            fingerprint; computed from ``config`` alone when empty).
        created: ISO-8601 UTC time of writing (filled in when empty).
        extra: Any other JSON-serialisable information. The runner stores
            ``data_fingerprint`` (:func:`dataset_fingerprint` of the split in this cache),
            ``train_data_fingerprint`` (of the training split) and ``train_device``
            (``"cpu"``, ``"cuda"``: where the model was trained).
    """

    method: str
    backbone: str
    dataset: str
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    split: str = "test"
    plugin_versions: dict[str, str] = field(default_factory=dict)
    library_version: str = ""
    config_hash: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], **overrides: Any) -> CacheMeta:
        """Metadata of a run from its resolved config (``method.name`` etc., ``seed``)."""

        def name(section: str) -> str:
            value = config.get(section, "")
            return str(value.get("name", "")) if isinstance(value, Mapping) else str(value)

        values: dict[str, Any] = {
            "method": name("method"),
            "backbone": name("backbone"),
            "dataset": name("dataset"),
            "config": _canonical(config, hashing=False),
            "seed": config.get("seed"),
        }
        values.update(overrides)
        return cls(**values)

    def completed(self) -> CacheMeta:
        """A copy with ``library_version``, ``config_hash`` and ``created`` filled in."""
        return replace(
            self,
            library_version=self.library_version or _library_version(),
            config_hash=self.config_hash or config_hash(self.config),
            created=self.created or _utc_now(),
        )


_META_JSON = ("config", "plugin_versions", "extra")
_META_STR = ("method", "backbone", "dataset", "split", "library_version", "config_hash", "created")


def _write_meta(f: h5py.File, meta: CacheMeta) -> None:
    for key in _META_STR:
        f.attrs[key] = str(getattr(meta, key))
    for key in _META_JSON:
        f.attrs[key] = json.dumps(getattr(meta, key), sort_keys=False)
    f.attrs["seed"] = json.dumps(meta.seed)


def _read_meta(f: h5py.File) -> CacheMeta:
    def text(key: str) -> str:
        value = f.attrs.get(key, "")
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)

    values: dict[str, Any] = {key: text(key) for key in _META_STR}
    for key in _META_JSON:
        raw = text(key)
        values[key] = json.loads(raw) if raw else {}
    raw_seed = text("seed")
    values["seed"] = json.loads(raw_seed) if raw_seed else None
    return CacheMeta(**values)
