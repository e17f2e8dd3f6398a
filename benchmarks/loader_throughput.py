"""How many CUB-like JPEGs per second one DataLoader worker decodes and augments at 224 px.

Run:  python benchmarks/loader_throughput.py [--images 256] [--batches 6] [--workers 1 2]

Writes ``--images`` JPEGs of CUB-200-2011's typical size (500 x 375 and 375 x 500, quality 90, a
smooth textured background with an ellipse "bird", about 70 KB each; CUB's 11,788 images take
1.1 GB) into a temporary
folder laid out as the official ``CUB_200_2011`` archive, builds the ``cub`` dataset's training
split through the registry (so the transforms are ``plugins/datasets/_transforms.py``'s
``transform_sample``: resize 256, random 224 crop, random flip, to tensor, normalise) and measures:

* in-process: CPU time per sample of ``dataset[i]`` (decode + augment + normalise), one core;
* a ``DataLoader`` with ``--workers`` processes, batch 32 (the paper's 30, rounded), the trainer's
  collate function: images/s over ``--batches`` batches after the first (worker start-up).

The throughput a GPU needs is ``benchmarks/gpu_check.py``'s images/s; divide it by the per-worker
rate to get ``train.workers``. Nothing is asserted; on a shared machine the DataLoader numbers
depend on the free cores (the in-process CPU time does not).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader

from wsolbench.data import collate_samples
from wsolbench.registry import default_registry

CLASSES = 10


def write_cub_like(root: Path, n: int, seed: int = 0) -> Path:
    """An official-layout ``CUB_200_2011`` folder with ``n`` training JPEGs; returns it."""
    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    (base / "images").mkdir(parents=True)
    names = [f"{i + 1:03d}.Bird_{i + 1}" for i in range(CLASSES)]
    (base / "classes.txt").write_text("".join(f"{i + 1} {name}\n" for i, name in enumerate(names)))
    images, labels, split, boxes = [], [], [], []
    for image_id in range(1, n + 1):
        label = (image_id - 1) % CLASSES
        width, height = (500, 375) if image_id % 3 else (375, 500)
        low = rng.random((height // 25 + 2, width // 25 + 2, 3))
        background = np.asarray(Image.fromarray((low * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC))
        texture = rng.normal(0, 12, (height, width, 3))
        image = Image.fromarray(np.clip(background + texture, 0, 255).astype(np.uint8))
        bw, bh = int(rng.integers(width // 4, width // 2)), int(rng.integers(height // 4, height // 2))
        x, y = int(rng.integers(0, width - bw)), int(rng.integers(0, height - bh))
        ImageDraw.Draw(image).ellipse((x, y, x + bw, y + bh), fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        rel = f"{names[label]}/{names[label].split('.')[1]}_{image_id:05d}.jpg"
        (base / "images" / rel).parent.mkdir(exist_ok=True)
        image.save(base / "images" / rel, quality=90)
        images.append(f"{image_id} {rel}\n")
        labels.append(f"{image_id} {label + 1}\n")
        split.append(f"{image_id} 1\n")
        boxes.append(f"{image_id} {x}.0 {y}.0 {bw}.0 {bh}.0\n")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("bounding_boxes.txt", boxes),
    ):
        (base / name).write_text("".join(lines))
    return base


def in_process_ms(dataset, count: int) -> float:
    """CPU ms per ``dataset[i]``, one thread."""
    start = time.process_time()
    for i in range(count):
        dataset[i % len(dataset)]
    return 1e3 * (time.process_time() - start) / count


def loader_images_per_second(dataset, workers: int, batches: int, batch_size: int = 32) -> float:
    """Images/s of a shuffled DataLoader over ``batches`` batches after the first."""
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=True, num_workers=workers, collate_fn=collate_samples, drop_last=True
    )
    iterator = iter(loader)
    next(iterator)  # worker start-up
    start = time.perf_counter()
    seen = 0
    for _ in range(batches):
        seen += len(next(iterator).image_ids)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256, help="JPEGs written (>= 32 x (batches + 1))")
    parser.add_argument("--batches", type=int, default=6, help="timed batches of 32 per DataLoader")
    parser.add_argument("--workers", type=int, nargs="+", default=[1], help="DataLoader worker counts to time")
    args = parser.parse_args(argv)
    if args.images < 32 * (args.batches + 1):
        parser.error(f"--images must be at least 32 x (--batches + 1) = {32 * (args.batches + 1)}")
    torch.set_num_threads(1)  # a worker process runs one thread; the in-process figure matches it
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="wsolbench-loader-") as tmp:
        root = write_cub_like(Path(tmp), args.images)
        size_kb = np.mean([p.stat().st_size for p in root.glob("images/*/*.jpg")]) / 1024
        dataset = default_registry().build("datasets", "cub", split="train", root=str(root), hierarchy="flat")
        dataset[0]  # warm the imports
        ms = in_process_ms(dataset, min(args.images, 128))
        results["in_process_ms_per_image"] = ms
        print(f"{args.images} CUB-like JPEGs (500 x 375, {size_kb:.0f} KB on average), training transforms to 224 px:")
        print(f"  in-process, one thread: {ms:.2f} ms CPU per image = {1e3 / ms:.0f} images/s per core")
        for workers in args.workers:
            rate = loader_images_per_second(dataset, workers, args.batches)
            results[f"loader_{workers}_workers_images_per_s"] = rate
            print(f"  DataLoader, {workers} worker{'s' if workers > 1 else ''}, batch 32: {rate:.0f} images/s")
    return results


if __name__ == "__main__":
    main()
