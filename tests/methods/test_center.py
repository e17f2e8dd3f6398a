"""Center-Gaussian baseline: the map against the formula worked out by hand, maps independent of
the image and the class, logits from CAM's head, one tiny CLI run whose cached maps are the Gaussian."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from wsolbench.cache import read_cache
from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench.model import WSOLModel
from wsolbench.specs import FeatureLevel, Hierarchy, minmax_normalize
from wsolbench_plugins.methods.center import CenterGaussian, center_gaussian


def test_gaussian_by_hand_on_an_odd_square():
    g = center_gaussian((5, 5), sigma=0.25)
    # pixel centres at (i + 0.5) / 5 - 0.5 = -0.4, -0.2, 0, 0.2, 0.4; 2 sigma^2 = 0.125
    assert g[2, 2].item() == 1.0  # the peak: the middle pixel
    assert g[0, 0].item() == pytest.approx(math.exp(-(0.16 + 0.16) / 0.125))  # exp(-2.56)
    assert g[2, 4].item() == pytest.approx(math.exp(-0.16 / 0.125))  # exp(-1.28)
    assert g[1, 2].item() == pytest.approx(math.exp(-0.04 / 0.125))  # exp(-0.32)
    assert torch.equal(g, g.flip(0)) and torch.equal(g, g.flip(1)) and torch.equal(g, g.T)


def test_gaussian_on_an_even_non_square_image_peaks_on_the_four_middle_pixels():
    g = center_gaussian((4, 6), sigma=0.5)
    # rows at -0.375, -0.125, 0.125, 0.375; columns at -5/12, -1/4, -1/12, 1/12, 1/4, 5/12; 2 sigma^2 = 0.5
    peak = math.exp(-(0.125**2 + (1 / 12) ** 2) / 0.5)
    assert g.max().item() == pytest.approx(peak)
    assert torch.allclose(g[1:3, 2:4], torch.full((2, 2), peak))
    assert g[0, 0].item() == pytest.approx(math.exp(-(0.375**2 + (5 / 12) ** 2) / 0.5))
    # relative coordinates: the std is sigma * side on each axis, so a 4 x 6 map is the 4 x 4 profile stretched
    assert g[1, 0].item() == pytest.approx(math.exp(-(0.125**2 + (5 / 12) ** 2) / 0.5))


class _Backbone(torch.nn.Module):
    """Three channels pooled 4x: one level at stride 4."""

    feature_info = (FeatureLevel("pool", 3, 4),)

    def forward(self, x):
        return [torch.nn.functional.avg_pool2d(x, 4)]


def test_forward_maps_are_the_gaussian_for_every_image_and_class_and_logits_come_from_the_head():
    torch.manual_seed(0)
    method = CenterGaussian(sigma=0.3)
    head = torch.nn.Conv2d(3, 4, 1)
    model = WSOLModel(
        _Backbone(),
        lambda c, n, k: torch.nn.Sequential(head, torch.nn.Unflatten(1, (n, k))),
        method,
        Hierarchy.flat(["a", "b", "c", "d"]),
    )
    images = torch.randn(2, 3, 12, 16)
    outputs = model(images)
    # class maps at the head's resolution (3 x 4 features), the same for every image and class
    assert torch.equal(outputs.class_maps[0], center_gaussian((3, 4), 0.3).expand(2, 4, 3, 4))
    expected = center_gaussian((12, 16), 0.3)  # the test-time map: 3 x 4 features at stride 4, the input size
    # the logits are CAM's: the global average of the head's maps on the features
    cam_logits = head(torch.nn.functional.avg_pool2d(images, 4)).mean(dim=(2, 3))
    assert torch.allclose(outputs.logits[0], cam_logits, atol=1e-6)
    fused = method.fuse(outputs, [torch.tensor([0, 3])])
    assert torch.allclose(fused, minmax_normalize(expected.expand(2, 12, 16)))
    # the loss trains the head (CAM's cross-entropy)
    terms = model.loss(outputs, torch.tensor([1, 2]))
    assert terms["loss"].requires_grad


@pytest.mark.parametrize("sigma", [0, -1, "wide"])
def test_bad_sigma_is_a_one_line_usage_error(sigma):
    with pytest.raises(UsageError, match=r"sigma must be a number in \(0, inf\)"):
        CenterGaussian(sigma=sigma)


@pytest.mark.slow
def test_center_runs_through_the_cli_and_caches_the_gaussian(tmp_path, capsys):
    from test_run import TINY, only_run

    assert main(["run", "--method", "center", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert "| center" in capsys.readouterr().out
    run_dir = only_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["maxboxacc_v2"] <= 100
    expected = minmax_normalize(center_gaussian((32, 32), 0.25)[None])[0].numpy()
    with read_cache(run_dir, load=True) as cache:
        gt_maps = np.asarray(cache.fused_gt[:])
        assert gt_maps.shape[1:] == (32, 32)
        assert np.allclose(gt_maps, expected[None], atol=1e-6)
