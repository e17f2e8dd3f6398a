"""CutMix: box area against lam by hand, mixed pixels against the soft targets, the loss of soft
targets against lam * CE(y_a) + (1 - lam) * CE(y_b) computed independently, one tiny CLI run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from wsolbench.cli.main import main
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.model import WSOLModel
from wsolbench.specs import FeatureLevel, HeadSpec, Hierarchy, Method, Outputs
from wsolbench_plugins.methods.cutmix import CutMix, cut_box, mix_batch


@pytest.mark.parametrize(
    ("size", "lam", "center", "box", "area_lam"),
    [
        # 10 x 10, lam = 0.75: sides int(10 * 0.5) = 5, rows/cols [c - 2, c + 3)
        ((10, 10), 0.75, (5, 5), (3, 8, 3, 8), 0.75),
        # clipped at the top-left: rows [-2, 3) -> [0, 3), cols [-1, 4) -> [0, 4): 12 of 100 pixels
        ((10, 10), 0.75, (0, 1), (0, 3, 0, 4), 0.88),
        # clipped at the bottom-right: rows [7, 12) -> [7, 10), cols [7, 12) -> [7, 10): 9 pixels
        ((10, 10), 0.75, (9, 9), (7, 10, 7, 10), 0.91),
        # 8 x 20, lam = 0.36: sqrt(0.64) = 0.8, sides int(6.4) = 6 and int(16.0) = 16
        ((8, 20), 0.36, (4, 10), (1, 7, 2, 18), 1 - 96 / 160),
        # lam = 1: an empty box, nothing pasted
        ((10, 10), 1.0, (5, 5), (5, 5, 5, 5), 1.0),
        # lam = 0: the whole image
        ((10, 10), 0.0, (5, 5), (0, 10, 0, 10), 0.0),
    ],
)
def test_box_and_its_area_adjusted_lam(size, lam, center, box, area_lam):
    assert cut_box(*size, lam, *center) == box
    images = torch.zeros(2, 1, *size)
    _, targets = mix_batch(images, torch.tensor([0, 1]), 2, torch.tensor([1, 0]), box)
    assert targets[0].tolist() == pytest.approx([area_lam, 1 - area_lam])


def test_mixed_pixels_come_from_the_permuted_image_inside_the_box():
    images = torch.arange(3, dtype=torch.float32).view(3, 1, 1, 1).expand(3, 2, 6, 6).clone()
    perm = torch.tensor([2, 0, 1])
    mixed, targets = mix_batch(images, torch.tensor([0, 1, 2]), 4, perm, (1, 4, 2, 6))
    for i in range(3):
        inside = mixed[i, :, 1:4, 2:6]
        assert torch.all(inside == perm[i].item())
        outside = mixed[i].clone()
        outside[:, 1:4, 2:6] = -1
        assert torch.all((outside == i) | (outside == -1))
    lam = 1 - 12 / 36
    assert torch.allclose(targets[0], torch.tensor([lam, 0, 1 - lam, 0]))
    assert torch.allclose(targets.sum(1), torch.ones(3))


def test_prepare_batch_targets_are_the_pixel_shares_of_each_label():
    """With image i filled with the value i and labelled i, the soft target of image i must be
    the share of its pixels holding each value, whatever lam, box and permutation were drawn."""
    method = CutMix()
    method.num_classes = 5
    images = torch.arange(5, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 3, 16, 16).clone()
    torch.manual_seed(1)
    mixed_somewhere = False
    for _ in range(10):
        mixed, targets = method.prepare_batch(images, torch.arange(5))
        shares = torch.stack([(mixed[:, 0] == c).float().mean(dim=(1, 2)) for c in range(5)], dim=1)
        assert torch.allclose(targets, shares, atol=1e-6)
        mixed_somewhere |= bool((shares.max(1).values < 1).any())
    assert mixed_somewhere


def test_prob_zero_never_mixes_and_prob_one_always_does():
    images = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    never = CutMix(prob=0.0)
    never.num_classes = 4
    out_images, out_targets = never.prepare_batch(images, labels)
    assert out_images is images and out_targets is labels
    always = CutMix(beta=1.0, prob=1.0)
    always.num_classes = 4
    torch.manual_seed(0)
    assert all(always.prepare_batch(images, labels)[1].dim() == 2 for _ in range(5))


def independent_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -log softmax(logits)[label], computed from the definition."""
    log_probs = logits - logits.exp().sum(1, keepdim=True).log()
    return -log_probs[torch.arange(len(labels)), labels].mean()


