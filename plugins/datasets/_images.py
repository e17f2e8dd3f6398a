"""Opening images and masks with errors that name the file (and where it was listed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from wsolbench.errors import WsolbenchError


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def open_image(path: Path, where: str) -> Image.Image:
    """Open and fully decode an image as RGB; a missing or corrupt file is a one-line error."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except FileNotFoundError:
        raise WsolbenchError(
            f"{path}: image file is missing (listed at {where}); restore it or remove the entry"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise WsolbenchError(
            f"{path}: cannot decode image ({one_line(error)}); the file is truncated or corrupt "
            f"(listed at {where}): re-download or re-export it"
        ) from None


def read_mask_file(path: Path, where: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """A mask image as a ``(H, W)`` uint8 array of its grey values; a missing or corrupt file is a one-line error.

    Args:
        path: The mask file.
        where: ``"file:line"`` listing it (for messages).
        size: ``(width, height)`` it must have (None: any).
    """
    try:
        with Image.open(path) as image:
            image.load()
            if size is not None and image.size != size:
                raise WsolbenchError(
                    f"{path}: mask is {image.size[0]}x{image.size[1]} but its image is {size[0]}x{size[1]} "
                    f"(listed at {where}); masks must have the image's size"
                )
            return np.array(image.convert("L"), dtype=np.uint8)
    except FileNotFoundError:
        raise WsolbenchError(
            f"{path}: mask file is missing (listed at {where}); restore it or remove the mask"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise WsolbenchError(
            f"{path}: cannot decode mask ({one_line(error)}) (listed at {where}); re-export it"
        ) from None


def open_mask(path: Path, where: str, size: tuple[int, int]) -> np.ndarray:
    """A mask file as a ``(H, W)`` uint8 array: 0 background, 1 object (255 is read as 1), other values ignore."""
    array = read_mask_file(path, where, size)
    array[array == 255] = 1
    return array


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """Inclusive ``x0, y0, x1, y1`` (int64) of the nonzero pixels of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.int64)


def binary_at(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``array > 0`` as a bool mask of ``size = (w, h)``, resized nearest-neighbour if needed."""
    binary = array > 0
    if binary.shape != (size[1], size[0]):
        resized = Image.fromarray(binary.view(np.uint8)).resize(size, Image.NEAREST)
        binary = np.asarray(resized).astype(bool)
    return binary
