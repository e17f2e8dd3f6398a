"""What the runner decides before it trains: the evaluated splits and whether a cache still fits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wsolbench import runner
from wsolbench.cache import CacheMeta, CacheWriter
from wsolbench.errors import UsageError


def test_a_dataset_without_val_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(config, registry, split):
        if split == "val":
            raise UsageError("dataset 'mine': unknown split 'val'; choose one of: train, test")
        return split

    monkeypatch.setattr(runner, "build_dataset", build)
    config = {"dataset": {"name": "mine"}}
    assert runner.build_splits(config, None, ("test",)) == {"train": "train", "test": "test"}
    with pytest.raises(UsageError, match=r"need a val split, and dataset 'mine' gave none \(dataset 'mine': unknown"):
        runner.build_splits(config, None, ("test", "val"))
    monkeypatch.setattr(runner, "build_dataset", lambda config, registry, split: [] if split == "val" else [1])
    with pytest.raises(UsageError, match=r"the val split of dataset 'mine' has no images"):
        runner.build_splits(config, None, ("test", "val"))


@pytest.mark.parametrize(
    ("written", "wanted", "fits"),
    [
        (True, True, True),
        (True, False, True),  # maps kept that are no longer wanted
        (False, True, False),  # maps wanted that were not kept: predict again
        (None, False, True),
        (["levels", "k_maps"], ["levels"], True),
        (["levels"], ["levels", "k_maps"], False),
        ("a", "a", True),
        ("a", "b", False),
    ],
)
def test_covers(written, wanted, fits) -> None:
    assert runner._covers(written, wanted) is fits


def write_cache(path: Path, *, fingerprint: str, evaluation: dict) -> Path:
    meta = CacheMeta(
        method="cam", backbone="x", dataset="y", config={"eval": evaluation}, extra={"data_fingerprint": fingerprint}
    )
    with CacheWriter(path, meta=meta, num_images=1, map_size=(4, 4), num_classes=2) as writer:
        m = np.eye(4, dtype=np.float32)[None]
        writer.write_batch(
            image_ids=["a"], labels=[0], logits=np.zeros((1, 2)), fused_pred=m, fused_gt=m, boxes=[[[0, 0, 1, 1]]]
        )
    return path


def test_a_cache_fits_when_its_data_and_maps_do(tmp_path: Path) -> None:
    written = {"batch_size": 64, "cam_threshold": None, "cam_curve_interval": 0.01, "save_maps": True}
    path = write_cache(tmp_path / "cache.h5", fingerprint="f1", evaluation=written)

    def fits(fingerprint: str = "f1", **evaluation) -> bool:
        return runner._cache_fits(path, fingerprint, {"eval": {**written, **evaluation}})

    assert fits()
    assert fits(batch_size=7, cam_threshold="val", cam_curve_interval=0.001, splits=["test", "val"], save_maps=False)
    assert not fits("f2")  # the split's images or labels changed
    assert not runner._cache_fits(tmp_path / "missing.h5", "f1", {"eval": written})
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    assert not runner._cache_fits(tmp_path / "broken.h5", "f1", {"eval": written})
    without = write_cache(tmp_path / "bare.h5", fingerprint="f1", evaluation={**written, "save_maps": False})
    assert not runner._cache_fits(without, "f1", {"eval": written})  # extra maps now wanted
