"""Batching of :class:`wsolbench.specs.Sample` items."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wsolbench.specs import Sample


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
