"""Issue 17 on objects with several discriminative parts: one table from the runs of
``benchmarks/dda/parts.yaml`` and ``parts_alone.yaml`` (synthetic, ``parts: 3``).

Each row is an image size and a method (with its number of heads and K maps per class where
it has them), each cell the mean ± sample std over seeds.
``lit_*`` are the percent of test images whose fused map lights that species mark,
``marks_lit`` the mean number of marks lit and ``kmap_marks`` the mean number of distinct
marks the K maps favour (``benchmarks/part_coverage.py``); ``kmap_iou`` is the K maps' mean
pairwise foreground IoU (x100, ``benchmarks/kmap_overlap.py``).

Usage::

    python benchmarks/dda/parts_report.py runs/parts
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kmap_overlap import run_overlap  # noqa: E402
from part_coverage import run_coverage  # noqa: E402
from report import mean_std  # noqa: E402

BOX_METRICS = ("loc_err_top1", "gt_known_loc", "maxboxacc_v2", "cls_err_top1")
#: Coverage numbers in percent (shares of images) and as counts.
PERCENT = ("lit_head", "lit_tail", "lit_saddle")
COUNTS = ("marks_lit", "kmap_marks")


#: What tells the rows apart: the image size, then the method and its options (``-``: it has none).
ROW_KEYS = ("image_size", "method", "levels", "k")


def row_of(config: dict[str, Any]) -> tuple[str, ...]:
    """A run's row (:data:`ROW_KEYS`); DDA-family methods default to 3 levels and K = 8."""
    method = config["method"]
    family = method["name"] in ("dda", "danet")
    levels = method.get("levels", 3 if family else "-")
    k = method.get("k", 8 if family else "-")
    return str(config["dataset"].get("image_size", 64)), method["name"], str(levels), str(k)


def run_numbers(folder: Path) -> dict[str, Any]:
    """A run's mark coverage and, when it keeps two or more K maps, their pairwise IoU (x100)."""
    numbers = run_coverage(folder)
    k = row_of(yaml.safe_load((folder / "config.yaml").read_text()))[3]
    if numbers["kmap_marks"] is not None and k != "1":
        numbers["kmap_iou"] = 100 * run_overlap(folder)["iou"]
    return numbers


def collect(
    runs: Path, coverage: Callable[[Path], dict[str, Any]] = run_numbers
) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """Finished runs under ``runs`` grouped by :func:`row_of`, each with its metrics and coverage."""
    rows: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for metrics_path in sorted(runs.glob("*/metrics.json")):
        config = yaml.safe_load((metrics_path.parent / "config.yaml").read_text())
        record = dict(json.loads(metrics_path.read_text()))
        covered = coverage(metrics_path.parent)
        record.update({k: (100 * v if k in PERCENT and v is not None else v) for k, v in covered.items()})
        rows[row_of(config)].append(record)
    return dict(rows)


def table(rows: dict[tuple[str, ...], list[dict[str, Any]]]) -> str:
    """Markdown: the row keys, then mean ± std (seeds) of the box metrics and the coverage."""
    columns = (*BOX_METRICS, *PERCENT, *COUNTS, "kmap_iou")
    lines = ["| " + " | ".join((*ROW_KEYS, *columns)) + " |", "|" + "---|" * (len(ROW_KEYS) + len(columns))]
    for row, members in sorted(rows.items(), key=lambda item: (int(item[0][0]), item[0][1:])):
        cells = [mean_std([m.get(c) for m in members], digits=2 if c in COUNTS else 1) for c in columns]
        lines.append("| " + " | ".join((*row, *cells)) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder of run folders")
    print(table(collect(parser.parse_args(argv).runs)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
