"""Sweep grids: the named axes and the ``options`` axis (dotted config keys) are crossed."""

from __future__ import annotations

import pytest

from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench.sweep import grid_points, load_grid, point_label


def write_grid(tmp_path, text: str):
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


def test_options_are_crossed_with_the_named_axes(tmp_path):
    grid = write_grid(
        tmp_path,
        "methods: [dda]\nseeds: [0, 1]\noptions:\n  method.k: [2, 4, 8]\n  method.scope: [joint, level]\n",
    )
    axes, _ = load_grid(grid)
    points = list(grid_points(axes))
    assert len(points) == 1 * 2 * 3 * 2
    assert {(p["seed"], p["method.k"], p["method.scope"]) for p in points} == {
        (seed, k, scope) for seed in (0, 1) for k in (2, 4, 8) for scope in ("joint", "level")
    }
    assert point_label(points[0]) == "method.k=2 method.scope=joint"


def test_dry_run_lists_every_option_combination_once(tmp_path, capsys):
    grid = write_grid(tmp_path, "methods: [dda]\nseeds: [0]\noptions:\n  method.lam: [0.001, 0.1]\n")
    assert main(["sweep", str(grid), "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[1/2] dda / vgg16 / synthetic / seed 0 / method.lam=0.001",
        "[2/2] dda / vgg16 / synthetic / seed 0 / method.lam=0.1",
    ]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("options: [method.k]\n", "'options' must map dotted config keys"),
        ("options:\n  k: [1, 2]\n", "option 'k' must be a dotted config key"),
        ("options:\n  seed: [1, 2]\n", "option 'seed' must be a dotted config key"),
        ("options:\n  method.k: 4\n", "'options: method.k' must be a list"),
    ],
)
def test_malformed_options_name_the_key(tmp_path, text, needle):
    with pytest.raises(UsageError, match=needle):
        load_grid(write_grid(tmp_path, text))


def test_an_option_the_method_does_not_declare_fails_before_training(tmp_path, capsys):
    grid = write_grid(tmp_path, "methods: [cam]\noptions:\n  method.k: [2]\n")
    assert main(["sweep", str(grid), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "k" in err[0]
    assert not (tmp_path / "runs").exists()
