"""The contracts between the core and the plugins.

Conventions fixed once for the whole library:

* Boxes are ``x0, y0, x1, y1`` in pixels of the image they belong to, **inclusive**
  corners (a one-pixel box has ``x0 == x1``). Loaders convert to this on load.
* Maps are ``(N, H, W)`` float arrays; one function normalises them
  (:func:`wsolbench.metrics.normalize_scoremap`).
* Hierarchy levels are ordered coarse to fine: level 0 is the coarsest, level
  ``depth - 1`` the fine classes the dataset is labelled with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class FeatureLevel:
    """One feature map a backbone exposes.

    Attributes:
        name: Level name, e.g. ``"conv5_3"`` or ``"layer4"``.
        channels: Number of channels of the feature map.
        reduction: Stride of the feature map relative to the input image.
    """

    name: str
    channels: int
    reduction: int


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor: ``forward(x) -> list[Tensor]``, one map per level.

    ``x`` is ``(B, 3, H, W)``; the i-th output is ``(B, feature_info[i].channels,
    H / reduction, W / reduction)`` (rounded as the network rounds). Levels go from
    shallow to deep; a method picks levels by index.
    """

    feature_info: Sequence[FeatureLevel]

    def __call__(self, x: Tensor) -> list[Tensor]: ...


@dataclass(frozen=True)
class Hierarchy:
    """A class hierarchy: every fine class's ancestor at every level.

    Attributes:
        level_names: Names of the levels, coarse to fine, e.g. ``("order", "family", "species")``.
        class_names: Per level, the names of that level's classes (index = class id).
        ancestors: ``(num_fine_classes, depth)`` int array; ``ancestors[c, l]`` is the id at
            level ``l`` of fine class ``c``. The last column is ``arange(num_fine_classes)``.
    """

    level_names: tuple[str, ...]
    class_names: tuple[tuple[str, ...], ...]
    ancestors: np.ndarray

    @property
    def depth(self) -> int:
        """Number of levels, the fine level included."""
        return len(self.level_names)

    @property
    def num_classes(self) -> tuple[int, ...]:
        """Number of classes at each level, coarse to fine."""
        return tuple(len(names) for names in self.class_names)

    def labels_at(self, fine_labels: Tensor, level: int) -> Tensor:
        """Map fine class ids ``(B,)`` to their ancestors' ids at ``level``."""
        table = torch.as_tensor(self.ancestors[:, level], dtype=torch.long, device=fine_labels.device)
        return table[fine_labels]

    @classmethod
    def flat(cls, class_names: Sequence[str]) -> Hierarchy:
        """A one-level hierarchy (no parents): what a dataset without taxonomy has."""
        n = len(class_names)
        return cls(("class",), (tuple(class_names),), np.arange(n).reshape(n, 1))


@dataclass
class Sample:
    """One dataset item.

    Attributes:
        image: ``(3, H, W)`` float tensor, normalised for the network.
        label: Fine class id.
        boxes: ``(M, 4)`` int64 tensor of inclusive ``x0, y0, x1, y1`` boxes in ``image`` pixels.
        mask: ``(H, W)`` uint8 tensor (1 object, 0 background, other values ignored) or None.
        image_id: Stable identifier of the image inside its dataset.
    """

    image: Tensor
    label: int
    boxes: Tensor
    mask: Tensor | None
    image_id: str


