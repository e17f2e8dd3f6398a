"""ADL: the drop mask and importance map on hand-made maps, the seeded choice, eval identity, and the
insertion points on every built-in backbone (checked by what flows through them), one tiny CLI run."""

from __future__ import annotations

import functools
import json
import math
from types import SimpleNamespace

import pytest
import torch

from wsolbench.cli.main import main
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.model import WSOLModel
from wsolbench.specs import Hierarchy
from wsolbench.train import train_step
from wsolbench_plugins.backbones import TimmFeatures
from wsolbench_plugins.methods.adl import ADL, ADLayer, attention_map, drop_mask, importance_map

pytestmark = pytest.mark.usefixtures("one_thread")

LN3 = math.log(3.0)  # sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4


def sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def two_images() -> torch.Tensor:
    """(2, 2, 2, 2) features whose channel means are worked out below."""
    first = [[[4.0, 2.0], [3.0, 0.0]], [[4.0, 4.0], [3.0, 1.0]]]  # mean [[4, 3], [3, 0.5]]
    second = [[[LN3, 1.0], [0.0, 2.0]], [[LN3, -1.0], [0.0, 2.0]]]  # mean [[ln 3, 0], [0, 2]]
    return torch.tensor([first, second])


MEANS = torch.tensor([[[[4.0, 3.0], [3.0, 0.5]]], [[[LN3, 0.0], [0.0, 2.0]]]])
# gamma = 3/4: thresholds 3 (first image, max 4) and 1.5 (second, max 2). The first image's two 3s
# equal its threshold and are dropped (the official comparison is attention < gamma * max).
DROP = torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]], [[[1.0, 1.0], [1.0, 0.0]]]])
IMPORTANCE = torch.tensor(
    [[[[sigmoid(4), sigmoid(3)], [sigmoid(3), sigmoid(0.5)]]], [[[0.75, 0.5], [0.5, sigmoid(2)]]]]
)


def test_attention_is_the_channel_mean():
    assert torch.allclose(attention_map(two_images()), MEANS, atol=1e-7)
    assert attention_map(two_images()).shape == (2, 1, 2, 2)


def test_drop_mask_drops_values_at_the_threshold_per_image():
    assert torch.equal(drop_mask(MEANS, 0.75), DROP)
    # gamma = 1: only each image's maximum is dropped; gamma = 0: every nonnegative value is.
    assert torch.equal(drop_mask(MEANS, 1.0), torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]], [[[1.0, 1.0], [1.0, 0.0]]]]))
    assert torch.equal(drop_mask(MEANS, 0.0), torch.zeros_like(MEANS))


def test_drop_mask_at_the_default_threshold_compares_with_the_float32_product():
    threshold = torch.tensor(10.0) * 0.9  # the exact float32 value the official code compares with
    below = torch.nextafter(threshold, torch.tensor(0.0))
    attention = torch.stack([torch.tensor(10.0), threshold, below]).view(1, 1, 1, 3)
    assert torch.equal(drop_mask(attention, 0.9), torch.tensor([[[[0.0, 0.0, 1.0]]]]))


def test_importance_map_is_the_sigmoid_of_the_attention():
    assert torch.allclose(importance_map(MEANS), IMPORTANCE, atol=1e-6)
    assert importance_map(torch.tensor([0.0, LN3, -LN3])).tolist() == pytest.approx([0.5, 0.75, 0.25])


def test_the_seeded_draw_picks_one_map_for_the_whole_batch():
    layer = ADLayer(drop_rate=0.75, threshold=0.75).train()
    x = two_images()
    picked = set()
    for seed in range(12):
        torch.manual_seed(seed)
        drop = float(torch.rand(())) >= 1 - 0.75  # P(drop mask) = drop_rate
        torch.manual_seed(seed)
        expected = x * (DROP if drop else IMPORTANCE)
        assert torch.allclose(layer(x), expected, atol=1e-6)
        picked.add(drop)
    assert picked == {True, False}


