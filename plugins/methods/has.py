"""HaS: Hide-and-Seek (Singh & Lee, ICCV 2017): CAM trained on images with random patches hidden."""

from __future__ import annotations

import torch
from torch import Tensor

from wsolbench import hookimpl
from wsolbench.specs import Method
from wsolbench_plugins.methods._common import check_float, check_int


def hide_patches(images: Tensor, grid_size: int, drop_rate: float, generator: torch.Generator | None = None) -> Tensor:
    """Hide each ``grid_size x grid_size`` patch of each image with probability ``drop_rate``.

    Patch ``(i, j)`` covers rows ``[i * S, (i + 1) * S)`` and columns ``[j * S, (j + 1) * S)``,
    ``S = grid_size``, cut at the image border: a side that is not a multiple of ``S`` ends in
    a narrower row or column of patches. A hidden patch is set to 0 in every channel (on
    normalised images: the normalisation mean colour). One uniform draw per patch from
    ``generator`` (torch's global RNG when None), in the order ``(image, patch row, patch
    column)``, on the generator's device (the images' with the global RNG); the patch is
    hidden when its draw is ``< drop_rate``.

    Args:
        images: ``(B, C, H, W)`` normalised images (not modified).
        grid_size: Patch side S in pixels; 0 hides nothing.
        drop_rate: Probability of hiding a patch, in [0, 1].
        generator: The RNG of the draws (None: torch's global RNG).

    Returns:
        ``(B, C, H, W)``: the images with the hidden patches zeroed.
    """
    if grid_size == 0 or drop_rate == 0:
        return images
    batch, _, height, width = images.shape
    rows, cols = -(-height // grid_size), -(-width // grid_size)
    device = images.device if generator is None else generator.device  # on the images' device: no host copy
    draws = torch.rand(batch, rows, cols, generator=generator, device=device)
    hidden = (draws < drop_rate).to(images.device)
    pixels = hidden.repeat_interleave(grid_size, 1)[:, :height].repeat_interleave(grid_size, 2)[:, :, :width]
    return images.masked_fill(pixels[:, None], 0.0)


class HideAndSeek(Method):
    """Hide-and-Seek (Singh & Lee, ICCV 2017): CAM trained on images with random patches hidden.

    Singh & Lee, "Hide-and-Seek: Forcing a Network to be Meticulous for Weakly-supervised
    Object and Action Localization", ICCV 2017.

    CAM, trained on images divided into a grid of ``S x S`` patches (``S = grid_size``), each
    patch hidden independently with probability ``p = drop_rate`` in every training batch:
    ``x'(u) = 0`` if ``u`` lies in a hidden patch, else ``x(u)``. Hidden pixels take the mean
    colour (0 after normalisation), so that a test image, never hidden, has the activation
    statistics the network saw while training (the paper's Sec. 3.2). Loss ``L = CE(y, s(x'))``;
    test time is CAM's on the whole image.

    Options (wsolevaluation's ``has_grid_size`` / ``has_drop_rate`` and their defaults):
        grid_size: Patch side S in pixels (default 4); 0 disables hiding. Patches at the right
            and bottom borders are narrower when a side is not a multiple of S.
        drop_rate: Hiding probability p of each patch (default 0.5, the paper's).

    Deviations:
        * wsolevaluation's ``has.py`` loops ``x`` over the width but slices the *height* axis
          with it, and clips both loops at the height: on a non-square image only the top-left
          ``min(H, W)`` square can be hidden. This follows the paper: the whole image is gridded.
        * wsolevaluation hides a patch when its draw is ``<= p``; here ``< p`` (so ``p = 0``
          never hides; the two differ with probability zero otherwise), drawn from torch's RNG
          instead of Python's ``random`` (seeded runs repeat).
        * The paper fills hidden patches with the training set's mean colour; 0 is the mean of
          the backbone's input normalisation (ImageNet's for torchvision weights), as in
          wsolevaluation, which hides on normalised tensors too.
        * The paper's ImageNet models draw S per image from {0, 16, 32, 44, 56}
          ("HaS-mixed"); this, like wsolevaluation, uses one fixed S.
    """

    table_rank = 10

    #: Random-search space (keys under ``method.``). Choe et al. (CVPR 2020) search HaS's grid
    #: size and drop rate; their supplementary's exact ranges were not checked here, so these are
    #: the options' natural ranges: patch sides up to a quarter of a 224 px crop (the paper's
    #: own choices, 16-56, lie inside) and any hiding probability.
    search_space = {
        "grid_size": {"choice": [4, 8, 16, 32, 44, 56]},
        "drop_rate": {"uniform": [0.0, 1.0]},
    }

    def __init__(self, *, grid_size: int = 4, drop_rate: float = 0.5):
        name = "has"
        self.grid_size = check_int(name, "grid_size", grid_size, minimum=0)
        self.drop_rate = check_float(name, "drop_rate", drop_rate, 0.0, 1.0)

    def prepare_batch(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The images with random patches hidden (:func:`hide_patches`); labels unchanged."""
        return hide_patches(images, self.grid_size, self.drop_rate), labels


@hookimpl
def register_methods(register):
    register("has", HideAndSeek)
