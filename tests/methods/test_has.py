"""Hide-and-Seek: the hidden grid against draws worked out by hand, the options, one tiny CLI run."""

from __future__ import annotations

import json

import pytest
import torch

from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench_plugins.methods.has import HideAndSeek, hide_patches


def ramp(batch: int, height: int, width: int) -> torch.Tensor:
    """Images whose every value is distinct and nonzero (so a zero can only be a hidden pixel)."""
    return torch.arange(1, batch * 2 * height * width + 1, dtype=torch.float32).view(batch, 2, height, width)


def test_hidden_patches_are_the_draws_below_the_rate_with_narrow_border_patches():
    # 7 x 10 image, S = 4: patch rows [0, 4) and [4, 7) (3 rows), columns [0, 4), [4, 8), [8, 10) (2 columns).
    images = ramp(2, 7, 10)
    out = hide_patches(images, grid_size=4, drop_rate=0.5, generator=torch.Generator().manual_seed(3))
    draws = torch.rand(2, 2, 3, generator=torch.Generator().manual_seed(3))  # the same draws, in the same order
    row_ranges, col_ranges = [(0, 4), (4, 7)], [(0, 4), (4, 8), (8, 10)]
    expected = images.clone()
    for b in range(2):
        for i, (y0, y1) in enumerate(row_ranges):
            for j, (x0, x1) in enumerate(col_ranges):
                if draws[b, i, j] < 0.5:
                    expected[b, :, y0:y1, x0:x1] = 0
    assert torch.equal(out, expected)
    hidden = draws < 0.5
    assert 0 < hidden.sum() < hidden.numel()  # the seed hides some patches and keeps others
    assert torch.equal(images, ramp(2, 7, 10))  # the input is not modified


def test_every_patch_is_hidden_at_rate_one_over_the_whole_width_of_a_wide_image():
    # wsolevaluation's has.py slices the height with the width's loop: on a 4 x 12 image it can
    # hide only the first 4 columns. The paper grids the whole image.
    out = hide_patches(ramp(1, 4, 12), grid_size=4, drop_rate=1.0)
    assert torch.count_nonzero(out) == 0
    tall = hide_patches(ramp(1, 12, 4), grid_size=4, drop_rate=1.0)
    assert torch.count_nonzero(tall) == 0


def test_nothing_is_hidden_at_rate_zero_or_grid_zero():
    images = ramp(2, 6, 6)
    assert torch.equal(hide_patches(images, grid_size=4, drop_rate=0.0), images)
    assert torch.equal(hide_patches(images, grid_size=0, drop_rate=1.0), images)


def test_hidden_share_follows_the_drop_rate():
    torch.manual_seed(0)
    out = hide_patches(torch.ones(64, 1, 32, 32), grid_size=4, drop_rate=0.3)
    share = (out == 0).float().mean().item()
    # 64 * 64 patches of 16 pixels: binomial std of the share is sqrt(0.3 * 0.7 / 4096) = 0.007
    assert abs(share - 0.3) < 0.03


def test_prepare_batch_hides_and_keeps_the_labels():
    method = HideAndSeek(grid_size=2, drop_rate=1.0)
    labels = torch.tensor([3, 1])
    images, targets = method.prepare_batch(ramp(2, 4, 4), labels)
    assert torch.count_nonzero(images) == 0 and targets is labels


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grid_size": -1}, "grid_size must be an integer >= 0"),
        ({"grid_size": 2.5}, "grid_size must be an integer >= 0"),
        ({"drop_rate": 1.5}, r"drop_rate must be a number in \[0, 1\]"),
        ({"drop_rate": "half"}, r"drop_rate must be a number in \[0, 1\]"),
    ],
)
def test_bad_options_are_one_line_usage_errors(options, message):
    with pytest.raises(UsageError, match=message):
        HideAndSeek(**options)


@pytest.mark.slow
def test_has_trains_and_evaluates_through_the_cli(tmp_path, capsys):
    from test_run import TINY, only_run

    assert main(["run", "--method", "has", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    assert "| has" in capsys.readouterr().out
    metrics = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert 0 <= metrics["maxboxacc_v2"] <= 100
