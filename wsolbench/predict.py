"""Inference on the test split: logits and localization maps streamed into the HDF5 cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader

from wsolbench.cache import CacheMeta, CacheWriter
from wsolbench.data import Batch, collate_samples
from wsolbench.metrics import normalize_scoremap
from wsolbench.model import WSOLModel
from wsolbench.runtime import Runtime, autocast, loader_workers
from wsolbench.specs import WSOLDataset, minmax_normalize


def upsample_normalized(maps: Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(B, h, w)`` maps -> bilinear resize to ``size`` -> per-image min-max, float32.

    Callers pass maps already min-max normalised at their own resolution (as
    :meth:`Method.fuse` does), so a constant map stays all zeros instead of having its
    rounding noise stretched into a pattern.

    float32 so that the cache stores exactly the maps that were scored (its float32
    GT-class map is then bit-exact for PxAP).
    """
    resized = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return normalize_scoremap(resized.cpu().numpy()).astype(np.float32)


def normalize_each_map(maps: Tensor) -> np.ndarray:
    """``(B, M, h, w)`` -> each ``(h, w)`` map min-max normalised to [0, 1], float32 numpy."""
    b, m, h, w = maps.shape
    return minmax_normalize(maps.float().reshape(b * m, h, w)).reshape(b, m, h, w).cpu().numpy()


def predict_batch(model: WSOLModel, batch: Batch, runtime: Runtime, *, amp: bool, save_maps: bool) -> dict[str, Any]:
    """Run the model on one batch; fused maps come back at the images' resolution, normalised.

    With ``save_maps``, the method's :meth:`~wsolbench.specs.Method.extra_maps` of the
    ground-truth classes come back too (``extras``: name -> ``(B, M, h, w)``, each map
    normalised; ``extra_names``: name -> the ``M`` map titles).
    """
    images = batch.images.to(runtime.device)
    labels = batch.labels.to(runtime.device)
    size = tuple(images.shape[-2:])
    with torch.no_grad(), autocast(runtime.device, amp):
        outputs = model(images)
        logits = outputs.logits[-1].float()
        gt_classes = model.targets(labels)
        fused_pred = model.method.fuse(outputs, model.targets(logits.argmax(1)))
        fused_gt = model.method.fuse(outputs, gt_classes)
        extras = model.method.extra_maps(model, outputs, gt_classes) if save_maps else {}
    return {
        "image_ids": batch.image_ids,
        "labels": batch.labels.numpy(),
        "logits": logits.cpu().numpy(),
        "fused_pred": upsample_normalized(fused_pred, size),
        "fused_gt": upsample_normalized(fused_gt, size),
        "boxes": [b.numpy() for b in batch.boxes],
        "masks": batch.masks.numpy() if batch.masks is not None else None,
        "extras": {name: normalize_each_map(mapset.maps) for name, mapset in extras.items()},
        "extra_names": {name: tuple(mapset.names) for name, mapset in extras.items()},
    }


def shard_indices(size: int, runtime: Runtime) -> list[int]:
    """This rank's share of the test images (every rank takes every world_size-th image)."""
    return list(range(runtime.rank, size, runtime.world_size))


def iterate_predictions(
    model: WSOLModel, dataset: WSOLDataset, config: dict[str, Any], runtime: Runtime
) -> Iterator[dict[str, Any]]:
    """Predictions for this rank's shard, batch by batch, in index order."""
    evaluation = config["eval"]
    subset = torch.utils.data.Subset(dataset, shard_indices(len(dataset), runtime))
    loader = DataLoader(
        subset,
        batch_size=evaluation["batch_size"],
        shuffle=False,
        collate_fn=collate_samples,
        num_workers=loader_workers(config["train"]["workers"], runtime),
        pin_memory=runtime.device.type == "cuda",
    )
    model.eval()
    for batch in loader:
        yield predict_batch(model, batch, runtime, amp=bool(config["amp"]), save_maps=evaluation["save_maps"])


def write_cache(
    path: Path,
    model: WSOLModel,
    dataset: WSOLDataset,
    config: dict[str, Any],
    runtime: Runtime,
    meta: CacheMeta,
) -> None:
    """Predict every test image and write the run's cache (under torchrun: rank 0 writes,
    receiving the other ranks' shards batch by batch)."""
    stream = iterate_predictions(model, dataset, config, runtime)
    if runtime.distributed:
        steps = gather_steps(len(dataset), config["eval"]["batch_size"], runtime.world_size)
        stream = gather_in_order(stream, steps, runtime)
        if not runtime.is_main:
            for _ in stream:  # this rank only sends
                pass
            return
    first = next(stream)
    with CacheWriter(
        path,
        meta=meta,
        num_images=len(dataset),
        map_size=first["fused_gt"].shape[-2:],
        num_classes=dataset.hierarchy.num_classes[-1],
        has_masks=first["masks"] is not None,
        extra_maps={name: (maps.shape[1:], first["extra_names"][name]) for name, maps in first["extras"].items()},
    ) as writer:
        for fields in _chain(first, stream):
            writer.write_batch(**{key: value for key, value in fields.items() if key != "extra_names"})


def _chain(first: dict[str, Any], rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield first
    yield from rest


def gather_steps(size: int, batch_size: int, world_size: int) -> int:
    """Batches of the largest shard (rank 0's): how many gather steps every rank takes."""
    largest = -(-size // world_size)
    return -(-largest // batch_size)


def gather_in_order(batches: Iterator[dict[str, Any]], steps: int, runtime: Runtime) -> Iterator[dict[str, Any]]:
    """Collect every rank's prediction batches on rank 0, back in dataset order.

    Rank r predicts images r, r + W, r + 2W, ... (:func:`shard_indices`) in batches of
    the same size, so the k-th batches of all ranks together hold a contiguous run of
    the dataset. At each of ``steps`` steps every rank sends its next batch (None once
    its shard is done) with ``gather_object``; rank 0 yields them merged in dataset
    order. Rank 0 holds one batch per rank at a time, not the whole test set; the other
    ranks yield nothing.
    """
    world = runtime.world_size
    for _ in range(steps):
        received: list[Any] | None = [None] * world if runtime.is_main else None
        torch.distributed.gather_object(next(batches, None), received, dst=0)
        if received is None:
            continue
        rows = [_split_rows(batch) if batch is not None else [] for batch in received]
        ordered = [rows[rank][j] for j in range(len(rows[0])) for rank in range(world) if j < len(rows[rank])]
        if ordered:
            yield _merge_rows(ordered)


def _split_rows(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch's fields as a list of one-image batches."""
    return [_row(fields, i) for i in range(len(fields["image_ids"]))]


def _row(value: Any, i: int) -> Any:
    """Image ``i`` of a batch field: arrays and lists sliced, dicts per key, tuples (titles) kept."""
    if value is None or isinstance(value, tuple):
        return value
    if isinstance(value, dict):
        return {key: _row(item, i) for key, item in value.items()}
    return value[i : i + 1]


def _merge_rows(rows: list[Any]) -> Any:
    """One-image batches (or their fields) joined: lists concatenated, arrays stacked, dicts per key."""
    first = rows[0]
    if first is None or isinstance(first, tuple):
        return first
    if isinstance(first, dict):
        return {key: _merge_rows([row[key] for row in rows]) for key in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(rows)
    return [item for row in rows for item in row]
