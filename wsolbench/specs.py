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

import warnings
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


#: ``(mean, std)`` per RGB channel of the images a network expects, for inputs in [0, 1].
Normalization = tuple[tuple[float, float, float], tuple[float, float, float]]

#: The ImageNet statistics: what torchvision's and most of timm's weights expect.
IMAGENET_NORMALIZATION: Normalization = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@runtime_checkable
class Backbone(Protocol):
    """A feature extractor: ``forward(x) -> list[Tensor]``, one map per level.

    ``x`` is ``(B, 3, H, W)``; the i-th output is ``(B, feature_info[i].channels,
    H / reduction, W / reduction)`` (rounded as the network rounds). Levels go from
    shallow to deep; a method picks levels by index.

    A backbone may declare ``normalization`` (:data:`Normalization`), the input mean and std
    its weights expect (timm's ``pretrained_cfg``, the torchvision weights' transforms);
    datasets normalise their images with it. Without it, :data:`IMAGENET_NORMALIZATION`.
    """

    feature_info: Sequence[FeatureLevel]

    def __call__(self, x: Tensor) -> list[Tensor]: ...


def backbone_normalization(backbone: object) -> Normalization:
    """The backbone's declared input normalisation, ImageNet's when it declares none."""
    return getattr(backbone, "normalization", None) or IMAGENET_NORMALIZATION


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

    def soft_labels_at(self, fine_targets: Tensor, level: int) -> Tensor:
        """Map soft fine targets ``(B, C_fine)`` to ``(B, C_level)``: each coarse class gets the
        summed probability of its fine classes (rows still sum to 1)."""
        ancestors = torch.as_tensor(self.ancestors[:, level], dtype=torch.long, device=fine_targets.device)
        out = fine_targets.new_zeros(fine_targets.shape[0], self.num_classes[level])
        return out.index_add_(1, ancestors, fine_targets)

    @classmethod
    def flat(cls, class_names: Sequence[str]) -> Hierarchy:
        """A one-level hierarchy (no parents): what a dataset without taxonomy has."""
        n = len(class_names)
        return cls(("class",), (tuple(class_names),), np.arange(n).reshape(n, 1))


@dataclass
class Sample:
    """One dataset item.

    Attributes:
        image: ``(3, H, W)`` float tensor, normalised for the network (:meth:`WSOLDataset.normalize`).
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
    data has no taxonomy) and ``has_masks``, and pass their ``[0, 1]`` images through
    :meth:`normalize`. The runner sets ``normalization`` to the backbone's before loading.
    """

    hierarchy: Hierarchy
    has_masks: bool = False
    normalization: Normalization = IMAGENET_NORMALIZATION

    def normalize(self, image: Tensor) -> Tensor:
        """``(3, H, W)`` float image in [0, 1] -> ``(image - mean) / std`` with :attr:`normalization`."""
        mean, std = (torch.tensor(v, dtype=image.dtype).view(3, 1, 1) for v in self.normalization)
        return (image - mean) / std

    def denormalize(self, image: Tensor) -> Tensor:
        """Inverse of :meth:`normalize`, clamped to [0, 1] (for pictures)."""
        mean, std = (torch.tensor(v, dtype=image.dtype).view(3, 1, 1) for v in self.normalization)
        return (image * std + mean).clamp(0, 1)

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
        logits: Per head, ``(B, C_h)``: the class scores; the last head's are the prediction.
        extras: Anything else a method's :meth:`Method.forward` computes for its
            :meth:`Method.loss`, :meth:`Method.fuse` or :meth:`Method.extra_maps` (auxiliary
            branch outputs, erased features, attention maps).
    """

    raw_maps: list[Tensor]
    class_maps: list[Tensor]
    logits: list[Tensor]
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MapSet:
    """Per-image maps a method keeps in the cache for pictures (``wsolbench show``).

    Attributes:
        maps: ``(B, M, h, w)``, any range: the core min-max normalises each map and stores it
            as uint8 at this resolution.
        names: ``M`` titles, one per map (e.g. ``("k=1", "k=2")`` or the head levels).
    """

    maps: Tensor
    names: tuple[str, ...]


def minmax_normalize(maps: Tensor, eps: float = 1e-12) -> Tensor:
    """Min-max normalise each ``(h, w)`` map of a ``(B, h, w)`` tensor to [0, 1].

    A constant map becomes all zeros.
    """
    flat = maps.flatten(1)
    low = flat.min(1, keepdim=True).values
    span = flat.max(1, keepdim=True).values - low
    out = (flat - low) / span.clamp_min(eps)
    return torch.where(span > eps, out, torch.zeros_like(out)).view_as(maps)


def select_class_maps(class_maps: Tensor, classes: Tensor) -> Tensor:
    """``(B, C, h, w)``, ``(B,)`` -> ``(B, h, w)``: each image's map of its class."""
    return class_maps[torch.arange(class_maps.shape[0], device=class_maps.device), classes]


