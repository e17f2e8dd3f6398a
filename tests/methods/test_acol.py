"""ACoL: the erasure at the threshold, the branch order, the max fusion, the loss, end to end."""

from __future__ import annotations

import functools
import io
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsolbench.cache import read_cache
from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench.model import WSOLModel
from wsolbench.specs import FeatureLevel, Hierarchy, Outputs
from wsolbench_plugins.heads import linear
from wsolbench_plugins.methods.acol import ACoL, erase, erase_classes, erased_region, max_fuse, smoothing_module

pytestmark = pytest.mark.usefixtures("one_thread")


def class_maps() -> torch.Tensor:
    """``(1, 2, 2, 3)``: class 1's map spans 2..10, so its normalised values are (v - 2) / 8:
    ``8 -> 0.75`` exactly at a 0.75 threshold, ``7.99 -> 0.74875`` just below it. Class 0's
    map would erase other pixels."""
    cls1 = torch.tensor([[2.0, 4.0, 8.0], [7.99, 10.0, 5.0]])
    cls0 = torch.tensor([[10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    return torch.stack([cls0, cls1])[None]


def test_the_region_is_erased_from_exactly_the_threshold_on():
    region = erased_region(class_maps(), torch.tensor([1]), 0.75, (2, 3))
    assert region.tolist() == [[[False, False, True], [False, True, False]]]
    # the map of the other class erases its own pixels
    assert erased_region(class_maps(), torch.tensor([0]), 0.75, (2, 3)).tolist() == [
        [[True, False, False], [False, False, False]]
    ]


def test_erase_zeroes_every_channel_of_the_region_only():
    feature = torch.arange(1.0, 13.0).view(1, 2, 2, 3)
    region = erased_region(class_maps(), torch.tensor([1]), 0.75, (2, 3))
    erased = erase(feature, region)
    expected = feature.clone()
    expected[0, :, 0, 2] = 0
    expected[0, :, 1, 1] = 0
    assert torch.equal(erased, expected)


def test_a_constant_map_erases_nothing():
    flat = torch.full((1, 1, 2, 2), 3.0)
    assert not erased_region(flat, torch.tensor([0]), 0.7, (2, 2)).any()


def test_a_coarser_map_is_resized_to_the_feature():
    maps = torch.tensor([[[[0.0, 1.0]]]])  # (1, 1, 1, 2) -> (1, 4) bilinear: 0, 0.25, 0.75, 1
    assert erased_region(maps, torch.tensor([0]), 0.75, (1, 4)).tolist() == [[[False, False, True, True]]]


def test_the_erasing_class_is_the_target_its_argmax_or_the_prediction():
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    assert erase_classes(torch.tensor([2]), logits).tolist() == [2]
    assert erase_classes(torch.tensor([[0.3, 0.1, 0.6]]), logits).tolist() == [2]
    assert erase_classes(None, logits).tolist() == [1]


def test_fuse_is_the_pixelwise_max_of_the_normalised_maps():
    a = torch.tensor([[[0.0, 1.0], [2.0, 4.0]]])  # normalised: 0, .25, .5, 1
    b = torch.tensor([[[8.0, 7.0], [6.0, 4.0]]])  # normalised: 1, .75, .5, 0
    expected = torch.tensor([[[1.0, 0.75], [0.5, 1.0]]])
    assert torch.allclose(max_fuse(a, b), expected)
    other = torch.zeros(1, 2, 2)
    outputs = Outputs(
        raw_maps=[],
        class_maps=[torch.stack([other, b], 1), torch.stack([other, a], 1)],  # [B, A], class 1 picked
        logits=[],
    )
    assert torch.allclose(ACoL().fuse(outputs, [torch.tensor([1]), torch.tensor([1])]), expected)


class FixedFeature(nn.Module):
    """A backbone that returns one given feature map whatever the image."""

    def __init__(self, feature: torch.Tensor):
        super().__init__()
        self.feature = feature
        self.feature_info = [FeatureLevel("fixed", feature.shape[1], 1)]

    def forward(self, x):
        return [self.feature.expand(x.shape[0], -1, -1, -1)]


def identity_model(feature: torch.Tensor, **options) -> WSOLModel:
    """ACoL with linear heads that copy channel c to class c's map (no bias)."""
    model = WSOLModel(FixedFeature(feature), linear, ACoL(**options), Hierarchy.flat(["a", "b"]), backbone_name="fixed")
    for head in model.heads:
        with torch.no_grad():
            head.classifier.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            head.classifier.bias.zero_()
    return model


def test_forward_erases_by_the_target_while_training_and_by_the_prediction_at_test_time():
    # class 0's channel peaks at (0, 0), class 1's at (1, 1); class 1 has the larger mean (prediction)
    feature = torch.tensor([[[4.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 3.0]]])[None]
    model = identity_model(feature, threshold=0.75)
    images = torch.zeros(1, 3, 2, 2)
    train = model.train()(images, torch.tensor([0]))
    assert train.extras["erased"].tolist() == [[[True, False], [False, False]]]
    erased = feature.clone()
    erased[0, :, 0, 0] = 0
    assert torch.equal(train.raw_maps[0][:, :, 0], erased)  # B saw the erased feature
    assert torch.equal(train.raw_maps[1][:, :, 0], feature)  # A the whole feature
    test = model.eval()(images)
    assert test.logits[-1].argmax(1).tolist() == [1]  # the prediction is A's
    assert test.extras["erased"].tolist() == [[[False, False], [False, True]]]


def test_loss_is_the_sum_of_both_cross_entropies():
    torch.manual_seed(0)
    model = identity_model(torch.randn(1, 2, 3, 3))
    outputs = model.train()(torch.zeros(2, 3, 3, 3), torch.tensor([0, 1]))
    terms = model.loss(outputs, torch.tensor([0, 1]))
    expected = F.cross_entropy(outputs.logits[0], torch.tensor([0, 1])) + F.cross_entropy(
        outputs.logits[1], torch.tensor([0, 1])
    )
    assert torch.allclose(terms["loss"], expected)


def test_smoothing_is_wsolevaluation_s_on_vgg16_only():
    spike = torch.zeros(1, 1, 5, 5)
    spike[0, 0, 2, 2] = 9.0
    smoothed = smoothing_module("auto", "vgg16")(spike)[0, 0]
    # 3x3 max spreads the spike to the centre 3x3 block; the 3x3 mean then counts its cells / 9
    assert smoothed[2, 2] == 9.0 and smoothed[2, 1] == 6.0 and smoothed[1, 1] == 4.0 and smoothed[0, 2] == 3.0
    assert smoothed[0, 0] == 1.0
    assert torch.equal(smoothing_module("auto", "tinycnn")(spike), spike)
    assert smoothing_module("avg", "tinycnn")(spike)[0, 0, 2, 2] == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [({"threshold": 1.5}, "threshold"), ({"threshold": True}, "threshold"), ({"smoothing": "gauss"}, "smoothing")],
)
def test_bad_options_are_one_line_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        ACoL(**options)


def test_both_classifiers_are_trained_and_saved(registry):
    head = functools.partial(registry.get("heads", "wsol").factory, channels=8)

    def build():
        backbone = registry.build("backbones", "tinycnn", width=4)
        return WSOLModel(backbone, head, ACoL(), Hierarchy.flat(["a", "b", "c"]), backbone_name="tinycnn")

    torch.manual_seed(0)
    model = build()
    _, fast = model.parameter_groups()
    assert {id(p) for p in model.heads.parameters()} == {id(p) for p in fast}
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    copy = build()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first, second = model.eval()(images), copy.eval()(images)
    for x, y in zip(first.class_maps, second.class_maps):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_acol_trains_and_caches_its_branch_maps_through_the_cli(tmp_path):
    from test_run import TINY, only_run

    assert main(["run", "--method", "acol", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    run_dir = only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 24 and 0 <= metrics["maxboxacc_v2"] <= 100
    with read_cache(run_dir / "cache.h5") as cache:
        branches = cache.extra_maps["branches"]
        assert branches.names == ["A", "B", "erased (pred)"]
        maps = branches.store[:]
        assert maps.shape[1] == 3 and 0.0 <= maps.min() and maps.max() <= 1.0
        assert set(map(float, maps[:, 2].ravel())) <= {0.0, 1.0}  # the erased region is binary
