"""Validated, lazy reading of a run's cache (:func:`read_cache`), schema 1 included."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wsolbench.cache.maps import _MAP_ENCODINGS, MapStore
from wsolbench.cache.meta import (
    CACHE_FILENAME,
    READABLE_SCHEMAS,
    REBUILD_HINT,
    CacheError,
    CacheMeta,
    _library_version,
    _read_meta,
)

#: Datasets every cache has.
_REQUIRED = ("image_ids", "labels", "top5", "maps/fused_pred", "maps/fused_gt", "gt/boxes", "gt/box_offsets")

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
