"""HDF5 map cache (:class:`wsolbench.cache.CacheWriter`, :func:`wsolbench.cache.read_cache`) vs numpy in memory.

``MAPS`` CAM-like maps of 224 x 224 (14 x 14 activations with one blob, upsampled bilinearly
and min-max normalised in float32, as a model produces them) are written through
``CacheWriter`` in evaluation batches and read back through ``read_cache`` in the chunks
:func:`wsolbench.evaluate.evaluate_cache` streams. The baseline keeps the same arrays (float32
maps) in memory as numpy: writing and reading are ``np.copyto`` into arrays allocated once.

Why not an in-memory ``.npy`` round trip (``np.save`` to / ``np.load`` from a ``BytesIO``): each
``np.load`` allocates 200 MB afresh, and on this machine (transparent huge pages, ``defrag =
madvise``, which numpy requests for large arrays) the kernel time to fault that memory in
varied from 0.01 to 0.25 s per call, 85-95% of the call: ``read_ratio`` moved between 2x and 21x
from run to run. ``np.copyto`` into memory touched once moves the same bytes without it.

Two layouts, as :class:`~wsolbench.cache.CacheWriter` picks them:

* ``boxes`` (datasets without masks: CUB, ILSVRC): both fused maps uint8, gzip.
* ``masks`` (datasets with masks, PxAP): the GT-class map float32, plus the uint8 masks.

Reported in ``benchmark.extra_info``: ``write_ratio`` and ``read_ratio`` (cache time / numpy
time, measured interleaved, the median over the pairs, in CPU time of the process: a cache write lasts
seconds, and on a loaded machine its wall time mostly measures how long other processes held
the cores; the wall-clock ratios are kept as ``*_wall_factor`` for context; the fsync at the
end of a write is therefore not counted) and ``bytes_per_map`` (size of the cache file on disk
/ number of maps written; each image has two maps, the predicted-class and the GT-class map,
and the per-image labels, logits, boxes and masks are counted in).
"""

from __future__ import annotations

import os
import statistics

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsolbench.cache import CacheMeta, CacheWriter, read_cache
from wsolbench.evaluate import CHUNK_SIZE

MAPS = 500  # images; each has 2 maps (predicted class, GT class)
SIDE = 224
WRITE_BATCH = 64  # the default eval.batch_size: what the runner hands the writer at a time
NUM_CLASSES = 200
WRITE_PAIRS = 2  # even: as many AB as BA pairs (CPU times are steady: module docstring)
READ_PAIRS = 4
#: Each numpy sample is the mean of this many calls (they are 10-50x shorter than the cache's).
NUMPY_REPEAT = 5

#: Asserted upper bounds (a loaded machine must not fail them; compare.py checks the baseline).
BOUNDS = {
    #            write_ratio read_ratio bytes_per_map (raw stored size: uint8 50,176 B, float32 200,704 B)
    "boxes": (400.0, 150.0, 25_000),
    "masks": (400.0, 150.0, 110_000),
}


