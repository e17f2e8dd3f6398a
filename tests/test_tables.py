"""Result tables: seed grouping (checked against an independent mean/std), filters, sorting,
paper rows and the four output formats."""

from __future__ import annotations

import csv
import io
import statistics

import pytest

from wsolbench.errors import UsageError
from wsolbench.results import resolve_run_dir
from wsolbench.tables import FORMATS, METRIC_COLUMNS, Stat, build_table, config_variant, render_table
from wsolbench_plugins.references.danet2019 import danet_rows

DANET = [
    {
        "method": "danet",
        "backbone": "vgg16",
        "dataset": "cub",
        "seed": seed,
        "variant": "v1",
        "cls_err_top1": c1,
        "cls_err_top5": c5,
        "loc_err_top1": l1,
        "loc_err_top5": l5,
        "gt_known_loc": gk,
        "maxboxacc": m,
        "maxboxacc_v2": m2,
        "pxap": px,
        "cam_threshold": 0.2,
    }
    for seed, c1, c5, l1, l5, gk, m, m2, px in [
        (0, 24.1, 7.2, 47.5, 38.0, 67.0, 67.5, 60.1, 70.25),
        (1, 25.3, 7.9, 48.9, 39.1, 65.2, 66.0, 59.4, 69.75),
        (2, 23.9, 6.8, 46.2, 37.4, 68.9, 69.1, 61.0, 71.0),
    ]
]
CAM = [
    {
        "method": "cam",
        "backbone": "vgg16",
        "dataset": "cub",
        "seed": 0,
        "variant": "v2",
        "cls_err_top1": 23.0,
        "cls_err_top5": 7.0,
        "loc_err_top1": 55.1,
        "loc_err_top5": 46.0,
        "gt_known_loc": 58.0,
        "maxboxacc": 59.0,
        "maxboxacc_v2": 55.0,
    },  # no masks: no PxAP
    {
        "method": "cam",
        "backbone": "resnet50",
        "dataset": "ilsvrc",
        "seed": 0,
        "variant": "v3",
        "cls_err_top1": 30.0,
        "cls_err_top5": 10.0,
        "loc_err_top1": 60.0,
        "loc_err_top5": 50.0,
        "gt_known_loc": 60.5,
        "maxboxacc": 61.0,
        "maxboxacc_v2": 58.0,
    },
]
ROWS = DANET + CAM


def expected(key: str, rows: list[dict]) -> str:
    values = [r[key] for r in rows]
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_seeds_group_into_mean_and_sample_std() -> None:
    headers, body = build_table(ROWS)
    assert headers[:4] == ["method", "backbone", "dataset", "seeds"]
    assert headers[4:] == list(METRIC_COLUMNS.values())
    danet = next(line for line in body if line[0] == "danet")
    assert danet[3] == "3"
    for key, cell in zip(METRIC_COLUMNS, danet[4:], strict=False):
        assert cell == expected(key, DANET)
        values = [r[key] for r in DANET]
        assert isinstance(cell, Stat) and cell.n == 3
        assert cell.mean == pytest.approx(statistics.mean(values), abs=1e-12)
        assert cell.std == pytest.approx(statistics.stdev(values), abs=1e-12)
    cam = next(line for line in body if line[:3] == ["cam", "vgg16", "cub"])
    assert cam[4] == "23.00" and cam[-1] == ""  # one seed: no ±; no masks: PxAP blank


def test_default_order_and_sorting() -> None:
    _, body = build_table(ROWS)
    assert [line[:3] for line in body] == [
        ["cam", "vgg16", "cub"],
        ["danet", "vgg16", "cub"],
        ["cam", "resnet50", "ilsvrc"],
    ]
    _, body = build_table(ROWS, sort_by="-loc_err_top1")
    assert [line[0] for line in body] == ["cam", "cam", "danet"]
    _, body = build_table(ROWS, sort_by="pxap")  # rows without PxAP go last
    assert body[0][0] == "danet"
    with pytest.raises(UsageError, match="cannot sort by"):
        build_table(ROWS, sort_by="nonsense")


def test_grouping_off_and_filters() -> None:
    headers, body = build_table(ROWS, group_seeds=False, filters=["method=danet"])
    assert headers[3] == "seed"
    assert [line[3] for line in body] == ["0", "1", "2"]
    assert [line[6] for line in body] == ["47.50", "48.90", "46.20"]
    _, body = build_table(ROWS, filters={"backbone": "vgg16", "method": ["cam", "danet"]})
    assert len(body) == 2
    _, body = build_table(ROWS, filters=["dataset=ILSVRC,cub"])
    assert len(body) == 3
    with pytest.raises(UsageError, match="unknown filter key"):
        build_table(ROWS, filters=["colour=red"])
    with pytest.raises(UsageError, match="KEY=VALUE"):
        build_table(ROWS, filters=["danet"])


