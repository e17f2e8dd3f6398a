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
from wsolbench.runtime import Runtime, autocast
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


def predict_batch(
    model: WSOLModel, batch: Batch, runtime: Runtime, *, amp: bool, save_levels: bool, save_k: bool
) -> dict[str, Any]:
    """Run the model on one batch; maps come back at the images' resolution, normalised."""
    images = batch.images.to(runtime.device)
    labels = batch.labels.to(runtime.device)
    size = tuple(images.shape[-2:])
    with torch.no_grad(), autocast(runtime.device, amp):
        outputs = model(images)
        logits = outputs.logits[-1].float()
        predicted = logits.argmax(1)
        gt_classes = model.targets(labels)
        fused_pred = model.method.fuse(outputs, model.targets(predicted))
        fused_gt = model.method.fuse(outputs, gt_classes)
    fields: dict[str, Any] = {
        "image_ids": batch.image_ids,
        "labels": batch.labels.numpy(),
        "logits": logits.cpu().numpy(),
        "fused_pred": upsample_normalized(fused_pred, size),
        "fused_gt": upsample_normalized(fused_gt, size),
        "boxes": [b.numpy() for b in batch.boxes],
        "masks": batch.masks.numpy() if batch.masks is not None else None,
    }
    rows = torch.arange(len(labels), device=runtime.device)
    if save_levels:
        fields["level_maps"] = np.stack(
            [
                upsample_normalized(minmax_normalize(maps[rows, cls]), size)
                for maps, cls in zip(outputs.class_maps, gt_classes)
            ],
            axis=1,
        )
    if save_k:
        k_maps = outputs.raw_maps[-1][rows, gt_classes[-1]].float()
        flat = k_maps.flatten(2)
        low, high = flat.min(2, keepdim=True).values, flat.max(2, keepdim=True).values
        fields["k_maps"] = ((flat - low) / (high - low).clamp_min(1e-12)).view_as(k_maps).cpu().numpy()
    return fields


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
        num_workers=config["train"]["workers"],
        pin_memory=runtime.device.type == "cuda",
    )
    model.eval()
    save_k = evaluation["save_k_maps"] and model.head_specs[-1].k > 1
    for batch in loader:
        yield predict_batch(
            model, batch, runtime, amp=bool(config["amp"]), save_levels=evaluation["save_level_maps"], save_k=save_k
        )


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
    size = first["fused_gt"].shape[-2:]
    levels = model.head_specs if config["eval"]["save_level_maps"] else []
    names = [dataset.hierarchy.level_names[spec.label_level] for spec in levels]
    with CacheWriter(
        path,
        meta=meta,
        num_images=len(dataset),
        map_size=size,
        num_classes=dataset.hierarchy.num_classes[-1],
        has_masks=first["masks"] is not None,
        num_levels=len(levels),
        level_names=[f"{i}:{name}" for i, name in enumerate(names)],
        k_maps_shape=first["k_maps"].shape[1:] if "k_maps" in first else None,
    ) as writer:
        for fields in _chain(first, stream):
            writer.write_batch(**fields)


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
    count = len(fields["image_ids"])
    return [{key: (None if value is None else value[i : i + 1]) for key, value in fields.items()} for i in range(count)]


def _merge_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One-image batches joined into one batch (lists concatenated, arrays stacked)."""
    merged: dict[str, Any] = {}
    for key, value in rows[0].items():
        if value is None:
            merged[key] = None
        elif isinstance(value, np.ndarray):
            merged[key] = np.concatenate([row[key] for row in rows])
        else:
            merged[key] = [item for row in rows for item in row[key]]
    return merged
