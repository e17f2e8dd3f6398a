"""A WSOL model composed from registry parts: backbone + one head per method head spec."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wsolbench.errors import WsolbenchError
from wsolbench.specs import Backbone, HeadSpec, Hierarchy, Method, Outputs


class WSOLModel(nn.Module):
    """Backbone features -> heads -> per-head maps; the method decides the rest.

    Args:
        backbone: Gives one feature map per level (:class:`wsolbench.specs.Backbone`).
        head_factory: ``head_factory(in_channels, num_classes, k)`` -> head module.
        method: The WSOL method (losses, map combination, fusion).
        hierarchy: The dataset's class hierarchy (sizes the heads).
    """

    def __init__(
        self, backbone: Backbone, head_factory: Callable[..., nn.Module], method: Method, hierarchy: Hierarchy
    ):
        super().__init__()
        self.backbone = backbone
        self.method = method
        self.hierarchy = hierarchy
        self.head_specs: list[HeadSpec] = method.head_specs(backbone.feature_info, hierarchy)
        if not self.head_specs or self.head_specs[-1].label_level != hierarchy.depth - 1:
            raise WsolbenchError(
                f"method {type(method).__name__}: the last head must be trained on the fine labels "
                f"(label_level {hierarchy.depth - 1}), its logits are the prediction; got {self.head_specs}"
            )
        self.heads = nn.ModuleList(
            head_factory(backbone.feature_info[spec.level].channels, hierarchy.num_classes[spec.label_level], spec.k)
            for spec in self.head_specs
        )

    def forward(self, images: Tensor) -> Outputs:
        """``images (B, 3, H, W)`` -> :class:`Outputs` with every head's maps and logits."""
        features = self.backbone(images)
        raw_maps = [head(features[spec.level]) for head, spec in zip(self.heads, self.head_specs)]
        class_maps = [self.method.combine_maps(raw, training=self.training) for raw in raw_maps]
        logits = [self.method.logits(maps) for maps in class_maps]
        return Outputs(raw_maps=raw_maps, class_maps=class_maps, logits=logits)

    def targets(self, fine_labels: Tensor) -> list[Tensor]:
        """Per head, the labels at that head's hierarchy level for fine labels ``(B,)``."""
        return [self.hierarchy.labels_at(fine_labels, spec.label_level) for spec in self.head_specs]

    def loss(self, outputs: Outputs, fine_labels: Tensor) -> dict[str, Tensor]:
        """The method's loss terms for a batch; ``"loss"`` is the total."""
        return self.method.loss(outputs, self.targets(fine_labels))

    @torch.no_grad()
    def localize(self, images: Tensor, classes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Fine-class logits ``(B, C)`` and the fused map ``(B, h, w)`` of ``classes``.

        ``classes`` defaults to the predicted fine class (top-1 of the finest head); each
        head then looks at that class's ancestor at its own level.
        """
        outputs = self(images)
        fine_logits = outputs.logits[-1]
        if classes is None:
            classes = fine_logits.argmax(1)
        return fine_logits, self.method.fuse(outputs, self.targets(classes))

    def parameter_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """``(backbone parameters, new head parameters)`` for the two learning rates."""
        return list(self.backbone.parameters()), list(self.heads.parameters())
