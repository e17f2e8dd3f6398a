"""The method contract's stages, one by one, on small hand-made models and tensors;
and the compatibility of plugins written against the first contract."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsolbench.errors import UsageError
from wsolbench.model import WSOLModel
from wsolbench.specs import Hierarchy, MapSet, Method, Outputs
from wsolbench.train import train_step
from wsolbench_plugins.backbones import tinycnn
from wsolbench_plugins.heads import linear

#: Two orders over four fine classes: fine 0, 1 -> order 0; fine 2, 3 -> order 1.
HIERARCHY = Hierarchy(
    ("order", "species"), (("o0", "o1"), ("s0", "s1", "s2", "s3")), np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
)


def tiny_model(method: Method, hierarchy: Hierarchy = HIERARCHY) -> WSOLModel:
    torch.manual_seed(0)
    return WSOLModel(tinycnn(width=4), linear, method, hierarchy, backbone_name="tinycnn")


def sgd(model: WSOLModel) -> torch.optim.SGD:
    body, heads = model.parameter_groups()
    return torch.optim.SGD([{"params": body, "lr": 0.1}, {"params": heads, "lr": 1.0}])


def step(model: WSOLModel, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    model.train()
    return train_step(model, model, sgd(model), torch.amp.GradScaler("cpu", enabled=False), images, labels)


IMAGES = torch.rand(4, 3, 16, 16)
LABELS = torch.tensor([0, 1, 2, 3])


# -- soft targets ---------------------------------------------------------------------


def test_soft_targets_sum_over_each_coarse_class() -> None:
    soft = torch.tensor([[0.7, 0.0, 0.3, 0.0], [0.0, 0.25, 0.0, 0.75]])
    torch.testing.assert_close(HIERARCHY.soft_labels_at(soft, 0), torch.tensor([[0.7, 0.3], [0.25, 0.75]]))
    torch.testing.assert_close(HIERARCHY.soft_labels_at(soft, 1), soft)


def test_mixed_soft_target_loss_is_the_mixture_of_cross_entropies() -> None:
    """CutMix's lam * CE(y_a) + (1 - lam) * CE(y_b) is the CE of the mixed target, per head."""
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 0.3, 0.4]])
    y_a, y_b, lam = torch.tensor([0, 3]), torch.tensor([2, 1]), 0.6
    soft = lam * F.one_hot(y_a, 4).float() + (1 - lam) * F.one_hot(y_b, 4).float()
    outputs = Outputs(raw_maps=[], class_maps=[], logits=[logits])
    loss = Method().loss(outputs, [soft])["loss"]
    log_p = torch.log_softmax(logits, 1)
    by_hand = -(lam * log_p[[0, 1], y_a] + (1 - lam) * log_p[[0, 1], y_b]).mean()
    torch.testing.assert_close(loss, by_hand)


class SoftLabelMix(Method):
    """A CutMix-style method on the new contract: prepare_batch returns soft targets."""

    def prepare_batch(self, images, labels):
        flipped = labels.flip(0)
        soft = 0.5 * F.one_hot(labels, 4).float() + 0.5 * F.one_hot(flipped, 4).float()
        return (images + images.flip(0)) / 2, soft

    def head_specs(self, feature_info, hierarchy):
        from wsolbench.specs import HeadSpec

        return [HeadSpec(level=1, label_level=0), HeadSpec(level=2, label_level=1)]


def test_soft_targets_reach_every_head_at_its_level() -> None:
    model = tiny_model(SoftLabelMix())
    seen = []
    original = model.method.loss
    model.method.loss = lambda outputs, targets: seen.append(targets) or original(outputs, targets)
    step(model, IMAGES, LABELS)
    coarse, fine = seen[0]
    torch.testing.assert_close(fine.sum(1), torch.ones(4))
    # image 0 mixes fine 0 (order 0) with fine 3 (order 1): half each
    torch.testing.assert_close(coarse[0], torch.tensor([0.5, 0.5]))
    # image 1 mixes fine 1 and fine 2: orders 0 and 1
    torch.testing.assert_close(coarse[1], torch.tensor([0.5, 0.5]))


# -- the method owns the forward ------------------------------------------------------


class SeesTargets(Method):
    """Records what its forward received."""

    def __init__(self):
        self.received: list[object] = []

    def forward(self, model, features, targets):
        self.received.append(None if targets is None else targets.clone())
        return model.forward_heads(features)


def test_forward_gets_the_training_targets_and_none_at_test_time() -> None:
    method = SeesTargets()
    model = tiny_model(method)
    step(model, IMAGES, LABELS)
    model.eval()
    model.localize(IMAGES)
    assert torch.equal(method.received[0], LABELS) and method.received[1] is None


# -- the method's own modules and the backbone surgery --------------------------------


