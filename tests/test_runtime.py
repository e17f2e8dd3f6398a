"""Run-time choices that depend on the machine: loader workers, TensorBoard events."""

from __future__ import annotations

import pytest
import torch

from wsolbench.events import EventLog, tensorboard_available
from wsolbench.runtime import MAX_AUTO_WORKERS, Runtime, loader_workers


def test_loader_workers_default_to_none_on_cpu_and_to_the_shared_cores_on_cuda(monkeypatch) -> None:
    cpu, cuda = Runtime(torch.device("cpu")), Runtime(torch.device("cuda", 0))
    assert loader_workers(None, cpu) == 0
    assert loader_workers(3, cpu) == 3 and loader_workers(0, cuda) == 0  # an explicit value always wins
    monkeypatch.setattr("os.cpu_count", lambda: 64)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert loader_workers(None, cuda) == MAX_AUTO_WORKERS  # 64 cores / 4 GPU processes, capped
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert loader_workers(None, cuda) == 1  # 8 / 4 - 1 (one core left to the training process)


def test_event_log_writes_scalars_when_tensorboard_is_installed(tmp_path) -> None:
    with EventLog(tmp_path, enabled=True) as events:
        events.scalars("loss", {"loss": 1.5, "ce0": 1.0}, step=1)
    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    if not tensorboard_available():
        assert files == []
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events_file,) = files
    accumulator = EventAccumulator(str(events_file))
    accumulator.Reload()
    assert sorted(accumulator.Tags()["scalars"]) == ["loss/ce0", "loss/loss"]
    assert [(e.step, e.value) for e in accumulator.Scalars("loss/loss")] == [(1, 1.5)]


def test_disabled_event_log_writes_nothing(tmp_path) -> None:
    with EventLog(tmp_path, enabled=False) as events:
        events.scalars("loss", {"loss": 1.0}, step=1)
    assert not (tmp_path / "tensorboard").exists()


def test_cli_warnings_are_one_line(capsys) -> None:
    import warnings

    from wsolbench.cli.main import one_line_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = one_line_warnings("run")
        warnings.warn(
            "config key 'eval.save_k_maps' is deprecated:\n  use 'eval.save_maps'", FutureWarning, stacklevel=1
        )
    assert capsys.readouterr().err == (
        "wsolbench run: warning: config key 'eval.save_k_maps' is deprecated: use 'eval.save_maps'\n"
    )


@pytest.mark.slow
def test_a_run_writes_its_losses_and_final_metrics_as_tensorboard_events(tmp_path) -> None:
    if not tensorboard_available():
        pytest.skip("tensorboard is not installed (the tensorboard extra)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from wsolbench.cli.main import main

    args = ["run", "--method", "dda", "--backbone", "tinycnn", "--image-size", "32", "--batch-size", "16"]
    args += ["--set", "backbone.width=4", "--set", "head.channels=8", "--set", "dataset.num_train=32"]
    args += ["--set", "dataset.num_test=8", "--epochs", "1", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0
    tags = set()
    for events_file in tmp_path.glob("*/tensorboard/events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"loss/loss", "loss/div", "lr/group0", "lr/group1", "throughput/img_per_s"} <= tags
    assert {"metrics/maxboxacc_v2", "metrics/cls_err_top1"} <= tags
