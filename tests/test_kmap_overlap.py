"""benchmarks/kmap_overlap.py (issue: what does DDA do?) on hand-made K maps."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from kmap_overlap import pairwise_overlap  # noqa: E402


def test_identical_maps_overlap_fully():
    m = np.zeros((4, 4))
    m[1:3, 1:3] = 1.0
    result = pairwise_overlap(np.stack([m, m, m]))
    assert result == pytest.approx({"iou": 1.0, "cosine": 1.0, "union_gain": 1.0})


def test_disjoint_maps_do_not_overlap_and_cover_k_times_more():
    maps = np.zeros((2, 2, 4))
    maps[0, :, :2] = 1.0  # left half
    maps[1, :, 2:] = 1.0  # right half
    assert pairwise_overlap(maps) == pytest.approx({"iou": 0.0, "cosine": 0.0, "union_gain": 2.0})


def test_half_overlap_by_hand():
    maps = np.zeros((2, 1, 4))
    maps[0, 0, :3] = 1.0  # pixels 0, 1, 2
    maps[1, 0, 1:] = 1.0  # pixels 1, 2, 3
    result = pairwise_overlap(maps)
    assert result["iou"] == pytest.approx(2 / 4)  # 2 shared of 4 covered
    assert result["cosine"] == pytest.approx(2 / 3)  # dot 2, norms sqrt(3) each
    assert result["union_gain"] == pytest.approx(4 / 3)  # union 4, mean size 3
