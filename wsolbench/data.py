"""Batching of :class:`wsolbench.specs.Sample` items and the image normalisation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wsolbench.specs import Sample

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: Tensor) -> Tensor:
    """``(3, H, W)`` float image in [0, 1] -> normalised with the ImageNet mean and std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image - mean) / std


def denormalize_image(image: Tensor) -> Tensor:
    """Inverse of :func:`normalize_image`, clamped to [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)


@dataclass
class Batch:
    """A collated batch: images stacked, variable-length boxes kept as a list."""

    images: Tensor
    labels: Tensor
    boxes: list[Tensor]
    masks: Tensor | None
    image_ids: list[str]


def collate_samples(samples: list[Sample]) -> Batch:
    """DataLoader ``collate_fn`` for :class:`Sample` items."""
    masks = [s.mask for s in samples]
    return Batch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.tensor([s.label for s in samples], dtype=torch.long),
        boxes=[s.boxes for s in samples],
        masks=torch.stack(masks) if all(m is not None for m in masks) else None,
        image_ids=[s.image_id for s in samples],
    )
