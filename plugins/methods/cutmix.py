"""CutMix (Yun et al., ICCV 2019): CAM trained on images with a box pasted from another image of the batch."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from wsolbench import hookimpl
from wsolbench.errors import WsolbenchError
from wsolbench.specs import Method
from wsolbench_plugins.methods._common import check_float

#: A box as half-open pixel ranges ``(y0, y1, x0, x1)``: rows ``[y0, y1)``, columns ``[x0, x1)``.
Box = tuple[int, int, int, int]


def cut_box(height: int, width: int, lam: float, center_y: int, center_x: int) -> Box:
    """The box CutMix pastes for mixing ratio ``lam``, centred at ``(center_y, center_x)``.

    Sides ``r_h = int(H * sqrt(1 - lam))`` and ``r_w = int(W * sqrt(1 - lam))`` (so the
    unclipped box covers ``1 - lam`` of the image), rows ``[c_y - r_h // 2, c_y - r_h // 2 + r_h)``
    and likewise for the columns, then clipped to the image (which shrinks the box near a border).
    """
    ratio = math.sqrt(max(0.0, 1.0 - lam))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    y0, x0 = center_y - cut_h // 2, center_x - cut_w // 2
    return (
        min(max(y0, 0), height),
        min(max(y0 + cut_h, 0), height),
        min(max(x0, 0), width),
        min(max(x0 + cut_w, 0), width),
    )


def mix_batch(images: Tensor, labels: Tensor, num_classes: int, perm: Tensor, box: Box) -> tuple[Tensor, Tensor]:
    """Paste ``box`` of image ``perm[i]`` into image ``i``; the targets weigh each label by its area.

    Args:
        images: ``(B, C, H, W)`` (not modified).
        labels: ``(B,)`` class ids ``y_a``.
        num_classes: Number of classes ``C`` of the soft targets.
        perm: ``(B,)`` permutation of the batch: image ``i`` receives the box of ``perm[i]``.
        box: ``(y0, y1, x0, x1)``, half-open (:func:`cut_box`).

    Returns:
        The mixed images and the soft targets ``(B, num_classes)``:
        ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)`` with ``y_b = labels[perm]`` and
        ``lam = 1 - box area / (H W)``, the share of image i's own pixels.
    """
    y0, y1, x0, x1 = box
    height, width = images.shape[-2:]
    mixed = images.clone()
    mixed[:, :, y0:y1, x0:x1] = images[perm, :, y0:y1, x0:x1]
    lam = 1.0 - (y1 - y0) * (x1 - x0) / (height * width)
    # scatter, not F.one_hot: no validity check that would read the labels back to the host
    own = images.new_zeros(labels.shape[0], num_classes).scatter_(1, labels[:, None], 1.0)
    return mixed, lam * own + (1.0 - lam) * own[perm]


class CutMix(Method):
    """CutMix (Yun et al., ICCV 2019): CAM trained on batches mixed by pasting boxes, with area-weighted labels.

    Yun, Han, Oh, Chun, Choe, Yoo, "CutMix: Regularization Strategy to Train Strong
    Classifiers with Localizable Features", ICCV 2019.

    CAM, trained on mixed batches. With probability ``prob`` a batch is mixed: draw
    ``lam ~ Beta(beta, beta)``, a box ``B`` of sides ``H sqrt(1 - lam)``, ``W sqrt(1 - lam)``
    centred at a uniform pixel and clipped to the image (:func:`cut_box`), and a permutation
    ``pi`` of the batch; image i becomes ``x~_i = M * x_i + (1 - M) * x_pi(i)`` (``M`` is 0 inside
    ``B``, 1 outside). ``lam`` is then set to the share of the image left to ``x_i``,
    ``1 - |B| / (H W)`` (clipping shrinks the box), and the target is the soft label
    ``y~_i = lam * onehot(y_i) + (1 - lam) * onehot(y_pi(i))``. The cross-entropy of a soft
    target is ``-sum_c y~_c log p_c``, so ``L = lam CE(y_i) + (1 - lam) CE(y_pi(i))``, the
    paper's loss; with a hierarchy each head's target is the mixture of the two labels'
    ancestors. One ``lam``, box and permutation per batch; test time is CAM's.

    Options (wsolevaluation's ``cutmix_beta`` / ``cutmix_prob`` and their defaults):
        beta: Parameter of the symmetric Beta distribution of ``lam`` (default 1.0: uniform).
        prob: Probability of mixing a batch (default 1.0, every batch); unmixed batches train
            on the plain labels.

    Deviations from the public code (CutMix-PyTorch, which wsolevaluation copies):
        * Its box spans ``c - r // 2`` to ``c + r // 2`` (one pixel short of ``r`` for odd
          ``r``); here the box has the paper's side ``r`` before clipping. The target always
          uses the area actually pasted, as the public code does.
        * Draws from torch's RNGs (global CPU RNG for ``lam``, centre and the ``prob`` draw;
          the images' device for the permutation) instead of NumPy's: seeded runs repeat.
        * The mixed labels reach the loss as soft targets (``prepare_batch``'s contract), not as
          the pair ``(y_a, y_b)`` with a separately weighted loss; the loss is the same.
    """

    table_rank = 50

    #: Random-search space (keys under ``method.``). Choe et al. (CVPR 2020) search CutMix's
    #: Beta parameter and mixing probability; their supplementary's exact ranges were not checked
    #: here, so these are the natural ranges: ``beta`` log-uniform from 1/4 to 4 around the
    #: paper's 1.0 (from box areas pushed to the extremes to areas near half the image) and any
    #: mixing probability.
    search_space = {
        "beta": {"log_uniform": [0.25, 4.0]},
        "prob": {"uniform": [0.0, 1.0]},
    }

    def __init__(self, *, beta: float = 1.0, prob: float = 1.0):
        self.beta = check_float("cutmix", "beta", beta, 0.0, low_open=True)
        self.prob = check_float("cutmix", "prob", prob, 0.0, 1.0)
        self.num_classes: int | None = None

    def build(self, model: Any) -> None:
        """Record the number of fine classes (the width of the soft targets)."""
        self.num_classes = model.hierarchy.num_classes[-1]

    def prepare_batch(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """The mixed batch and its soft targets ``(B, C)`` (:func:`mix_batch`), or the batch
        unchanged with its labels when this batch is not mixed (probability ``1 - prob``)."""
        if self.num_classes is None:
            raise WsolbenchError("method cutmix: prepare_batch before build(model): the number of classes is unknown")
        if self.prob < 1.0 and torch.rand(()).item() >= self.prob:
            return images, labels
        height, width = images.shape[-2:]
        lam = torch.distributions.Beta(self.beta, self.beta).sample().item()
        center = torch.randint(height, ()).item(), torch.randint(width, ()).item()
        box = cut_box(height, width, lam, *center)
        perm = torch.randperm(images.shape[0], device=images.device)
        return mix_batch(images, labels, self.num_classes, perm, box)


@hookimpl
def register_methods(register):
    register("cutmix", CutMix)
