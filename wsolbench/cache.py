"""The HDF5 map cache: one file per evaluated run, from which every metric is recomputed.

A run's evaluation writes, for each test image, its fine-class logits, the fused
localization map of the predicted class and of the ground-truth class, optionally each
head's map and the K maps of DDA methods, and the image's ground truth. Metrics and
tables are then computed from this file only (:func:`wsolbench.evaluate.evaluate_cache`),
so a metric can change without re-running a model. The layout is described in
``docs/cache.md``; :data:`SCHEMA_VERSION` changes whenever it changes incompatibly.

Writing is streamed (:class:`CacheWriter` appends batches, a 50k-image evaluation never
holds all maps in memory) and atomic (a temporary file is renamed onto the final path
only after every image was written). Reading (:func:`read_cache`) validates the file
and is lazy: maps are read from disk when sliced.

Map encodings (measured in ``docs/cache.md``):

* ``"uint8"`` stores ``q = floor(map * 255)``, exactly the quantisation the box metrics
  apply to a map before thresholding, and is read back as ``q / 255`` (float32), which
  those metrics quantise back to the same ``q``: lossless for every box metric.
* ``"float32"`` stores the map as is. PxAP histograms the *float* scores over the
  ``cam_curve_interval`` grid, and uint8 (and float16) storage moves scores across grid
  edges, changing PxAP; so the ground-truth-class map, which PxAP uses, is stored as
  float32 whenever the dataset has masks.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
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

#: Above this many classes only the top-5 predictions are stored by default, not the logits.
LOGITS_MAX_CLASSES = 256

_MAP_ENCODINGS = ("uint8", "float16", "float32", "float64")
_REQUIRED = ("image_ids", "labels", "top5", "maps/fused_pred", "maps/fused_gt", "gt/boxes", "gt/box_offsets")
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


# --------------------------------------------------------------------------------------
# Map encoding
# --------------------------------------------------------------------------------------


def quantize_maps(maps: np.ndarray) -> np.ndarray:
    """``(..., H, W)`` maps in [0, 1] -> uint8 ``floor(map * 255)``.

    The product is taken in float64, as the box metrics do before their uint8 cast, so the
    stored value is the one they would compute.
    """
    return (np.asarray(maps, dtype=np.float64) * 255.0).astype(np.uint8)


def _check_unit_range(name: str, maps: np.ndarray) -> None:
    if maps.size and not (np.all(maps >= 0) and np.all(maps <= 1)):  # also catches NaN
        raise ValueError(
            f"{name} has values outside [0, 1] or NaN: "
            "normalise maps with wsolbench.metrics.normalize_scoremap before caching"
        )


def dequantize_maps(q: np.ndarray) -> np.ndarray:
    """uint8 ``q`` -> float32 ``q / 255``; the box metrics quantise this back to ``q`` exactly."""
    q = np.asarray(q)
    out = np.empty(q.shape, dtype=np.float32)
    np.divide(q, np.float32(255.0), out=out, dtype=np.float32)  # one pass, float32 like q.astype(float32) / 255
    return out


def _encode(maps: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "uint8":
        return quantize_maps(maps)
    return np.asarray(maps, dtype=encoding)


def _decode(data: np.ndarray, encoding: str) -> np.ndarray:
    if encoding == "uint8":
        return dequantize_maps(data)
    if encoding == "mask":
        return np.asarray(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.float32)


class MapStore:
    """A lazily read ``(N, ...)`` stack of maps, decoded to float32 when indexed.

    ``store[i]``, ``store[a:b]`` and ``store[index_array]`` (sorted or not) read only the
    requested images. ``store.raw[...]`` gives the stored (undecoded) values.
    """

    def __init__(self, data: Any, encoding: str, name: str = ""):
        self.raw = data
        self.encoding = encoding
        self.name = name

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.raw.shape)

    def __len__(self) -> int:
        return int(self.raw.shape[0])

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(self.raw, np.ndarray) or not isinstance(index, (list, np.ndarray)):
            return _decode(self.raw[index], self.encoding)
        index = np.asarray(index)
        index = np.flatnonzero(index) if index.dtype == bool else index.astype(np.int64)
        unique, inverse = np.unique(index, return_inverse=True)  # h5py wants increasing indices
        block = self.raw[unique] if len(unique) else np.zeros((0, *self.shape[1:]), self.raw.dtype)
        return _decode(block[inverse.reshape(-1)], self.encoding)


# --------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def top5_from_logits(logits: np.ndarray) -> np.ndarray:
    """``(N, C)`` -> ``(N, 5)`` int32 class ids by decreasing logit (ties: lower id first).

    With fewer than 5 classes the missing columns are ``-1``.
    """
    logits = np.asarray(logits)
    order = np.argsort(-logits.astype(np.float64), axis=1, kind="stable")[:, :5].astype(np.int32)
    if order.shape[1] < 5:
        order = np.concatenate([order, np.full((order.shape[0], 5 - order.shape[1]), -1, np.int32)], axis=1)
    return order


class CacheWriter:
    """Streams one run's evaluation into ``path`` (normally ``<run_dir>/cache.h5``).

    Use as a context manager and call :meth:`write_batch` once per batch, in image order.
    The data go to ``<path>.tmp-<pid>``; leaving the ``with`` block normally after
    exactly ``num_images`` images renames it onto ``path`` (``os.replace``, atomic). An
    exception removes the temporary file; a killed process leaves only the temporary
    file, which :func:`read_cache` never opens as a cache (it has no completion mark).

    Args:
        path: Final path of the cache.
        meta: What produced the run (:class:`CacheMeta`; ``config_hash`` etc. filled in).
        num_images: Number of images that will be written.
        map_size: ``(H, W)`` of the fused maps (the evaluated image size).
        num_classes: Number of fine classes (columns of the logits).
        has_masks: Whether ``write_batch`` receives ``masks`` (enables PxAP).
        extra_maps: The method's extra maps (:meth:`wsolbench.specs.Method.extra_maps`):
            name -> ``((M, h, w), M titles)``; each is written per batch through ``extras``
            and stored as uint8 under ``maps/extras/<name>``.
        store_logits: Store the full logits; default: only if ``num_classes <= 256``
            (``top5`` is always stored).
        gt_map_encoding: Encoding of ``maps/fused_gt``; default ``"float32"`` when the
            dataset has masks (PxAP needs the float scores), else ``"uint8"``.
        compression: ``"gzip"`` (default, smallest) or ``"lzf"`` (faster), or None.
        compression_level: gzip level.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: CacheMeta,
        num_images: int,
        map_size: tuple[int, int],
        num_classes: int,
        has_masks: bool = False,
        extra_maps: Mapping[str, tuple[Sequence[int], Sequence[str]]] | None = None,
        store_logits: bool | None = None,
        gt_map_encoding: str | None = None,
        compression: str | None = "gzip",
        compression_level: int = 4,
    ):
        self.path = Path(path)
        self.meta = meta.completed()
        self.num_images = int(num_images)
        self.map_size = (int(map_size[0]), int(map_size[1]))
        self.num_classes = int(num_classes)
        self.has_masks = bool(has_masks)
        self.extra_maps = {
            name: (tuple(int(v) for v in shape), [str(t) for t in titles])
            for name, (shape, titles) in (extra_maps or {}).items()
        }
        for name, (shape, titles) in self.extra_maps.items():
            if len(shape) != 3 or len(titles) != shape[0] or not name or "/" in name:
                raise ValueError(f"extra map {name!r}: needs a name without '/', shape (M, h, w) and M titles")
        self.store_logits = self.num_classes <= LOGITS_MAX_CLASSES if store_logits is None else bool(store_logits)
        self.gt_map_encoding = gt_map_encoding or ("float32" if self.has_masks else "uint8")
        if self.gt_map_encoding not in _MAP_ENCODINGS:
            raise ValueError(f"gt_map_encoding must be one of {_MAP_ENCODINGS}, got {self.gt_map_encoding!r}")
        if self.num_images < 1:
            raise ValueError("a cache needs at least one image")
        self.compression = compression
        self.compression_opts = compression_level if compression == "gzip" else None
        self.tmp_path = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
        self._file: h5py.File | None = None
        self._count = 0
        self._num_boxes = 0

    # -- context management ------------------------------------------------------------

    def __enter__(self) -> CacheWriter:
        self.open()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def open(self) -> None:
        """Create the temporary file and its datasets (called by ``__enter__``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w")
        try:
            self._create()
        except BaseException:
            self.abort()
            raise

    def _dataset(
        self, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...] | None = None, **kw: Any
    ) -> h5py.Dataset:
        assert self._file is not None
        filters: dict[str, Any] = {}
        if self.compression is not None and chunks is not None:
            filters = {
                "compression": self.compression,
                "compression_opts": self.compression_opts,
                "shuffle": np.dtype(dtype).itemsize > 1,
            }
        return self._file.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, **filters, **kw)

    def _create(self) -> None:
        f = self._file
        assert f is not None
        n, (h, w) = self.num_images, self.map_size
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["complete"] = False
        _write_meta(f, self.meta)
        f.attrs["num_images"] = n
        f.attrs["num_classes"] = self.num_classes
        f.attrs["map_size"] = np.asarray(self.map_size, dtype=np.int64)
        f.attrs["has_masks"] = self.has_masks
        row = min(n, 4096)
        self._dataset("image_ids", (n,), h5py.string_dtype("utf-8"), chunks=(row,))
        self._dataset("labels", (n,), np.int64, chunks=(row,))
        self._dataset("top5", (n, 5), np.int32, chunks=(row, 5))
        if self.store_logits:
            rows = max(1, min(n, 2**18 // self.num_classes))  # ~1 MiB chunks
            self._dataset("logits", (n, self.num_classes), np.float32, chunks=(rows, self.num_classes))
        maps = f.create_group("maps")
        for name, encoding in (("fused_pred", "uint8"), ("fused_gt", self.gt_map_encoding)):
            ds = self._dataset(f"maps/{name}", (n, h, w), encoding, chunks=(1, h, w))
            ds.attrs["encoding"] = encoding
        maps.create_group("extras").attrs["order"] = json.dumps(list(self.extra_maps))
        for name, (shape, titles) in self.extra_maps.items():
            ds = self._dataset(f"maps/extras/{name}", (n, *shape), np.uint8, chunks=(1, *shape))
            ds.attrs["encoding"] = "uint8"
            ds.attrs["names"] = json.dumps(titles)
        f.create_group("gt")
        self._dataset("gt/boxes", (0, 4), np.int32, chunks=(4096, 4), maxshape=(None, 4))
        offsets = self._dataset("gt/box_offsets", (n + 1,), np.int64, chunks=(min(n + 1, 4096),))
        offsets[0] = 0
        if self.has_masks:
            self._dataset("gt/masks", (n, h, w), np.uint8, chunks=(1, h, w))

    # -- writing -----------------------------------------------------------------------

    def write_batch(
        self,
        *,
        image_ids: Sequence[str],
        labels: Any,
        logits: Any,
        fused_pred: Any,
        fused_gt: Any,
        boxes: Sequence[Any],
        masks: Any = None,
        extras: Mapping[str, Any] | None = None,
    ) -> None:
        """Append one batch of ``B`` images (numpy arrays or tensors).

        Args:
            image_ids: ``B`` strings.
            labels: ``(B,)`` fine class ids.
            logits: ``(B, C)`` fine-class logits.
            fused_pred: ``(B, H, W)`` normalised fused map of the predicted class.
            fused_gt: ``(B, H, W)`` normalised fused map of the ground-truth class.
            boxes: ``B`` arrays ``(M_i, 4)`` of inclusive ``x0, y0, x1, y1`` boxes.
            masks: ``(B, H, W)`` uint8 masks (required iff ``has_masks``).
            extras: name -> ``(B, M, h, w)`` maps in [0, 1], one entry per declared extra map.
        """
        f = self._file
        if f is None:
            raise RuntimeError("CacheWriter.write_batch called outside its `with` block")
        b = len(image_ids)
        start, stop = self._count, self._count + b
        if stop > self.num_images:
            raise ValueError(f"cache {self.path}: batch of {b} images would exceed num_images={self.num_images}")
        h, w = self.map_size

        def array(name: str, value: Any, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
            if value is None:
                raise ValueError(f"this cache stores {name} but write_batch got {name}=None")
            out = _to_numpy(value) if dtype is None else _to_numpy(value).astype(dtype)
            if out.shape != shape:
                raise ValueError(f"{name} has shape {out.shape}, expected {shape}")
            return out

        # Check everything before writing anything: a rejected batch leaves the file as it was.
        labels = array("labels", _to_numpy(labels).reshape(-1), (b,), np.int64)
        logits = array("logits", logits, (b, self.num_classes), np.float32)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must be class ids in [0, {self.num_classes}), got {labels.min()}..{labels.max()}")
        maps = {
            "fused_pred": array("fused_pred", fused_pred, (b, h, w)),
            "fused_gt": array("fused_gt", fused_gt, (b, h, w)),
        }
        extras = dict(extras or {})
        if set(extras) != set(self.extra_maps):
            raise ValueError(
                f"write_batch got extra maps {sorted(extras)}, the cache declares {sorted(self.extra_maps)}"
            )
        maps.update(
            {f"extras/{name}": array(name, extras[name], (b, *shape)) for name, (shape, _) in self.extra_maps.items()}
        )
        for name, value in maps.items():
            _check_unit_range(name, value)
        masks = array("masks", masks, (b, h, w), np.uint8) if self.has_masks else None
        if len(boxes) != b:
            raise ValueError(f"got boxes for {len(boxes)} images in a batch of {b}")
        box_arrays = [_to_numpy(bx).astype(np.int64).reshape(-1, 4) for bx in boxes]
        for i, bx in enumerate(box_arrays):
            if len(bx) == 0 or (bx < 0).any() or (bx[:, 2] < bx[:, 0]).any() or (bx[:, 3] < bx[:, 1]).any():
                raise ValueError(
                    f"image {image_ids[i]!r}: needs at least one box x0, y0, x1, y1 >= 0 "
                    f"with x1 >= x0, y1 >= y0, got {bx.tolist()}"
                )

        f["image_ids"][start:stop] = np.asarray([str(i) for i in image_ids], dtype=object)
        f["labels"][start:stop] = labels
        f["top5"][start:stop] = top5_from_logits(logits)
        if self.store_logits:
            f["logits"][start:stop] = logits
        for name, value in maps.items():
            f[f"maps/{name}"][start:stop] = _encode(value, self.gt_map_encoding if name == "fused_gt" else "uint8")
        if masks is not None:
            f["gt/masks"][start:stop] = masks
        flat = np.concatenate(box_arrays).astype(np.int32)
        ds = f["gt/boxes"]
        ds.resize(self._num_boxes + len(flat), axis=0)
        ds[self._num_boxes :] = flat
        f["gt/box_offsets"][start + 1 : stop + 1] = self._num_boxes + np.cumsum([len(bx) for bx in box_arrays])
        self._num_boxes += len(flat)
        self._count = stop

    @property
    def num_written(self) -> int:
        """Images written so far."""
        return self._count

    def close(self) -> Path:
        """Check every image was written, mark the file complete and move it to ``path``."""
        f = self._file
        if f is None:
            return self.path
        if self._count != self.num_images:
            self.abort()
            raise CacheError(
                f"cache {self.path}: {self._count} of {self.num_images} images were written; nothing was saved"
            )
        try:
            f.attrs["complete"] = True
            f.flush()
            f.close()
            self._file = None
            with open(self.tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(self.tmp_path, self.path)
        except BaseException:
            self.abort()
            raise
        return self.path

    def abort(self) -> None:
        """Discard the temporary file (called on an exception inside the ``with`` block)."""
        if self._file is not None:
            try:
                self._file.close()
            except Exception:  # pragma: no cover - closing a broken file
                pass
            self._file = None
        try:
            self.tmp_path.unlink()
        except FileNotFoundError:
            pass


# --------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------


@dataclass
class ExtraMaps:
    """One of a method's extra maps in a cache: ``store[i]`` is image i's ``(M, h, w)`` maps.

    Attributes:
        store: The ``(N, M, h, w)`` maps (:class:`MapStore` or a stacked view of v1 layers).
        names: The ``M`` map titles.
    """

    store: Any
    names: list[str]


class _StackedStore:
    """Schema-1 per-level datasets ``maps/levels/<i>`` (each ``(N, H, W)``) read as one ``(N, L, H, W)``."""

    def __init__(self, stores: list[MapStore]):
        self.stores = stores

    @property
    def shape(self) -> tuple[int, ...]:
        n, *rest = self.stores[0].shape
        return (n, len(self.stores), *rest)

    def __len__(self) -> int:
        return len(self.stores[0])

    def __getitem__(self, index: Any) -> np.ndarray:
        layers = [store[index] for store in self.stores]
        return np.stack(layers, axis=1 if layers[0].ndim == 3 else 0)


def _read_extra_maps(f: h5py.File, store: Any) -> dict[str, ExtraMaps]:
    """The extra maps of a schema-2 cache, or the level and K maps of a schema-1 cache as extras."""
    extras: dict[str, ExtraMaps] = {}
    if "maps/extras" in f:
        group = f["maps/extras"]
        for name in json.loads(group.attrs.get("order", "[]")) or sorted(group):
            ds = f[f"maps/extras/{name}"]
            extras[name] = ExtraMaps(store(f"maps/extras/{name}"), json.loads(ds.attrs.get("names", "[]")))
        return extras
    if "maps/levels" in f:  # schema 1
        group = f["maps/levels"]
        count = len(group.keys())
        raw_names = group.attrs.get("names")
        names = json.loads(raw_names) if raw_names is not None else [str(i) for i in range(count)]
        extras["levels"] = ExtraMaps(_StackedStore([store(f"maps/levels/{i}") for i in range(count)]), names)
    if "maps/k_maps" in f:
        k_maps = store("maps/k_maps")
        extras["k_maps"] = ExtraMaps(k_maps, [f"k = {j + 1}" for j in range(k_maps.shape[1])])
    return extras


@dataclass
class RunCache:
    """One run's cache, as read by :func:`read_cache`.

    Maps are :class:`MapStore` objects (lazy, float32 on indexing) unless loaded; the
    small arrays are numpy arrays. Close with :meth:`close` or use ``with``.

    Attributes:
        path: The cache file.
        meta: What produced the run.
        schema_version: Layout version of the file.
        image_ids: ``N`` image identifiers.
        labels: ``(N,)`` int64 ground-truth fine class.
        top5: ``(N, 5)`` int32 predicted classes by decreasing logit (``-1`` pads).
        logits: ``(N, C)`` float32, or None if only the top-5 were stored.
        num_classes: ``C``.
        map_size: ``(H, W)``.
        fused_pred: ``(N, H, W)`` fused map of the predicted class.
        fused_gt: ``(N, H, W)`` fused map of the ground-truth class.
        extra_maps: The method's extra maps by name (:class:`ExtraMaps`, ``(N, M, h, w)``).
        boxes: ``N`` int32 arrays ``(M_i, 4)``, inclusive ``x0, y0, x1, y1``.
        masks: ``(N, H, W)`` uint8 masks (a :class:`MapStore` giving uint8), or None.
    """

    path: Path
    meta: CacheMeta
    schema_version: int
    image_ids: list[str]
    labels: np.ndarray
    top5: np.ndarray
    logits: np.ndarray | None
    num_classes: int
    map_size: tuple[int, int]
    fused_pred: MapStore
    fused_gt: MapStore
    extra_maps: dict[str, ExtraMaps]
    boxes: list[np.ndarray]
    masks: MapStore | None
    _file: h5py.File | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_images(self) -> int:
        return len(self.labels)

    @property
    def has_masks(self) -> bool:
        return self.masks is not None

    def close(self) -> None:
        """Close the underlying HDF5 file (lazy maps become unreadable)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> RunCache:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def resolve_cache_path(path: str | os.PathLike[str]) -> Path:
    """A run directory -> its ``cache.h5``; a file path is returned unchanged."""
    path = Path(path)
    return path / CACHE_FILENAME if path.is_dir() else path


