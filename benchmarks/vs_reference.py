"""wsolbench's box metrics against the reference evaluator itself, on the same maps.

The reference is clovaai/wsolevaluation's ``BoxEvaluator.accumulate`` (``evaluation.py``), run
unchanged in its own virtual environment (it needs ``np.float``: numpy < 1.24), never vendored
here. This script, run with the project's python, generates the maps of ``bench_maps.py`` per
kind, hands the first few to the reference's python in a subprocess (a temporary folder holds
the maps and stub ``torch`` / ``data_loaders`` / ``config`` modules, which ``evaluation.py``
imports but ``BoxEvaluator`` does not use for in-memory maps), checks that both give the same
per-threshold correct counts, and prints ms per map and the ratios as a Markdown table.

Setup and run (see benchmarks/RESULTS.md)::

    git -C /tmp clone https://github.com/clovaai/wsolevaluation   # or copy evaluation.py + util.py
    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install numpy==1.23.5 opencv-python-headless==4.8.1.78
    python benchmarks/vs_reference.py --reference-dir /tmp/wsolevaluation \\
        --reference-python /tmp/refvenv/bin/python --reference-json /tmp/reference_times.json

``--reference-json`` caches the reference's timings (minutes on noisy maps at 0.001) so that
re-runs only re-time wsolbench. Times: wsolbench runs ``box_accuracy`` on ``--maps`` maps with
every numba thread (wall clock) and reports its CPU time too; the reference runs one map at a
time on one core. ``wall x`` = reference ms per map / wsolbench wall ms per map, ``CPU x`` the
same with CPU times (the work done, independent of the number of cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METRICS = {"MaxBoxAccV2": ((30, 50, 70), True), "MaxBoxAcc": ((50,), False)}

_STUBS = {
    "torch/__init__.py": "",
    "torch/utils/__init__.py": "",
    "torch/utils/data.py": "class Dataset:\n    pass\n\nclass DataLoader:\n    pass\n",
    "config.py": "def str2bool(v):\n    return str(v).lower() in ('yes', 'true', 't', '1')\n",
    "data_loaders.py": textwrap.dedent(
        """
        # Stand-ins for wsolevaluation's metadata readers: the metadata is a dict built in memory.
        def configure_metadata(metadata_root):
            return metadata_root

        def get_image_ids(metadata, proxy=False):
            return list(metadata["ids"])

        def get_bounding_boxes(metadata):
            return metadata["boxes"]

        def get_image_sizes(metadata):
            return metadata["sizes"]

        def get_mask_paths(metadata):
            raise NotImplementedError
        """
    ),
}


def _reference_main(npz: str, reference_dir: str, interval: float, metric: str) -> None:
    """Inside the reference's python: time ``BoxEvaluator.accumulate`` map by map, print JSON."""
    stubs = Path(npz).parent / "stubs"
    for name, text in _STUBS.items():
        (stubs / name).parent.mkdir(parents=True, exist_ok=True)
        (stubs / name).write_text(text)
    sys.path[:0] = [str(stubs), reference_dir]
    import evaluation  # noqa: PLC0415  (the reference, from reference_dir)

    data = np.load(npz)
    maps, flat, offsets = data["maps"], data["boxes"], data["offsets"]
    ids = [str(i) for i in range(len(maps))]
    metadata = {
        "ids": ids,
        "boxes": {ids[i]: flat[offsets[i] : offsets[i + 1]].tolist() for i in range(len(maps))},
        "sizes": {i: (maps.shape[2], maps.shape[1]) for i in ids},
    }
    ious, multi = METRICS[metric]
    thresholds = list(np.arange(0, 1, interval))
    evaluator = evaluation.BoxEvaluator(
        metadata=metadata,
        dataset_name="bench",
        split="test",
        cam_threshold_list=thresholds,
        iou_threshold_list=list(ious),
        mask_root=None,
        multi_contour_eval=multi,
    )
    wall = cpu = 0.0
    for i, image_id in enumerate(ids):
        scoremap = maps[i].astype(np.float64)
        w0, c0 = time.perf_counter(), time.process_time()
        evaluator.accumulate(scoremap, image_id)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    counts = {str(iou): evaluator.num_correct[iou].astype(int).tolist() for iou in ious}
    print(json.dumps({"wall_ms": 1e3 * wall / len(ids), "cpu_ms": 1e3 * cpu / len(ids), "counts": counts}))


