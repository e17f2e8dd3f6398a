"""On a CUDA GPU: a run with --amp and channels_last, the data path's defaults, device results.

Marked ``cuda``: skipped without a GPU (``tests/conftest.py``); ``benchmarks/gpu_check.sh`` runs them
with ``pytest -m cuda`` on a GPU machine.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from wsolbench.cache import read_meta
from wsolbench.cli.main import main
from wsolbench.runtime import Runtime, loader_workers

pytestmark = pytest.mark.cuda

TINY = [
    "--backbone", "tinycnn", "--image-size", "32", "--batch-size", "16", "--epochs", "1",
    "--set", "backbone.width=8", "--set", "head.channels=16",
    "--set", "dataset.num_train=64", "--set", "dataset.num_test=32", "--quiet",
]  # fmt: skip


@pytest.mark.parametrize("method", ["cam", "danet"])
def test_amp_channels_last_run_on_cuda(tmp_path, method, capsys):
    code = main(["run", "--method", method, "--device", "cuda", "--amp", "--set", "channels_last=true", *TINY,
                 "--out", str(tmp_path)])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    (run,) = tmp_path.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("loc_err_top1", "gt_known_loc", "maxboxacc", "maxboxacc_v2", "pxap"):
        assert math.isfinite(metrics[key]) and 0 <= metrics[key] <= 100, (key, metrics[key])
    assert read_meta(run / "cache.h5").extra["train_device"] == "cuda"


def test_loader_feeds_the_gpu_by_default():
    """train.workers null (the default) gives at least one loader process on CUDA, none on CPU."""
    assert loader_workers(None, Runtime(torch.device("cuda"))) >= 1
    assert loader_workers(None, Runtime(torch.device("cpu"))) == 0


def test_cuda_forward_matches_cpu(registry):
    """The same weights give the same class maps on CUDA (TF32 off) as on the CPU."""
    from wsolbench import config as configuration
    from wsolbench.train import build_parts

    config = configuration.resolve(
        registry,
        sets=["backbone.width=8", "head.channels=16", "dataset.num_train=4", "dataset.num_test=4"],
        flags={"backbone.name": "tinycnn", "method.name": "danet", "dataset.image_size": 32},
    )
    model = build_parts(config, registry).model.eval()
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    previous = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.no_grad():
            on_cpu = model(images)
            on_gpu = model.to("cuda")(images.to("cuda"))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous
    for cpu_maps, gpu_maps in zip(on_cpu.class_maps, on_gpu.class_maps, strict=True):
        torch.testing.assert_close(gpu_maps.cpu(), cpu_maps, rtol=1e-4, atol=1e-4)
