"""`wsolbench run` end to end on tiny configs: table, cache, determinism, resume after SIGKILL,
NaN handling, config errors, sweeps and a 2-process gloo DDP run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wsolbench.cache import read_cache
from wsolbench.cli.main import main

pytestmark = pytest.mark.slow

TINY = [
    "--backbone",
    "tinycnn",
    "--image-size",
    "32",
    "--batch-size",
    "16",
    "--lr",
    "0.02",
    "--set",
    "backbone.width=8",
    "--set",
    "head.channels=16",
    "--set",
    "dataset.num_train=96",
    "--set",
    "dataset.num_test=24",
    "--quiet",
]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wsolbench.cli.main", *args], capture_output=True, text=True)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return run_dir


def metrics_of(out: Path) -> dict:
    return json.loads((only_run(out) / "metrics.json").read_text())


def test_run_trains_caches_and_prints_the_table(tmp_path, capsys):
    assert main(["run", "--method", "danet", "--epochs", "1", *TINY, "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| danet" in table and "MaxBoxAccV2" in table
    run_dir = only_run(tmp_path)
    assert {"config.yaml", "checkpoint.pt", "cache.h5", "metrics.json"} <= {p.name for p in run_dir.iterdir()}
    saved = json.loads((run_dir / "metrics.json").read_text())
    # eval recomputes from the cache alone and must give the same numbers
    (run_dir / "metrics.json").unlink()
    assert main(["eval", str(run_dir / "cache.h5")]) == 0
    assert json.loads((run_dir / "metrics.json").read_text()) == saved
    assert capsys.readouterr().out.splitlines()[2].split("|")[1].strip() == "danet"


def test_same_seed_same_metrics_and_finished_runs_are_reused(tmp_path, capsys):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["run", "--method", "dda", "--epochs", "1", *TINY, "--out", str(out)]) == 0
    assert metrics_of(first) == metrics_of(second)
    stamp = (only_run(first) / "cache.h5").stat().st_mtime_ns
    assert main(["run", "--method", "dda", "--epochs", "1", *TINY, "--out", str(first)]) == 0
    assert (only_run(first) / "cache.h5").stat().st_mtime_ns == stamp


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    args = [
        "run",
        "--method",
        "danet",
        "--epochs",
        "3",
        *TINY,
        "--set",
        "dataset.num_train=192",
        "--log-format",
        "plain",
    ]
    assert run_cli(*args, "--out", str(tmp_path / "full")).returncode == 0

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "wsolbench.cli.main", *args, "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not list(killed.glob("*/checkpoint.pt")) and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-way through epoch 2
    proc.wait()
    run_dir = only_run(killed)
    assert not (run_dir / "metrics.json").exists()

    refused = run_cli(*args, "--out", str(killed))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    assert run_cli(*args, "--out", str(killed), "--resume").returncode == 0
    assert metrics_of(killed) == metrics_of(tmp_path / "full")


def test_nan_loss_stops_with_a_message_and_keeps_the_checkpoint(tmp_path):
    result = run_cli("run", "--method", "cam", "--epochs", "3", *TINY, "--lr", "1e30", "--out", str(tmp_path))
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert "loss is" in message and "lower train.lr" in message
    assert not list(tmp_path.glob("*/metrics.json"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "train.epochz=1"], "unknown config key 'train.epochz'"),
        (["--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--backbone", "vgg17"], "did you mean: vgg16"),
        (["--set", "dataset.num_train=8"], "training split has 8 images, fewer than train.batch_size=16"),
    ],
)
def test_config_errors_exit_2_with_one_line(args, needle, tmp_path):
    result = run_cli("run", *TINY, *args, "--out", str(tmp_path))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr


def test_sweep_runs_the_grid_and_reuses_finished_runs(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "methods: [cam, hda]\nbackbones: [tinycnn]\nseeds: [0, 1]\n"
        "base:\n  train: {epochs: 1, batch_size: 16, lr: 0.02}\n  backbone: {width: 8}\n  head: {channels: 16}\n"
        "  dataset: {num_train: 64, num_test: 16, image_size: 32}\n"
    )
    out = tmp_path / "runs"
    first = run_cli("sweep", str(grid), "--out", str(out), "--quiet")
    assert first.returncode == 0, first.stderr
    assert len(list(out.glob("*/cache.h5"))) == 4
    rows = [line for line in first.stdout.splitlines() if line.startswith("| ")][1:]
    assert {row.split("|")[1].strip() for row in rows} == {"cam", "hda"}
    assert all(row.split("|")[4].strip() == "2" for row in rows)  # two seeds grouped per row
    again = run_cli("sweep", str(grid), "--out", str(out), "--log-format", "plain")
    assert again.stderr.count("reusing finished run") == 4


def test_two_process_gloo_ddp_matches_a_single_process_run(tmp_path):
    args = ["run", "--method", "danet", "--epochs", "2", *TINY, "--set", "backbone.batch_norm=false", "--device", "cpu"]
    single = run_cli(*args, "--out", str(tmp_path / "single"))
    assert single.returncode == 0, single.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_port=29731",
        "-m",
        "wsolbench.cli.main",
        *args,
        "--out",
        str(tmp_path / "ddp"),
    ]
    ddp = subprocess.run(torchrun, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    with read_cache(only_run(tmp_path / "single")) as one, read_cache(only_run(tmp_path / "ddp")) as two:
        assert two.image_ids == one.image_ids  # rank 0 wrote the shards back in dataset order
        assert np.array_equal(two.labels, one.labels)
        assert all(np.array_equal(a, b) for a, b in zip(two.boxes, one.boxes, strict=True))
    single_metrics, ddp_metrics = metrics_of(tmp_path / "single"), metrics_of(tmp_path / "ddp")
    # Same batches, averaged gradients: equal up to float summation order. Stated tolerance:
    # 1 image in 24 (4.2 points) per localization metric, 0.5 point for PxAP.
    for key, value in single_metrics.items():
        if isinstance(value, float):
            tolerance = 0.5 if key == "pxap" else 100 / 24 + 1e-6
            assert abs(ddp_metrics[key] - value) <= tolerance, (key, value, ddp_metrics[key])


def test_eval_settings_reuse_the_trained_model(tmp_path):
    base = ["run", "--method", "cam", "--epochs", "1", *TINY, "--set", "dataset.num_val=24"]
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    run_dir = only_run(tmp_path / "a")

    def stamps() -> dict[str, int]:
        return {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir() if p.suffix in (".pt", ".h5", ".json")}

    trained = stamps()
    # another grid and eval batch size: the same run folder, re-evaluated from the cache only
    assert (
        main(
            [*base, "--out", str(tmp_path / "a"), "--set", "eval.cam_curve_interval=0.05", "--set", "eval.batch_size=5"]
        )
        == 0
    )
    assert only_run(tmp_path / "a") == run_dir
    regridded = stamps()
    assert {k: v for k, v in regridded.items() if k != "metrics.json"} == {
        k: v for k, v in trained.items() if k != "metrics.json"
    }
    assert metrics_of(tmp_path / "a")["eval"]["cam_curve_interval"] == 0.05
    # the same again, and a moved data folder: nothing to do at all
    assert (
        main([*base, "--out", str(tmp_path / "a"), "--set", "eval.cam_curve_interval=0.05", "--set", "dataset.root=/x"])
        == 0
    )
    assert stamps() == regridded
    # the threshold chosen on val: val is predicted with the trained model, test's cache and the checkpoint stay
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "eval.cam_threshold=val"]) == 0
    after = stamps()
    assert after["checkpoint.pt"] == trained["checkpoint.pt"] and after["cache.h5"] == trained["cache.h5"]
    reused = metrics_of(tmp_path / "a")
    assert "cache-val.h5" in after and reused["cam_threshold_from"] == "val"
    assert reused["cam_threshold"] == reused["val"]["cam_threshold"]
    # ... and equals a run that asked for it from the start
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "eval.cam_threshold=val"]) == 0
    assert metrics_of(tmp_path / "b") == reused
    # a test cache written for other data (its split's fingerprint) is predicted again, not retrained
    import h5py

    with h5py.File(run_dir / "cache.h5", "a") as f:
        extra = json.loads(f.attrs["extra"])
        f.attrs["extra"] = json.dumps({**extra, "data_fingerprint": "0" * 64})
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "eval.cam_threshold=val"]) == 0
    again = stamps()
    assert again["checkpoint.pt"] == trained["checkpoint.pt"] and again["cache-val.h5"] == after["cache-val.h5"]
    assert again["cache.h5"] != after["cache.h5"] and metrics_of(tmp_path / "a") == reused


def test_bad_eval_splits_are_one_line(tmp_path):
    result = run_cli("run", *TINY, "--set", "eval.splits=[test,vals]", "--out", str(tmp_path))
    assert result.returncode == 2 and "'eval.splits' must list test" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
