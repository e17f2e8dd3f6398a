"""Hide-and-Seek (Singh & Lee, ICCV 2017) as a wsolbench method plugin.

Training images are cut into a grid of patches and each patch is hidden (set to 0, the
normalised mean colour) with probability ``hide_prob``, so the classifier cannot rely on
the most discriminative part alone. Everything else is CAM.
"""

import torch

import wsolbench
from wsolbench.specs import Method


class HideAndSeek(Method):
    """CAM trained on images with random patches hidden (Hide-and-Seek, ICCV 2017)."""

    def __init__(self, *, grid: int = 4, hide_prob: float = 0.5):
        self.grid = grid
        self.hide_prob = hide_prob

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = images.shape
        keep = torch.rand(batch, 1, self.grid, self.grid, device=images.device) >= self.hide_prob
        mask = torch.nn.functional.interpolate(keep.float(), size=(height, width), mode="nearest")
        return images * mask


@wsolbench.hookimpl
def register_methods(register):
    register("hideandseek", HideAndSeek)
