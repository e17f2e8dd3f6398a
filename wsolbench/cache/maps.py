"""Map encodings of the cache (uint8 quantisation, float storage) and the lazy :class:`MapStore`."""

from __future__ import annotations

from typing import Any

import numpy as np

#: How a map dataset may be stored (its ``encoding`` attribute).
_MAP_ENCODINGS = ("uint8", "float16", "float32", "float64")

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
