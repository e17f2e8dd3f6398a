"""Backbones: documented levels and shapes, pretrained-weight handling without network access."""

from __future__ import annotations

import socket
import time

import pytest
import torch

from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.registry import default_registry
from wsolbench.specs import FeatureLevel
from wsolbench_plugins import backbones as bb

pytestmark = pytest.mark.usefixtures("one_thread")


def registry_backbones():
    return [("timm:resnet18" if n.endswith(":") else n) for n in default_registry().names("backbones")]


#: (channels, size at 224 px) per level, as documented in plugins/backbones.py.
DOCUMENTED_224 = {
    ("vgg16", ()): [(256, 28), (512, 14), (512, 14)],
    ("vgg16", (("variant", "conv"),)): [(256, 56), (512, 28), (512, 14)],
    ("resnet50", ()): [(512, 28), (1024, 14), (2048, 14)],
    ("resnet50", (("last_stride", 2),)): [(512, 28), (1024, 14), (2048, 7)],
    ("googlenet", ()): [(480, 28), (512, 14), (832, 14)],
    ("inceptionv3", ()): [(192, 25), (288, 25), (768, 12)],
    ("inceptionv3", (("variant", "wsolevaluation"),)): [(192, 28), (288, 28), (768, 28)],
    ("tinycnn", ()): [(64, 56), (128, 28), (128, 28)],
    ("tinycnn", (("width", 8),)): [(16, 56), (32, 28), (32, 28)],
    ("timm:resnet18", ()): [(128, 28), (256, 14), (512, 7)],
}


@pytest.mark.parametrize("name", registry_backbones())
def test_backbone_levels_match_feature_info_at_224px(registry, name):
    """Shapes at 224 px on the meta device (no compute), against the docs or, for a new plugin, its strides."""
    backbone = registry.build("backbones", name)
    info = backbone.feature_info
    assert info and all(isinstance(level, FeatureLevel) for level in info)
    assert [level.reduction for level in info] == sorted(level.reduction for level in info)  # shallow -> deep
    outputs = backbone.to("meta")(torch.empty(1, 3, 224, 224, device="meta"))
    assert [o.shape[1] for o in outputs] == [level.channels for level in info]
    for out, level in zip(outputs, info, strict=True):
        assert abs(out.shape[-1] - 224 / level.reduction) <= 0.15 * 224 / level.reduction, (level, out.shape)
    if (name, ()) in DOCUMENTED_224:
        assert [(o.shape[1], o.shape[-1]) for o in outputs] == DOCUMENTED_224[(name, ())]


@pytest.mark.parametrize("key", [k for k in DOCUMENTED_224 if k[1]], ids=lambda k: f"{k[0]}-{dict(k[1])}")
def test_backbone_options_change_levels_as_documented(registry, key):
    name, options = key
    backbone = registry.build("backbones", name, **dict(options)).to("meta")
    outputs = backbone(torch.empty(1, 3, 224, 224, device="meta"))
    assert [(o.shape[1], o.shape[-1]) for o in outputs] == DOCUMENTED_224[key]
    assert [level.channels for level in backbone.feature_info] == [c for c, _ in DOCUMENTED_224[key]]


def test_real_forward_matches_meta_shapes(registry):
    backbone = registry.build("backbones", "tinycnn")
    outputs = backbone(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 128, 8, 8)]


def test_bad_options_are_one_line_usage_errors(registry):
    for name, options in [
        ("vgg16", {"variant": "deep"}),
        ("resnet50", {"last_stride": 3}),
        ("inceptionv3", {"variant": "v4"}),
        ("tinycnn", {"width": 0}),
        ("timm:not_a_model_xyz", {}),
        ("tinycnn", {"pretrained": 3}),
    ]:
        with pytest.raises(UsageError) as error:
            registry.build("backbones", name, **options)
        assert "\n" not in str(error.value)


