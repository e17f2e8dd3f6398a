"""SPG: the foreground/background/ignore masks, the masked BCE, the branches' wiring, end to end."""

from __future__ import annotations

import functools
import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from wsolbench.cache import read_cache
from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench.model import WSOLModel
from wsolbench.specs import FeatureLevel, Hierarchy
from wsolbench_plugins.heads import linear
from wsolbench_plugins.methods.spg import SPG, masked_bce, spg_mask

pytestmark = pytest.mark.usefixtures("one_thread")


def filled(counts: dict[float, int], side: int = 8) -> torch.Tensor:
    """A ``side x side`` map holding ``counts[value]`` pixels of each value, in row-major order."""
    values = [value for value, count in counts.items() for _ in range(count)]
    assert len(values) == side * side
    return torch.tensor(values).view(side, side)


def test_mask_foreground_above_high_background_below_low_the_rest_ignored():
    # 40 pixels above high (enough: no fallback), one exactly at high, one exactly at low
    attention = filled({0.875: 40, 0.75: 1, 0.5: 10, 0.125: 1, 0.0625: 12})
    mask = spg_mask(attention[None], high=0.75, low=0.125)[0]
    expected = torch.cat([torch.full((40,), 1.0), torch.full((1 + 10 + 1,), 255.0), torch.full((12,), 0.0)]).view(8, 8)
    assert torch.equal(mask, expected)


def test_fewer_than_30_foreground_pixels_fall_back_to_70_percent_of_the_maximum():
    # 29 pixels above high=0.75: the threshold becomes 0.7 * 0.875 = 0.6125, so 0.625 joins
    attention = filled({0.875: 29, 0.625: 5, 0.5: 20, 0.0625: 10})
    mask = spg_mask(attention[None], high=0.75, low=0.125)[0]
    expected = torch.cat([torch.full((34,), 1.0), torch.full((20,), 255.0), torch.full((10,), 0.0)]).view(8, 8)
    assert torch.equal(mask, expected)
    # with 30 pixels above high, no fallback: 0.625 stays ignored
    attention = filled({0.875: 30, 0.625: 5, 0.5: 19, 0.0625: 10})
    expected = torch.cat([torch.full((30,), 1.0), torch.full((24,), 255.0), torch.full((10,), 0.0)]).view(8, 8)
    assert torch.equal(spg_mask(attention[None], high=0.75, low=0.125)[0], expected)


def test_background_wins_where_the_fallback_foreground_is_below_low():
    # a faint map (max 0.0625): the fallback threshold 0.04375 makes 0.0625 foreground, but it
    # is below low = 0.125, and mask_bg runs last
    attention = filled({0.0625: 4, 0.0: 60})
    assert torch.equal(spg_mask(attention[None], high=0.75, low=0.125)[0], torch.zeros(8, 8))


def test_each_image_of_a_batch_has_its_own_fallback():
    many = filled({0.875: 40, 0.625: 24})  # no fallback: 0.625 ignored
    few = filled({0.875: 2, 0.625: 62})  # fallback: 0.625 > 0.6125 is foreground
    mask = spg_mask(torch.stack([many, few]), high=0.75, low=0.125)
    assert (mask[0] == 255).sum() == 24 and (mask[0] == 1).sum() == 40
    assert (mask[1] == 1).all()


def test_masked_bce_equals_the_hand_computation_and_ignores_255():
    # BCE(x, t) = log(1 + e^x) - t x: (0, 1) -> log 2; (ln 3, 0) -> log 4; (-ln 3, 1) -> log 4
    logits = torch.tensor([[[0.0, math.log(3)], [5.0, -math.log(3)]]], requires_grad=True)
    mask = torch.tensor([[[1.0, 0.0], [255.0, 1.0]]])
    loss = masked_bce(logits, mask)
    assert math.isclose(float(loss.detach()), 5 / 3 * math.log(2), rel_tol=1e-6)
    loss.backward()
    assert logits.grad[0, 1, 0] == 0  # the ignored pixel gets no gradient
    # the official loss: nn.BCEWithLogitsLoss over the valid pixels
    valid = mask < 255
    assert torch.isclose(loss, nn.BCEWithLogitsLoss()(logits[valid], mask[valid]))


def test_masked_bce_of_a_fully_ignored_batch_is_zero():
    loss = masked_bce(torch.randn(1, 2, 2), torch.full((1, 2, 2), 255.0))
    assert float(loss) == 0.0


def reference_mask(attention: torch.Tensor, high: float, low: float) -> torch.Tensor:
    """wsolevaluation's get_mask as a per-image loop (boolean indexing, no vectorisation)."""
    mask = torch.full_like(attention, 255.0)
    for i in range(attention.shape[0]):
        fg = attention[i] > high
        if int(fg.sum()) < 30:
            fg = attention[i] > attention[i].max() * 0.7
        mask[i][fg] = 1.0
    mask[attention < low] = 0.0
    return mask


def unguarded_minmax(maps: torch.Tensor) -> torch.Tensor:
    """wsolevaluation's ``normalize_tensor`` of ``(B, h, w)`` maps: ``(x - min) / (max - min)`` per map."""
    flat = maps.flatten(1)
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - low) / (high - low)).view_as(maps)


