from torch import nn

import wsolbench
from wsolbench.specs import Method


class DropMax(nn.Module):
    """While training, zeroes the positions whose channel-mean activation is >= gamma x the maximum."""

    def __init__(self, gamma: float):
        super().__init__()
        self.gamma = gamma

    def forward(self, x):
        if not self.training:
            return x  # identity at test time
        attention = x.mean(1, keepdim=True)
        return x * (attention < self.gamma * attention.amax(dim=(2, 3), keepdim=True))


class DropMaxCAM(Method):
    """CAM with a DropMax layer inserted after a backbone block (a method that changes the backbone)."""

    def __init__(self, *, after: str = "stage3", gamma: float = 0.9):
        self.after, self.gamma = after, gamma

    def build(self, model):
        model.insert_after(self.after, DropMax(self.gamma))  # any named submodule, torchvision or timm


@wsolbench.hookimpl
def register_methods(register):
    register("dropmaxcam", DropMaxCAM)
