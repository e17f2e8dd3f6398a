"""The DDA study's tables and its Fig. 6-style plots from a folder of finished runs.

Reads every run folder under RUNS whose method is ``danet`` or ``dda`` (``config.yaml`` and
``metrics.json``, as ``wsolbench run`` writes them), groups seeds that share every other
setting (a setting and seed found in two folders counts once), and prints one markdown table per question of issue 17: K (lambda at 0.01), lambda
(K at 8), the divergence scope, the drop ratio and the training budget. Each cell is the mean
+- sample std over seeds, with the seed count; ``kmap_iou`` is the mean pairwise IoU of the K
maps' foregrounds (``benchmarks/kmap_overlap.py``; 1 = all K maps light up the same pixels).

``--plot PNG`` draws top-1 loc err, GT-known loc, MaxBoxAccV2 and top-1 cls err against K and
against lambda, error bars over seeds, one line per divergence scope, like the paper's Fig. 6.

Usage::

    python benchmarks/dda/report.py runs/zoo --plot benchmarks/images/dda_fig6.png
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kmap_overlap import run_overlap  # noqa: E402

#: DDA's options and their defaults (plugins/methods/dda.py), so runs that left one at its
#: default group with runs that set it explicitly.
DDA_DEFAULTS = {"levels": 3, "k": 8, "lam": 0.01, "drop_ratio": 0.5, "scope": "joint", "map_fusion": "mean"}
METRICS = ("loc_err_top1", "gt_known_loc", "maxboxacc_v2", "cls_err_top1", "kmap_iou")
#: The budget and heads' learning-rate multiplier every question is asked at unless it varies
#: them (benchmarks/zoo.yaml).
BASE_EPOCHS = 3
BASE_HEAD_LR_MULT = 1.0
BASE = {"epochs": BASE_EPOCHS, "head_lr_mult": BASE_HEAD_LR_MULT}
#: The settings Fig. 6 holds fixed (besides the other swept axis at the paper's value).
PAPER = {"method": "danet", "map_fusion": "mean", **BASE}
#: What the Fig. 6-style plot draws, one row each: the paper's two and what explains them.
PLOT_METRICS = {
    "loc_err_top1": "Top-1 Loc Err (%)",
    "gt_known_loc": "GT-known Loc (%)",
    "maxboxacc_v2": "MaxBoxAccV2 (%)",
    "cls_err_top1": "Top-1 Cls Err (%)",
}


def setting_of(config: dict[str, Any]) -> dict[str, Any]:
    """What a run was trained with: the method, DDA's options (defaults filled in; ``-`` for
    HDA, which has none of them), the epochs and the heads' learning-rate multiplier;
    everything a seed group shares."""
    method = config["method"]
    if method["name"] == "hda":
        options = dict.fromkeys(DDA_DEFAULTS, "-")
    else:
        options = {key: method.get(key, default) for key, default in DDA_DEFAULTS.items()}
        options["lam"] = float(options["lam"])
        options["drop_ratio"] = float(options["drop_ratio"])
    train = config["train"]
    return {
        "method": method["name"],
        **options,
        "epochs": train["epochs"],
        "head_lr_mult": float(train["head_lr_mult"]),
    }


def collect(runs: Path, *, overlap: bool = True) -> list[dict[str, Any]]:
    """One record per finished danet, dda or hda run under ``runs``: setting, seed, metrics."""
    records = []
    seen = set()
    for metrics_path in sorted(runs.glob("*/metrics.json")):
        config = yaml.safe_load((metrics_path.parent / "config.yaml").read_text())
        if config["method"]["name"] not in ("danet", "dda", "hda"):
            continue
        metrics = json.loads(metrics_path.read_text())
        record = {**setting_of(config), "seed": config["seed"], **{m: metrics.get(m) for m in METRICS}}
        # the same setting and seed in two folders (one spelled a default out): one training, counted once
        key = tuple(sorted((k, str(v)) for k, v in setting_of(config).items())) + (config["seed"],)
        if key in seen:
            continue
        seen.add(key)
        if overlap and record["method"] != "hda" and record["k"] > 1:
            record["kmap_iou"] = 100 * run_overlap(metrics_path.parent)["iou"]
        records.append(record)
    return records


def group(records: Iterable[dict[str, Any]], **fixed: Any) -> dict[tuple, list[dict[str, Any]]]:
    """Records matching ``fixed`` grouped by their whole setting (seeds pooled)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        if all(record[key] == value for key, value in fixed.items()):
            setting = tuple((key, record[key]) for key in ("method", *DDA_DEFAULTS, "epochs", "head_lr_mult"))
            groups[setting].append(record)
    return dict(groups)


