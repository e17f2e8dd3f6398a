"""The transforms of the paper (Xue et al., ICCV 2019, following CAM), applied to an image,
its boxes and its mask together (:func:`transform_sample`), and the box arithmetic they need.

Box convention (see :mod:`wsolbench.specs`): inclusive ``x0, y0, x1, y1`` pixel corners. A
box covers the continuous span ``[x0, x1 + 1) x [y0, y1 + 1)``; resizing scales that span
and rounds it back to pixel edges, so a box stays on the same pixels of the resized image.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def scale_boxes(boxes: np.ndarray, sx: float, sy: float, width: int, height: int) -> np.ndarray:
    """Scale inclusive boxes by ``(sx, sy)`` into a ``width x height`` image.

    The span ``[x0, x1 + 1)`` becomes ``[round(x0 * sx), round((x1 + 1) * sx))``; a box
    keeps at least one pixel and stays inside the image.
    """
    if len(boxes) == 0:
        return np.zeros((0, 4), dtype=np.int64)
    b = boxes.astype(np.float64)
    x0 = np.floor(b[:, 0] * sx + 0.5)
    y0 = np.floor(b[:, 1] * sy + 0.5)
    x1 = np.floor((b[:, 2] + 1) * sx + 0.5) - 1
    y1 = np.floor((b[:, 3] + 1) * sy + 0.5) - 1
    x0 = np.clip(x0, 0, width - 1)
    y0 = np.clip(y0, 0, height - 1)
    x1 = np.clip(np.maximum(x1, x0), 0, width - 1)
    y1 = np.clip(np.maximum(y1, y0), 0, height - 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def crop_boxes(boxes: np.ndarray, left: int, top: int, size: int) -> np.ndarray:
    """Shift boxes into a ``size x size`` crop at ``(left, top)`` and clip them to it.

    Boxes are never dropped: a box entirely outside the crop collapses onto the nearest
    crop border (a one-pixel-wide line), so the number of boxes never changes.
    """
    if len(boxes) == 0:
        return boxes
    shifted = boxes - np.array([left, top, left, top], dtype=np.int64)
    return np.clip(shifted, 0, size - 1)


def flip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror boxes horizontally in an image ``width`` pixels wide."""
    if len(boxes) == 0:
        return boxes
    out = boxes.copy()
    out[:, 0] = width - 1 - boxes[:, 2]
    out[:, 2] = width - 1 - boxes[:, 0]
    return out


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``(3, H, W)`` float tensor in [0, 1] (the dataset normalises it)."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def transform_sample(
    image: Image.Image,
    boxes: np.ndarray,
    mask: np.ndarray | None,
    *,
    train: bool,
    resize: int,
    crop: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The paper's transforms, applied to the image, its boxes and its mask together.

    * train: resize to ``resize x resize`` (bilinear), a random ``crop x crop`` crop, a
      random horizontal flip (probability 0.5);
    * test: resize straight to ``crop x crop``.

    Boxes are scaled, shifted by the crop offset and clipped, and mirrored with the image;
    masks use nearest interpolation. The crop offset and the flip are drawn from torch's
    global RNG, so DataLoader worker seeding makes them reproducible.

    Returns:
        ``(3, crop, crop)`` image in [0, 1], ``(M, 4)`` int64 boxes, ``(crop, crop)`` uint8
        mask or None.
    """
    width, height = image.size
    size = resize if train else crop
    image = image.resize((size, size), Image.BILINEAR)
    boxes = scale_boxes(boxes, size / width, size / height, size, size)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))
    if train:
        top = int(torch.randint(0, size - crop + 1, (1,)).item())
        left = int(torch.randint(0, size - crop + 1, (1,)).item())
        flip = bool(torch.rand(1).item() < 0.5)
        image = image.crop((left, top, left + crop, top + crop))
        boxes = crop_boxes(boxes, left, top, crop)
        if mask is not None:
            mask = mask[top : top + crop, left : left + crop]
        if flip:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
            boxes = flip_boxes(boxes, crop)
            if mask is not None:
                mask = mask[:, ::-1]
    mask_tensor = torch.from_numpy(np.array(mask, dtype=np.uint8, copy=True)) if mask is not None else None
    return image_to_tensor(image), torch.from_numpy(np.array(boxes, dtype=np.int64, copy=True)), mask_tensor
