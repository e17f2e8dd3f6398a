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
        (["train.epochs=three"], "'train.epochs' must be an int >= 1, got 'three'"),
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


# --------------------------------------------------------------------------- numeric ranges


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("train.epochs=0", "'train.epochs' must be an int >= 1, got 0"),
        ("train.batch_size=0", "'train.batch_size' must be an int >= 1, got 0"),
        ("train.lr=0", "'train.lr' must be a number > 0, got 0"),
        ("train.lr=-1e-3", "'train.lr' must be a number > 0, got -0.001"),
        ("train.lr=.nan", "'train.lr' must be a number > 0, got nan"),
        ("train.lr=.inf", "'train.lr' must be a number > 0, got inf"),
        ("train.head_lr_mult=0", "'train.head_lr_mult' must be a number > 0"),
        ("train.momentum=1", "'train.momentum' must be a number in [0, 1), got 1"),
        ("train.momentum=-0.1", "'train.momentum' must be a number in [0, 1)"),
        ("train.weight_decay=-1e-4", "'train.weight_decay' must be a number >= 0"),
        ("train.lr_decay=0", "'train.lr_decay' must be a number in (0, 1], got 0"),
        ("train.lr_decay=1.5", "'train.lr_decay' must be a number in (0, 1]"),
        ("train.lr_decay_epochs=[10, 0]", "'train.lr_decay_epochs' must be a list of ints >= 1, got [10, 0]"),
        ("train.lr_decay_epochs=[ten]", "'train.lr_decay_epochs' must be a list of ints >= 1"),
        ("train.workers=-1", "'train.workers' must be an int >= 0 or null (chosen at run time), got -1"),
        ("train.workers=2.5", "'train.workers' must be an int >= 0 or null (chosen at run time), got 2.5"),
        ("train.log_every=0", "'train.log_every' must be an int >= 1"),
        ("eval.batch_size=0", "'eval.batch_size' must be an int >= 1"),
        ("eval.cam_curve_interval=0", "'eval.cam_curve_interval' must be a number in (0, 1), got 0"),
        ("eval.cam_curve_interval=1", "'eval.cam_curve_interval' must be a number in (0, 1), got 1"),
        ("eval.cam_threshold=1", "'eval.cam_threshold' must be a number in [0, 1), best, val or null"),
        ("eval.cam_threshold=-0.2", "'eval.cam_threshold' must be a number in [0, 1), best, val or null (best)"),
        ("eval.cam_threshold=worst", "'eval.cam_threshold' must be a number in [0, 1), best, val or null"),
        ("seed=-1", "'seed' must be an int in [0, 4294967296), got -1"),
        ("train.epochs=", "'train.epochs' must be an int >= 1, got None"),
        ("train.nesterov=", "'train.nesterov' must be of type bool"),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(registry, assignment, message):
    with pytest.raises(UsageError) as info:
        configuration.resolve(registry, sets=[assignment])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "assignment",
    [
        "train.momentum=0",
        "train.weight_decay=0",
        "train.lr_decay=1",
        "train.lr_decay_epochs=[]",
        "train.workers=0",
        "train.workers=null",
        "train.workers=4",
        "eval.cam_threshold=0",
        "eval.cam_threshold=null",
        "eval.cam_threshold=best",
        "eval.cam_threshold=val",
        "eval.cam_curve_interval=0.001",
        "seed=4294967295",
        "train.epochs=1",
    ],
)
def test_numbers_at_the_edges_of_their_ranges_are_accepted(registry, assignment):
    path, value = configuration.parse_set(assignment)
    config = configuration.resolve(registry, sets=[assignment])
    assert config[path[0]][path[1]] == value if len(path) == 2 else config[path[0]] == value


DEFAULTS_TOP = {key: value for key, value in configuration.DEFAULTS.items() if not isinstance(value, dict)}


def test_every_numeric_key_has_a_declared_range():
    numeric = {
        f"{section}.{key}" if section else key
        for section, values in [
            ("", DEFAULTS_TOP),
            ("train", configuration.DEFAULTS["train"]),
            ("eval", configuration.DEFAULTS["eval"]),
        ]
        for key, value in values.items()
        if isinstance(value, (int, float))
        and not isinstance(value, bool)
        or isinstance(value, list)
        and all(isinstance(v, int) for v in value)
    }
    assert numeric <= set(configuration.RANGES)
    # and every declared range names a real key whose default is valid
    for dotted, valid in configuration.RANGES.items():
        node = configuration.DEFAULTS
        for part in dotted.split("."):
            node = node[part]
        assert (node is None and valid.null) or all(valid.contains(v) for v in (node if valid.each else [node]))