def test_drop_rate_is_the_share_of_drop_mask_draws():
    x = two_images()
    torch.manual_seed(0)
    layer = ADLayer(drop_rate=0.75, threshold=0.75).train()
    drops = sum(bool(torch.equal(layer(x), x * DROP)) for _ in range(4000))
    assert abs(drops / 4000 - 0.75) < 0.03  # 4.4 standard deviations
    assert torch.equal(ADLayer(drop_rate=1.0, threshold=0.75).train()(x), x * DROP)
    assert torch.allclose(ADLayer(drop_rate=0.0).train()(x), x * IMPORTANCE, atol=1e-6)


def test_eval_mode_is_the_identity_and_draws_nothing():
    layer = ADLayer().eval()
    x = two_images()
    state = torch.get_rng_state()
    assert layer(x) is x
    assert torch.equal(torch.get_rng_state(), state)


def test_channels_last_layer_matches_the_channels_first_one():
    x = two_images()
    for seed in range(4):
        torch.manual_seed(seed)
        first = ADLayer(threshold=0.75).train()(x)
        torch.manual_seed(seed)
        last = ADLayer(threshold=0.75, channel_dim=-1).train()(x.permute(0, 2, 3, 1))
        assert torch.allclose(last, first.permute(0, 2, 3, 1))


def test_a_token_tensor_is_a_one_line_error():
    with pytest.raises(WsolbenchError, match=r"\(B, C, H, W\)"):
        ADLayer().train()(torch.zeros(2, 5, 8))


# --------------------------------------------------------------------------- insertion into the backbones

HIERARCHY = Hierarchy.flat([f"c{i}" for i in range(5)])

#: The documented insertion points with the channels of the feature map each one sees.
EXPECTED = {
    "vgg16": {"features.16": 256, "features.22": 512, "features.29": 512},
    "resnet50": {"body.layer3.0": 1024, "body.layer4.0": 2048, "body.layer4.2": 2048},
    "inceptionv3": {"Mixed_5d": 288, "Mixed_6e": 768},
    "googlenet": {"inception4c": 512, "inception4e": 832},
    "tinycnn": {"stage3": 32, "stage4": 32},
    "timm:resnet18": {"body.layer3": 256, "body.layer4": 512},
}
OPTIONS = {"tinycnn": {"width": 8}}
#: Input sizes (64 px otherwise). At 64 px Inception-v3's Mixed_6e map is 2x2, all four values within
#: gamma of their maximum at this seed: the drop mask drops the whole map and the backbone gets no gradient.
SIZE = {"vgg16": 32, "inceptionv3": 96}


def build(registry, backbone_name: str, method: ADL | None = None, *, named: bool = True) -> WSOLModel:
    torch.manual_seed(0)
    backbone = registry.build("backbones", backbone_name, **OPTIONS.get(backbone_name, {}))
    head = functools.partial(registry.get("heads", "wsol").factory, channels=8)
    return WSOLModel(backbone, head, method or ADL(), HIERARCHY, backbone_name=backbone_name if named else "")