class _Backbone(torch.nn.Module):
    """Identity features: one level of 4 channels at stride 1."""

    feature_info = (FeatureLevel("f", 4, 1),)

    def forward(self, x):
        return [x]


class _TwoLevels(Method):
    """A coarse head and a fine head on the same level."""

    def head_specs(self, feature_info, hierarchy):
        return [HeadSpec(0, 0), HeadSpec(0, 1)]


def test_loss_of_soft_targets_is_lam_weighted_ce_of_both_labels():
    """Through WSOLModel.targets and Method.loss: a one-head model on a flat hierarchy, and a
    two-head model whose coarse head sees the mixture of the two labels' ancestors."""
    torch.manual_seed(0)
    ancestors = np.array([[0, 0], [0, 1], [1, 2], [1, 3]])
    hierarchy = Hierarchy(("coarse", "fine"), (("a", "b"), ("f0", "f1", "f2", "f3")), ancestors)
    y_a, y_b = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([2, 1, 0, 1, 3])
    lam = 0.7
    soft = lam * torch.eye(4)[y_a] + (1 - lam) * torch.eye(4)[y_b]

    flat_logits = torch.randn(5, 4)
    flat_targets = [soft]  # a flat one-head model passes the fine targets through
    terms = Method().loss(Outputs([], [], [flat_logits]), flat_targets)
    expected = lam * independent_ce(flat_logits, y_a) + (1 - lam) * independent_ce(flat_logits, y_b)
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)

    model = WSOLModel(_Backbone(), lambda c, n, k: torch.nn.Conv2d(c, n * k, 1), _TwoLevels(), hierarchy)
    targets = model.targets(soft)
    coarse_logits, fine_logits = torch.randn(5, 2), torch.randn(5, 4)
    terms = model.method.loss(Outputs([], [], [coarse_logits, fine_logits]), targets)
    coarse = torch.as_tensor(ancestors[:, 0])
    expected = (
        lam * independent_ce(coarse_logits, coarse[y_a])
        + (1 - lam) * independent_ce(coarse_logits, coarse[y_b])
        + lam * independent_ce(fine_logits, y_a)
        + (1 - lam) * independent_ce(fine_logits, y_b)
    )
    assert terms["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_build_records_the_number_of_fine_classes_and_prepare_batch_needs_it():
    method = CutMix()
    with pytest.raises(WsolbenchError, match="before build"):
        method.prepare_batch(torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]))
    hierarchy = Hierarchy.flat([f"c{i}" for i in range(6)])
    model = WSOLModel(_Backbone(), lambda c, n, k: torch.nn.Conv2d(c, n * k, 1), method, hierarchy)
    assert model.method.num_classes == 6
    _, targets = method.prepare_batch(torch.zeros(2, 4, 4, 4), torch.tensor([0, 5]))
    assert targets.shape == (2, 6)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beta": 0}, r"beta must be a number in \(0, inf\)"),
        ({"beta": float("nan")}, r"beta must be a number in \(0, inf\)"),
        ({"prob": -0.1}, r"prob must be a number in \[0, 1\]"),
        ({"prob": True}, r"prob must be a number in \[0, 1\]"),
    ],
)
def test_bad_options_are_one_line_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        CutMix(**options)


@pytest.mark.slow
def test_cutmix_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    from test_run import TINY, only_run

    assert main(["run", "--method", "cutmix", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert "| cutmix" in capsys.readouterr().out
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert 0 <= metrics["maxboxacc_v2"] <= 100
