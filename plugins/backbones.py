"""Built-in backbones: VGG16, ResNet50, GoogLeNet, Inception-v3, a tiny CPU CNN, and any timm model.

Every backbone is an ``nn.Module`` whose ``feature_info`` lists the levels it exposes
(shallow to deep, :class:`wsolbench.specs.FeatureLevel`) and whose ``forward(x)`` returns
one feature map per level. Every factory takes ``pretrained``:

* ``False`` (default): random initialisation.
* ``True``: the weights the underlying library downloads (timm / torchvision). Without
  internet access this fails within seconds with a one-line
  :class:`~wsolbench.errors.WsolbenchError`; download the file elsewhere and pass its path.
* a path: a local checkpoint, read with ``torch.load(path, map_location="cpu",
  weights_only=True)`` (or ``safetensors`` for ``*.safetensors``). It may be a raw
  state dict or ``{"state_dict": ...}`` / ``{"model": ...}``, with keys either of this
  backbone (``backbone.state_dict()``, also inside a saved ``WSOLModel`` under
  ``backbone.``) or of the original full network (the torchvision / timm ImageNet
  checkpoint: its classifier is ignored). Missing tensors or shape mismatches are errors.

Levels (channels, stride) at a glance; see each factory for details:

=============  ====================================================  ==========================
name           levels                                                channels / strides
=============  ====================================================  ==========================
vgg16          pool3, pool4, conv5_3 (``variant="danet"``)           256/512/512, 8/16/16
               conv3_3, conv4_3, conv5_3 (``variant="conv"``)        256/512/512, 4/8/16
resnet50       layer2, layer3, layer4 (``last_stride=1``)            512/1024/2048, 8/16/16
googlenet      inception3b, inception4c, inception4e                 480/512/832, 8/16/16
inceptionv3    maxpool2, Mixed_5d, Mixed_6e (``variant="danet"``)    192/288/768, 8/8/16
               same levels, ``variant="wsolevaluation"``             192/288/768, 8/8/8
tinycnn        stage2, stage3, stage4                                2w/4w/4w, 4/8/8
timm:<name>    the model's last three ``features_only`` levels       as timm reports
=============  ====================================================  ==========================
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench import hookimpl
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import IMAGENET_NORMALIZATION, FeatureLevel, Normalization

#: Seconds allowed to open a connection to a weight server before giving up.
CONNECT_TIMEOUT = 5.0
#: Socket timeout (seconds per blocking read) while downloading weights.
DOWNLOAD_TIMEOUT = 30.0


# --------------------------------------------------------------------------- weights


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _resolve_pretrained(name: str, pretrained: Any) -> bool | str:
    """Validate ``pretrained``: a bool, a path, or the strings "true"/"false"."""
    if isinstance(pretrained, bool):
        return pretrained
    if isinstance(pretrained, os.PathLike):
        return os.fspath(pretrained)
    if isinstance(pretrained, str):
        lowered = pretrained.strip().lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0", ""):
            return False
        if not Path(pretrained).expanduser().is_file():  # before building anything
            raise WsolbenchError(
                f"backbone {name!r}: checkpoint file not found: {pretrained!r} "
                "(pretrained= takes false, true to download, or the path of a local .pth/.safetensors file)"
            )
        return pretrained
    raise UsageError(f"backbone {name!r}: pretrained must be false, true or a checkpoint path, not {pretrained!r}")


def _offline_error(name: str, source: str, cause: str) -> WsolbenchError:
    return WsolbenchError(
        f"backbone {name!r}: cannot download pretrained weights from {source} ({cause}); "
        f"without internet access, download them elsewhere and pass the file: pretrained=/path/to/weights.pth"
    )


def _check_reachable(name: str, url: str) -> None:
    """Fail fast (``CONNECT_TIMEOUT``) if the server of ``url`` (or the proxy) cannot be reached.

    The libraries' own downloaders retry with back-off for most of a minute when offline;
    a single short connection attempt first turns that into an immediate, clear error.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = getproxies().get(parsed.scheme)
    if proxy and not proxy_bypass(host):
        proxy_url = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_url.hostname or host, proxy_url.port or 80
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise _offline_error(name, f"{parsed.scheme}://{parsed.hostname}", _one_line(error)) from error


