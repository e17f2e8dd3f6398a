"""Methods and heads: loss values checked against independent computations, every backbone x method end to end."""

from __future__ import annotations

import copy
import functools
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.model import WSOLModel
from wsolbench.registry import default_registry
from wsolbench.specs import FeatureLevel, HeadSpec, Hierarchy, Method, Outputs
from wsolbench_plugins.methods import _common
from wsolbench_plugins.methods.danet import DANet
from wsolbench_plugins.methods.dda import DDA
from wsolbench_plugins.methods.hda import HDA
from wsolbench_plugins.methods.multiloss import MultiLoss

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 64  # every built-in backbone works at 64 px (inceptionv3 too: its first conv is padded)


@pytest.fixture(scope="module")
def hierarchy():
    """2 coarse -> 3 middle -> 5 fine classes."""
    middle = [0, 0, 1, 2, 2]
    coarse = [0, 0, 0, 1, 1]
    ancestors = np.array([[coarse[c], middle[c], c] for c in range(5)], dtype=np.int64)
    return Hierarchy(
        ("coarse", "middle", "fine"),
        (("c0", "c1"), ("m0", "m1", "m2"), tuple(f"f{i}" for i in range(5))),
        ancestors,
    )


#: Input size per backbone in the end-to-end test: 64 px, except VGG16, whose full-resolution
#: early layers make it ~10x costlier than the others on CPU; 32 px runs the same code.
INPUT_SIZE = {"vgg16": 32}


@pytest.fixture(scope="module")
def backbones(registry):
    """``name -> (backbone, input size, per-level feature shapes)``, built once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            backbone = registry.build("backbones", name)
            size = INPUT_SIZE.get(name, SIZE)
            with torch.no_grad():
                shapes = [tuple(f.shape) for f in backbone.eval()(torch.randn(2, 3, size, size))]
            cache[name] = (backbone, size, shapes)
        return cache[name]

    return get


def small_head(registry):
    return functools.partial(registry.get("heads", "wsol").factory, channels=32)


def cosine_loop(maps: torch.Tensor) -> torch.Tensor:
    """Per image, sum over k < k' of the cosine of the flattened maps: a plain double loop."""
    out = []
    for b in range(maps.shape[0]):
        total = 0.0
        for i, j in itertools.combinations(range(maps.shape[1]), 2):
            u, v = maps[b, i].flatten().double(), maps[b, j].flatten().double()
            total += float(u @ v / (u.norm() * v.norm()))
        out.append(total)
    return torch.tensor(out, dtype=torch.float64)


def make_outputs(raw_maps, method=None):
    method = method or Method()
    class_maps = [method.combine_maps(r, training=False) for r in raw_maps]
    return Outputs(raw_maps=list(raw_maps), class_maps=class_maps, logits=[method.logits(c) for c in class_maps])


# --------------------------------------------------------------------------- the divergence (Eq. 4)


def test_pairwise_cosine_matches_double_loop():
    torch.manual_seed(0)
    maps = torch.randn(3, 5, 4, 6)
    assert torch.allclose(_common.pairwise_cosine_sum(maps).double(), cosine_loop(maps), atol=1e-5)


