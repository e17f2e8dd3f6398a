"""GPU readiness check: training throughput and memory, host syncs, predict -> cache -> eval, CUDA tests.

Run it through ``benchmarks/gpu_check.sh`` (which installs the project without dependencies first)
or directly::

    python benchmarks/gpu_check.py                           # the full check on CUDA, under 8 minutes on an H200
    python benchmarks/gpu_check.py --device cpu --tiny       # a dry run on CPU at tiny sizes (what CI runs)

What it does, in one process, through wsolbench's own runner (``wsolbench.runner.execute``: the
same path as ``wsolbench run``):

1. **Training throughput**: every backbone x method (default vgg16, resnet50, inceptionv3 x danet,
   cam) at 224 px, batch 32, ``--steps`` steps, in fp32 and with ``--amp``, without and with
   ``channels_last``: images/s over the steps after ``--warmup`` (timed between two of the
   trainer's own loss reads, which wait for the device) and the peak GPU memory of training.
   The images come from a small pool of synthetic images generated once (dataset ``gpucheck``,
   registered here), so that the numbers measure the model step, not the CPU that renders
   synthetic images (about 30 ms per 224 px image on one core). How fast real JPEGs can be fed
   is ``benchmarks/loader_throughput.py``'s question.
2. **Host-device synchronisation**: the synchronising CUDA calls one training loop makes
   (``torch.cuda.set_sync_debug_mode``), fp32 and AMP, for ``--steps`` steps with
   ``train.log_every`` equal to the steps: the loop itself should need one (the loss read),
   the GradScaler one per step under AMP (its inf check), nothing else.
3. **predict -> cache -> eval**: ``--maps`` test images of 224 px through a trained resnet50 / cam
   run: maps/s of the whole stage and of the evaluation alone (``wsolbench eval``).
4. **CUDA tests**: ``pytest -m cuda`` (skipped without a GPU).

``--budget`` seconds cap the training cases: the ones left over are listed as not run. Exit status:
0, or 1 when a case failed or the CUDA tests failed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsolbench import config as configuration
from wsolbench import hookimpl
from wsolbench.plugins import PluginInfo, load_plugins
from wsolbench.progress import Progress
from wsolbench.registry import Registry
from wsolbench.runner import execute
from wsolbench.specs import Sample, WSOLDataset

ROOT = Path(__file__).resolve().parent.parent
DATASET = "gpucheck"


# --------------------------------------------------------------------------- data: a pool of synthetic images


class PooledImages(WSOLDataset):
    """``length`` items cycling over a pool of pre-rendered synthetic items (unique image ids)."""

    has_masks = True

    def __init__(self, inner: WSOLDataset, pool: list[Any], length: int):
        self.inner, self.pool, self.length = inner, pool, length
        self.hierarchy = inner.hierarchy
        self.split = inner.split

    def __len__(self) -> int:
        return self.length

    @property
    def image_ids(self) -> list[str]:
        return [f"{self.split}/{i:06d}" for i in range(self.length)]

    def labels(self) -> np.ndarray:
        return np.array([self.pool[i % len(self.pool)].label for i in range(self.length)], dtype=np.int64)

    def __getitem__(self, index: int) -> Sample:
        item = self.pool[int(index) % len(self.pool)]
        image = torch.from_numpy(item.image).permute(2, 0, 1).float().div_(255.0)
        return Sample(
            image=self.normalize(image),
            label=int(item.label),
            boxes=torch.from_numpy(item.box).view(1, 4),
            mask=torch.from_numpy(item.mask),
            image_id=f"{self.split}/{int(index):06d}",
        )


_POOLS: dict[tuple[str, int, int], list[Any]] = {}


def pooled_synthetic(
    *, split: str = "train", root: object = None, num_train: int = 64, num_test: int = 64, image_size: int = 224
) -> PooledImages:
    """Synthetic images (the ``synthetic`` dataset's), 64 rendered once per split and size, cycled.

    Args:
        split: ``"train"`` or ``"test"``.
        root: Ignored.
        num_train, num_test: Length of each split.
        image_size: Side of the images in pixels.
    """
    del root
    from wsolbench_plugins.datasets.synthetic import synthetic  # noqa: PLC0415 - the built-in plugin

    inner = synthetic(split=split, num_train=64, num_test=64, image_size=image_size)
    key = (split, image_size, 64)
    if key not in _POOLS:
        _POOLS[key] = [inner.generate(i) for i in range(64)]
    return PooledImages(inner, _POOLS[key], num_train if split == "train" else num_test)


class _Plugin:
    @hookimpl
    def register_datasets(self, register):
        register(DATASET, pooled_synthetic)


def make_registry() -> Registry:
    """The installed plugins plus this script's ``gpucheck`` dataset."""
    plugins = load_plugins()
    plugins.manager.register(_Plugin(), name=DATASET)
    plugins.info[DATASET] = PluginInfo(DATASET, "benchmarks/gpu_check.py", "-")
    return Registry(plugins)


# --------------------------------------------------------------------------- measuring through the trainer's progress


class Recorder(Progress):
    """A silent :class:`Progress` that timestamps the training loop.

    ``marks``: (images seen, time) after every step whose loss was read (the read waits for the
    device, so these times are the device's); ``epoch_end``: when the loop finished;
    ``peak_bytes``: peak CUDA memory of the loop; ``syncs``: synchronising CUDA calls during
    the loop when ``count_syncs``.
    """

    def __init__(self, device: torch.device, *, count_syncs: bool = False):
        super().__init__("plain", quiet=True)
        self.device, self.count_syncs = device, count_syncs
        self.marks: list[tuple[int, float]] = []
        self.epoch_end = 0.0
        self.peak_bytes: int | None = None
        self.syncs: int | None = None
        self._seen_total = 0
        self._catch: Any = None

    def start_epoch(self, epoch: int, epochs: int, batches: int) -> None:
        super().start_epoch(epoch, epochs, batches)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            if self.count_syncs:
                self._catch = warnings.catch_warnings(record=True)
                self._records = self._catch.__enter__()
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
        self.marks.append((0, time.perf_counter()))

    def step(self, batch: int, images: int, loss: float | None) -> None:
        super().step(batch, images, loss)
        self._seen_total += images
        if loss is not None:
            self.marks.append((self._seen_total, time.perf_counter()))

    def end_epoch(self, **metrics: float) -> None:
        if self.device.type == "cuda":
            if self._catch is not None:
                torch.cuda.set_sync_debug_mode("default")
                self.syncs = sum("synchroniz" in str(w.message) for w in self._records)
                self._catch.__exit__(None, None, None)
                self._catch = None
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        self.epoch_end = time.perf_counter()
        super().end_epoch(**metrics)

    def images_per_second_after(self, warmup_images: int) -> float:
        """Throughput between the first loss read at or after ``warmup_images`` and the last one."""
        start = next((m for m in self.marks if m[0] >= warmup_images and m[0] > 0), None)
        end = self.marks[-1]
        if start is None or end[0] <= start[0]:
            return float("nan")
        return (end[0] - start[0]) / (end[1] - start[1])


# --------------------------------------------------------------------------- the cases


@dataclasses.dataclass
class Sizes:
    image_size: int
    batch_size: int
    steps: int
    warmup: int
    maps: int


def run_config(
    registry: Registry, args: argparse.Namespace, sizes: Sizes, *, backbone: str, method: str, amp: bool,
    channels_last: bool, steps: int, log_every: int, test_images: int, save_maps: bool = False,
) -> dict[str, Any]:  # fmt: skip
    sets = [
        f"dataset.num_train={steps * sizes.batch_size}",
        f"dataset.num_test={test_images}",
        "train.epochs=1",
        f"train.batch_size={sizes.batch_size}",
        f"train.log_every={log_every}",
        "train.lr=0.001",
        "train.lr_decay_epochs=[]",
        f"channels_last={str(channels_last).lower()}",
        f"eval.batch_size={sizes.batch_size}",
        f"eval.save_maps={str(save_maps).lower()}",
        *args.sets,
    ]
    flags = {
        "method.name": method,
        "backbone.name": backbone,
        "dataset.name": DATASET,
        "dataset.image_size": sizes.image_size,
        "device": args.device,
        "amp": amp,
    }
    return configuration.resolve(registry, sets=sets, flags=flags)


def train_case(registry, args, sizes, out: Path, device, **case) -> dict[str, Any]:
    """Train one case for ``sizes.steps`` steps; images/s after warm-up and peak memory."""
    config = run_config(
        registry, args, sizes, **case, steps=sizes.steps, log_every=sizes.warmup, test_images=sizes.batch_size
    )
    recorder = Recorder(device)
    started = time.perf_counter()
    execute(config, registry, out=out, force=True, progress=recorder)
    return {
        **case,
        "images_per_s": recorder.images_per_second_after(sizes.warmup * sizes.batch_size),
        "peak_mib": None if recorder.peak_bytes is None else recorder.peak_bytes / 2**20,
        "seconds": time.perf_counter() - started,
    }


def sync_case(registry, args, sizes, out: Path, device, *, amp: bool) -> dict[str, Any]:
    """Synchronising CUDA calls of one training loop of ``sizes.steps`` steps, one loss read."""
    case = {"backbone": args.sync_backbone, "method": "cam", "amp": amp, "channels_last": False}
    config = run_config(registry, args, sizes, **case, steps=sizes.steps, log_every=sizes.steps, test_images=2)
    recorder = Recorder(device, count_syncs=True)
    execute(config, registry, out=out, force=True, progress=recorder)
    return {**case, "steps": sizes.steps, "syncs": recorder.syncs}


def predict_eval_case(registry, args, sizes, out: Path, device) -> dict[str, Any]:
    """A one-step resnet50 / cam run predicting ``sizes.maps`` test images; maps/s."""
    case = {"backbone": args.predict_backbone, "method": "cam", "amp": False, "channels_last": False}
    config = run_config(registry, args, sizes, **case, steps=1, log_every=1, test_images=sizes.maps, save_maps=True)
    recorder = Recorder(device)
    result = execute(config, registry, out=out, force=True, progress=recorder)
    after_training = time.perf_counter() - recorder.epoch_end  # checkpoint, predict, cache, evaluate
    from wsolbench.cli.main import main as cli_main  # noqa: PLC0415

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli_main(["eval", str(result.run_dir)])
    evaluation = time.perf_counter() - started
    if code:
        raise RuntimeError(f"wsolbench eval {result.run_dir} exited with {code}")
    return {
        **case,
        "maps": sizes.maps,
        "predict_cache_eval_maps_per_s": sizes.maps / after_training,
        "eval_maps_per_s": sizes.maps / evaluation,
        "metrics": {k: result.metrics.get(k) for k in ("maxboxacc", "maxboxacc_v2", "pxap") if k in result.metrics},
    }


# --------------------------------------------------------------------------- report


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if value != value else f"{value:,.{digits}f}"
    return str(value)


def print_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> None:
    from tabulate import tabulate  # noqa: PLC0415

    print(tabulate([[fmt(r.get(key)) for key, _ in columns] for r in rows], [title for _, title in columns]))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (torch {torch.__version__}, CUDA {torch.version.cuda})"
    return f"CPU ({torch.get_num_threads()} torch threads, torch {torch.__version__})"


def run_tests(path: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", path]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return {"command": " ".join(command[1:]), "exit": done.returncode, "summary": lines[-1] if lines else ""}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes for a dry run (CPU): 80 px, batch 2, 3 steps")
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "resnet50", "inceptionv3"])
    parser.add_argument("--methods", nargs="+", default=["danet", "cam"])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="training steps per case")
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed (cudnn, allocator warm-up)")
    parser.add_argument("--maps", type=int, default=512, help="test images of the predict -> cache -> eval stage")
    parser.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="extra config key (repeatable)"
    )
    parser.add_argument("--sync-backbone", default="resnet50")
    parser.add_argument("--predict-backbone", default="resnet50")
    parser.add_argument("--budget", type=float, default=360.0, help="seconds for the training cases (default 360)")
    parser.add_argument("--tests", default="tests", help="where pytest -m cuda looks (default: tests)")
    parser.add_argument("--no-tests", action="store_true", help="skip pytest -m cuda")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--out", type=Path, help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.tiny:
        args.image_size, args.batch_size, args.steps, args.warmup, args.maps = 80, 2, 3, 1, 8
    if args.warmup >= args.steps:
        parser.error(f"--warmup {args.warmup} must be below --steps {args.steps}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from wsolbench.runtime import select_device  # noqa: PLC0415

    device = select_device(args.device)
    if device.type == "cpu":
        # a dry run: intra-op threads fighting other processes for a few cores made a tinycnn step 7x slower
        torch.set_num_threads(1)
    sizes = Sizes(args.image_size, args.batch_size, args.steps, args.warmup, args.maps)
    registry = make_registry()
    started = time.perf_counter()
    print(f"wsolbench GPU check on {device_name(device)}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{sizes.image_size} px, batch {sizes.batch_size}, {sizes.steps} steps per case ({sizes.warmup} warm-up)")
    report: dict[str, Any] = {"device": device_name(device), "date": time.strftime("%Y-%m-%d"), "sizes": vars(sizes)}
    failed = False
    with tempfile.TemporaryDirectory(prefix="wsolbench-gpu-check-") as tmp:
        out = args.out or Path(tmp)
        rows, skipped = [], []
        for backbone in args.backbones:
            for method in args.methods:
                for amp in (False, True):
                    for channels_last in (False, True):
                        case = {"backbone": backbone, "method": method, "amp": amp, "channels_last": channels_last}
                        if time.perf_counter() - started > args.budget:
                            skipped.append(case)
                            continue
                        try:
                            rows.append(train_case(registry, args, sizes, out, device, **case))
                        except Exception as error:  # noqa: BLE001 - report the case, go on with the others
                            failed = True
                            rows.append({**case, "error": f"{type(error).__name__}: {' '.join(str(error).split())}"})
                        if device.type == "cuda":
                            torch.cuda.empty_cache()
        print("\nTraining throughput (images/s after warm-up) and peak memory of training")
        print_table(
            rows,
            [("backbone", "backbone"), ("method", "method"), ("amp", "amp"), ("channels_last", "channels_last"),
             ("images_per_s", "images/s"), ("peak_mib", "peak MiB"), ("seconds", "case s"), ("error", "error")],
        )  # fmt: skip
        if skipped:
            print(f"not run (over --budget {args.budget:g} s): " + "; ".join(json.dumps(c) for c in skipped))
        report["training"], report["not_run"] = rows, skipped

        if device.type == "cuda":
            syncs = [sync_case(registry, args, sizes, out, device, amp=amp) for amp in (False, True)]
            print(f"\nSynchronising CUDA calls in one training loop ({sizes.steps} steps, one loss read at the end)")
            print_table(syncs, [("backbone", "backbone"), ("amp", "amp"), ("steps", "steps"), ("syncs", "syncs")])
            report["syncs"] = syncs
        else:
            print("\nSynchronising CUDA calls: not measured (no CUDA device)")

        try:
            stage = predict_eval_case(registry, args, sizes, out, device)
            print(f"\npredict -> cache -> eval, {stage['maps']} images of {sizes.image_size} px ({stage['backbone']})")
            print(
                f"  whole stage (checkpoint, predict, cache, evaluate): {stage['predict_cache_eval_maps_per_s']:,.1f} "
                f"maps/s; evaluation alone (wsolbench eval): {stage['eval_maps_per_s']:,.1f} maps/s"
            )
            report["predict_eval"] = stage
        except Exception as error:  # noqa: BLE001
            failed = True
            print(f"\npredict -> cache -> eval failed: {type(error).__name__}: {error}")

    if not args.no_tests:
        tests = run_tests(args.tests)
        print(f"\npytest -m cuda {args.tests}: {tests['summary']} (exit {tests['exit']})")
        report["cuda_tests"] = tests
        failed |= tests["exit"] not in (0, 5)  # 5: nothing collected
    total = time.perf_counter() - started
    report["seconds"] = total
    print(f"\ntotal {total:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
