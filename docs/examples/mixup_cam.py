import torch
import torch.nn.functional as F

import wsolbench
from wsolbench.specs import Method


class MixUpCAM(Method):
    """CAM trained on blends of two images with the blended labels (a method that needs labels)."""

    def __init__(self, *, alpha: float = 1.0):
        self.alpha = alpha

    def build(self, model):
        self.classes = model.hierarchy.num_classes[-1]  # the fine classes, known once the model is built

    def prepare_batch(self, images, labels):
        lam = float(torch.distributions.Beta(self.alpha, self.alpha).sample())
        order = torch.randperm(images.shape[0], device=images.device)
        one_hot = F.one_hot(labels, self.classes).float()
        # soft targets: each head's cross-entropy becomes lam * CE(y) + (1 - lam) * CE(y[order])
        return lam * images + (1 - lam) * images[order], lam * one_hot + (1 - lam) * one_hot[order]


@wsolbench.hookimpl
def register_methods(register):
    register("mixupcam", MixUpCAM)