@pytest.mark.parametrize("backbone_name", list(EXPECTED))
def test_layers_sit_after_the_documented_modules_and_the_model_trains(registry, backbone_name):
    model = build(registry, backbone_name)
    inserted = model.inserted_modules()
    assert set(inserted) == set(EXPECTED[backbone_name])
    assert all(isinstance(m, ADLayer) and (m.drop_rate, m.threshold) == (0.75, 0.9) for m in inserted.values())

    # Each layer runs once per forward, on exactly the output of the module at its path.
    seen: dict[str, list] = {path: [] for path in inserted}
    for path, layer in inserted.items():
        wrapper = model.backbone.get_submodule(path)
        wrapper.original.register_forward_hook(lambda m, i, out, p=path: seen[p].append(("out", out)))
        layer.register_forward_hook(lambda m, i, out, p=path: seen[p].append(("in", i[0])))
    size = SIZE.get(backbone_name, 64)
    images, labels = torch.randn(2, 3, size, size), torch.tensor([1, 3])
    before = [p.detach().clone() for p in model.backbone.parameters()]
    optimizer = torch.optim.SGD([p for group in model.parameter_groups() for p in group], lr=0.01)
    terms = train_step(model.train(), model, optimizer, torch.amp.GradScaler("cpu", enabled=False), images, labels)
    assert torch.isfinite(terms["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.backbone.parameters()))
    for path, events in seen.items():
        assert [kind for kind, _ in events] == ["out", "in"], path
        assert events[0][1] is events[1][1]
        assert events[1][1].shape[1] == EXPECTED[backbone_name][path]

    # The layers' outputs feed the tapped levels: a drop mask that drops everything (gamma = 0 on
    # post-ReLU features) zeroes the deepest level while training, and does nothing in eval mode.
    for layer in inserted.values():
        layer.drop_rate, layer.threshold = 1.0, 0.0
    with torch.no_grad():
        assert not model.backbone.train()(images)[-1].any()
        assert model.backbone.eval()(images)[-1].any()


@pytest.mark.parametrize("backbone_name", ["vgg16", "inceptionv3", "tinycnn"])
def test_a_model_built_without_a_backbone_name_is_matched_by_its_class(registry, backbone_name):
    model = build(registry, backbone_name, named=False)
    assert set(model.inserted_modules()) == set(EXPECTED[backbone_name])


def test_positions_override_the_table(registry):
    assert set(build(registry, "tinycnn", ADL(positions=["stage2", "stage4.1"])).inserted_modules()) == {
        "stage2",
        "stage4.1",
    }
    assert ADL(positions="stage2, stage3").positions == ("stage2", "stage3")
    with pytest.raises(UsageError, match="no submodule 'stage9'"):
        build(registry, "tinycnn", ADL(positions=["stage9"]))


def test_a_backbone_is_given_its_layers_once(registry):
    model = build(registry, "tinycnn")
    with pytest.raises(WsolbenchError, match="already has an ADL layer"):
        WSOLModel(model.backbone, lambda c, n, k: torch.nn.Conv2d(c, n * k, 1), ADL(), HIERARCHY)


def test_timm_wrappers_without_feature_map_modules_are_one_line_errors(registry):
    import timm

    vit = registry.build("backbones", "timm:test_vit")
    with pytest.raises(UsageError, match="forward_intermediates"):
        ADL().insertion_points(SimpleNamespace(backbone=vit, backbone_name="timm:test_vit"))
    hooked = TimmFeatures(timm.create_model("resnet18", features_only=True, out_indices=(2, 3, 4), feature_cls="hook"))
    with pytest.raises(UsageError, match="forward hooks"):
        ADL().insertion_points(SimpleNamespace(backbone=hooked, backbone_name="timm:resnet18"))


def test_timm_level_names_map_to_features_only_module_names(registry):
    convnext = registry.build("backbones", "timm:test_convnext")  # levels stages.1-3, modules stages_1-3
    assert ADL().insertion_points(SimpleNamespace(backbone=convnext, backbone_name="timm:test_convnext")) == [
        "body.stages_2",
        "body.stages_3",
    ]


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"drop_rate": 1.5}, "drop_rate must be a number in"),
        ({"drop_rate": True}, "drop_rate must be a number in"),
        ({"threshold": -0.1}, "threshold must be a number in"),
        ({"threshold": "high"}, "threshold must be a number in"),
        ({"positions": []}, "positions must be a list"),
        ({"positions": [3]}, "positions must be a list"),
        ({"positions": ["stage3", "stage3.0"]}, "overlap"),
        ({"positions": ["stage3", "stage3"]}, "overlap"),
    ],
)
def test_bad_options_are_one_line_usage_errors(options, match):
    with pytest.raises(UsageError, match=match) as error:
        ADL(**options)
    assert "\n" not in str(error.value)


def test_defaults_and_table_rank():
    method = ADL()
    assert (method.drop_rate, method.threshold, method.positions) == (0.75, 0.9, None)
    assert ADL.table_rank == 40
    assert set(ADL.search_space) == {"drop_rate", "threshold"}


@pytest.mark.slow
def test_adl_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    from test_run import TINY, only_run

    assert main(["run", "--method", "adl", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert "| adl" in capsys.readouterr().out
    run_dir = only_run(tmp_path)
    assert "maxboxacc_v2" in json.dumps(json.loads((run_dir / "metrics.json").read_text()))
    # The wrapped modules are checkpointed under their wrappers' names (ADL itself has no tensors).
    model_state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=False)["model"]
    assert "backbone.stage4.original.0.weight" in model_state
    assert not any(key.startswith("backbone.stage4.0.") for key in model_state)
