"""A WSOL model composed from registry parts: backbone + heads + what the method builds."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import Backbone, HeadSpec, Hierarchy, Method, Outputs


class InsertedAfter(nn.Module):
    """``inserted(original(x))``: a module placed after a backbone submodule by :meth:`WSOLModel.insert_after`."""

    def __init__(self, original: nn.Module, inserted: nn.Module):
        super().__init__()
        self.original = original
        self.inserted = inserted

    def forward(self, *args, **kwargs):
        return self.inserted(self.original(*args, **kwargs))


class WSOLModel(nn.Module):
    """Backbone features -> the method's forward (by default: one head per head spec).

    Args:
        backbone: Gives one feature map per level (:class:`wsolbench.specs.Backbone`).
        head_factory: ``head_factory(in_channels, num_classes, k)`` -> head module.
        method: The WSOL method (its stages decide the heads, forward, losses and fusion).
        hierarchy: The dataset's class hierarchy (sizes the heads).
        backbone_name: The backbone's registry name (a method may choose where to insert
            layers by it).

    Attributes:
        heads: One head per ``head_specs`` entry.
        method_modules: The modules the method created in :meth:`Method.build`.
        input_size: ``(H, W)`` of the images of the current (last) forward pass.
    """

    def __init__(
        self,
        backbone: Backbone,
        head_factory: Callable[..., nn.Module],
        method: Method,
        hierarchy: Hierarchy,
        *,
        backbone_name: str = "",
    ):
        super().__init__()
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.method = method
        self.hierarchy = hierarchy
        self.head_factory = head_factory
        self.head_specs: list[HeadSpec] = method.head_specs(backbone.feature_info, hierarchy)
        if not self.head_specs or self.head_specs[-1].label_level != hierarchy.depth - 1:
            raise WsolbenchError(
                f"method {type(method).__name__}: the last head must be trained on the fine labels "
                f"(label_level {hierarchy.depth - 1}), its logits are the prediction; got {self.head_specs}"
            )
        self.heads = nn.ModuleList(self.build_head(spec) for spec in self.head_specs)
        self.method_modules = nn.ModuleDict()
        self._inserted: dict[str, str] = {}  # name -> path of the InsertedAfter wrapper in the backbone
        self.input_size: tuple[int, int] = (0, 0)
        method.build(self)

    @property
    def feature_info(self):
        """The backbone's feature levels (:class:`wsolbench.specs.FeatureLevel`), shallow to deep."""
        return self.backbone.feature_info

    def build_head(self, spec: HeadSpec) -> nn.Module:
        """A new head (of the configured kind) for ``spec``, sized from the backbone and hierarchy."""
        channels = self.backbone.feature_info[spec.level].channels
        return self.head_factory(channels, self.hierarchy.num_classes[spec.label_level], spec.k)

    def insert_after(self, path: str, module: nn.Module, *, name: str | None = None) -> None:
        """Run ``module`` on the output of the backbone submodule at ``path`` (e.g. ``"features.16"``).

        The submodule is wrapped (:class:`InsertedAfter`), so the insertion works on any
        ``nn.Module`` backbone, torchvision's and timm's alike. ``module`` is trained at the
        heads' learning rate unless ``name`` (default: ``path``) is in the method's
        ``backbone_lr_modules``.
        """
        try:
            original = self.backbone.get_submodule(path)
        except AttributeError:
            children = ", ".join(n for n, _ in self.backbone.named_children())
            raise UsageError(
                f"method {type(self.method).__name__}: the backbone has no submodule {path!r} to insert after "
                f"(top-level children: {children})"
            ) from None
        parent_path, _, child = path.rpartition(".")
        parent = self.backbone.get_submodule(parent_path) if parent_path else self.backbone
        setattr(parent, child, InsertedAfter(original, module))
        self._inserted[name or path] = f"{path}.inserted"

    def inserted_modules(self) -> dict[str, nn.Module]:
        """The modules placed in the backbone by :meth:`insert_after`, by name."""
        return {name: self.backbone.get_submodule(path) for name, path in self._inserted.items()}

    def forward(self, images: Tensor, targets: Tensor | None = None) -> Outputs:
        """``images (B, 3, H, W)`` -> :class:`Outputs` through the method's forward.

        ``targets`` are the training targets (:meth:`Method.prepare_batch`), None at test time.
        :attr:`input_size` is the batch's ``(H, W)`` while the method's forward runs.
        """
        self.input_size = tuple(images.shape[-2:])
        return self.method.forward(self, self.backbone(images), targets)

    def forward_heads(self, features: list[Tensor]) -> Outputs:
        """The standard forward: every head on its level, K maps combined, global-average logits."""
        raw_maps = [head(features[spec.level]) for head, spec in zip(self.heads, self.head_specs)]
        class_maps = [self.method.combine_maps(raw, training=self.training) for raw in raw_maps]
        logits = [self.method.logits(maps) for maps in class_maps]
        return Outputs(raw_maps=raw_maps, class_maps=class_maps, logits=logits)

    def targets(self, fine_targets: Tensor) -> list[Tensor]:
        """Per head, the targets at that head's hierarchy level.

        ``(B,)`` fine class ids give each head its ancestors' ids; ``(B, C)`` soft targets give
        each head the summed probability of each of its classes' descendants.
        """
        if fine_targets.dim() == 2:
            return [self.hierarchy.soft_labels_at(fine_targets, spec.label_level) for spec in self.head_specs]
        return [self.hierarchy.labels_at(fine_targets, spec.label_level) for spec in self.head_specs]

    def loss(self, outputs: Outputs, fine_targets: Tensor) -> dict[str, Tensor]:
        """The method's loss terms for a batch; ``"loss"`` is the total."""
        return self.method.loss(outputs, self.targets(fine_targets))

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
        """``(parameters at the backbone's lr, parameters at the heads' lr)``.

        The heads and the method's modules learn at the heads' rate, except the method's
        modules named in ``backbone_lr_modules``; the backbone's own weights at the backbone's.
        """
        slow_names = set(self.method.backbone_lr_modules)
        owned = {**dict(self.method_modules.items()), **self.inserted_modules()}
        unknown = slow_names - set(owned)
        if unknown:
            raise WsolbenchError(
                f"method {type(self.method).__name__}: backbone_lr_modules names {sorted(unknown)}, "
                f"which it did not create (its modules: {sorted(owned)})"
            )
        slow = [p for name, m in owned.items() if name in slow_names for p in m.parameters()]
        fast = [p for name, m in owned.items() if name not in slow_names for p in m.parameters()]
        taken = {id(p) for p in slow + fast}
        body = [p for p in self.backbone.parameters() if id(p) not in taken]
        return body + slow, list(self.heads.parameters()) + fast
