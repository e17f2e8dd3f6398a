"""The center-Gaussian baseline (Choe et al., CVPR 2020): the same centred Gaussian map for every image."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from wsolbench import hookimpl
from wsolbench.specs import Method, Outputs, minmax_normalize
from wsolbench_plugins.methods._common import check_float


def center_gaussian(size: tuple[int, int], sigma: float, *, device: Any = None, dtype: Any = None) -> Tensor:
    """``(H, W)`` isotropic Gaussian centred in the image, peak 1, in image-relative coordinates.

    Pixel ``(i, j)`` has centre ``v = (i + 0.5) / H - 0.5``, ``u = (j + 0.5) / W - 0.5`` (the
    image spans [-0.5, 0.5] on both axes) and value ``exp(-(u^2 + v^2) / (2 sigma^2))``: the
    standard deviation is ``sigma`` times the image's side on each axis (``sigma * H`` pixels
    vertically, ``sigma * W`` horizontally). The peak is at the image centre (the middle pixel
    of an odd side, the two middle ones of an even side).
    """
    height, width = size
    v = (torch.arange(height, device=device, dtype=torch.float64) + 0.5) / height - 0.5
    u = (torch.arange(width, device=device, dtype=torch.float64) + 0.5) / width - 0.5
    squared = v[:, None] ** 2 + u[None, :] ** 2
    return torch.exp(-squared / (2.0 * sigma**2)).to(dtype or torch.get_default_dtype())


class CenterGaussian(Method):
    """Center-Gaussian baseline (Choe et al., CVPR 2020): one centred Gaussian map for every image.

    Choe, Oh, Lee, Chun, Akata, Shim, "Evaluating Weakly Supervised Object Localization
    Methods Right", CVPR 2020: a localization map that ignores the image.

    Every image's map of every class is the same isotropic Gaussian centred in the image
    (:func:`center_gaussian`): ``A(u, v) = exp(-(u^2 + v^2) / (2 sigma^2))`` in image-relative
    coordinates ``u, v`` in [-0.5, 0.5]. It measures how much of a localization score the
    datasets' centre bias gives for free; a method below it has learned nothing about where
    objects are.

    What the row means: training runs as CAM's (the same head and loss), so the classification
    numbers (``cls_err_*``, and through the predicted class ``loc_err_top1``) are those of a CAM
    classifier, while every localization map is the Gaussian: the localization metrics
    (MaxBoxAcc, MaxBoxAccV2, PxAP, GT-known) do not depend on the images, the training or the
    seed. Each head's class maps are the Gaussian at that head's resolution; the test-time map
    (:meth:`fuse`) is the Gaussian computed at the input resolution (``model.input_size``), so
    the cache's resize to the image leaves it as it is.

    Options:
        sigma: Standard deviation as a fraction of the image side (default 0.25). A thresholded
            isotropic Gaussian is a disc whatever ``sigma``, and PxAP only ranks pixels, so
            ``sigma`` moves the best threshold, not the best box: MaxBoxAcc and PxAP barely
            change with it (only through the threshold grid's spacing and the uint8 quantisation
            of the cached maps). The sources checked for this library do not give the value
            Choe et al. used.
    """

    table_rank = 100

    #: No hyperparameter changes what this baseline measures (see ``sigma``): nothing to search.
    search_space: dict[str, dict[str, list]] = {}

    def __init__(self, *, sigma: float = 0.25):
        self.sigma = check_float("center", "sigma", sigma, 0.0, low_open=True)

    def forward(self, model: Any, features: list[Tensor], targets: Tensor | None) -> Outputs:
        """CAM's heads give the logits (and train). Every head's class maps become the Gaussian at
        that head's resolution, expanded (not copied) to ``(B, C_h, h, w)``; the test-time map,
        the Gaussian at the input resolution, goes to ``extras["center_gaussian"]``."""
        outputs = model.forward_heads(features)
        device = features[0].device
        outputs.class_maps = [
            center_gaussian(tuple(maps.shape[-2:]), self.sigma, device=device).expand_as(maps)
            for maps in outputs.class_maps
        ]
        outputs.extras["center_gaussian"] = center_gaussian(model.input_size, self.sigma, device=device)
        return outputs

    def fuse(self, outputs: Outputs, classes: list[Tensor]) -> Tensor:
        """``(B, H, W)``: the input-resolution Gaussian for every image, min-max normalised (any class)."""
        gaussian = outputs.extras["center_gaussian"]
        return minmax_normalize(gaussian.expand(classes[-1].shape[0], -1, -1))


@hookimpl
def register_methods(register):
    register("center", CenterGaussian)
