"""Config merging and validation: defaults <- preset <- file <- --set <- flags."""

from __future__ import annotations

import pytest

from wsolbench import config as configuration
from wsolbench.errors import UsageError


def test_layers_merge_in_order(registry, tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("method: danet\ntrain:\n  epochs: 7\n  lr: 0.5\nseed: 3\n")
    config = configuration.resolve(
        registry, file=file, sets=["train.epochs=9", "method.k=4"], flags={"seed": 11, "train.lr": None}
    )
    assert config["method"] == {"name": "danet", "k": 4}
    assert config["train"]["epochs"] == 9  # --set beats the file
    assert config["train"]["lr"] == 0.5  # a flag left at None changes nothing
    assert config["seed"] == 11  # flags beat everything
    assert config["train"]["momentum"] == configuration.DEFAULTS["train"]["momentum"]


def test_dataset_preset_sits_under_user_values(registry):
    preset = registry.get("datasets", "synthetic").factory.train_preset
    config = configuration.resolve(registry)
    for section, values in preset.items():
        if isinstance(values, dict):
            for key, value in values.items():
                assert config[section][key] == value
    epochs = preset.get("train", {}).get("epochs", 100) + 1
    assert configuration.resolve(registry, sets=[f"train.epochs={epochs}"])["train"]["epochs"] == epochs


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["train.epoch=3"], "unknown config key 'train.epoch'; allowed keys in train: batch_size"),
        (["method.name=danet", "method.kk=2"], "unknown config key 'method.kk'"),
        (["train.epochs=three"], "'train.epochs' must be of type int"),
        (["amp=1"], "'amp' must be of type bool"),
        (["nonsense=1"], "unknown config key 'nonsense'"),
        (["train=5"], "'train' is a section"),
        (["method.name=nosuch"], "unknown method 'nosuch'"),
        (["novalue"], "expected KEY=VALUE"),
    ],
)
def test_bad_keys_and_types_are_one_line_errors(registry, sets, message):
    with pytest.raises(UsageError) as info:
        configuration.resolve(registry, sets=sets)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_int_is_accepted_for_a_float_option(registry):
    assert configuration.resolve(registry, sets=["train.lr=1"])["train"]["lr"] == 1


def test_malformed_yaml_names_file_and_line(registry, tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  epochs: [1,\n")
    with pytest.raises(UsageError, match=r"bad.yaml' line \d+ is not valid YAML"):
        configuration.resolve(registry, file=file)


def test_missing_and_non_mapping_files(registry, tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        configuration.resolve(registry, file=tmp_path / "nope.yaml")
    file = tmp_path / "list.yaml"
    file.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="must be a mapping"):
        configuration.resolve(registry, file=file)


def test_dump_round_trips(registry):
    import yaml

    config = configuration.resolve(registry, sets=["method.name=hda"])
    assert yaml.safe_load(configuration.dump(config)) == config


SHIPPED = sorted((__import__("pathlib").Path(__file__).parents[1] / "benchmarks").rglob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_and_grids_validate(registry, path):
    from wsolbench.sweep import grid_points, load_grid

    data = configuration.load_yaml(path)
    if "methods" in data or "base" in data:
        axes, base = load_grid(path)
        for point in grid_points(axes):
            configuration.resolve(registry, base=base, flags=point)
    else:
        configuration.resolve(registry, file=path)
