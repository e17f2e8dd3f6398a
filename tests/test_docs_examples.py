"""The README's two method examples (docs/examples/) are real code: they train, and the README shows them verbatim."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from wsolbench.model import WSOLModel
from wsolbench.specs import Hierarchy
from wsolbench.train import train_step
from wsolbench_plugins.backbones import tinycnn
from wsolbench_plugins.heads import linear

ROOT = Path(__file__).parent.parent
EXAMPLES = {"mixup_cam.py": "MixUpCAM", "dropmax_cam.py": "DropMaxCAM"}


def load(name: str):
    spec = importlib.util.spec_from_file_location(name[:-3], ROOT / "docs" / "examples" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLES)
def test_readme_shows_the_example_verbatim_in_under_40_lines(name: str) -> None:
    text = (ROOT / "docs" / "examples" / name).read_text()
    assert text in (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 40


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_method_trains_one_step(name: str, one_thread) -> None:
    torch.manual_seed(0)
    method = getattr(load(name), EXAMPLES[name])()
    model = WSOLModel(tinycnn(width=4), linear, method, Hierarchy.flat(list("abcd")), backbone_name="tinycnn")
    body, heads = model.parameter_groups()
    optimizer = torch.optim.SGD([{"params": body}, {"params": heads}], lr=0.1)
    model.train()
    terms = train_step(
        model, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), torch.rand(4, 3, 16, 16), torch.arange(4)
    )
    assert torch.isfinite(terms["loss"])


def test_mixup_targets_are_the_blend_of_the_two_labels() -> None:
    torch.manual_seed(0)
    method = load("mixup_cam.py").MixUpCAM(alpha=1.0)
    method.classes = 3
    images = torch.stack([torch.full((3, 2, 2), float(i)) for i in range(3)])
    mixed, targets = method.prepare_batch(images, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(targets.sum(1), torch.ones(3))
    # image i (constant value i, label i) blends with some image j exactly as its targets blend
    # classes i and j: its value is the targets' expectation of the class index
    torch.testing.assert_close(mixed[:, 0, 0, 0], targets @ torch.arange(3.0))


def test_dropmax_zeroes_the_peak_while_training_only() -> None:
    layer = load("dropmax_cam.py").DropMax(gamma=0.9)
    x = torch.tensor([[[[1.0, 9.0], [10.0, 2.0]]]])  # channel mean = x; max 10; 9 < 9.0? no (9 == 0.9 * 10)
    torch.testing.assert_close(layer.train()(x), torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]]))
    torch.testing.assert_close(layer.eval()(x), x)