def resize_maps(maps: Tensor, size: Sequence[int]) -> Tensor:
    """``(B, h, w)`` -> ``(B, *size)``, bilinear (``align_corners=False``); unchanged if already that size."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def largest_size(maps: Sequence[Tensor]) -> tuple[int, int]:
    """The largest ``(h, w)`` (by area) among the last two dimensions of ``maps``."""
    return tuple(max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1]))


class Method:
    """A WSOL method. This base class *is* CAM (Zhou et al., CVPR 2016).

    A method overrides only the stages it changes; each stage's default is CAM's. In the
    order a training step calls them:

    * :meth:`head_specs` — which feature levels get a head, trained on which label level,
      with how many maps per class (CAM: one head on the deepest level, fine labels, K=1).
    * :meth:`build` — called once when the model is assembled: create the method's own
      trainable modules (``model.method_modules[name] = module``: auxiliary branches, a second
      classifier) and change the backbone (``model.insert_after("layer3.5", module)``: a layer
      inserted after a named submodule, for torchvision and timm backbones alike). Everything
      created here is trained (heads' learning rate unless named in :attr:`backbone_lr_modules`)
      and checkpointed with the model.
    * :meth:`prepare_batch` — the training batch transform: ``(images, labels) -> (images,
      targets)``; targets may be soft (``(B, C)`` class distributions: CutMix's mixed labels).
    * :meth:`forward` — the model's forward pass from the backbone's features, with the
      training targets at hand (None at test time). The default runs every head on its level
      (:meth:`WSOLModel.forward_heads`), which calls :meth:`combine_maps` and :meth:`logits`.
    * :meth:`loss` — named loss terms with the total under ``"loss"`` (CAM: each head's
      cross-entropy against its label level's targets).
    * :meth:`fuse` — the test-time localization map of given classes from the outputs.
    * :meth:`extra_maps` — per-image maps to keep in the cache for pictures.

    Options are the keyword-only arguments of ``__init__`` with their defaults; they are
    the only keys a config may set under ``method.``.

    Compatibility: ``prepare_images(images) -> images`` (the first contract's batch
    transform) still works when a subclass overrides it and not :meth:`prepare_batch`, with
    a one-time :class:`FutureWarning`.
    """

    #: Names in ``model.method_modules`` (or given to ``model.insert_after``) trained at the
    #: backbone's learning rate instead of the heads'.
    backbone_lr_modules: tuple[str, ...] = ()

    #: Where the method goes in tables (lower first; ties and unranked methods by name).
    table_rank: float = float("inf")

    #: The default random-search space of ``wsolbench search`` (``method_defaults: true``): option
    #: name -> ``{"uniform": [lo, hi]}``, ``{"log_uniform": [lo, hi]}``, ``{"int_uniform": [lo, hi]}``,
    #: ``{"int_log_uniform": [lo, hi]}`` or ``{"choice": [...]}`` (see :mod:`wsolbench.search`);
    #: say in a comment where each range comes from. CAM has no hyperparameter of its own.
    search_space: dict[str, dict[str, Any]] = {}

    def head_specs(self, feature_info: Sequence[FeatureLevel], hierarchy: Hierarchy) -> list[HeadSpec]:
        """Heads to build: CAM puts one K=1 head on the deepest level, fine labels."""
        return [HeadSpec(level=len(feature_info) - 1, label_level=hierarchy.depth - 1, k=1)]

    def build(self, model: Any) -> None:
        """Create the method's modules on ``model`` (a :class:`wsolbench.model.WSOLModel`); CAM has none."""

    def prepare_batch(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Training-time transform of a batch before the forward pass.

        Args:
            images: ``(B, 3, H, W)`` normalised images.
            labels: ``(B,)`` fine class ids.

        Returns:
            The images to train on and their targets: ``(B,)`` class ids or ``(B, C)`` soft
            targets (rows sum to 1) over the fine classes. CAM: both unchanged.
        """
        if type(self).prepare_images is not Method.prepare_images:
            _warn_renamed_once(type(self), "prepare_images", "prepare_batch(images, labels) -> (images, targets)")
            return self.prepare_images(images), labels
        return images, labels

    def prepare_images(self, images: Tensor) -> Tensor:
        """Deprecated first-contract stage (``images -> images``); override :meth:`prepare_batch`."""
        return images

    def forward(self, model: Any, features: list[Tensor], targets: Tensor | None) -> Outputs:
        """The forward pass after the backbone.

        Args:
            model: The :class:`wsolbench.model.WSOLModel` (its ``heads``, ``head_specs``,
                ``method_modules``, ``hierarchy``; ``model.training`` tells the mode).
            features: The backbone's feature maps, shallow to deep.
            targets: While training, what :meth:`prepare_batch` returned (``(B,)`` fine class
                ids or ``(B, C)`` soft targets); None at test time (use the prediction).

        Returns:
            The outputs; the last head's logits are the model's prediction.
        """
        return model.forward_heads(features)

    def combine_maps(self, raw_maps: Tensor, *, training: bool) -> Tensor:
        """``(B, C, K, h, w)`` -> ``(B, C, h, w)``: the mean of each class's K maps."""
        return raw_maps.mean(dim=2)

    def logits(self, class_maps: Tensor) -> Tensor:
        """``(B, C, h, w)`` -> ``(B, C)``: global average pooling of each class map."""
        return class_maps.mean(dim=(2, 3))

    def loss(self, outputs: Outputs, targets: list[Tensor]) -> dict[str, Tensor]:
        """Sum of every head's cross-entropy against its label level's targets.

        ``targets[h]`` is head h's ``(B,)`` class ids or ``(B, C_h)`` soft targets; the
        cross-entropy of soft targets is ``-sum_c t_c log p_c`` (so CutMix's
        ``lam * CE(y_a) + (1 - lam) * CE(y_b)`` is the CE of the mixed target).
        """
        terms = {
            f"ce{i}": F.cross_entropy(logits, target) for i, (logits, target) in enumerate(zip(outputs.logits, targets))
        }
        return {"loss": sum(terms.values()), **terms}

    def fuse(self, outputs: Outputs, classes: list[Tensor]) -> Tensor:
        """Test-time map ``(B, h, w)`` from every head's map of its class.

        Args:
            outputs: The model's outputs (eval mode).
            classes: Per head, ``(B,)`` class ids at that head's label level: the predicted
                (or ground-truth) fine class and its ancestors.

        Returns:
            Each head's map of its class (from :meth:`localization_maps`), min-max normalised
            per image, resized to the largest head resolution and averaged over heads.
        """
        maps = self.localization_maps(outputs)
        size = largest_size(maps)
        picked = [resize_maps(minmax_normalize(select_class_maps(m, cls)), size) for m, cls in zip(maps, classes)]
        return torch.stack(picked).mean(0)

    def localization_maps(self, outputs: Outputs) -> list[Tensor]:
        """Per head, the ``(B, C, h, w)`` class maps that :meth:`fuse` and the ``"levels"``
        pictures localize with; the default is the maps the logits pool (``class_maps``)."""
        return list(outputs.class_maps)

    def extra_maps(self, model: Any, outputs: Outputs, classes: list[Tensor]) -> dict[str, MapSet]:
        """Per-image maps of ``classes`` (the ground-truth class and its ancestors, per head)
        to keep in the cache for pictures; the default keeps each head's map when there are
        several heads (``"levels"``, named after their label levels)."""
        if len(outputs.class_maps) < 2:
            return {}
        heads = self.localization_maps(outputs)
        size = largest_size(heads)
        maps = [resize_maps(minmax_normalize(select_class_maps(m, c)), size) for m, c in zip(heads, classes)]
        names = tuple(f"{i}:{model.hierarchy.level_names[spec.label_level]}" for i, spec in enumerate(model.head_specs))
        return {"levels": MapSet(torch.stack(maps, dim=1), names)}


_WARNED: set[tuple[type, str]] = set()


def _warn_renamed_once(cls: type, old: str, new: str) -> None:
    """One FutureWarning per class for a stage of the first contract that was renamed."""
    if (cls, old) in _WARNED:
        return
    _WARNED.add((cls, old))
    warnings.warn(
        f"method {cls.__name__}: the stage {old!r} is deprecated, override {new} instead; it keeps working",
        FutureWarning,
        stacklevel=3,
    )