class Zeroes(nn.Module):
    """Multiplies by a learnable scale (initially 0): makes its insertion point visible."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x * self.scale


class Builds(Method):
    backbone_lr_modules = ("slow",)

    def build(self, model):
        model.method_modules["fast"] = nn.Conv2d(8, 8, 1)
        model.method_modules["slow"] = nn.Conv2d(8, 8, 1)
        model.insert_after("stage3", Zeroes(), name="gate")


def test_build_modules_are_trained_in_the_declared_groups_and_checkpointed() -> None:
    model = tiny_model(Builds())
    body, heads = model.parameter_groups()
    ids = lambda params: {id(p) for p in params}  # noqa: E731
    fast, slow = model.method_modules["fast"], model.method_modules["slow"]
    gate = model.inserted_modules()["gate"]
    assert ids(fast.parameters()) <= ids(heads) and ids(gate.parameters()) <= ids(heads)
    assert ids(slow.parameters()) <= ids(body)
    assert ids(body) & ids(heads) == set() and ids(body) | ids(heads) == ids(model.parameters())
    state = model.state_dict()
    assert "method_modules.fast.weight" in state and "backbone.stage3.inserted.scale" in state
    # the inserted module runs on stage3's output: with scale 0 the deeper features vanish
    features = model.backbone(IMAGES)
    assert features[1].abs().sum() == 0 and features[2].abs().sum() == 0 and features[0].abs().sum() > 0
    copy = tiny_model(Builds())
    copy.load_state_dict(state)
    assert torch.equal(copy.inserted_modules()["gate"].scale, gate.scale)


def test_insert_after_an_unknown_submodule_names_the_children() -> None:
    class Bad(Method):
        def build(self, model):
            model.insert_after("layer9", nn.Identity())

    with pytest.raises(UsageError, match=r"no submodule 'layer9'.*stage2"):
        tiny_model(Bad())


def test_backbone_lr_modules_must_name_the_methods_modules() -> None:
    class Typo(Method):
        backbone_lr_modules = ("nope",)

    with pytest.raises(Exception, match="backbone_lr_modules names"):
        tiny_model(Typo()).parameter_groups()


# -- extra maps -----------------------------------------------------------------------


def test_default_extra_maps_are_the_heads_maps_only_with_several_heads() -> None:
    model = tiny_model(Method())
    model.eval()
    with torch.no_grad():
        outputs = model(IMAGES)
    assert Method().extra_maps(model, outputs, model.targets(LABELS)) == {}
    multi = tiny_model(SoftLabelMix())
    multi.eval()
    with torch.no_grad():
        outputs = multi(IMAGES)
    extras = multi.method.extra_maps(multi, outputs, multi.targets(LABELS))
    assert isinstance(extras["levels"], MapSet) and extras["levels"].names == ("0:order", "1:species")
    assert extras["levels"].maps.shape == (4, 2, *outputs.class_maps[0].shape[-2:])


# -- compatibility with the first contract --------------------------------------------


class OldStyleCutMix(Method):
    """CutMix written against the first contract: state kept on the instance between
    prepare_images and loss (the hack the new contract replaces). It must keep working."""

    def prepare_images(self, images):
        self.permutation = torch.arange(images.shape[0] - 1, -1, -1)
        self.lam = 0.75
        mixed = images.clone()
        mixed[:, :, :8, :] = images[self.permutation, :, :8, :]
        return mixed

    def loss(self, outputs, targets):
        logits, target = outputs.logits[-1], targets[-1]
        value = self.lam * F.cross_entropy(logits, target) + (1 - self.lam) * F.cross_entropy(
            logits, target[self.permutation]
        )
        return {"loss": value}


def test_a_first_contract_plugin_trains_unchanged_and_warns_once() -> None:
    model = tiny_model(OldStyleCutMix())
    with pytest.warns(FutureWarning, match="'prepare_images' is deprecated, override prepare_batch"):
        terms = step(model, IMAGES, LABELS)
    assert torch.isfinite(terms["loss"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # once per class, not per step
        step(model, IMAGES, LABELS)


def test_the_example_third_party_plugin_still_trains() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "example_plugin"))
    try:
        from wsolbench_hideandseek import HideAndSeek
    finally:
        sys.path.pop(0)
    torch.manual_seed(1)
    method = HideAndSeek(grid=4, hide_prob=0.5)
    with pytest.warns(FutureWarning, match="HideAndSeek"):
        hidden, labels = method.prepare_batch(torch.ones(2, 3, 8, 8), LABELS[:2])
    assert torch.equal(labels, LABELS[:2]) and set(hidden.unique().tolist()) <= {0.0, 1.0}
    assert torch.isfinite(step(tiny_model(method), IMAGES, LABELS)["loss"])
