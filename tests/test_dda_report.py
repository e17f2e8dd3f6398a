"""benchmarks/dda/report.py: seeds pool by setting (defaults filled in), mean ± sample std."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_report():
    spec = importlib.util.spec_from_file_location("dda_report", ROOT / "benchmarks" / "dda" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(
    root: Path, name: str, method: dict, seed: int, loc_err: float, epochs: int = 3, head_lr_mult: float = 1.0
) -> None:
    folder = root / name
    folder.mkdir()
    config = {"method": method, "train": {"epochs": epochs, "head_lr_mult": head_lr_mult}, "seed": seed}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"loc_err_top1": loc_err, "gt_known_loc": 100 - loc_err, "maxboxacc_v2": 50.0, "cls_err_top1": 1.0}
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_explicit_defaults_pool_with_implicit_ones_and_cells_are_mean_and_sample_std(tmp_path):
    report = load_report()
    write_run(tmp_path, "a", {"name": "danet"}, 0, 10.0)
    write_run(tmp_path, "b", {"name": "danet", "k": 8, "lam": 0.01}, 1, 14.0)  # the defaults, spelled out
    write_run(tmp_path, "c", {"name": "danet", "k": 4}, 0, 30.0)
    write_run(tmp_path, "d", {"name": "danet"}, 0, 50.0, epochs=12)  # another budget: not in Fig. 6a
    write_run(tmp_path, "e", {"name": "cam"}, 0, 70.0)  # not a DDA-study method
    write_run(tmp_path, "f", {"name": "danet"}, 0, 90.0, head_lr_mult=8)  # another learning rate
    write_run(tmp_path, "g", {"name": "danet", "k": 8}, 0, 10.0)  # run "a" again, in a second folder
    records = report.collect(tmp_path, overlap=False)
    assert len(records) == 5
    groups = report.group(records, method="danet", epochs=3, lam=0.01, head_lr_mult=1.0)
    assert sorted(len(members) for members in groups.values()) == [1, 2]
    text = report.table(groups, ["scope", "k"])
    # mean 12, sample std sqrt(((10-12)^2 + (14-12)^2) / 1) = 2.83
    assert "| joint | 8 | 12.0 ± 2.8 (2) |" in text
    assert "| joint | 4 | 30.0 ± 0.0 (1) |" in text
    budget = report.report(records).split("### Budget")[1]
    assert "| danet | 12 | 50.0 ± 0.0 (1) |" in budget
    assert "90.0" not in report.report(records).split("### Fig. 6a")[1].split("###")[0]
    head_lr = report.report(records).split("### K and the heads' learning rate")[1]
    assert "| 8 | 8.0 | 90.0 ± 0.0 (1) |" in head_lr
    assert "| 8 | 1.0 | 12.0 ± 2.8 (2) |" in head_lr
