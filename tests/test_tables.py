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
    assert {line[-1] for line in paper} == {"Xue et al. 2019, T1", "Choe et al. 2020, main table"}
    danet_paper = [line for line in paper if line[-1] == "Xue et al. 2019, T1"]
    top1 = {line[0]: line[headers.index("Top-1 Loc Err")] for line in danet_paper}
    assert top1 == {"cam (CAM)": "55.85", "danet (HDA + DDA)": "47.48"}  # only the methods with runs
    # Choe et al. report CAM (not DANet): their CUB rows are CAM's MaxBoxAccV2 for three backbones
    choe = [line for line in paper if line[-1] == "Choe et al. 2020, main table"]
    assert sorted((line[0], line[1], line[headers.index("MaxBoxAccV2")]) for line in choe) == [
        ("cam (CAM)", "inceptionv3", "56.70"),
        ("cam (CAM)", "resnet50", "63.00"),
        ("cam (CAM)", "vgg16", "63.70"),
    ]
    assert all(line[3] == "" for line in paper)  # no seed count for published numbers
    assert {line[-1] for line in body if line not in paper} == {"ours"}
    assert all(r["source"] == "Xue et al. 2019, T1" for r in danet_rows())


def test_reference_rows_only_for_methods_in_the_table() -> None:
    cam_only = [r for r in ROWS if r["method"] == "cam"]
    _, body = build_table(cam_only, include_paper=True, filters=["dataset=cub"])
    assert {line[0] for line in body if line[-1] != "ours"} == {"cam (CAM)"}


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


def evaluated(rows: list[dict], **protocol) -> list[dict]:
    """Rows as evaluate_run describes them: split, threshold origin and grid step."""
    base = {"split": "test", "cam_threshold_from": "test", "cam_curve_interval": 0.01}
    return [{**r, **base, **protocol} for r in rows]


def test_rows_evaluated_alike_get_one_note_saying_how() -> None:
    table = build_table(evaluated(ROWS))
    headers, body = table
    assert "CAM threshold" not in headers and "split" not in headers and len(body) == 3
    assert table.notes == [
        "Test split. Top-1/Top-5 Loc Err and GT-known Loc at the CAM threshold with the lowest Top-1 Loc Err on the "
        "test split itself (the older papers' protocol; --set eval.cam_threshold=val chooses it on val); MaxBoxAcc "
        "and MaxBoxAccV2 at their own best thresholds, PxAP over all, on a threshold grid of step 0.01."
    ]
    text = render_table(table, fmt="github")
    assert text.endswith("\n\n" + table.notes[0] + "\n")
    assert render_table(table, fmt="latex").endswith("\\end{tabular}\n% " + table.notes[0] + "\n")
    assert table.notes[0] not in render_table(table, fmt="csv")
    on_val = build_table(evaluated(ROWS, cam_threshold_from="val"))
    assert "on the val split (Choe et al., CVPR 2020)" in on_val.notes[0]
    fixed = build_table(evaluated(DANET, cam_threshold_from="fixed"))  # DANET's rows were taken at 0.2
    assert "Loc at the CAM threshold 0.2 (fixed);" in fixed.notes[0]
    assert build_table(ROWS).notes == []  # rows that do not say how they were evaluated: no claim


def test_rows_evaluated_differently_are_marked_and_never_averaged() -> None:
    rows = evaluated(DANET) + evaluated(DANET[:2], cam_threshold_from="val", cam_curve_interval=0.001)
    table = build_table(rows)
    headers, body = table
    assert headers[3:5] == ["CAM threshold", "grid"]  # the parts that differ, nothing else
    assert sorted((line[3], line[4], line[5]) for line in body) == [
        ("best on test", "0.01", "3"),
        ("chosen on val", "0.001", "2"),
    ]
    assert table.notes[0].startswith("Rows were evaluated differently (columns CAM threshold, grid)")
    assert "split" not in headers
    always = build_table(evaluated(ROWS), protocol_columns=True)
    assert always[0][3:6] == ["split", "CAM threshold", "grid"]


def test_row_notes_are_printed_once_under_the_table() -> None:
    note = "tinycnn trained from scratch ... near chance"
    rows = [{**r, "notes": [note]} for r in DANET] + CAM
    table = build_table(rows)
    assert table.notes == [note]
    assert render_table(table).count(note) == 1


@pytest.mark.parametrize(
    ("config", "extra", "metrics", "shown"),
    [
        (
            {"backbone": {"name": "vgg16"}, "train": {"epochs": 2}},
            {"train_device": "cpu"},
            {"cls_err_top1": 94.4},
            True,
        ),
        (
            {"backbone": {"name": "vgg16", "pretrained": False}, "train": {"epochs": 2}},
            {"train_device": "cpu"},
            {"cls_err_top1": 94.4},
            True,
        ),
        (
            {"backbone": {"name": "tinycnn"}, "train": {"epochs": 4}},
            {"train_device": "cpu"},
            {"cls_err_top1": 0.2},
            False,
        ),  # the ablation
        (
            {"backbone": {"name": "vgg16", "pretrained": "/w.pth"}, "train": {"epochs": 2}},
            {"train_device": "cpu"},
            {"cls_err_top1": 94.4},
            False,
        ),
        (
            {"backbone": {"name": "vgg16"}, "train": {"epochs": 2}},
            {"train_device": "cuda"},
            {"cls_err_top1": 94.4},
            False,
        ),
        (
            {"backbone": {"name": "vgg16"}, "train": {"epochs": 100}},
            {"train_device": "cpu"},
            {"cls_err_top1": 94.4},
            False,
        ),
        ({"backbone": {"name": "vgg16"}, "train": {"epochs": 2}}, {}, {"cls_err_top1": 94.4}, False),  # unknown device
    ],
)
def test_budget_note_only_for_short_from_scratch_cpu_runs_near_chance(config, extra, metrics, shown) -> None:
    from wsolbench.results import ABLATION_COMMAND, budget_note

    note = budget_note(config, extra, {**metrics, "num_classes": 36})
    assert (note is not None) == shown
    if shown:
        assert "\n" not in note and ABLATION_COMMAND in note and "97.2%" in note  # guessing 35 of 36 wrong
        assert note.startswith("vgg16 trained from scratch for 2 epochs on CPU classifies near chance")