def _reference(args, kind: str, interval: float, metric: str, maps, boxes, cache: dict) -> dict:
    key = f"{kind}/{interval}/{metric}/{len(maps)}"
    if key in cache:
        return cache[key]
    with tempfile.TemporaryDirectory(prefix="wsolbench-ref-") as tmp:
        npz = Path(tmp) / "maps.npz"
        offsets = np.cumsum([0] + [len(b) for b in boxes])
        np.savez(npz, maps=maps, boxes=np.concatenate(boxes).astype(np.int64), offsets=offsets)
        out = subprocess.run(
            [args.reference_python, __file__, "_reference", str(npz), args.reference_dir, repr(interval), metric],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    cache[key] = json.loads(out.strip().splitlines()[-1])
    if args.reference_json:
        Path(args.reference_json).write_text(json.dumps(cache, indent=1))
    return cache[key]


def _ours(maps, boxes, interval: float, metric: str, repeats: int) -> tuple[float, float]:
    """Best-of-``repeats`` (wall ms, CPU ms) per map of ``box_accuracy`` on all the maps."""
    from wsolbench.metrics import box_accuracy  # noqa: PLC0415

    ious, multi = METRICS[metric]
    box_accuracy(maps[:2], boxes[:2], cam_curve_interval=interval, iou_thresholds=ious, multi_contour=multi)
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        box_accuracy(maps, boxes, cam_curve_interval=interval, iou_thresholds=ious, multi_contour=multi)
        sample = (time.perf_counter() - w0, time.process_time() - c0)
        best = min(best, sample)
    return 1e3 * best[0] / len(maps), 1e3 * best[1] / len(maps)


def main(argv: list[str] | None = None) -> None:
    from bench_maps import KINDS, benchmark_maps  # noqa: PLC0415

    from wsolbench.metrics import box_correct_counts, cam_thresholds  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-dir", required=True, help="folder with wsolevaluation's evaluation.py, util.py")
    parser.add_argument("--reference-python", required=True, help="python of a venv with numpy<1.24 and opencv")
    parser.add_argument("--reference-json", help="cache of the reference's timings (read, then updated)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--metrics", nargs="+", default=list(METRICS), choices=list(METRICS))
    parser.add_argument("--intervals", nargs="+", type=float, default=[0.01, 0.001])
    parser.add_argument("--maps", type=int, default=500, help="maps wsolbench is timed on, per kind")
    parser.add_argument("--reference-maps", type=int, default=20, help="maps the reference is timed on")
    parser.add_argument(
        "--reference-maps-slow", type=int, default=5, help="reference maps for noisy, noise and rings at 0.001"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cache = {}
    if args.reference_json and Path(args.reference_json).exists():
        cache = json.loads(Path(args.reference_json).read_text())

    print(
        "| maps | metric | interval | reference ms/map (maps) | wsolbench wall ms/map | CPU ms/map | wall x | CPU x |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind in args.kinds:
        maps, boxes, _ = benchmark_maps(args.maps, kind=kind)
        for metric in args.metrics:
            for interval in args.intervals:
                slow = interval < 0.005 and kind in ("noisy", "noise", "rings")
                n_ref = min(args.maps, args.reference_maps_slow if slow else args.reference_maps)
                ref = _reference(args, kind, interval, metric, maps[:n_ref], boxes[:n_ref], cache)
                ious, multi = METRICS[metric]
                counts = box_correct_counts(
                    maps[:n_ref],
                    boxes[:n_ref],
                    thresholds=cam_thresholds(interval),
                    iou_thresholds=ious,
                    multi_contour=multi,
                )[0]
                for a, iou in enumerate(ious):
                    if counts[a].tolist() != ref["counts"][str(iou)]:
                        raise SystemExit(f"{kind} {metric} {interval}: counts differ from the reference at IoU {iou}")
                wall, cpu = _ours(maps, boxes, interval, metric, args.repeats)
                print(
                    f"| {kind} | {metric} | {interval:g} | {ref['cpu_ms']:,.1f} ({n_ref}) | {wall:.3f} | {cpu:.3f} "
                    f"| {ref['cpu_ms'] / wall:,.0f} | {ref['cpu_ms'] / cpu:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_reference":
        _reference_main(sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5])
    else:
        sys.path.insert(0, str(HERE))
        main()
