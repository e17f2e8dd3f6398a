"""Choe et al. (CVPR 2020) reference rows: registry names, metric per dataset, rows as tables show them."""

from __future__ import annotations

from wsolbench.tables import METRIC_COLUMNS, build_table
from wsolbench_plugins.references import choe2020


def test_names_are_registry_names_and_metrics_are_table_columns(registry):
    assert set(choe2020.LABELS) <= set(registry.names("methods"))
    assert set(choe2020.BACKBONES) <= set(registry.names("backbones"))
    assert set(choe2020.METRIC) <= set(registry.names("datasets"))
    assert set(choe2020.METRIC.values()) <= set(METRIC_COLUMNS)
    assert "choe-cvpr2020" in registry.names("references")


def test_every_transcribed_entry_names_a_known_method_and_dataset():
    for (method, dataset), values in choe2020.VALUES.items():
        assert method in choe2020.LABELS and dataset in choe2020.METRIC
        assert len(values) == len(choe2020.BACKBONES)
        assert all(v is None or 0 <= v <= 100 for v in values)


def test_rows_one_per_filled_cell_with_the_dataset_metric(monkeypatch):
    monkeypatch.setattr(
        choe2020, "VALUES", {("has", "cub"): (1.5, None, 3.5), ("center", "openimages"): (2.0, 4.0, 6.0)}
    )
    rows = choe2020.choe2020_rows()
    assert rows[:2] == [
        {
            "method": "has",
            "backbone": "vgg16",
            "dataset": "cub",
            "maxboxacc_v2": 1.5,
            "label": "HaS",
            "source": choe2020.SOURCE,
        },
        {
            "method": "has",
            "backbone": "resnet50",
            "dataset": "cub",
            "maxboxacc_v2": 3.5,
            "label": "HaS",
            "source": choe2020.SOURCE,
        },
    ]
    assert [(r["backbone"], r["pxap"]) for r in rows[2:]] == [("vgg16", 2.0), ("inceptionv3", 4.0), ("resnet50", 6.0)]
    assert all("maxboxacc_v2" not in r for r in rows[2:])
    rows[0]["maxboxacc_v2"] = -1.0  # a fresh list each call
    assert choe2020.choe2020_rows()[0]["maxboxacc_v2"] == 1.5


def test_a_table_of_has_runs_shows_the_published_has_row(monkeypatch):
    monkeypatch.setattr(choe2020, "VALUES", {("has", "cub"): (61.25, None, None)})
    runs = [{"method": "has", "backbone": "vgg16", "dataset": "cub", "seed": 0, "variant": "v1", "maxboxacc_v2": 50.0}]
    _, body = build_table(runs, include_paper=True)
    assert any(line[0] == "has (HaS)" and "61.25" in " ".join(map(str, line)) for line in body)


def test_the_transcription_reproduces_the_printed_mean_column():
    """Each printed Mean is the mean of the row's three printed cells, rounded to 0.1; a misread cell breaks it."""
    for (method, dataset), printed in choe2020.PRINTED_MEANS.items():
        cells = choe2020.CAM[dataset] if method == "cam" else choe2020.DELTAS[(method, dataset)]
        assert abs(sum(cells) / 3 - printed) <= 0.05 + 1e-9, (method, dataset, cells, printed)
    assert set(choe2020.PRINTED_MEANS) == {("cam", d) for d in choe2020.CAM} | set(choe2020.DELTAS)


def test_values_are_cam_plus_the_printed_difference():
    assert choe2020.VALUES[("cam", "cub")] == (63.7, 56.7, 63.0)
    assert choe2020.VALUES[("adl", "cub")] == (66.3, 58.8, 58.4)  # 63.7 + 2.6, 56.7 + 2.1, 63.0 - 4.6
    assert choe2020.VALUES[("center", "openimages")] == (45.8, 45.8, 45.8)
    assert len(choe2020.choe2020_rows()) == 7 * 3 * 3  # seven methods, three datasets, three backbones
