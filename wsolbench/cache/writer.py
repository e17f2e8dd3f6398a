"""Streamed, atomic writing of a run's cache (:class:`CacheWriter`)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from wsolbench.cache.maps import _MAP_ENCODINGS, _check_unit_range, _encode
from wsolbench.cache.meta import SCHEMA_VERSION, CacheError, CacheMeta, _write_meta

#: Above this many classes only the top-5 predictions are stored by default, not the logits.
LOGITS_MAX_CLASSES = 256

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
