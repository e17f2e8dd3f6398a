"""Which species marks does a run's map light up? (DDA's claim on objects with several parts.)

On ``synthetic`` data with ``parts: 2`` or ``3`` every object carries that many species marks
(1 = head, 2 = tail spot, 3 = saddle spot), each enough on its own to tell the species. CAM is
expected to light up one of them; DDA claims that its K maps spread over complementary parts.
For each test image this regenerates the marks (the dataset is deterministic) and reads the
run's cache:

* ``lit``: per mark, the share of images whose fused ground-truth-class map (min-max
  normalised) averages at least ``threshold`` over that mark;
* ``marks_lit``: the mean number of marks lit per image (1 to ``parts``);
* ``kmap_marks``: for DDA-family runs, the mean number of distinct marks that the K maps of
  the deepest head favour (each map's favourite is the mark with its highest mean value):
  1 when all K maps look at the same mark, ``parts`` when they split over all of them.

Usage: ``python benchmarks/part_coverage.py RUN_DIR [RUN_DIR ...]`` prints one line per run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from wsolbench.cache import read_cache
from wsolbench.metrics import normalize_scoremap
from wsolbench.registry import default_registry
from wsolbench.train import build_dataset

MARK_NAMES = ("head", "tail", "saddle")


def mark_weights(marks: np.ndarray, parts: int, size: tuple[int, int]) -> np.ndarray:
    """``(parts, h, w)``: the share of each map cell covered by each mark (area resampling)."""
    onehot = np.stack([marks == number for number in range(1, parts + 1)]).astype(np.float32)
    if onehot.shape[1:] == tuple(size):
        return onehot.astype(np.float64)
    resized = F.interpolate(torch.from_numpy(onehot)[None], size=size, mode="area")[0]
    return resized.numpy().astype(np.float64)


def mark_scores(maps: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``(..., h, w)`` maps, ``(parts, h, w)`` weights -> ``(..., parts)`` mean map value on each mark."""
    totals = np.tensordot(maps, weights, axes=([-2, -1], [-2, -1]))
    return totals / weights.sum((-2, -1))


def image_coverage(fused: np.ndarray, k_maps: np.ndarray | None, marks: np.ndarray, parts: int, threshold: float):
    """One image: which marks the fused map lights, and how many marks the K maps favour."""
    lit = mark_scores(normalize_scoremap(fused), mark_weights(marks, parts, fused.shape)) >= threshold
    favoured = None
    if k_maps is not None:
        scores = mark_scores(normalize_scoremap(k_maps), mark_weights(marks, parts, k_maps.shape[-2:]))
        favoured = len(set(scores.argmax(-1).tolist()))
    return lit, favoured


def run_coverage(run_dir: Path, threshold: float = 0.5) -> dict[str, Any]:
    """Mean :func:`image_coverage` over a run's cached test images (see the module docstring)."""
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    dataset = build_dataset(config, default_registry(warn=False), "test")
    parts = getattr(dataset, "parts", None)
    if parts is None:
        raise SystemExit(f"{run_dir}: dataset {config['dataset']['name']!r} has no species marks (use synthetic)")
    positions = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
    lit_rows, favoured = [], []
    with read_cache(run_dir) as cache:
        k_store = cache.extra_maps["k_maps"].store if "k_maps" in cache.extra_maps else None
        for i, image_id in enumerate(cache.image_ids):
            marks = dataset.generate(positions[image_id]).part_mask
            k_maps = None if k_store is None else k_store[i]
            lit, count = image_coverage(cache.fused_gt[i], k_maps, marks, parts, threshold)
            lit_rows.append(lit)
            favoured.append(count)
    lit = np.array(lit_rows)
    result: dict[str, Any] = {f"lit_{MARK_NAMES[m]}": float(lit[:, m].mean()) for m in range(parts)}
    result["marks_lit"] = float(lit.sum(1).mean())
    result["kmap_marks"] = None if k_store is None else float(np.mean(favoured))
    return result


if __name__ == "__main__":
    for path in sys.argv[1:]:
        result = run_coverage(Path(path))
        cells = [f"{key} {value:.2f}" for key, value in result.items() if value is not None]
        print(f"{Path(path).name}: " + ", ".join(cells))