def cam_like_maps(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(count, 224, 224)`` float32 maps in [0, 1] and their ``(count, 4)`` object boxes."""
    n = 14
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    centre = rng.uniform(3, n - 3, size=(count, 2)).astype(np.float32)
    sigma = rng.uniform(1.2, 3.5, size=(count, 2)).astype(np.float32)
    blob = np.exp(
        -0.5
        * (
            ((yy - centre[:, :1, None]) / sigma[:, :1, None]) ** 2
            + ((xx - centre[:, 1:, None]) / sigma[:, 1:, None]) ** 2
        )
    )
    low = blob + 0.25 * rng.random((count, n, n), dtype=np.float32)
    maps = F.interpolate(torch.from_numpy(low)[:, None], size=(SIDE, SIDE), mode="bilinear", align_corners=False)[:, 0]
    flat = maps.flatten(1)
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    maps = ((flat - lo) / (hi - lo)).view(count, SIDE, SIDE).numpy()
    scale = SIDE / n
    c, s = centre * scale, 2 * sigma * scale
    boxes = np.stack([c[:, 1] - s[:, 1], c[:, 0] - s[:, 0], c[:, 1] + s[:, 1], c[:, 0] + s[:, 0]], 1)
    return maps.astype(np.float32, copy=False), np.clip(boxes, 0, SIDE - 1).astype(np.int64)


def make_data() -> dict:
    """Deterministic maps (so ``bytes_per_map`` is reproducible): the GT-class map of every
    image, the predicted-class map (a different image's map for 30% of the images: wrong
    predictions), boxes, elliptic masks, labels and logits."""
    rng = np.random.default_rng(0)
    fused_gt, boxes = cam_like_maps(MAPS, rng)
    fused_pred = fused_gt.copy()
    wrong = rng.random(MAPS) < 0.3
    fused_pred[wrong] = fused_gt[np.roll(np.flatnonzero(wrong), 1)]
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rx, ry = np.maximum(1, (boxes[:, 2] - boxes[:, 0]) / 2), np.maximum(1, (boxes[:, 3] - boxes[:, 1]) / 2)
    masks = ((xx - cx[:, None, None]) / rx[:, None, None]) ** 2 + (
        (yy - cy[:, None, None]) / ry[:, None, None]
    ) ** 2 <= 1
    labels = rng.integers(0, NUM_CLASSES, MAPS)
    logits = rng.standard_normal((MAPS, NUM_CLASSES)).astype(np.float32)
    return {
        "image_ids": [f"img{i:05d}" for i in range(MAPS)],
        "labels": labels,
        "logits": logits,
        "fused_pred": fused_pred,
        "fused_gt": fused_gt,
        "boxes": boxes,
        "masks": masks.astype(np.uint8),
    }


@pytest.fixture(scope="module")
def data():
    return make_data()


def write_cache(path, data, has_masks: bool) -> None:
    meta = CacheMeta(method="cam", backbone="vgg16", dataset="bench", config={"seed": 0}, seed=0)
    with CacheWriter(
        path, meta=meta, num_images=MAPS, map_size=(SIDE, SIDE), num_classes=NUM_CLASSES, has_masks=has_masks
    ) as w:
        for start in range(0, MAPS, WRITE_BATCH):
            sl = slice(start, min(MAPS, start + WRITE_BATCH))
            w.write_batch(
                image_ids=data["image_ids"][sl],
                labels=data["labels"][sl],
                logits=data["logits"][sl],
                fused_pred=data["fused_pred"][sl],
                fused_gt=data["fused_gt"][sl],
                boxes=[b[None] for b in data["boxes"][sl]],
                masks=data["masks"][sl] if has_masks else None,
            )


def read_back(path, has_masks: bool) -> list[np.ndarray]:
    """Every map (and mask) decoded to float32, chunk by chunk as the evaluation streams them."""
    out = []
    with read_cache(path) as cache:
        for start in range(0, len(cache.labels), CHUNK_SIZE):
            sl = slice(start, start + CHUNK_SIZE)
            out += [cache.fused_pred[sl], cache.fused_gt[sl]]
            if has_masks:
                out.append(cache.masks[sl])
    return out


def numpy_arrays(data, has_masks: bool) -> list[np.ndarray]:
    names = ["labels", "logits", "fused_pred", "fused_gt", "boxes"] + (["masks"] if has_masks else [])
    return [data[name] for name in names]


def numpy_copy(source: list[np.ndarray], target: list[np.ndarray]) -> None:
    """The baseline: move the same arrays in memory (``np.copyto`` into arrays allocated once)."""
    for src, dst in zip(source, target, strict=True):
        np.copyto(dst, src)


@pytest.mark.parametrize("layout", ["boxes", "masks"])
def test_cache_write_read(benchmark, interleaved, tmp_path, data, layout):
    has_masks = layout == "masks"
    path = tmp_path / "cache.h5"
    arrays = numpy_arrays(data, has_masks)
    store = [np.empty_like(a) for a in arrays]  # the in-memory "file"
    out = [np.empty_like(a) for a in arrays]  # what a read hands over
    numpy_copy(arrays, store)  # touch every page once, outside the timing
    numpy_copy(store, out)

    def measure():
        write_cache(path, data, has_masks)  # warm-up (first file system and HDF5 use), not timed
        read_back(path, has_masks)
        write = interleaved(
            lambda: write_cache(path, data, has_masks),
            lambda: numpy_copy(arrays, store),
            WRITE_PAIRS,
            second_repeat=NUMPY_REPEAT,
        )
        read = interleaved(
            lambda: read_back(path, has_masks), lambda: numpy_copy(store, out), READ_PAIRS, second_repeat=NUMPY_REPEAT
        )
        return write, read

    write, read = benchmark.pedantic(measure, rounds=1, iterations=1)

    # the benchmark measured the real thing: what is read back is what the metrics would see
    maps = read_back(path, has_masks)
    got_pred = np.concatenate(maps[0 :: 3 if has_masks else 2])
    assert np.array_equal(
        np.floor(got_pred.astype(np.float64) * 255), np.floor(data["fused_pred"].astype(np.float64) * 255)
    )
    if has_masks:
        assert np.array_equal(np.concatenate(maps[1::3]), data["fused_gt"])

    size = os.path.getsize(path)
    bytes_per_map = size / (2 * MAPS)
    benchmark.extra_info.update(
        write_ratio=round(write.paired_cpu_ratio, 2),
        read_ratio=round(read.paired_cpu_ratio, 2),
        bytes_per_map=round(bytes_per_map),
        cache_write_cpu_s=round(statistics.median(write.first_cpu), 4),
        numpy_write_cpu_s=round(statistics.median(write.second_cpu), 4),
        cache_read_cpu_s=round(statistics.median(read.first_cpu), 4),
        numpy_read_cpu_s=round(statistics.median(read.second_cpu), 4),
        write_wall_factor=round(write.ratio, 2),
        read_wall_factor=round(read.ratio, 2),
        file_bytes=size,
        maps=2 * MAPS,
        map_px=f"{SIDE}x{SIDE}",
    )
    print(
        f"\n{layout}: {2 * MAPS} maps {SIDE}x{SIDE}, CPU time: "
        f"write {statistics.median(write.first_cpu):.3f} s vs numpy {statistics.median(write.second_cpu):.4f} s "
        f"(x{write.paired_cpu_ratio:.1f}; wall x{write.ratio:.1f}), "
        f"read {statistics.median(read.first_cpu):.3f} s vs numpy {statistics.median(read.second_cpu):.4f} s "
        f"(x{read.paired_cpu_ratio:.1f}; wall x{read.ratio:.1f}), {bytes_per_map / 1024:.1f} KiB/map on disk"
    )
    max_write, max_read, max_bytes = BOUNDS[layout]
    assert bytes_per_map <= max_bytes, f"{layout}: {bytes_per_map:.0f} bytes per map on disk (bound {max_bytes})"
    write_ratio, read_ratio = write.paired_cpu_ratio, read.paired_cpu_ratio
    assert write_ratio <= max_write, f"{layout}: cache write is {write_ratio:.1f}x numpy's (bound {max_write})"
    assert read_ratio <= max_read, f"{layout}: cache read is {read_ratio:.1f}x numpy's (bound {max_read})"