def _fail(path: Path, message: str) -> CacheError:
    return CacheError(f"cache {path}: {message}")


def _open_validated(path: Path) -> h5py.File:
    """Open ``path`` read-only after checking it is a complete cache of this schema."""
    if not path.exists():
        raise _fail(path, "no such file: check the path; `wsolbench run` writes a run's cache")
    if not h5py.is_hdf5(path):
        size = path.stat().st_size
        hint = "it is empty" if size == 0 else f"{size} bytes without an HDF5 signature"
        raise _fail(path, f"not an HDF5 file ({hint}); delete it and {REBUILD_HINT}")
    try:
        f = h5py.File(path, "r")
    except OSError as error:
        detail = _first_line(error)
        kind = "truncated" if "truncat" in detail.lower() or "eof" in detail.lower() else "unreadable"
        raise _fail(path, f"the HDF5 file is {kind} ({detail}); delete it and {REBUILD_HINT}") from None
    try:
        if "schema_version" not in f.attrs:
            raise _fail(path, f"not a wsolbench cache (no schema_version attribute); {REBUILD_HINT}")
        version = int(f.attrs["schema_version"])
        if version not in READABLE_SCHEMAS:
            raise _fail(
                path,
                f"was written by cache schema {version}, this wsolbench ({_library_version()}) reads schemas "
                f"{', '.join(map(str, READABLE_SCHEMAS))}: {REBUILD_HINT}",
            )
        if not bool(f.attrs.get("complete", False)):
            raise _fail(path, f"the write did not finish (file not marked complete); delete it and {REBUILD_HINT}")
        for name in _REQUIRED:
            if name not in f:
                raise _fail(
                    path, f"dataset {name!r} is missing; the file is damaged or not a wsolbench cache: {REBUILD_HINT}"
                )
    except BaseException:
        f.close()
        raise
    return f


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def read_cache(path: str | os.PathLike[str], *, load: bool = False) -> RunCache:
    """Open and validate a cache (a ``cache.h5`` or a run directory holding one).

    Args:
        path: The cache file or its run directory.
        load: Read every map into memory and close the file; otherwise maps are read
            lazily and the file stays open until :meth:`RunCache.close`.

    Raises:
        CacheError: one line naming the problem and the fix: a missing file, a file that
            is not HDF5 or is truncated, an unfinished write, another schema version, a
            missing dataset or inconsistent shapes.
    """
    path = resolve_cache_path(path)
    f = _open_validated(path)
    try:
        return _read_datasets(path, f, load=load)
    except OSError as error:
        f.close()
        raise _fail(
            path, f"the HDF5 data cannot be read ({_first_line(error)}); delete it and {REBUILD_HINT}"
        ) from None
    except BaseException:
        f.close()
        raise


