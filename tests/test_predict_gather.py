"""Rank 0 receives the ranks' prediction batches back in dataset order, one step at a time
(a real two-process gloo group on CPU)."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wsolbench.predict import gather_in_order, gather_steps, shard_indices
from wsolbench.runtime import Runtime


def fake_batch(indices: list[int]) -> dict:
    """What predict_batch returns for these dataset indices, with values that encode them."""
    return {
        "image_ids": [f"img{i}" for i in indices],
        "labels": np.array(indices),
        "fused_gt": np.stack([np.full((2, 3), i, np.float32) for i in indices]),
        "boxes": [np.full((1 + i % 2, 4), i) for i in indices],
        "masks": None,
    }


def _rank_main(rank: int, world: int, size: int, batch_size: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    runtime = Runtime(torch.device("cpu"), rank=rank, world_size=world)
    shard = shard_indices(size, runtime)
    batches = iter([fake_batch(shard[k : k + batch_size]) for k in range(0, len(shard), batch_size)])
    merged = list(gather_in_order(batches, gather_steps(size, batch_size, world), runtime))
    if rank == 0:
        np.save(out, np.array([len(merged)] + [len(b["image_ids"]) for b in merged]))
        ids = [i for b in merged for i in b["image_ids"]]
        labels = np.concatenate([b["labels"] for b in merged])
        maps = np.concatenate([b["fused_gt"] for b in merged])
        boxes = [box for b in merged for box in b["boxes"]]
        assert ids == [f"img{i}" for i in range(size)], ids
        assert labels.tolist() == list(range(size))
        assert np.array_equal(maps[:, 0, 0], np.arange(size, dtype=np.float32))
        assert all(box.shape == (1 + i % 2, 4) and (box == i).all() for i, box in enumerate(boxes))
        assert all(b["masks"] is None for b in merged)
    else:
        assert merged == []
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("world", "size", "batch_size"), [(2, 7, 2), (3, 10, 3), (2, 4, 8)])
def test_rank_zero_gets_every_image_in_dataset_order(tmp_path, world, size, batch_size):
    out = tmp_path / "steps.npy"
    mp.spawn(_rank_main, args=(world, size, batch_size, _free_port(), str(out)), nprocs=world)
    steps = np.load(out)
    assert steps[0] == gather_steps(size, batch_size, world)  # one merged batch per step
    assert steps[1:].sum() == size


def test_gather_steps_is_the_largest_shards_batch_count():
    assert gather_steps(7, 2, 2) == 2  # shards of 4 and 3 images
    assert gather_steps(10, 3, 3) == 2  # shards of 4, 3, 3
    assert gather_steps(4, 8, 2) == 1
    assert gather_steps(9, 3, 3) == 1