# --------------------------------------------------------------------------- pretrained=True, offline


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network (every connection fails at once) and empty weight caches."""

    def refuse(*args, **kwargs):
        raise OSError("[test] network is unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))


@pytest.mark.parametrize("name", ["vgg16", "resnet50", "googlenet", "inceptionv3", "timm:resnet18"])
def test_pretrained_download_fails_fast_and_clearly_offline(registry, offline, name):
    start = time.monotonic()
    with pytest.raises(WsolbenchError) as error:
        registry.build("backbones", name, pretrained=True)
    assert time.monotonic() - start < 10
    message = str(error.value)
    assert "\n" not in message
    assert "pretrained=/path/to/weights.pth" in message and "network is unreachable" in message


def test_download_errors_past_the_preflight_are_wrapped_too(registry, offline, monkeypatch):
    monkeypatch.setattr(bb, "_check_reachable", lambda name, url: None)  # the server "answers", the download fails
    with pytest.raises(WsolbenchError, match=r"cannot download pretrained weights .*pretrained=/path"):
        registry.build("backbones", "googlenet", pretrained=True)


def test_tinycnn_has_no_download(registry):
    with pytest.raises(UsageError, match="no downloadable weights"):
        registry.build("backbones", "tinycnn", pretrained=True)


# --------------------------------------------------------------------------- pretrained=<path>


def _equal_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 3},
        lambda sd: {"model": {"module." + k: v for k, v in sd.items()}},
        lambda sd: {"model": {**{"backbone." + k: v for k, v in sd.items()}, "heads.0.w": torch.zeros(1)}},
    ],
    ids=["raw", "state_dict", "model+module", "wsolmodel"],
)
def test_local_checkpoint_round_trip(registry, tmp_path, wrap):
    torch.manual_seed(0)
    saved = registry.build("backbones", "tinycnn", width=8)
    saved(torch.randn(2, 3, 32, 32))  # non-trivial BatchNorm running statistics
    path = tmp_path / "tiny.pth"
    torch.save(wrap(saved.state_dict()), path)
    torch.manual_seed(1)
    loaded = registry.build("backbones", "tinycnn", width=8, pretrained=str(path))
    assert _equal_weights(saved, loaded)


def test_original_timm_checkpoint_loads_into_the_features_backbone(registry, tmp_path, recwarn):
    import timm

    torch.manual_seed(0)
    full = timm.create_model("resnet18")  # the whole classifier network, fc included
    path = tmp_path / "resnet18.pth"
    torch.save(full.state_dict(), path)
    backbone = registry.build("backbones", "timm:resnet18", pretrained=str(path))
    assert torch.equal(backbone.body.layer4[1].conv2.weight, full.layer4[1].conv2.weight)
    assert torch.equal(backbone.body.bn1.running_var, full.bn1.running_var)
    assert not [w for w in recwarn if "not used" in str(w.message)]  # fc is a known removed part
    round_trip = tmp_path / "own.pth"
    torch.save(backbone.state_dict(), round_trip)
    assert _equal_weights(backbone, registry.build("backbones", "timm:resnet18", pretrained=str(round_trip)))


def test_vgg16_checkpoint_with_classifier_loads_silently(registry, tmp_path, recwarn):
    torch.manual_seed(0)
    source = registry.build("backbones", "vgg16")
    state = {**source.state_dict(), "classifier.6.weight": torch.zeros(3, 4)}
    torch.save(state, tmp_path / "vgg.pth")
    loaded = registry.build("backbones", "vgg16", pretrained=str(tmp_path / "vgg.pth"))
    assert _equal_weights(source, loaded)
    assert not [w for w in recwarn if "not used" in str(w.message)]


def test_unused_checkpoint_tensors_are_reported(registry, tmp_path):
    state = {**registry.build("backbones", "tinycnn", width=4).state_dict(), "extra.weight": torch.zeros(2)}
    torch.save(state, tmp_path / "x.pth")
    with pytest.warns(UserWarning, match=r"1 tensors .* not used \(e\.g\. extra\.weight\)"):
        registry.build("backbones", "tinycnn", width=4, pretrained=str(tmp_path / "x.pth"))


def test_missing_checkpoint_file_is_a_one_line_error(registry, tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(WsolbenchError) as error:
        registry.build("backbones", "resnet50", pretrained=str(missing))
    assert "not found" in str(error.value) and str(missing) in str(error.value)
    assert "\n" not in str(error.value)


def test_mismatched_checkpoints_are_clear_errors(registry, tmp_path):
    small = registry.build("backbones", "tinycnn", width=4).state_dict()
    torch.save(small, tmp_path / "w4.pth")
    with pytest.raises(WsolbenchError, match="another shape"):
        registry.build("backbones", "tinycnn", width=8, pretrained=str(tmp_path / "w4.pth"))
    torch.save({k: v for k, v in small.items() if "stage4" not in k}, tmp_path / "cut.pth")
    with pytest.raises(WsolbenchError, match=r"tensors missing \(e\.g\. stage4"):
        registry.build("backbones", "tinycnn", width=4, pretrained=str(tmp_path / "cut.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WsolbenchError, match="holds no state dict"):
        registry.build("backbones", "tinycnn", width=4, pretrained=str(tmp_path / "list.pth"))


# -- input normalisation ---------------------------------------------------------------


def test_google_weights_normalisation_is_torchvisions_transform_input() -> None:
    """Normalising [0, 1] images with GOOGLE_NORMALIZATION gives the input torchvision's
    ``transform_input`` makes of ImageNet-normalised images (what the weights were trained on)."""
    from wsolbench.specs import IMAGENET_NORMALIZATION, WSOLDataset
    from wsolbench_plugins.backbones import GOOGLE_NORMALIZATION, googlenet, inceptionv3

    image = torch.rand(3, 8, 8)
    imagenet = WSOLDataset().normalize(image)
    google = WSOLDataset()
    google.normalization = GOOGLE_NORMALIZATION
    mean = torch.tensor(IMAGENET_NORMALIZATION[0]).view(3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION[1]).view(3, 1, 1)
    torchvision_transformed = (imagenet * std + mean - 0.5) / 0.5
    torch.testing.assert_close(google.normalize(image), torchvision_transformed)
    assert googlenet(transform_input=True).normalization == GOOGLE_NORMALIZATION
    assert googlenet().normalization == IMAGENET_NORMALIZATION  # random init: the ImageNet statistics
    assert inceptionv3(transform_input=True).normalization == GOOGLE_NORMALIZATION


def test_timm_backbones_declare_their_pretrained_cfg_statistics() -> None:
    from wsolbench.specs import IMAGENET_NORMALIZATION, backbone_normalization
    from wsolbench_plugins.backbones import _timm_normalization, tinycnn

    body = torch.nn.Identity()
    body.pretrained_cfg = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    assert _timm_normalization(body) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert _timm_normalization(torch.nn.Identity()) == IMAGENET_NORMALIZATION
    assert backbone_normalization(tinycnn(width=4)) == IMAGENET_NORMALIZATION  # declares none: ImageNet's