def test_cosine_is_zero_for_orthogonal_and_pairs_for_identical_maps():
    k = 6
    orthogonal = torch.zeros(2, k, 4, 4)
    for i in range(k):  # disjoint supports
        orthogonal[:, i, i // 2, (i % 2) * 2 : (i % 2) * 2 + 2] = torch.tensor([1.0, 3.0])
    assert torch.allclose(_common.pairwise_cosine_sum(orthogonal), torch.zeros(2))
    identical = torch.rand(1, 1, 5, 5).expand(2, k, 5, 5) + 0.1
    assert torch.allclose(_common.pairwise_cosine_sum(identical), torch.full((2,), k * (k - 1) / 2))


def test_dda_level_loss_is_ce_plus_weighted_eq4_per_head():
    torch.manual_seed(1)
    raw = [torch.randn(3, 4, 5, 6, 6), torch.randn(3, 4, 5, 3, 3)]
    targets = [torch.tensor([0, 3, 1]), torch.tensor([2, 2, 0])]
    method = DDA(k=5, lam=0.3, scope="level")
    outputs = make_outputs(raw, method)
    terms = method.loss(outputs, targets)
    expected_div = sum(cosine_loop(r[torch.arange(3), t]).mean() for r, t in zip(raw, targets, strict=True))
    assert math.isclose(terms["div"].item(), float(expected_div), rel_tol=1e-5)
    ce = sum(F.cross_entropy(lg, t) for lg, t in zip(outputs.logits, targets, strict=True))
    assert math.isclose(terms["loss"].item(), float(ce + 0.3 * expected_div), rel_tol=1e-5)


def test_dda_joint_scope_matches_independent_computation():
    torch.manual_seed(2)
    k = 4
    raw = [torch.randn(2, 2, k, 8, 8), torch.randn(2, 3, k, 4, 4), torch.randn(2, 5, k, 4, 4)]
    targets = [torch.tensor([1, 0]), torch.tensor([2, 1]), torch.tensor([4, 0])]
    torch.manual_seed(123)
    got = DDA(k=k, scope="joint").divergence(raw, targets)

    # independently: stack the GT maps resized to 8x8 (align_corners=True as the official code),
    # keep the same random half, mean over the batch of |sum of pairwise cosines| / pairs.
    stacked = []
    for r, t in zip(raw, targets, strict=True):
        maps = torch.stack([r[b, t[b]] for b in range(2)])
        stacked.append(F.interpolate(maps, size=(8, 8), mode="bilinear", align_corners=True))
    maps = torch.cat(stacked, 1)
    torch.manual_seed(123)
    keep = torch.randperm(3 * k)[: 3 * k // 2]
    pairs = len(keep) * (len(keep) - 1) / 2
    expected = cosine_loop(maps[:, keep]).abs().mean() / pairs
    assert math.isclose(got.item(), float(expected), rel_tol=1e-5)
    # identical maps everywhere -> 1 (mean absolute cosine); orthogonal -> 0
    same = [torch.ones(2, 2, k, 8, 8), torch.ones(2, 3, k, 8, 8)]
    assert math.isclose(_common.joint_divergence(same, targets[:2]).item(), 1.0, rel_tol=1e-5)


def test_dda_drops_maps_while_training_only_and_reproducibly():
    raw = torch.randn(2, 3, 8, 4, 4)
    method = DDA(k=8, drop_ratio=0.5)
    assert torch.equal(method.combine_maps(raw, training=False), raw.mean(2))
    torch.manual_seed(7)
    first = method.combine_maps(raw, training=True)
    torch.manual_seed(7)
    kept = torch.randperm(8)[:4]
    assert torch.allclose(first, raw[:, :, kept].mean(2))
    torch.manual_seed(7)
    assert torch.equal(method.combine_maps(raw, training=True), first)
    assert torch.equal(DDA(drop_ratio=0.0).combine_maps(raw, training=True), raw.mean(2))


def test_dda_relu_mean_fusion_shows_every_maps_positive_part():
    """Two K maps of one class, each positive on one half and negative on the other: their
    plain mean is flat (the parts cancel), the official ReLU mean covers both halves."""
    left = torch.tensor([[1.0, -1.0], [1.0, -1.0]])
    right = -left
    raw = torch.stack([left, right])[None, None]  # (B=1, C=1, K=2, 2, 2)
    outputs = Outputs(raw_maps=[raw], class_maps=[raw.mean(2)], logits=[raw.mean((2, 3, 4))])
    cls = [torch.tensor([0])]
    assert torch.equal(DDA(k=2).localization_maps(outputs)[0], torch.zeros(1, 1, 2, 2))
    assert torch.equal(DDA(k=2, map_fusion="relu_mean").localization_maps(outputs)[0], torch.full((1, 1, 2, 2), 0.5))
    # where one map alone is positive, ReLU mean = that map / K; the fused test map then min-max normalises it
    raw[0, 0, 1] = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    fused = DDA(k=2, map_fusion="relu_mean").fuse(outputs, cls)
    relu_mean = torch.tensor([[0.5, 0.0], [0.5, 1.0]])
    assert torch.allclose(fused[0], (relu_mean - relu_mean.min()) / (relu_mean.max() - relu_mean.min()))


@pytest.mark.parametrize(
    "options", [{"k": 0}, {"lam": -1.0}, {"drop_ratio": 1.0}, {"scope": "global"}, {"levels": 0}, {"map_fusion": "max"}]
)
def test_dda_rejects_bad_options(options):
    with pytest.raises(UsageError):
        DANet(**options)


# --------------------------------------------------------------------------- HDA (Eq. 3)


def test_label_levels_map_heads_coarse_to_fine():
    assert _common.hierarchical_label_levels(3, 3) == [0, 1, 2]
    assert _common.hierarchical_label_levels(3, 2) == [0, 0, 1]  # repeat the coarsest
    assert _common.hierarchical_label_levels(3, 1) == [0, 0, 0]  # flat: multi-loss
    assert _common.hierarchical_label_levels(3, 5) == [2, 3, 4]  # the finest three
    info = [FeatureLevel(f"l{i}", 8, 2**i) for i in range(4)]
    flat = Hierarchy.flat(["a", "b"])
    assert HDA().head_specs(info, flat) == [HeadSpec(1, 0), HeadSpec(2, 0), HeadSpec(3, 0)]
    assert MultiLoss(levels=5).head_specs(info, flat) == [HeadSpec(i, 0) for i in range(4)]
    assert [s.k for s in DANet(k=3).head_specs(info, flat)] == [3, 3, 3]


def test_hda_loss_is_sum_of_per_level_cross_entropies_and_trains_everything(registry, hierarchy):
    torch.manual_seed(3)
    backbone = registry.build("backbones", "tinycnn", width=8)
    model = WSOLModel(backbone, small_head(registry), HDA(), hierarchy)
    assert [s.label_level for s in model.head_specs] == [0, 1, 2]
    labels = torch.tensor([4, 1])
    outputs = model(torch.randn(2, 3, SIZE, SIZE))
    terms = model.loss(outputs, labels)
    by_hand = (
        F.cross_entropy(outputs.logits[0], torch.tensor([1, 0]))  # coarse of fine 4, 1
        + F.cross_entropy(outputs.logits[1], torch.tensor([2, 0]))  # middle of fine 4, 1
        + F.cross_entropy(outputs.logits[2], labels)
    )
    assert math.isclose(terms["loss"].item(), by_hand.item(), rel_tol=1e-6)
    terms["loss"].backward()
    for head in model.heads:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert backbone.stage1[0].weight.grad.abs().sum() > 0


def test_model_rejects_a_method_whose_last_head_is_not_fine(registry, hierarchy):
    class Backwards(Method):
        def head_specs(self, feature_info, hierarchy):
            return [HeadSpec(2, hierarchy.depth - 1), HeadSpec(1, 0)]

    with pytest.raises(WsolbenchError, match="last head"):
        WSOLModel(registry.build("backbones", "tinycnn", width=4), small_head(registry), Backwards(), hierarchy)


# --------------------------------------------------------------------------- test-time fusion


def test_fuse_is_the_mean_of_min_max_normalised_upsampled_maps():
    big = torch.zeros(1, 3, 4, 4)
    big[0, 2] = torch.arange(16.0).view(4, 4)  # class 2 at the fine head
    small = torch.zeros(1, 2, 2, 2)
    small[0, 1] = torch.tensor([[0.0, 2.0], [4.0, 6.0]])  # class 1 at the coarse head
    outputs = Outputs(raw_maps=[], class_maps=[small, big], logits=[])
    fused = DANet().fuse(outputs, [torch.tensor([1]), torch.tensor([2])])

    # by hand: min-max -> [[0, 1/3], [2/3, 1]] and arange/15; bilinear 2 -> 4 px
    # (align_corners=False) samples source coordinates 0, .25, .75, 1 (clamped) along each axis.
    a, b, c, d = 0.0, 1 / 3, 2 / 3, 1.0
    u = np.array([0.0, 0.25, 0.75, 1.0])
    up = np.outer(1 - u, 1 - u) * a + np.outer(1 - u, u) * b + np.outer(u, 1 - u) * c + np.outer(u, u) * d
    expected = (up + np.arange(16.0).reshape(4, 4) / 15) / 2
    assert fused.shape == (1, 4, 4)
    assert np.allclose(fused[0].numpy(), expected, atol=1e-6)


# --------------------------------------------------------------------------- every backbone x every method


def _backbone_names():
    names = default_registry().names("backbones")
    return [("timm:resnet18" if n.endswith(":") else n) for n in names]


#: The methods that use the standard forward (every head on its level, maps at the level's
#: resolution). Every registered method, whatever its forward, is in tests/test_method_contract.py.
STANDARD_FORWARD = ("cam", "multiloss", "hda", "dda", "danet")


@pytest.mark.parametrize("method_name", STANDARD_FORWARD)
@pytest.mark.parametrize("backbone_name", _backbone_names())
def test_every_backbone_and_method_trains_and_localizes(registry, backbones, hierarchy, backbone_name, method_name):
    backbone, size, shapes = backbones(backbone_name)
    backbone = copy.deepcopy(backbone)  # a method may insert modules into it (adl): no sharing between cases
    method = registry.build("methods", method_name)
    model = WSOLModel(backbone, small_head(registry), method, hierarchy).train()
    images = torch.randn(2, 3, size, size)
    labels = torch.tensor([4, 2])
    assert [s[1] for s in shapes] == [level.channels for level in backbone.feature_info]
    outputs = model(images)
    assert len(outputs.raw_maps) == len(model.head_specs) >= 1
    for spec, raw, maps, logits in zip(
        model.head_specs, outputs.raw_maps, outputs.class_maps, outputs.logits, strict=True
    ):
        classes = hierarchy.num_classes[spec.label_level]
        h, w = shapes[spec.level][-2:]
        assert raw.shape == (2, classes, spec.k, h, w)
        assert maps.shape == (2, classes, h, w)
        assert logits.shape == (2, classes)
    assert model.head_specs[-1].label_level == hierarchy.depth - 1
    terms = model.loss(outputs, labels)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.heads.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.parameters())

    model.eval()
    fine_logits, fused = model.localize(images)
    largest = max((m.shape[-2:] for m in outputs.class_maps), key=lambda s: s[0] * s[1])
    assert fine_logits.shape == (2, 5)
    assert fused.shape == (2, *largest)
    assert float(fused.min()) >= 0.0 and float(fused.max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("scope", ["joint", "level"])
def test_danet_scopes_train(registry, hierarchy, scope):
    torch.manual_seed(4)
    method = registry.build("methods", "danet", scope=scope)
    model = WSOLModel(registry.build("backbones", "tinycnn", width=8), small_head(registry), method, hierarchy)
    terms = model.loss(model(torch.randn(2, 3, SIZE, SIZE)), torch.tensor([0, 3]))
    assert set(terms) == {"loss", "ce0", "ce1", "ce2", "div"}
    low, high = (0.0, 1.0) if scope == "joint" else (-3 * 8 / 2, 3 * 8 * 7 / 2)
    assert low <= terms["div"].item() <= high
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.heads.parameters())


def test_default_scope_is_the_official_joint_divergence():
    assert DDA().scope == DANet().scope == "joint"


@pytest.mark.parametrize("head_name", default_registry().names("heads"))
def test_heads_map_features_to_k_maps_per_class(registry, head_name):
    head = registry.get("heads", head_name).factory(16, 5, 3)
    out = head(torch.randn(2, 16, 7, 9))
    assert out.shape == (2, 5, 3, 7, 9)