@pytest.mark.parametrize(
    ("bounds", "inside", "outside"),
    [
        (">= 1", [1, 2, 10**9], [0, -1, 0.999]),
        ("> 0", [1e-12, 3], [0, -1e-12]),
        ("[0, 1)", [0, 0.5, 0.999999], [1, -1e-9, 1.5]),
        ("(0, 1]", [1e-9, 1], [0, 1.000001]),
        ("(0, 1)", [0.5], [0, 1]),
    ],
)
def test_range_bounds(bounds, inside, outside):
    valid = configuration.Range(float, bounds)
    assert all(valid.contains(v) for v in inside)
    assert not any(valid.contains(v) for v in outside)
    assert not valid.contains(True) and not valid.contains("0.5") and not valid.contains(float("nan"))
    assert not configuration.Range(int, bounds).contains(0.5)


def test_scientific_notation_is_a_float(registry, tmp_path):
    assert configuration.resolve(registry, sets=["train.lr=1e-3"])["train"]["lr"] == 0.001
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  weight_decay: 5E-4\n  lr: 2.5e+1\n")
    config = configuration.resolve(registry, file=file)
    assert config["train"]["weight_decay"] == 0.0005 and config["train"]["lr"] == 25.0
    assert configuration.parse_set("method.tag=e5") == (["method", "tag"], "e5")


def test_cli_bad_numbers_and_missing_data_folder_exit_2_with_one_line(tmp_path, capsys):
    from wsolbench.cli.main import main

    cases = [
        (["--batch-size", "0"], "'train.batch_size' must be an int >= 1, got 0"),
        (["--lr", "-1"], "'train.lr' must be a number > 0"),
        (["--set", "eval.cam_curve_interval=2"], "'eval.cam_curve_interval' must be a number in (0, 1)"),
        (["--dataset", "cub"], "needs its data folder"),
        (["--dataset", "cub", "--data-root", str(tmp_path / "nowhere")], "is not a folder"),
    ]
    for args, message in cases:
        assert main(["run", *args, "--out", str(tmp_path / "runs")]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)


# --------------------------------------------------------------------------- deprecated and auto keys


def test_workers_may_be_left_to_the_run(registry):
    assert configuration.resolve(registry, sets=["train.workers=null"])["train"]["workers"] is None
    assert configuration.resolve(registry, sets=["train.workers=3"])["train"]["workers"] == 3


@pytest.mark.parametrize(
    ("sets", "expected", "warned"),
    [
        ([], True, []),
        (["eval.save_maps=false"], False, []),
        (["eval.save_k_maps=false"], False, ["eval.save_k_maps"]),
        (["eval.save_level_maps=true"], True, ["eval.save_level_maps"]),
        (["eval.save_level_maps=true", "eval.save_k_maps=true"], True, ["eval.save_level_maps", "eval.save_k_maps"]),
        (["eval.save_level_maps=false", "eval.save_k_maps=true"], False, ["eval.save_level_maps", "eval.save_k_maps"]),
        (["eval.save_maps=false", "eval.save_k_maps=true"], False, ["eval.save_k_maps"]),
    ],
)
def test_old_save_map_keys_become_save_maps_with_a_warning(registry, sets, expected, warned):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = configuration.resolve(registry, sets=sets)
    assert config["eval"]["save_maps"] is expected
    assert "save_k_maps" not in config["eval"] and "save_level_maps" not in config["eval"]
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert len(messages) == len(warned)
    for old, message in zip(warned, messages):
        assert f"config key {old!r} is deprecated" in message and "'eval.save_maps'" in message


def test_old_save_map_key_of_the_wrong_type(registry):
    with pytest.raises(
        UsageError, match=r"'eval.save_k_maps' must be of type bool, got 3; better, use 'eval.save_maps'"
    ):
        configuration.resolve(registry, sets=["eval.save_k_maps=3"])
    stored = {"eval": {"save_level_maps": False, "batch_size": 8}}
    assert configuration.upgrade_deprecated(stored, warn=False) == {"eval": {"save_maps": False, "batch_size": 8}}
    assert stored == {"eval": {"save_level_maps": False, "batch_size": 8}}  # the input is left alone