def mean_std(values: Sequence[float | None], digits: int = 1) -> str:
    """``mean ± std (n)`` of the values that exist (sample std; ``-`` when none do)."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    std = statistics.stdev(present) if len(present) > 1 else 0.0
    return f"{statistics.mean(present):.{digits}f} ± {std:.{digits}f} ({len(present)})"


def _sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order (K = 2 before 16), then strings."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def table(groups: dict[tuple, list[dict[str, Any]]], columns: Sequence[str]) -> str:
    """Markdown table: the varied setting columns, then mean ± std (seeds) of each metric."""
    header = [*columns, *METRICS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for setting, members in sorted(groups.items(), key=lambda item: [_sort_key(v) for _, v in item[0]]):
        values = dict(setting)
        cells = [str(values[c]) for c in columns] + [mean_std([m[metric] for m in members]) for metric in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(records: list[dict[str, Any]]) -> str:
    """The study's tables, one per question, as markdown."""
    at_paper_point = group(records, **BASE, levels=3, k=8, scope="joint")
    fusion = {s: m for s, m in at_paper_point.items() if dict(s)["lam"] in (0.01, 0.02)}
    same_lr = {"head_lr_mult": BASE_HEAD_LR_MULT}
    budget = {**group(records, method="hda", **same_lr), **group(records, method="danet", **DDA_DEFAULTS, **same_lr)}
    head_lr = group(
        records, method="danet", epochs=BASE_EPOCHS, lam=0.01, drop_ratio=0.5, scope="joint", map_fusion="mean"
    )
    sections = [
        (
            "DDA on its own (method dda; levels 1 = CAM + DDA)",
            group(records, method="dda", **BASE),
            ["levels", "map_fusion"],
        ),
        ("Test-time map and the official recipe (K 8, joint)", fusion, ["method", "lam", "drop_ratio", "map_fusion"]),
        ("Fig. 6a: K (lambda 0.01, drop ratio 0.5)", group(records, **PAPER, lam=0.01, drop_ratio=0.5), ["scope", "k"]),
        ("Fig. 6b: lambda (K 8, drop ratio 0.5)", group(records, **PAPER, k=8, drop_ratio=0.5), ["scope", "lam"]),
        ("Drop ratio (K 8, lambda 0.01)", group(records, **PAPER, k=8, lam=0.01), ["scope", "drop_ratio"]),
        ("Budget (DANet at its defaults, HDA)", budget, ["method", "epochs"]),
        ("K and the heads' learning rate (lambda 0.01, drop ratio 0.5, joint)", head_lr, ["k", "head_lr_mult"]),
    ]
    return "\n\n".join(f"### {title}\n\n{table(groups, columns)}" for title, groups, columns in sections)


def sweep_points(records: list[dict[str, Any]], axis_key: str, fixed: dict[str, Any], scope: str) -> list[tuple]:
    """``(x, [record, ...])`` along one Fig. 6 axis at the paper's other settings, x ascending."""
    groups = group(records, **PAPER, drop_ratio=0.5, scope=scope, **fixed)
    return sorted(((dict(s)[axis_key], members) for s, members in groups.items()), key=lambda p: p[0])


def _span(numbers: Sequence[int]) -> str:
    """``3`` for [3], ``1-3`` for [1, 2, 3]."""
    return str(numbers[0]) if numbers[0] == numbers[-1] else f"{numbers[0]}-{numbers[-1]}"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    """Each of ``PLOT_METRICS`` against K and against lambda (error bars: std over seeds), one
    column per axis with two or more points; the legend gives each line's range of seeds per point."""
    from matplotlib.figure import Figure

    sweeps = [("k", dict(lam=0.01), "K (maps per class)"), ("lam", dict(k=8), "lambda (0 drawn at 1e-4)")]
    lines = {
        axis_key: {scope: sweep_points(records, axis_key, fixed, scope) for scope in ("joint", "level")}
        for axis_key, fixed, _ in sweeps
    }
    # an axis is drawn once it has two points (the paper's point alone is not a sweep)
    sweeps = [sweep for sweep in sweeps if any(len(points) > 1 for points in lines[sweep[0]].values())]
    if not sweeps:
        raise SystemExit("no danet runs of the K or lambda sweeps to plot")
    figure = Figure(figsize=(5 * len(sweeps), 3.2 * len(PLOT_METRICS)), dpi=100)
    axes = figure.subplots(len(PLOT_METRICS), len(sweeps), squeeze=False)
    for col, (axis_key, _, label) in enumerate(sweeps):
        for row, (metric, metric_label) in enumerate(PLOT_METRICS.items()):
            ax = axes[row][col]
            for scope, points in lines[axis_key].items():
                if not points:
                    continue
                values = [[m[metric] for m in members] for _, members in points]
                xs = [x if x > 0 or axis_key == "k" else 1e-4 for x, _ in points]
                seeds = sorted({len(v) for v in values})
                ax.errorbar(
                    xs,
                    [statistics.mean(v) for v in values],
                    yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in values],
                    marker="o",
                    capsize=3,
                    label=f"scope {scope} ({_span(seeds)} seeds)",
                )
            ax.set_xscale("log", base=2 if axis_key == "k" else 10)
            ax.set_xlabel(label)
            ax.set_ylabel(metric_label)
            ax.grid(alpha=0.3)
            ax.legend()
    figure.suptitle("DANet on the synthetic benchmark\n(tinycnn, 3 epochs; mean ± std over seeds)")
    figure.tight_layout()
    figure.savefig(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="folder of run folders")
    parser.add_argument("--plot", type=Path, help="write the Fig. 6-style plot to this PNG")
    args = parser.parse_args(argv)
    records = collect(args.runs)
    print(report(records))
    if args.plot:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