def _torch_hub_cached(url: str) -> bool:
    return os.path.isfile(os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path)))


def _preflight_timm(name: str, model_name: str) -> None:
    """Check that timm can get ``model_name``'s weights: cached, a local file, or a reachable server."""
    import timm.models

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError as error:
        raise UsageError(f"backbone {name!r}: {_one_line(error)}") from error
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise UsageError(f"backbone {name!r}: timm has no pretrained weights for {model_name!r}; use pretrained=false")
    if cfg.file:
        return
    if cfg.hf_hub_id:
        import huggingface_hub

        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in files:
            if isinstance(huggingface_hub.try_to_load_from_cache(repo, filename, revision=revision or None), str):
                return
        if cfg.url and _torch_hub_cached(cfg.url):
            return
        _check_reachable(name, huggingface_hub.constants.ENDPOINT)
    elif not _torch_hub_cached(cfg.url):
        _check_reachable(name, cfg.url)


@contextlib.contextmanager
def _downloading(name: str, source: str) -> Iterator[None]:
    """Bound every socket read while downloading and turn any failure into one clear line."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        yield
    except WsolbenchError:
        raise
    except Exception as error:  # noqa: BLE001 - every download failure becomes the same actionable message
        raise _offline_error(name, source, _one_line(error)) from error
    finally:
        socket.setdefaulttimeout(previous)


def _read_checkpoint(name: str, path: str) -> dict[str, Tensor]:
    """Read a local checkpoint into a flat ``{key: tensor}`` dict."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WsolbenchError(
            f"backbone {name!r}: checkpoint file not found: {str(file)!r} "
            "(pretrained= takes false, true to download, or the path of a local .pth/.safetensors file)"
        )
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(file), device="cpu")
        else:
            obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - unreadable file, pickle refused, ...
        raise WsolbenchError(f"backbone {name!r}: cannot read checkpoint {str(file)!r}: {_one_line(error)}") from error
    for _ in range(2):  # {"state_dict": ...}, {"model": ...}, or one nested in the other
        if isinstance(obj, dict) and not any(isinstance(v, Tensor) for v in obj.values()):
            inner = next((obj[k] for k in ("state_dict", "model") if isinstance(obj.get(k), dict)), None)
            if inner is not None:
                obj = inner
    state = (
        {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)} if isinstance(obj, dict) else {}
    )
    if not state:
        keys = list(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise WsolbenchError(
            f"backbone {name!r}: checkpoint {str(file)!r} holds no state dict (top level: {keys}); "
            'expected {key: tensor}, {"state_dict": ...} or {"model": ...}'
        )
    return state


def _canonical(key: str) -> str:
    # timm's features_only wrapper renames nested modules ("stages.0" -> "stages_0").
    return key.replace("_", ".")


def load_weights(
    module: nn.Module,
    state: dict[str, Tensor],
    *,
    name: str,
    source: str,
    prefix: str = "",
    ignore: Sequence[str] = (),
) -> None:
    """Load ``state`` into ``module``, matching this module's or the original network's keys.

    Args:
        module: The backbone.
        state: Checkpoint tensors.
        name: Backbone name, for messages.
        source: Where ``state`` came from, for messages.
        prefix: What the backbone's own keys add in front of the original network's keys.
        ignore: Key prefixes of the original network's removed parts (classifier, cut blocks),
            dropped silently; other unused keys are reported in a warning.

    Raises:
        WsolbenchError: a tensor of the backbone is missing from the checkpoint or has another shape.
    """
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # a whole saved WSOLModel
        state = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.")}
    target = module.state_dict()
    by_canonical: dict[str, str | None] = {}
    for key in target:
        by_canonical[_canonical(key)] = None if _canonical(key) in by_canonical else key  # None: ambiguous
    mapped: dict[str, Tensor] = {}
    unused: list[str] = []
    for key, value in state.items():
        match = None
        for candidate in (key, prefix + key):
            match = candidate if candidate in target else by_canonical.get(_canonical(candidate))
            if match:
                break
        if match and match not in mapped:
            mapped[match] = value
        elif not match and not any(key.startswith(p) for p in ignore):
            unused.append(key)
    missing = [k for k in target if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise WsolbenchError(
            f"backbone {name!r}: checkpoint {source} does not fit: {len(missing)} of {len(target)} tensors missing "
            f"(e.g. {', '.join(missing[:3])}); the checkpoint's keys look like: {', '.join(list(state)[:3])}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(target[k].shape)}" for k, v in mapped.items() if v.shape != target[k].shape
    ]
    if wrong:
        raise WsolbenchError(
            f"backbone {name!r}: checkpoint {source} does not fit: {len(wrong)} tensors have another shape "
            f"(checkpoint vs model: {'; '.join(wrong[:3])})"
        )
    if unused:
        warnings.warn(
            f"backbone {name!r}: {len(unused)} tensors of checkpoint {source} are not used "
            f"(e.g. {', '.join(unused[:3])})",
            stacklevel=3,
        )
    module.load_state_dict(mapped, strict=False)


def _load_local(module: nn.Module, name: str, path: str, **kwargs: Any) -> None:
    load_weights(module, _read_checkpoint(name, path), name=name, source=repr(path), **kwargs)


def _init_convs(module: nn.Module) -> None:
    """Kaiming-normal (fan-out, ReLU) convolutions, zero biases, fresh BatchNorm (also after ``to_empty``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_parameters()  # unit weight, zero bias, fresh running statistics


#: The input torchvision's Google weights (GoogLeNet, Inception-v3) were trained on: ``(x - 0.5) / 0.5``
#: (torchvision re-normalises ImageNet-normalised inputs to it with ``transform_input``).
GOOGLE_NORMALIZATION: Normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def _timm_normalization(body: nn.Module) -> Normalization:
    """The mean/std of a timm model's ``pretrained_cfg`` (ImageNet's when it has none)."""
    cfg = getattr(body, "pretrained_cfg", None) or {}
    if "mean" in cfg and "std" in cfg:
        return tuple(float(v) for v in cfg["mean"]), tuple(float(v) for v in cfg["std"])
    return IMAGENET_NORMALIZATION


# --------------------------------------------------------------------------- VGG16


class VGG16Features(nn.Module):
    """VGG16's convolutional body up to conv5_3 + ReLU (pool5 and the classifier removed).

    ``features`` keeps timm's / torchvision's layer indices, so their ImageNet checkpoints load
    as they are. Taps (indices into ``features``): ``danet`` = outputs of pool3 (16), pool4 (23)
    and relu5_3 (29); ``conv`` = relu3_3 (15), relu4_3 (22), relu5_3 (29).
    """

    TAPS = {
        "danet": ((16, "pool3", 256, 8), (23, "pool4", 512, 16), (29, "conv5_3", 512, 16)),
        "conv": ((15, "conv3_3", 256, 4), (22, "conv4_3", 512, 8), (29, "conv5_3", 512, 16)),
    }

    def __init__(self, features: nn.Sequential, variant: str):
        super().__init__()
        self.features = features[:30]
        self.taps = {index: i for i, (index, *_) in enumerate(self.TAPS[variant])}
        self.feature_info = [FeatureLevel(n, c, r) for _, n, c, r in self.TAPS[variant]]

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                out.append(x)
        return out


def vgg16(*, pretrained: bool | str = False, variant: str = "danet") -> VGG16Features:
    """VGG16 (timm ``vgg16``, torchvision's ImageNet weights) cut after conv5_3, as in ACoL/DANet.

    pool5 and the fully connected layers are removed, so conv5_3 is at stride 16 (14x14 at 224 px).

    Options:
        pretrained: False, True (timm ``vgg16.tv_in1k`` = torchvision's weights) or a checkpoint path.
        variant: ``"danet"`` (default) taps the outputs of pool3, pool4 and conv5_3 (256/512/512
            channels, strides 8/16/16: 28/14/14 at 224 px), exactly where the official DANet code
            (``vgg_DA.py``) attaches its three heads; this reproduces the paper's VGG16 numbers.
            ``"conv"`` taps conv3_3, conv4_3, conv5_3 before pooling (strides 4/8/16).
    """
    import timm

    pretrained = _resolve_pretrained("vgg16", pretrained)
    if variant not in VGG16Features.TAPS:
        raise UsageError(f"backbone 'vgg16': variant must be one of {sorted(VGG16Features.TAPS)}, not {variant!r}")
    if pretrained is True:
        _preflight_timm("vgg16", "vgg16.tv_in1k")
        with _downloading("vgg16", "the Hugging Face hub (timm/vgg16.tv_in1k)"):
            full = timm.create_model("vgg16.tv_in1k", pretrained=True)
        return VGG16Features(full.features, variant)
    # The classifier (a 7x7x512x4096 conv, 120M parameters) is never used: build on the meta
    # device and materialise only the convolutional body.
    full = timm.create_model("vgg16", pretrained=False, device="meta")
    body = VGG16Features(full.features, variant).to_empty(device="cpu")
    _init_convs(body)
    if pretrained:
        _load_local(body, "vgg16", pretrained, ignore=("features.30", "pre_logits.", "head.", "classifier."))
    return body


# --------------------------------------------------------------------------- timm models


class TimmFeatures(nn.Module):
    """A timm ``features_only`` network exposing its selected levels as a :class:`Backbone`.

    Its input normalisation is the model's ``pretrained_cfg`` mean/std.
    """

    def __init__(self, body: nn.Module, reductions: Sequence[int] | None = None):
        super().__init__()
        self.body = body
        info = body.feature_info
        reductions = list(reductions) if reductions is not None else info.reduction()
        self.feature_info = [
            FeatureLevel(n, c, r) for n, c, r in zip(info.module_name(), info.channels(), reductions, strict=True)
        ]
        self.nhwc = getattr(body, "output_fmt", "NCHW") == "NHWC"
        self.normalization = _timm_normalization(body)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = self.body(x)
        out = list(out.values()) if isinstance(out, dict) else list(out)
        return [o.permute(0, 3, 1, 2) for o in out] if self.nhwc else out


def _timm_features(name: str, model_name: str, pretrained: bool | str, out_indices: Any) -> nn.Module:
    import timm

    arch = model_name.split(".", 1)[0]
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch}*")[:5]
        hint = f"; similar: {', '.join(close)}" if close else ""
        raise UsageError(f"backbone {name!r}: timm has no model {arch!r}{hint} (see timm.list_models())")
    if pretrained is True:
        _preflight_timm(name, model_name)
    context = _downloading(name, f"timm ({model_name})") if pretrained is True else contextlib.nullcontext()
    try:
        with context:
            return timm.create_model(
                model_name, pretrained=pretrained is True, features_only=True, out_indices=out_indices
            )
    except (RuntimeError, AssertionError, TypeError, ValueError, IndexError) as error:
        raise UsageError(
            f"backbone {name!r}: timm cannot build {model_name!r} with features_only: {_one_line(error)}"
        ) from error


def resnet50(*, pretrained: bool | str = False, last_stride: int = 1) -> TimmFeatures:
    """ResNet50 (timm ``resnet50``) exposing layer2/layer3/layer4, layer4 at stride 1 by default.

    Options:
        pretrained: False, True (timm ``resnet50.tv_in1k`` = torchvision's ImageNet weights, the
            ones the WSOL literature uses) or a checkpoint path (timm or torchvision keys).
        last_stride: Stride of layer4's first block. ``1`` (default) is the usual WSOL cut
            (wsolevaluation's ResNet50, Choe et al. CVPR 2020): no dilation, layer4 keeps layer3's
            resolution, so the levels are 512/1024/2048 channels at strides 8/16/16 (28/14/14 at
            224 px). ``2`` is the stock network (strides 8/16/32).
    """
    pretrained = _resolve_pretrained("resnet50", pretrained)
    if last_stride not in (1, 2):
        raise UsageError(f"backbone 'resnet50': last_stride must be 1 or 2, not {last_stride!r}")
    model_name = "resnet50.tv_in1k" if pretrained is True else "resnet50"
    body = _timm_features("resnet50", model_name, pretrained, (2, 3, 4))
    if last_stride == 1:
        block = body.layer4[0]
        block.conv2.stride = (1, 1)
        block.downsample[0].stride = (1, 1)
    backbone = TimmFeatures(body, [8, 16, 16 * last_stride])
    if isinstance(pretrained, str):
        _load_local(backbone, "resnet50", pretrained, prefix="body.", ignore=("fc.",))
    return backbone


def timm_backbone(model_name: str, *, pretrained: bool | str = False, levels: int = 3) -> TimmFeatures:
    """Any timm model (``timm:<name>``, e.g. ``timm:resnet18``) through ``features_only``.

    Options:
        pretrained: False, True (timm's default weights for ``<name>``; ``<name>`` may carry a
            tag such as ``resnet18.tv_in1k``) or a checkpoint path (timm keys).
        levels: How many of the model's deepest feature levels to expose (default 3), with the
            channels and strides timm reports (a ResNet: layer2/3/4 at 8/16/32).
    """
    name = f"timm:{model_name}"
    pretrained = _resolve_pretrained(name, pretrained)
    if not isinstance(levels, int) or levels < 1:
        raise UsageError(f"backbone {name!r}: levels must be a positive integer, not {levels!r}")
    body = _timm_features(name, model_name, pretrained, levels)
    backbone = TimmFeatures(body)
    if isinstance(pretrained, str):
        _load_local(
            backbone,
            name,
            pretrained,
            prefix="body.",
            ignore=("fc.", "head", "classifier", "pre_logits", "last_linear"),
        )
    return backbone


# --------------------------------------------------------------------------- torchvision Inception networks


def _torchvision_weights(name: str, module: nn.Module, weights: Any, ignore: Sequence[str]) -> None:
    url = weights.url
    if not _torch_hub_cached(url):
        _check_reachable(name, url)
    with _downloading(name, url):
        state = weights.get_state_dict(progress=False)
    load_weights(module, state, name=name, source=url, ignore=ignore)


class GoogLeNetFeatures(nn.Module):
    """torchvision GoogLeNet (Inception-v1) up to inception4e; maxpool4 and inception5a/5b removed.

    Submodules keep torchvision's names, so its ImageNet checkpoint loads as it is.
    """

    LEVELS = (("inception3b", 480, 8), ("inception4c", 512, 16), ("inception4e", 832, 16))
    BLOCKS = (
        "conv1",
        "maxpool1",
        "conv2",
        "conv3",
        "maxpool2",
        "inception3a",
        "inception3b",
        "maxpool3",
        "inception4a",
        "inception4b",
        "inception4c",
        "inception4d",
        "inception4e",
    )

    def __init__(self, net: nn.Module, transform_input: bool):
        super().__init__()
        for block in self.BLOCKS:
            self.add_module(block, getattr(net, block))
        self.normalization = GOOGLE_NORMALIZATION if transform_input else IMAGENET_NORMALIZATION
        self.feature_info = [FeatureLevel(*level) for level in self.LEVELS]
        self._taps = {name for name, _, _ in self.LEVELS}

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for block in self.BLOCKS:
            x = getattr(self, block)(x)
            if block in self._taps:
                out.append(x)
        return out


def googlenet(*, pretrained: bool | str = False, transform_input: bool | None = None) -> GoogLeNetFeatures:
    """GoogLeNet / Inception-v1 (torchvision) with the last inception block (5a/5b) removed, as in ACoL.

    Levels: inception3b (480 channels, stride 8), inception4c (512, 16), inception4e (832, 16):
    28/14/14 at 224 px. Note that the "GoogLeNet" numbers of the DANet paper come from its
    official code, which is Inception-v3: use ``inceptionv3`` to reproduce them; this backbone
    is the Inception-v1 network other WSOL papers (CAM, ACoL) call GoogLeNet.

    Options:
        pretrained: False, True (torchvision ``GoogLeNet_Weights.IMAGENET1K_V1``) or a checkpoint path.
        transform_input: Declare the input normalisation torchvision's Google weights expect,
            ``(x - 0.5) / 0.5`` (:data:`GOOGLE_NORMALIZATION`), instead of ImageNet's mean/std; the
            datasets then normalise with it (the same input torchvision's ``transform_input``
            produces). Default (None): on whenever pretrained weights are loaded.
    """
    import torchvision

    pretrained = _resolve_pretrained("googlenet", pretrained)
    if transform_input is None:
        transform_input = pretrained is not False
    with torch.device("meta"):  # the cut blocks are never materialised
        net = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    backbone = GoogLeNetFeatures(net, transform_input).to_empty(device="cpu")
    _init_convs(backbone)
    ignore = ("aux1.", "aux2.", "inception5", "fc.")
    if pretrained is True:
        _torchvision_weights("googlenet", backbone, torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1, ignore)
    elif pretrained:
        _load_local(backbone, "googlenet", pretrained, ignore=ignore)
    return backbone


class InceptionV3Features(nn.Module):
    """torchvision Inception-v3 cut after Mixed_6e (Mixed_7a-c, the aux head and fc removed).

    Submodules keep torchvision's names, so its ImageNet checkpoint loads as it is.
    ``variant="danet"`` follows the official DANet code (``inception3_CAM345_cos.py``):
    Conv2d_1a_3x3 padded by 1, plain 3x3/2 max-pools, stock Mixed_6a (stride 2).
    ``variant="wsolevaluation"`` follows wsolevaluation's ``InceptionCam`` with a large feature
    map: max-pools padded by 1 with ceil mode and Mixed_6a at stride 1 (padding 1).
    """

    LEVELS = {
        "danet": (("maxpool2", 192, 8), ("Mixed_5d", 288, 8), ("Mixed_6e", 768, 16)),
        "wsolevaluation": (("maxpool2", 192, 8), ("Mixed_5d", 288, 8), ("Mixed_6e", 768, 8)),
    }
    BLOCKS = (
        "Conv2d_1a_3x3",
        "Conv2d_2a_3x3",
        "Conv2d_2b_3x3",
        "maxpool1",
        "Conv2d_3b_1x1",
        "Conv2d_4a_3x3",
        "maxpool2",
        "Mixed_5b",
        "Mixed_5c",
        "Mixed_5d",
        "Mixed_6a",
        "Mixed_6b",
        "Mixed_6c",
        "Mixed_6d",
        "Mixed_6e",
    )

    def __init__(self, net: nn.Module, variant: str, transform_input: bool):
        super().__init__()
        for block in self.BLOCKS:
            self.add_module(block, getattr(net, block))
        self.Conv2d_1a_3x3.conv.padding = (1, 1)
        self.variant = variant
        if variant == "wsolevaluation":
            self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
            self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
            for conv in (self.Mixed_6a.branch3x3.conv, self.Mixed_6a.branch3x3dbl_3.conv):
                conv.stride, conv.padding = (1, 1), (1, 1)
        self.normalization = GOOGLE_NORMALIZATION if transform_input else IMAGENET_NORMALIZATION
        self.feature_info = [FeatureLevel(*level) for level in self.LEVELS[variant]]
        self._taps = {name for name, _, _ in self.LEVELS[variant]}

    def _mixed_6a_stride1(self, x: Tensor) -> Tensor:
        block = self.Mixed_6a
        deep = block.branch3x3dbl_3(block.branch3x3dbl_2(block.branch3x3dbl_1(x)))
        return torch.cat([block.branch3x3(x), deep, F.max_pool2d(x, 3, stride=1, padding=1)], 1)

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for block in self.BLOCKS:
            if block == "Mixed_6a" and self.variant == "wsolevaluation":
                x = self._mixed_6a_stride1(x)
            else:
                x = getattr(self, block)(x)
            if block in self._taps:
                out.append(x)
        return out


def inceptionv3(
    *, pretrained: bool | str = False, variant: str = "danet", transform_input: bool | None = None
) -> InceptionV3Features:
    """Inception-v3 (torchvision) cut after Mixed_6e: the network behind DANet's "GoogLeNet" numbers.

    Levels: maxpool2 (the 192-channel stem output), Mixed_5d (288) and Mixed_6e (768), where the
    official DANet code attaches its three heads.

    Options:
        pretrained: False, True (torchvision ``Inception_V3_Weights.IMAGENET1K_V1``) or a checkpoint path.
        variant: ``"danet"`` (default, reproduces the paper's GoogLeNet rows; valid convolutions,
            25/25/12 px at 224 px input, nominal strides 8/8/16) or ``"wsolevaluation"``
            (wsolevaluation's InceptionV3 with ``large_feature_map``: 28/28/28 at 224 px, strides
            8/8/8, exact for inputs divisible by 8).
        transform_input: As for ``googlenet``. Default (None): on whenever pretrained weights are
            loaded (the official DANet code feeds ImageNet-normalised images without it).
    """
    import torchvision

    pretrained = _resolve_pretrained("inceptionv3", pretrained)
    if variant not in InceptionV3Features.LEVELS:
        raise UsageError(
            f"backbone 'inceptionv3': variant must be one of {sorted(InceptionV3Features.LEVELS)}, not {variant!r}"
        )
    if transform_input is None:
        transform_input = pretrained is not False
    with torch.device("meta"):  # Mixed_7a-c and fc are never materialised
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    backbone = InceptionV3Features(net, variant, transform_input).to_empty(device="cpu")
    _init_convs(backbone)
    ignore = ("AuxLogits.", "Mixed_7", "fc.")
    if pretrained is True:
        _torchvision_weights("inceptionv3", backbone, torchvision.models.Inception_V3_Weights.IMAGENET1K_V1, ignore)
    elif pretrained:
        _load_local(backbone, "inceptionv3", pretrained, ignore=ignore)
    return backbone


# --------------------------------------------------------------------------- tiny CNN


def _conv_bn_relu(cin: int, cout: int, stride: int = 1, batch_norm: bool = True) -> list[nn.Module]:
    if not batch_norm:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.ReLU(inplace=True)]
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class TinyCNN(nn.Module):
    """Four conv-BN-ReLU stages, widths w/2w/4w/4w, strides 2/4/8/8; levels stage2..stage4."""

    def __init__(self, width: int, batch_norm: bool = True):
        super().__init__()
        w = width
        block = functools.partial(_conv_bn_relu, batch_norm=batch_norm)
        self.stage1 = nn.Sequential(*block(3, w, 2))
        self.stage2 = nn.Sequential(*block(w, 2 * w, 2), *block(2 * w, 2 * w))
        self.stage3 = nn.Sequential(*block(2 * w, 4 * w, 2), *block(4 * w, 4 * w))
        self.stage4 = nn.Sequential(*block(4 * w, 4 * w), *block(4 * w, 4 * w))
        self.feature_info = [
            FeatureLevel("stage2", 2 * w, 4),
            FeatureLevel("stage3", 4 * w, 8),
            FeatureLevel("stage4", 4 * w, 8),
        ]
        _init_convs(self)

    def forward(self, x: Tensor) -> list[Tensor]:
        x2 = self.stage2(self.stage1(x))
        x3 = self.stage3(x2)
        return [x2, x3, self.stage4(x3)]


def tinycnn(*, pretrained: bool | str = False, width: int = 32, batch_norm: bool = True) -> TinyCNN:
    """A tiny from-scratch CNN with BatchNorm for CPU experiments (synthetic data, tests).

    Levels stage2/stage3/stage4 with 2w/4w/4w channels at strides 4/8/8 (16/8/8 px for 64 px
    images). Kaiming-normal initialisation. Never pretrained: ``pretrained`` is False or the
    path of a checkpoint saved from this backbone.

    Options:
        pretrained: False or a checkpoint path (there are no published weights).
        width: ``w``, the first stage's channels (default 32: 64/128/128 channels at the levels).
        batch_norm: Use BatchNorm (default). Without it, a DDP run computes exactly the
            single-process gradients (BN statistics are per process), which the tests use.
    """
    pretrained = _resolve_pretrained("tinycnn", pretrained)
    if pretrained is True:
        raise UsageError("backbone 'tinycnn' has no downloadable weights: use pretrained=false or a checkpoint path")
    if not isinstance(width, int) or width < 1:
        raise UsageError(f"backbone 'tinycnn': width must be a positive integer, not {width!r}")
    backbone = TinyCNN(width, batch_norm)
    if pretrained:
        _load_local(backbone, "tinycnn", pretrained)
    return backbone


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "vgg16": vgg16,
    "resnet50": resnet50,
    "googlenet": googlenet,
    "inceptionv3": inceptionv3,
    "tinycnn": tinycnn,
    "timm:": timm_backbone,
}


@hookimpl
def register_backbones(register):
    for name, factory in BACKBONES.items():
        register(name, factory)