def read_meta(path: str | os.PathLike[str]) -> CacheMeta:
    """Only the metadata of a cache (the file is validated, no dataset is read)."""
    path = resolve_cache_path(path)
    f = _open_validated(path)
    try:
        return _read_meta(f)
    finally:
        f.close()


def _read_datasets(path: Path, f: h5py.File, *, load: bool) -> RunCache:
    meta = _read_meta(f)
    labels = f["labels"][:].astype(np.int64)
    n = len(labels)
    image_ids = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in f["image_ids"][:]]
    top5 = f["top5"][:].astype(np.int32)
    logits = f["logits"][:].astype(np.float32) if "logits" in f else None
    offsets = f["gt/box_offsets"][:].astype(np.int64)
    flat = f["gt/boxes"][:].astype(np.int32)
    num_classes = int(f.attrs.get("num_classes", logits.shape[1] if logits is not None else 0))
    map_size = tuple(int(v) for v in f.attrs.get("map_size", f["maps/fused_gt"].shape[1:]))

    def check(name: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
        if tuple(shape) != tuple(expected):
            raise _fail(
                path,
                f"dataset {name!r} has shape {tuple(shape)}, expected {tuple(expected)}: "
                f"the file is inconsistent; {REBUILD_HINT}",
            )

    check("image_ids", (len(image_ids),), (n,))
    check("top5", top5.shape, (n, 5))
    if logits is not None:
        check("logits", logits.shape, (n, num_classes))
    check("gt/box_offsets", offsets.shape, (n + 1,))
    if offsets[-1] != len(flat) or np.any(np.diff(offsets) < 1):
        raise _fail(
            path,
            f"gt/box_offsets does not index gt/boxes ({len(flat)} boxes); the file is inconsistent: {REBUILD_HINT}",
        )

    def store(name: str) -> MapStore:
        ds = f[name]
        encoding = ds.attrs.get("encoding", "uint8")
        encoding = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
        if encoding not in _MAP_ENCODINGS:
            raise _fail(path, f"dataset {name!r} has unknown encoding {encoding!r}: {REBUILD_HINT}")
        check(name, ds.shape[:1], (n,))
        return MapStore(ds[:] if load else ds, encoding, name)

    fused_pred, fused_gt = store("maps/fused_pred"), store("maps/fused_gt")
    check("maps/fused_pred", fused_pred.shape, (n, *map_size))
    check("maps/fused_gt", fused_gt.shape, (n, *map_size))
    extra_maps = _read_extra_maps(f, store)
    masks = None
    if "gt/masks" in f:
        check("gt/masks", f["gt/masks"].shape, (n, *map_size))
        masks = MapStore(f["gt/masks"][:] if load else f["gt/masks"], "mask", "gt/masks")
    boxes = np.split(flat, offsets[1:-1])
    cache = RunCache(
        path=path,
        meta=meta,
        schema_version=int(f.attrs["schema_version"]),
        image_ids=image_ids,
        labels=labels,
        top5=top5,
        logits=logits,
        num_classes=num_classes,
        map_size=(map_size[0], map_size[1]),
        fused_pred=fused_pred,
        fused_gt=fused_gt,
        extra_maps=extra_maps,
        boxes=boxes,
        masks=masks,
        _file=None if load else f,
    )
    if load:
        f.close()
    return cache
