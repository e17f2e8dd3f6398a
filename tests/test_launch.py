"""Launchers: local worker processes (GPU pinning, threads, errors), submitit's local executor,
the sbatch script of the SLURM launcher (with stand-ins for srun/sbatch), requeue semantics,
and a sweep fanned out over two local jobs."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from wsolbench import launch
from wsolbench.cli.main import main
from wsolbench.config import parse_set
from wsolbench.errors import UsageError
from wsolbench.launch import Launch, SubmititJob, run_jobs, submit_jobs
from wsolbench.sweep import RunCall


def worker_environment(barrier) -> tuple[int, str | None, int, bool]:
    """What a job sees: its pid, pinned GPU, torch threads, whether its parent is alive."""
    import torch

    if barrier is not None:
        barrier.wait(timeout=60)  # both jobs at once: they run in two different workers
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES"), torch.get_num_threads(), launch.parent_alive()


def test_one_local_job_runs_in_this_process():
    assert run_jobs(worker_environment, [None], Launch(jobs=1))[0][0] == os.getpid()


def test_local_workers_are_pinned_one_gpu_each_and_share_the_cores(monkeypatch):
    monkeypatch.setattr(launch, "visible_gpus", lambda: ["3", "5"])  # decided here, applied in the workers
    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(2)
        results = run_jobs(worker_environment, [barrier, barrier], Launch(jobs=2, device="cuda"))
    pids, gpus, threads, alive = zip(*results)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert sorted(gpus) == ["3", "5"]
    assert set(threads) == {max(1, launch.cpu_cores() // 2)}
    assert all(alive)


def test_a_usage_error_in_a_worker_reaches_the_command_as_one_line():
    with pytest.raises(UsageError, match=r"^--set 'oops': expected KEY=VALUE"):
        run_jobs(parse_set, ["a.b=1", "oops"], Launch(jobs=2, device="cpu"))


def test_default_jobs_is_one_per_visible_gpu(monkeypatch):
    monkeypatch.setattr(launch, "visible_gpus", lambda: ["0", "1", "2"])
    assert Launch().workers == 3 and Launch(device="cpu").workers == 1 and Launch(jobs=2).workers == 2
    monkeypatch.setattr(launch, "visible_gpus", lambda: [])
    assert Launch().workers == 1


@pytest.mark.parametrize(
    ("settings", "expected"),
    [({"jobs": 0}, "--jobs 0"), ({"launcher": "k8s"}, "unknown launcher 'k8s'"), ({"time_min": 0}, "--time 0")],
)
def test_bad_launch_settings_are_usage_errors(settings, expected):
    with pytest.raises(UsageError, match=expected):
        Launch(**settings)


def test_submitit_local_executor_runs_the_jobs_and_keeps_their_errors(tmp_path):
    settings = Launch("submitit-local", device="cpu", folder=tmp_path)
    with pytest.raises(UsageError, match=r"^--set 'oops': expected KEY=VALUE"):
        run_jobs(parse_set, ["a.b=1", "oops"], settings)
    assert len(list(tmp_path.glob("*/*_result.pkl"))) == 2  # both ran as submitit jobs


def fake_slurm(tmp_path: Path, monkeypatch) -> Path:
    """``srun`` and ``sbatch`` stand-ins: sbatch keeps the script it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = tmp_path / "sbatch-script.sh"
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\ncp "$1" {script}\necho "Submitted batch job 4242"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_the_slurm_launcher_submits_one_array_with_the_asked_resources(tmp_path, monkeypatch):
    script = fake_slurm(tmp_path, monkeypatch)
    settings = Launch(
        "slurm",
        jobs=2,
        partition="gpu",
        gpus_per_job=2,
        time_min=90,
        slurm_options={"account": "lab", "qos": "high"},
        folder=tmp_path / "submitit",
        name="wsolbench-sweep-x",
    )
    jobs = submit_jobs(parse_set, ["a=1", "b=2", "c=3"], settings)
    assert [job.job_id for job in jobs] == ["4242_0", "4242_1", "4242_2"]
    lines = set(script.read_text().splitlines())
    expected = {
        "#SBATCH --partition=gpu",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --ntasks-per-node=2",  # one task per GPU: DDP
        "#SBATCH --time=90",
        "#SBATCH --account=lab",
        "#SBATCH --qos=high",
        "#SBATCH --array=0-2%2",  # three runs, two at a time
        "#SBATCH --job-name=wsolbench-sweep-x",
    }
    assert expected <= lines, sorted(lines)


def test_without_slurm_the_slurm_launcher_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    grid = tmp_path / "grid.yaml"
    grid.write_text("methods: [cam]\nbackbones: [tinycnn]\n")
    assert main(["sweep", str(grid), "--launcher", "slurm", "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "--launcher slurm" in error and "--launcher local" in error


def test_a_requeued_job_resumes_its_run_instead_of_starting_over(tmp_path):
    job = SubmititJob(RunCall(out=tmp_path, resume=False, force=True))
    requeued = job.checkpoint({"method": {"name": "cam"}})
    again = requeued.function
    assert isinstance(again, SubmititJob) and again.fn == RunCall(out=tmp_path, resume=True, force=False)
    assert requeued.args == ({"method": {"name": "cam"}},)


@pytest.mark.slow
def test_a_sweep_fans_out_over_two_local_jobs(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        "methods: [cam, hda]\nbackbones: [tinycnn]\nbase:\n"
        "  dataset: {image_size: 32, num_train: 64, num_test: 16}\n"
        "  backbone: {width: 8}\n  head: {name: linear}\n  train: {epochs: 1, batch_size: 16}\n"
    )
    out = tmp_path / "runs"
    assert main(["sweep", str(grid), "--jobs", "2", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "| cam " in table and "| hda " in table
    assert len(list(out.glob("*/metrics.json"))) == 2