class WSOLDataset(torch.utils.data.Dataset):
    """Base class of datasets: ``__getitem__`` returns a :class:`Sample`.

    Subclasses set ``hierarchy`` (a :class:`Hierarchy`; :meth:`Hierarchy.flat` when the
    data has no taxonomy) and ``has_masks``.
    """

    hierarchy: Hierarchy
    has_masks: bool = False

    def __getitem__(self, index: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError


@dataclass(frozen=True)
class HeadSpec:
    """Where a method attaches a head and what it is trained on.

    Attributes:
        level: Index into the backbone's ``feature_info`` (0 = shallowest).
        label_level: Hierarchy level whose labels train this head (0 = coarsest,
            ``hierarchy.depth - 1`` = fine classes).
        k: Maps per class.
    """

    level: int
    label_level: int
    k: int = 1


@dataclass
class Outputs:
    """What a WSOL model produces for one batch.

    Attributes:
        raw_maps: Per head, ``(B, C_h, K_h, h, w)``: every map of every class.
        class_maps: Per head, ``(B, C_h, h, w)``: the K maps combined into one per class.
        logits: Per head, ``(B, C_h)``: the global average of each class map.
    """

    raw_maps: list[Tensor]
    class_maps: list[Tensor]
    logits: list[Tensor]
    extras: dict[str, Any] = field(default_factory=dict)


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Min-max normalise each ``(h, w)`` map of a ``(B, h, w)`` tensor to [0, 1].

    A constant map becomes all zeros.
    """
    flat = maps.flatten(1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    out = (flat - low) / span.clamp_min(eps)
    return torch.where(span > eps, out, torch.zeros_like(out)).view_as(maps)


class Method:
    """A WSOL method. This base class *is* CAM (Zhou et al., CVPR 2016).

    Subclasses override only the stages they change; each stage's default is CAM's:

    * :meth:`head_specs` — which feature levels get a head, trained on which label level,
      with how many maps per class (CAM: one head on the deepest level, fine labels, K=1).
    * :meth:`prepare_images` — a training-time batch transform (CAM: none; Hide-and-Seek
      would hide random patches here).
    * :meth:`combine_maps` — how the K maps of a class become its class map (mean; a
      method may drop maps while training).
    * :meth:`loss` — the training loss (sum of each head's cross-entropy) plus any
      regularizer; returns named terms with the total under ``"loss"``.
    * :meth:`fuse` — the test-time localization map from all heads' maps.

    Options are the keyword-only arguments of ``__init__`` with their defaults; they are
    the only keys a config may set under ``method.``.
    """

    def head_specs(self, feature_info: Sequence[FeatureLevel], hierarchy: Hierarchy) -> list[HeadSpec]:
        """Heads to build: CAM puts one K=1 head on the deepest level, fine labels."""
        return [HeadSpec(level=len(feature_info) - 1, label_level=hierarchy.depth - 1, k=1)]

    def prepare_images(self, images: Tensor) -> Tensor:
        """Training-time transform of a ``(B, 3, H, W)`` batch before the forward pass."""
        return images

    def combine_maps(self, raw_maps: Tensor, *, training: bool) -> Tensor:
        """``(B, C, K, h, w)`` -> ``(B, C, h, w)``: the mean of each class's K maps."""
        return raw_maps.mean(dim=2)

    def logits(self, class_maps: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C)``: global average pooling of each class map."""
        return class_maps.mean(dim=(2, 3))

    def loss(self, outputs: Outputs, targets: list[Tensor]) -> dict[str, Tensor]:
        """Sum of every head's cross-entropy against its label level's targets."""
        terms = {
            f"ce{i}": F.cross_entropy(logits, target) for i, (logits, target) in enumerate(zip(outputs.logits, targets))
        }
        return {"loss": sum(terms.values()), **terms}

    def fuse(self, outputs: Outputs, classes: list[Tensor]) -> Tensor:
        """Test-time map ``(B, h, w)`` from every head's map of its class.

        Args:
            outputs: The model's outputs (eval mode).
            classes: Per head, ``(B,)`` class ids at that head's label level: the predicted
                fine class and its ancestors.

        Returns:
            Each head's map of its class, min-max normalised per image, resized to the
            largest head resolution and averaged over heads.
        """
        size = max((m.shape[-2:] for m in outputs.class_maps), key=lambda s: s[0] * s[1])
        picked = []
        for maps, cls in zip(outputs.class_maps, classes):
            one = maps[torch.arange(maps.shape[0], device=maps.device), cls]
            one = minmax_normalize(one)
            if one.shape[-2:] != size:
                one = F.interpolate(one[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
            picked.append(one)
        return torch.stack(picked).mean(0)
