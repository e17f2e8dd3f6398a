"""The GPU check and the loader benchmark run end to end (on CPU, at tiny sizes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_check_dry_run_on_cpu(tmp_path):
    """``benchmarks/gpu_check.sh --device cpu --tiny``: every case trains, predict -> cache -> eval
    runs, the CUDA tests are collected (and skipped), and the report says so."""
    report = tmp_path / "gpu.json"
    done = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--no-install", "--device", "cpu", "--tiny",
         "--backbones", "tinycnn", "--methods", "cam", "danet", "--predict-backbone", "tinycnn",
         "--set", "backbone.width=8", "--set", "head.channels=16",
         "--tests", "tests/test_cuda.py", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Training throughput" in done.stdout and "predict -> cache -> eval" in done.stdout
    data = json.loads(report.read_text())
    cases = {(r["method"], r["amp"], r["channels_last"]) for r in data["training"]}
    assert cases == {(m, a, c) for m in ("cam", "danet") for a in (False, True) for c in (False, True)}
    assert all(r["images_per_s"] > 0 and "error" not in r for r in data["training"])
    assert data["predict_eval"]["maps"] == 8 and data["predict_eval"]["eval_maps_per_s"] > 0
    assert data["cuda_tests"]["exit"] == 0 and "skipped" in data["cuda_tests"]["summary"]


def test_loader_throughput_runs():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import loader_throughput
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = loader_throughput.main(["--images", "64", "--batches", "1", "--workers", "1"])
    assert results["in_process_ms_per_image"] > 0 and results["loader_1_workers_images_per_s"] > 0
