"""benchmarks/part_coverage.py (issue 17: do DDA's K maps spread over an object's parts?) on hand-made maps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from part_coverage import image_coverage, mark_scores, mark_weights  # noqa: E402

from wsolbench.metrics import normalize_scoremap


def three_marks() -> np.ndarray:
    """An 8x8 image with three 2x2 marks: head top left, tail bottom right, saddle in the middle."""
    marks = np.zeros((8, 8), np.uint8)
    marks[0:2, 0:2] = 1
    marks[6:8, 6:8] = 2
    marks[3:5, 3:5] = 3
    return marks


def test_area_weights_are_the_covered_share_of_each_cell():
    weights = mark_weights(three_marks(), 3, (4, 4))  # 2x2 blocks: each mark fills one or four quarters
    assert weights.shape == (3, 4, 4)
    assert weights[0, 0, 0] == 1.0 and weights[1, 3, 3] == 1.0
    # the saddle (rows and columns 3-4) covers one quarter of each of the four middle cells
    assert weights[2, 1:3, 1:3].tolist() == [[0.25, 0.25], [0.25, 0.25]]
    assert weights.sum((1, 2)).tolist() == [1.0, 1.0, 1.0]  # 4 pixels = one cell of 4


def test_mark_scores_are_the_mean_map_value_on_each_mark():
    maps = np.zeros((8, 8))
    maps[0:2, 0:2] = 1.0  # all of the head
    maps[6, 6:8] = 1.0  # half of the tail
    scores = mark_scores(maps, mark_weights(three_marks(), 3, (8, 8)))
    assert scores.tolist() == [1.0, 0.5, 0.0]


def test_the_maps_are_min_max_normalised_per_map_and_flat_maps_are_zero():
    maps = np.array([[[2.0, 4.0], [6.0, 10.0]], [[3.0, 3.0], [3.0, 3.0]]])
    assert normalize_scoremap(maps).tolist() == [[[0.0, 0.25], [0.5, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]


def test_a_map_on_one_mark_lights_one_and_spread_k_maps_favour_all_three():
    marks = three_marks()
    fused = np.where(marks == 1, 1.0, 0.1)
    k_maps = np.stack([np.where(marks == number, 1.0, 0.0) for number in (1, 2, 3, 3)])
    lit, favoured = image_coverage(fused, k_maps, marks, 3, threshold=0.5)
    assert lit.tolist() == [True, False, False]
    assert favoured == 3  # four maps, three distinct favourite marks
    same = np.stack([np.where(marks == 2, 1.0, 0.0)] * 4)
    assert image_coverage(fused, same, marks, 3, threshold=0.5)[1] == 1


def test_k_maps_at_a_coarser_resolution_are_scored_on_resampled_marks():
    marks = three_marks()
    coarse = np.zeros((2, 4, 4))
    coarse[0, 0, 0] = 1.0  # the head's cell
    coarse[1, 3, 3] = 1.0  # the tail's cell
    _, favoured = image_coverage(np.ones((8, 8)), coarse, marks, 3, threshold=0.5)
    assert favoured == 2
    lit, none = image_coverage(np.ones((8, 8)), None, marks, 3, threshold=0.5)
    assert none is None and lit.tolist() == [False, False, False]  # a flat map lights nothing


@pytest.mark.parametrize("parts", [1, 2])
def test_fewer_marks_score_only_the_marks_that_exist(parts):
    weights = mark_weights(three_marks(), parts, (8, 8))
    assert weights.shape == (parts, 8, 8)


def test_parts_report_pools_seeds_per_method_and_levels(tmp_path):
    import importlib.util
    import json

    import yaml

    path = Path(__file__).parent.parent / "benchmarks" / "dda" / "parts_report.py"
    spec = importlib.util.spec_from_file_location("parts_report", path)
    parts_report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts_report)
    runs = [("cam", {}, 0, 0.2), ("cam", {}, 1, 0.4), ("dda", {"levels": 1}, 0, 0.9), ("dda", {"k": 1}, 0, 0.5)]
    for i, (name, options, seed, lit) in enumerate(runs):
        folder = tmp_path / f"run{i}"
        folder.mkdir()
        config = {"method": {"name": name, **options}, "dataset": {"name": "synthetic"}, "seed": seed}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        (folder / "metrics.json").write_text(json.dumps({"maxboxacc_v2": 50.0 + 10 * seed, "cls_err_top1": 5.0}))
        (folder / "lit.json").write_text(json.dumps(lit))

    def fake_coverage(folder):
        lit = json.loads((folder / "lit.json").read_text())
        return {"lit_head": lit, "marks_lit": 3 * lit, "kmap_marks": None}

    rows = parts_report.collect(tmp_path, coverage=fake_coverage)
    # the dataset's and DDA's defaults are filled in: 64 px, 3 levels, K = 8
    assert sorted(rows) == [("64", "cam", "-", "-"), ("64", "dda", "1", "8"), ("64", "dda", "3", "1")]
    text = parts_report.table(rows)
    # cam: maxboxacc_v2 mean 55, sample std 7.07; lit_head 20 and 40 percent -> 30 ± 14.1
    row = "| 64 | cam | - | - | - | - | 55.0 ± 7.1 (2) | 5.0 ± 0.0 (2) | 30.0 ± 14.1 (2) | - | - | 0.90 ± 0.42 (2) | - | - |"
    assert row in text
    assert "| 64 | dda | 1 | 8 |" in text and "90.0 ± 0.0 (1)" in text