def reference_loss(method: SPG, outputs, labels: torch.Tensor) -> torch.Tensor:
    """wsolevaluation's spg.get_loss on wsolbench's outputs, upsampled to the input size."""
    size = outputs.extras["input_size"]

    def up(x):
        return F.interpolate(x[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]

    def bce(logits, mask):
        valid = mask < 255
        return nn.BCEWithLogitsLoss()(logits[valid], mask[valid])

    attention = unguarded_minmax(up(outputs.class_maps[0][torch.arange(len(labels)), labels]).detach())
    b1, b2, c = (up(outputs.extras[name]) for name in ("b1", "b2", "c"))
    (h1, l1), (h2, l2), (h3, l3) = method.thresholds
    fused = (torch.sigmoid(b1) + torch.sigmoid(b2)).detach() / 2
    return (
        F.cross_entropy(outputs.logits[0], labels)
        + bce(b2, reference_mask(attention, h1, l1))
        + bce(b1, reference_mask(torch.sigmoid(b2).detach(), h2, l2))
        + bce(c, reference_mask(fused, h3, l3))
    )


def small_model(registry, method: SPG, head_name: str = "wsol") -> WSOLModel:
    options = {"channels": 8} if head_name == "wsol" else {}
    head = functools.partial(registry.get("heads", head_name).factory, **options)
    backbone = registry.build("backbones", "tinycnn", width=4)
    return WSOLModel(backbone, head, method, Hierarchy.flat(["a", "b", "c"]), backbone_name="tinycnn")


def test_the_loss_is_the_official_ce_plus_three_masked_bces(registry):
    torch.manual_seed(0)
    method = SPG(channels=4)
    model = small_model(registry, method).train()
    labels = torch.tensor([0, 2, 1])
    outputs = model(torch.randn(3, 3, 32, 32), labels)
    assert outputs.extras["input_size"] == (32, 32)
    terms = model.loss(outputs, labels)
    assert set(terms) == {"loss", "ce0", "bce_b2", "bce_b1", "bce_c"}
    assert all(terms[name].item() > 0.1 for name in ("bce_b2", "bce_b1", "bce_c"))  # no mask is all ignored
    assert torch.allclose(terms["loss"], reference_loss(method, outputs, labels), atol=1e-6)
    soft = F.one_hot(labels, 3).float() * 0.6 + 0.4 / 3  # argmax = labels
    assert torch.allclose(model.loss(outputs, soft)["bce_b2"], terms["bce_b2"])


def test_branches_tap_the_two_deepest_levels_and_the_head_body(registry):
    method = SPG(channels=4)
    model = small_model(registry, method)
    modules = model.method_modules
    info = model.feature_info  # tinycnn width 4: 8/16/16 channels
    assert modules["b1"][0].in_channels == info[-2].channels and modules["b2"][0].in_channels == info[-1].channels
    assert modules["b_shared"][-1].out_channels == 1 and modules["c"][-1].out_channels == 1
    assert modules["c"][0].in_channels == 8  # the wsol head's body width
    # a head without a body: C on the head's input, the deepest feature
    linear_model = small_model(registry, SPG(channels=4), head_name="linear")
    assert linear_model.method_modules["c"][0].in_channels == info[-1].channels


def test_the_test_map_is_the_classifier_cam(registry):
    torch.manual_seed(0)
    model = small_model(registry, SPG(channels=4)).eval()
    outputs = model(torch.randn(2, 3, 32, 32))
    classes = model.targets(torch.tensor([1, 2]))
    cam = outputs.class_maps[0][torch.arange(2), torch.tensor([1, 2])]
    assert torch.allclose(model.method.fuse(outputs, classes), unguarded_minmax(cam))
    extras = model.method.extra_maps(model, outputs, classes)
    assert extras["branches"].names == ("B1", "B2", "C") and extras["branches"].maps.shape == (2, 3, 4, 4)
    assert extras["masks"].maps.shape == (2, 3, 4, 4)


def test_the_branches_are_trained_and_saved(registry):
    torch.manual_seed(0)
    model = small_model(registry, SPG(channels=4))
    _, fast = model.parameter_groups()
    assert {id(p) for p in model.method_modules.parameters()} <= {id(p) for p in fast}
    state = model.state_dict()
    assert any(key.startswith("method_modules.b_shared.") for key in state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    torch.manual_seed(1)
    copy = small_model(registry, SPG(channels=4))
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first, second = model.eval()(images), copy.eval()(images)
    for name in ("b1", "b2", "c"):
        assert torch.equal(first.extras[name], second.extras[name])


class OneLevel(nn.Module):
    feature_info = [FeatureLevel("only", 4, 1)]

    def forward(self, x):
        return [x.new_zeros(x.shape[0], 4, 2, 2)]


def test_a_backbone_with_one_level_is_a_usage_error():
    with pytest.raises(UsageError, match="at least 2 feature levels"):
        WSOLModel(OneLevel(), linear, SPG(), Hierarchy.flat(["a", "b"]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"threshold_1h": 1.2}, "threshold_1h"),
        ({"threshold_2l": -0.1}, "threshold_2l"),
        ({"threshold_3h": 0.05, "threshold_3l": 0.1}, "threshold_3l=0.1 must not exceed threshold_3h=0.05"),
        ({"channels": 0}, "channels"),
    ],
)
def test_bad_options_are_one_line_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        SPG(**options)


@pytest.mark.slow
def test_spg_trains_and_caches_its_branches_and_masks_through_the_cli(tmp_path):
    from test_run import TINY, only_run

    assert (
        main(["run", "--method", "spg", "--epochs", "1", *TINY, "--set", "method.channels=8", "--out", str(tmp_path)])
        == 0
    )
    run_dir = only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["num_images"] == 24 and 0 <= metrics["maxboxacc_v2"] <= 100
    with read_cache(run_dir / "cache.h5") as cache:
        assert cache.extra_maps["branches"].names == ["B1", "B2", "C"]
        assert cache.extra_maps["masks"].names == ["B1 target", "B2 target", "C target"]
        masks = cache.extra_maps["masks"].store[:]
        assert masks.shape[1] == 3 and 0.0 <= masks.min() and masks.max() <= 1.0