def test_differently_configured_runs_stay_apart() -> None:
    other = [{**r, "variant": "k8", "loc_err_top1": r["loc_err_top1"] + 10} for r in DANET[:2]]
    headers, body = build_table(DANET + other, filters=["method=danet"])
    assert "variant" in headers
    assert sorted((line[3], line[4]) for line in body) == [("k8", "2"), ("v1", "3")]
    assert config_variant({"seed": 1, "method": {"name": "cam"}}) == config_variant(
        {"seed": 2, "method": {"name": "cam"}}
    )
    assert config_variant({"seed": 1, "method": {"name": "cam"}}) != config_variant(
        {"seed": 1, "method": {"name": "hda"}}
    )


def test_duplicate_seed_is_an_error() -> None:
    with pytest.raises(UsageError, match="several runs with seed 0"):
        build_table(DANET + DANET[:1])


def test_paper_rows_are_marked() -> None:
    headers, body = build_table(ROWS, include_paper=True, filters=["dataset=cub"])
    assert headers[-1] == "source"
    paper = [line for line in body if line[-1] != "ours"]
    assert {line[-1] for line in paper} == {"Xue et al. 2019, T1"}
    top1 = {line[0]: line[headers.index("Top-1 Loc Err")] for line in paper}
    assert top1 == {"cam (CAM)": "55.85", "danet (HDA + DDA)": "47.48"}  # only the methods with runs
    assert all(line[3] == "" for line in paper)  # no seed count for published numbers
    assert {line[-1] for line in body if line not in paper} == {"ours"}
    assert all(r["source"] == "Xue et al. 2019, T1" for r in danet_rows())


def test_reference_rows_only_for_methods_in_the_table() -> None:
    cam_only = [r for r in ROWS if r["method"] == "cam"]
    _, body = build_table(cam_only, include_paper=True, filters=["dataset=cub"])
    assert [line[0] for line in body if line[-1] != "ours"] == ["cam (CAM)"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders(fmt: str) -> None:
    text = render_table(build_table(ROWS, include_paper=True), fmt=fmt)
    assert "danet" in text and "55.85" in text
    if fmt == "github":
        assert text.splitlines()[1].startswith("|---") and expected("loc_err_top1", DANET) in text
    elif fmt == "markdown":
        assert text.splitlines()[1].startswith("|:--") and expected("loc_err_top1", DANET) in text
    elif fmt == "latex":
        assert "\\begin{tabular}" in text and "\\end{tabular}" in text
        assert expected("loc_err_top1", DANET).replace(" ± ", " $\\pm$ ") in text
        assert "±" not in text
    else:
        table = list(csv.DictReader(io.StringIO(text)))
        danet = next(r for r in table if r["method"] == "danet")
        for key in METRIC_COLUMNS:
            values = [r[key] for r in DANET]
            assert float(danet[key]) == pytest.approx(statistics.mean(values), abs=1e-9)
            assert float(danet[f"{key}_std"]) == pytest.approx(statistics.stdev(values), abs=1e-9)
        cam = next(r for r in table if r["method"] == "cam" and r["dataset"] == "cub")
        assert cam["pxap"] == "" and cam["loc_err_top1_std"] == ""


def test_latex_escapes_and_unknown_format() -> None:
    rows = [{**DANET[0], "method": "my_method&co"}]
    assert "my\\_method\\&co" in render_table(build_table(rows), fmt="latex")
    with pytest.raises(UsageError, match="unknown table format"):
        render_table(build_table(ROWS), fmt="html")


def test_empty_table_renders() -> None:
    headers, body = build_table([])
    assert body == [] and headers[0] == "method"
    for fmt in FORMATS:
        assert "method" in render_table((headers, body), fmt=fmt)


def test_run_paths_resolve_to_run_folders_or_fail_with_the_fix(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "cache.h5").write_bytes(b"")
    assert resolve_run_dir(run) == run
    assert resolve_run_dir(run / "cache.h5") == run
    other = tmp_path / "copied.h5"
    other.write_bytes(b"")
    with pytest.raises(UsageError, match=r"is not a run's cache\.h5: pass the run folder"):
        resolve_run_dir(other)
    with pytest.raises(UsageError, match=r"is not a run directory \(no cache\.h5\)"):
        resolve_run_dir(tmp_path)
