"""Built-in heads: feature map ``(B, C_in, h, w)`` -> raw class maps ``(B, num_classes, k, h, w)``.

The last convolution has ``num_classes * k`` output channels; channel ``c * k + j`` is map ``j``
of class ``c`` (a plain ``view`` to ``(B, num_classes, k, h, w)``).
"""

from __future__ import annotations

from torch import Tensor, nn

from wsolbench import hookimpl
from wsolbench.errors import UsageError


class MapHead(nn.Module):
    """``body`` (any feature transform) followed by a 1x1 convolution to ``num_classes * k`` maps.

    Initialisation (as in the official DANet and wsolevaluation code): Xavier-uniform weights,
    zero biases, for every convolution.
    """

    def __init__(self, body: nn.Module, body_channels: int, num_classes: int, k: int):
        super().__init__()
        if num_classes < 1 or k < 1:
            raise UsageError(f"a head needs num_classes >= 1 and k >= 1, got num_classes={num_classes}, k={k}")
        self.num_classes, self.k = num_classes, k
        self.body = body
        self.classifier = nn.Conv2d(body_channels, num_classes * k, kernel_size=1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        maps = self.classifier(self.body(x))
        b, _, h, w = maps.shape
        return maps.view(b, self.num_classes, self.k, h, w)


def wsol(in_channels: int, num_classes: int, k: int, *, channels: int = 1024) -> MapHead:
    """The WSOL head of ACoL/DANet: two 3x3 conv + ReLU (``channels`` wide), then 1x1 conv to C*k maps.

    Options:
        channels: Width of the two 3x3 convolutions (default 1024 as in the paper; the official
            DANet code narrows its shallower heads, e.g. 512 on VGG16's pool3; CPU presets use
            e.g. 256).
    """
    if channels < 1:
        raise UsageError(f"head 'wsol': channels must be positive, not {channels!r}")
    body = nn.Sequential(
        nn.Conv2d(in_channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
    )
    return MapHead(body, channels, num_classes, k)


def linear(in_channels: int, num_classes: int, k: int) -> MapHead:
    """A single 1x1 convolution to C*k maps: the original CAM classifier, the cheapest head."""
    return MapHead(nn.Identity(), in_channels, num_classes, k)


@hookimpl
def register_heads(register):
    register("wsol", wsol)
    register("linear", linear)
