"""ACoL: adversarial complementary learning (Zhang et al., CVPR 2018)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from wsolbench import hookimpl
from wsolbench.errors import UsageError
from wsolbench.specs import (
    FeatureLevel,
    HeadSpec,
    Hierarchy,
    MapSet,
    Method,
    Outputs,
    largest_size,
    minmax_normalize,
    resize_maps,
    select_class_maps,
)
from wsolbench_plugins.methods._common import check_float

#: Feature smoothing before the classifiers: ``"auto"`` is wsolevaluation's choice per backbone.
SMOOTHING = ("auto", "none", "avg", "max_avg")

#: Backbones on which ``smoothing="auto"`` smooths like wsolevaluation's ``VggAcol``.
_SMOOTHED_BACKBONES = ("vgg16",)


def erase_classes(targets: Tensor | None, logits: Tensor) -> Tensor:
    """``(B,)`` classes whose map decides the erasure: the training targets (the argmax of soft
    ``(B, C)`` targets), or at test time (``targets`` None) the top-1 class of ``logits``."""
    if targets is None:
        return logits.argmax(1)
    return targets.argmax(1) if targets.dim() == 2 else targets


def erased_region(class_maps: Tensor, classes: Tensor, threshold: float, size: Sequence[int]) -> Tensor:
    """``(B, *size)`` bool: where classifier A's map of each image's class reaches ``threshold``.

    Args:
        class_maps: ``(B, C, h, w)`` classifier A's class maps (gradients are not followed).
        classes: ``(B,)`` class per image (:func:`erase_classes`).
        threshold: Erasing threshold ``delta`` in [0, 1].
        size: ``(H, W)`` of the feature map to erase (the map is resized bilinearly if it differs).

    Returns:
        True where the per-image min-max normalised map is ``>= threshold`` (wsolevaluation's
        ``torch.ge``). A constant map normalises to zeros (:func:`minmax_normalize`), so
        nothing is erased unless ``threshold`` is 0.
    """
    attention = minmax_normalize(select_class_maps(class_maps.detach(), classes).float())
    return resize_maps(attention, size) >= threshold


def erase(feature: Tensor, region: Tensor) -> Tensor:
    """``(B, D, H, W)`` feature with every channel set to 0 where ``region`` ``(B, H, W)`` is True."""
    return feature * (~region).unsqueeze(1).to(feature.dtype)


def max_fuse(maps_a: Tensor, maps_b: Tensor) -> Tensor:
    """``(B, h, w)`` x 2 -> the element-wise max of the two per-image min-max normalised maps,
    at the larger of the two resolutions."""
    size = largest_size([maps_a, maps_b])
    return torch.maximum(resize_maps(minmax_normalize(maps_a), size), resize_maps(minmax_normalize(maps_b), size))


def smoothing_module(smoothing: str, backbone_name: str) -> nn.Module:
    """The parameter-free layer applied to the deepest feature before both classifiers."""
    if smoothing == "auto":
        smoothing = "max_avg" if backbone_name in _SMOOTHED_BACKBONES else "none"
    avg = nn.AvgPool2d(3, stride=1, padding=1)  # count_include_pad, as F.avg_pool2d's default
    if smoothing == "avg":
        return avg
    if smoothing == "max_avg":
        return nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), avg)
    return nn.Identity()


class ACoL(Method):
    """ACoL (Zhang et al., CVPR 2018): a second classifier on the feature erased where the first's map peaks.

    Zhang, Wei, Feng, Yang & Huang, "Adversarial Complementary Learning for Weakly Supervised
    Object Localization", CVPR 2018.

    Two classifiers of the configured head kind on the deepest feature map ``S`` (both on the
    fine labels). Classifier A gives class maps ``M^A``; the feature is erased where A's
    min-max normalised map of the class ``c`` reaches the erasing threshold ``delta``:
    ``S~ = S * 1[norm(M^A_c) < delta]`` (every channel set to 0 there); classifier B runs on
    ``S~`` and must find the object's remaining, complementary parts.
    ``c`` is the ground-truth class while training (the argmax of soft targets, e.g. CutMix's)
    and A's top-1 class at test time. The erasure mask carries no gradient; both classifiers'
    gradients reach the backbone. Loss: ``L = CE(y, s^A) + CE(y, s^B)`` with
    ``s = GAP(M)``. Test map: ``max(norm(M^A_c), norm(M^B_c))`` element-wise, with
    ``norm`` the per-image min-max normalisation. A's logits are the prediction (as in
    wsolevaluation, whose accuracy uses classifier A).

    Heads: ``model.heads[1]`` is A and ``model.heads[0]`` is B (the last head gives the
    prediction in wsolbench's contract); the outputs' lists follow that order.

    Options:
        threshold: Erasing threshold ``delta`` in [0, 1] (default 0.7, wsolevaluation's
            ``acol_threshold``; the paper ablates 0.5-0.9).
        smoothing: Parameter-free layer on the deepest feature before both classifiers.
            ``"auto"`` (default): as wsolevaluation, ``"max_avg"`` on ``vgg16`` and ``"none"``
            on every other backbone. ``"max_avg"``: a 3x3 stride-1 max-pool (wsolevaluation's
            ``M2`` after conv5_3 in its ACoL VGG) then a 3x3 stride-1 average pool (its
            ``F.avg_pool2d`` in ``VggAcol.forward``), both padded by 1; ``"avg"``: the average
            pool only; ``"none"``: the feature as the backbone gives it.

    Deviations from wsolevaluation (``wsol/method/acol.py``, ``VggAcol``/``ResNetAcol``/``InceptionAcol``):
        * Its evaluation calls the model with the ground-truth labels, so B's map of the true
          class comes from the feature erased by the *true* class, also for misclassified
          images. wsolbench's test-time forward sees no labels: B runs on the feature erased by
          A's predicted class, and both the predicted-class map and the ground-truth-class map
          (``fuse``) use that B output. They agree whenever A classifies correctly.
        * Its classifiers are its own (3x3 conv 1024, 3x3 conv 1024, 1x1 conv); here they are
          the configured head (``wsol`` is the same layers with ``head.channels=1024``).
        * Its normalisation divides by ``max - min`` without a guard (a constant map gives NaN,
          which erases nothing and propagates into the test map); here a constant map is all
          zeros.
        * Its VGG uses 3x3/2 max-pools (``M1``) for pool1-pool4; wsolbench's ``vgg16`` keeps
          torchvision's 2x2 ones (``smoothing`` reproduces only what follows conv5_3).
    """

    table_rank = 20

    #: Random-search space (keys under ``method.``): the erasing threshold on U[0, 1], the range
    #: of Choe et al. (CVPR 2020)'s protocol (also listed by Murtaza et al., WACV 2025, who follow it).
    search_space = {"threshold": {"uniform": [0.0, 1.0]}}

    def __init__(self, *, threshold: float = 0.7, smoothing: str = "auto"):
        self.threshold = check_float("acol", "threshold", threshold, 0.0, 1.0)
        if smoothing not in SMOOTHING:
            raise UsageError(f"method 'acol': smoothing must be one of {', '.join(SMOOTHING)}, not {smoothing!r}")
        self.smoothing = smoothing

    def head_specs(self, feature_info: Sequence[FeatureLevel], hierarchy: Hierarchy) -> list[HeadSpec]:
        """Two K=1 heads on the deepest level, both on the fine labels: ``[B, A]``."""
        deepest, fine = len(feature_info) - 1, hierarchy.depth - 1
        return [HeadSpec(level=deepest, label_level=fine), HeadSpec(level=deepest, label_level=fine)]

    def build(self, model: Any) -> None:
        """The (parameter-free) smoothing layer, chosen once for the model's backbone."""
        model.method_modules["smoothing"] = smoothing_module(self.smoothing, model.backbone_name)

    def forward(self, model: Any, features: list[Tensor], targets: Tensor | None) -> Outputs:
        """A on the feature, the erasure by A's map of the class, B on the erased feature."""
        feature = model.method_modules["smoothing"](features[model.head_specs[-1].level])
        head_b, head_a = model.heads
        raw_a = head_a(feature)
        maps_a = self.combine_maps(raw_a, training=model.training)
        logits_a = self.logits(maps_a)
        region = erased_region(maps_a, erase_classes(targets, logits_a), self.threshold, feature.shape[-2:])
        raw_b = head_b(erase(feature, region))
        maps_b = self.combine_maps(raw_b, training=model.training)
        return Outputs(
            raw_maps=[raw_b, raw_a],
            class_maps=[maps_b, maps_a],
            logits=[self.logits(maps_b), logits_a],
            extras={"erased": region},
        )

    def fuse(self, outputs: Outputs, classes: list[Tensor]) -> Tensor:
        """``max(norm(M^A_c), norm(M^B_c))`` per pixel."""
        maps_b, maps_a = (select_class_maps(maps, cls) for maps, cls in zip(outputs.class_maps, classes))
        return max_fuse(maps_a, maps_b)

    def extra_maps(self, model: Any, outputs: Outputs, classes: list[Tensor]) -> dict[str, MapSet]:
        """``"branches"``: A's and B's normalised maps of the class, and the region erased for B
        (by A's predicted class, the one B actually saw)."""
        maps_b, maps_a = (
            minmax_normalize(select_class_maps(maps, cls)) for maps, cls in zip(outputs.class_maps, classes)
        )
        erased = outputs.extras["erased"].float()
        size = largest_size([maps_a, maps_b, erased])
        stacked = torch.stack([resize_maps(m, size) for m in (maps_a, maps_b, erased)], dim=1)
        return {"branches": MapSet(stacked, ("A", "B", "erased (pred)"))}


@hookimpl
def register_methods(register):
    register("acol", ACoL)
