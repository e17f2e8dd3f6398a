"""The HDF5 map cache: round trip, lossless encodings, atomic writes, validation, config hash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from wsolbench.cache import (
    CacheError,
    CacheMeta,
    CacheWriter,
    config_hash,
    dequantize_maps,
    quantize_maps,
    read_cache,
    read_meta,
    top5_from_logits,
)
from wsolbench.errors import WsolbenchError

H, W, C = 12, 16, 10
CONFIG = {
    "method": {"name": "danet", "k": 4},
    "backbone": {"name": "vgg16"},
    "dataset": {"name": "synthetic"},
    "train": {"epochs": 2, "lr": 0.001, "workers": 2, "log_every": 5},
    "eval": {"cam_threshold": None},
    "seed": 3,
    "device": "cpu",
}


def smooth_maps(rng: np.random.Generator, n: int, h: int = H, w: int = W) -> np.ndarray:
    """Normalised float32 maps: a blob plus noise, min 0 and max 1 per image."""
    yy, xx = np.mgrid[0:h, 0:w]
    maps = []
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * rng.uniform(2, 5) ** 2)) + 0.2 * rng.random((h, w))
        m = (m - m.min()) / (m.max() - m.min())
        maps.append(m)
    return np.asarray(maps, dtype=np.float32)


def make_data(n: int = 7, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    boxes = []
    for i in range(n):
        k = 1 + i % 3  # ragged: 1, 2 or 3 boxes
        x0 = rng.integers(0, W // 2, k)
        y0 = rng.integers(0, H // 2, k)
        boxes.append(np.stack([x0, y0, x0 + rng.integers(0, W // 2, k), y0 + rng.integers(0, H // 2, k)], 1))
    return {
        "image_ids": [f"img_{i:03d}/é" for i in range(n)],
        "labels": rng.integers(0, C, n),
        "logits": rng.normal(size=(n, C)).astype(np.float32),
        "fused_pred": smooth_maps(rng, n),
        "fused_gt": smooth_maps(rng, n),
        "boxes": boxes,
        "masks": (rng.random((n, H, W)) > 0.6).astype(np.uint8),
        "extras": {
            "levels": np.stack([smooth_maps(rng, n), smooth_maps(rng, n)], axis=1),
            "k_maps": rng.random((n, 3, 4, 5)).astype(np.float32),
        },
    }


EXTRA_NAMES = {"levels": ["0:family", "1:species"], "k_maps": ["k = 1", "k = 2", "k = 3"]}


def batch_of(data: dict, sl: slice) -> dict:
    """Images ``sl`` of every field (extras per map)."""
    return {
        k: ({n: m[sl] for n, m in v.items()} if isinstance(v, dict) else v[sl] if v is not None else None)
        for k, v in data.items()
    }


def write(path: Path, data: dict, *, batch: int = 3, **kwargs) -> Path:
    n = len(data["labels"])
    options = dict(
        meta=CacheMeta.from_config(CONFIG, plugin_versions={"method:danet": "wsolbench 0.1.0"}),
        num_images=n,
        map_size=(H, W),
        num_classes=C,
        has_masks=data.get("masks") is not None,
        extra_maps={name: (maps.shape[1:], EXTRA_NAMES[name]) for name, maps in (data.get("extras") or {}).items()},
    )
    options.update(kwargs)
    with CacheWriter(path, **options) as writer:
        for start in range(0, n, batch):
            sl = slice(start, start + batch)
            writer.write_batch(**batch_of(data, sl))
    return path


def test_round_trip_all_fields(tmp_path: Path) -> None:
    data = make_data()
    path = write(tmp_path / "cache.h5", data)
    assert sorted(os.listdir(tmp_path)) == ["cache.h5"]  # no temporary file left
    for load in (False, True):
        with read_cache(tmp_path if load else path, load=load) as cache:
            assert cache.num_images == len(cache) == 7
            assert cache.image_ids == data["image_ids"]
            np.testing.assert_array_equal(cache.labels, data["labels"])
            np.testing.assert_array_equal(cache.logits, data["logits"])
            np.testing.assert_array_equal(cache.top5, top5_from_logits(data["logits"]))
            assert cache.num_classes == C and cache.map_size == (H, W)
            # the predicted-class map is uint8 (box metrics only); the GT map float32 (masks: PxAP)
            assert cache.fused_pred.encoding == "uint8" and cache.fused_gt.encoding == "float32"
            np.testing.assert_array_equal(cache.fused_pred[:], dequantize_maps(quantize_maps(data["fused_pred"])))
            np.testing.assert_array_equal(cache.fused_gt[:], data["fused_gt"])
            assert cache.fused_gt[:].dtype == np.float32
            assert sorted(cache.extra_maps) == ["k_maps", "levels"]
            for name, maps in data["extras"].items():
                assert cache.extra_maps[name].names == EXTRA_NAMES[name]
                np.testing.assert_array_equal(cache.extra_maps[name].store[:], dequantize_maps(quantize_maps(maps)))
                np.testing.assert_array_equal(cache.extra_maps[name].store[4], dequantize_maps(quantize_maps(maps[4])))
            assert len(cache.boxes) == 7
            for got, want in zip(cache.boxes, data["boxes"], strict=False):
                assert got.shape == want.shape and got.dtype == np.int32
                np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(cache.masks[:], data["masks"])
            # lazy fancy indexing: unsorted and repeated indices, boolean masks
            np.testing.assert_array_equal(cache.fused_gt[[5, 1, 5]], data["fused_gt"][[5, 1, 5]])
            np.testing.assert_array_equal(cache.masks[np.array([True, False] * 3 + [True])], data["masks"][::2])
            meta = cache.meta
            assert (meta.method, meta.backbone, meta.dataset, meta.seed, meta.split) == (
                "danet",
                "vgg16",
                "synthetic",
                3,
                "test",
            )
            assert meta.config == CONFIG
            assert meta.config_hash == config_hash(CONFIG)
            assert meta.plugin_versions == {"method:danet": "wsolbench 0.1.0"}
            assert meta.library_version and meta.created
    assert read_meta(path).config == CONFIG


def test_optional_parts_absent_and_large_class_counts(tmp_path: Path) -> None:
    data = make_data(n=5)
    for key in ("masks", "extras"):
        data[key] = None
    big = 300
    data["logits"] = np.random.default_rng(1).normal(size=(5, big)).astype(np.float32)
    path = write(tmp_path / "c.h5", data, num_classes=big, batch=2)
    with read_cache(path) as cache:
        assert cache.logits is None  # more than 256 classes: only the top-5 by default
        np.testing.assert_array_equal(cache.top5, top5_from_logits(data["logits"]))
        assert cache.masks is None and cache.extra_maps == {}
        assert cache.fused_gt.encoding == "uint8"  # no masks, no PxAP: uint8 is lossless
    path = write(tmp_path / "d.h5", data, num_classes=big, store_logits=True)
    with read_cache(path) as cache:
        np.testing.assert_array_equal(cache.logits, data["logits"])


def test_top5_pads_and_breaks_ties_by_class_id() -> None:
    top = top5_from_logits(np.array([[0.0, 1.0, 1.0], [3.0, 2.0, 1.0]]))
    np.testing.assert_array_equal(top, [[1, 2, 0, -1, -1], [0, 1, 2, -1, -1]])


# -- the stored encodings do not change the metrics ------------------------------------


def test_uint8_round_trip_is_exact_for_every_level() -> None:
    q = np.arange(256, dtype=np.uint8)
    back = dequantize_maps(q)
    # the box metrics cast float64(map) * 255 to uint8; the stored q must come back
    np.testing.assert_array_equal((back.astype(np.float64) * 255).astype(np.uint8), q)
    np.testing.assert_array_equal(quantize_maps(back), q)
    assert back[0] == 0.0 and back[-1] == 1.0


def adversarial_maps(rng: np.random.Generator, n: int = 24) -> np.ndarray:
    """Smooth maps with many values on and just below the k/255 and 0.01 grid edges."""
    maps = smooth_maps(rng, n).astype(np.float64)
    edges = np.concatenate([np.arange(256) / 255.0, np.arange(100) / 100.0])
    picks = rng.choice(edges, size=maps.shape)
    near = np.where(rng.random(maps.shape) < 0.5, picks, np.nextafter(picks, -1.0).clip(0, 1))
    maps = np.where(rng.random(maps.shape) < 0.3, near, maps)
    maps[:, 0, 0], maps[:, -1, -1] = 0.0, 1.0
    return maps


def test_stored_maps_give_identical_metrics(tmp_path: Path) -> None:
    from wsolbench.metrics import box_accuracy, pxap

    rng = np.random.default_rng(7)
    data = make_data(n=24, seed=7)
    data["fused_pred"] = adversarial_maps(rng)
    data["fused_gt"] = adversarial_maps(rng).astype(np.float32)  # the runner's maps are float32
    data["extras"] = {"levels": adversarial_maps(rng)[:, None]}
    path = write(tmp_path / "c.h5", data, batch=5, extra_maps={"levels": ((1, H, W), ["0:species"])})
    with read_cache(path) as cache:
        for original, stored in (
            (data["fused_pred"], cache.fused_pred),
            (data["fused_gt"], cache.fused_gt),
            (data["extras"]["levels"][:, 0], _Level0(cache.extra_maps["levels"].store)),
        ):
            for kwargs in ({"iou_thresholds": (50,), "multi_contour": False}, {}):
                a = box_accuracy(original, data["boxes"], **kwargs)
                b = box_accuracy(stored[:], cache.boxes, **kwargs)
                assert a.value == b.value
                for iou in a.curves:
                    np.testing.assert_array_equal(a.curves[iou], b.curves[iou])
        assert pxap(cache.fused_gt[:], cache.masks[:]).value == pxap(data["fused_gt"], data["masks"]).value
        # why the GT map is float32 when there are masks: uint8 storage moves PxAP
        quantized = dequantize_maps(quantize_maps(data["fused_gt"]))
        assert pxap(quantized, data["masks"]).value != pxap(data["fused_gt"], data["masks"]).value


class _Level0:
    """The first map of every image of an ``(N, M, H, W)`` store, as an ``(N, H, W)`` store."""

    def __init__(self, store):
        self.store = store

    def __getitem__(self, index):
        return self.store[index][:, 0]


# -- atomic writes -------------------------------------------------------------------


def test_exception_mid_write_leaves_no_file(tmp_path: Path) -> None:
    data = make_data()
    path = tmp_path / "cache.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with CacheWriter(
            path, meta=CacheMeta.from_config(CONFIG), num_images=7, map_size=(H, W), num_classes=C
        ) as writer:
            writer.write_batch(**batch_of({k: v for k, v in data.items() if k not in ("masks", "extras")}, slice(0, 3)))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_write_is_an_error_and_keeps_the_old_cache(tmp_path: Path) -> None:
    data = make_data()
    path = write(tmp_path / "cache.h5", data)
    before = path.read_bytes()
    with pytest.raises(CacheError, match="3 of 7 images"):
        with CacheWriter(
            path, meta=CacheMeta.from_config(CONFIG), num_images=7, map_size=(H, W), num_classes=C
        ) as writer:
            writer.write_batch(**batch_of({k: v for k, v in data.items() if k not in ("masks", "extras")}, slice(0, 3)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5"]


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from wsolbench.cache import CacheMeta, CacheWriter

    n, h, w = 100000, 64, 64
    meta = CacheMeta(method="cam", backbone="vgg16", dataset="synthetic", config={"seed": 0})
    rng = np.random.default_rng(0)
    with CacheWriter(sys.argv[1], meta=meta, num_images=n, map_size=(h, w), num_classes=3) as writer:
        for i in range(0, n, 10):
            writer.write_batch(image_ids=[str(j) for j in range(i, i + 10)], labels=np.zeros(10),
                               logits=np.zeros((10, 3)),
                               fused_pred=rng.random((10, h, w)), fused_gt=rng.random((10, h, w)),
                               boxes=[np.array([[0, 0, 5, 5]])] * 10)
            if i == 50:
                print("writing", flush=True)
    """
)


def test_sigkilled_writer_leaves_no_valid_cache(tmp_path: Path) -> None:
    path = tmp_path / "cache.h5"
    script = tmp_path / "writer.py"
    script.write_text(KILLED_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert not path.exists()
    leftovers = list(tmp_path.glob("cache.h5.tmp-*"))
    assert [p.name for p in leftovers] == [f"cache.h5.tmp-{proc.pid}"]
    with pytest.raises(CacheError) as info:
        read_cache(leftovers[0])
    assert "\n" not in str(info.value)


# -- validation -----------------------------------------------------------------------


def one_line_error(path: Path, *fragments: str) -> str:
    with pytest.raises(WsolbenchError) as info:
        read_cache(path)
    message = str(info.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_schema_1_level_and_k_maps_are_read_as_extra_maps(tmp_path: Path) -> None:
    """A cache of the first layout (``maps/levels/<i>`` + ``maps/k_maps``) still reads, its maps as extras."""
    data = make_data()
    path = write(tmp_path / "cache.h5", data)
    levels = dequantize_maps(quantize_maps(data["extras"]["levels"]))
    k_maps = data["extras"]["k_maps"].astype(np.float16)
    with h5py.File(path, "r+") as f:  # rewrite the extras the way schema 1 stored them
        f.attrs["schema_version"] = 1
        del f["maps/extras"]
        group = f.create_group("maps/levels")
        group.attrs["names"] = json.dumps(EXTRA_NAMES["levels"])
        for i in range(2):
            group[str(i)] = quantize_maps(levels[:, i])
        f["maps/k_maps"] = k_maps
        f["maps/k_maps"].attrs["encoding"] = "float16"
    with read_cache(path) as cache:
        assert cache.schema_version == 1 and sorted(cache.extra_maps) == ["k_maps", "levels"]
        assert cache.extra_maps["levels"].names == EXTRA_NAMES["levels"]
        assert cache.extra_maps["levels"].store.shape == (7, 2, H, W)
        np.testing.assert_array_equal(cache.extra_maps["levels"].store[:], levels)
        np.testing.assert_array_equal(cache.extra_maps["levels"].store[3], levels[3])
        np.testing.assert_array_equal(cache.extra_maps["k_maps"].store[:], k_maps.astype(np.float32))
        assert cache.extra_maps["k_maps"].names == EXTRA_NAMES["k_maps"]
        np.testing.assert_array_equal(cache.fused_gt[:], data["fused_gt"])


def test_wrong_schema_version(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.h5", make_data())
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 0
    one_line_error(path, "written by cache schema 0, this wsolbench", "reads schemas 1, 2", "re-run `wsolbench eval`")


def test_missing_dataset(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.h5", make_data())
    with h5py.File(path, "a") as f:
        del f["gt/box_offsets"]
    one_line_error(path, "'gt/box_offsets' is missing")


def test_inconsistent_shapes(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.h5", make_data())
    with h5py.File(path, "a") as f:
        del f["top5"]
        f["top5"] = np.zeros((3, 5), np.int32)
    one_line_error(path, "'top5' has shape (3, 5), expected (7, 5)")


def test_not_hdf5_empty_missing_and_truncated(tmp_path: Path) -> None:
    text = tmp_path / "notes.h5"
    text.write_text("these are not maps\n" * 10)
    one_line_error(text, "not an HDF5 file")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    one_line_error(empty, "not an HDF5 file", "empty")
    one_line_error(tmp_path / "absent" / "cache.h5", "no such file")
    path = write(tmp_path / "cache.h5", make_data(n=12))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    one_line_error(path, "truncated")


def test_unfinished_file_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "cache.h5", make_data())
    with h5py.File(path, "a") as f:
        f.attrs["complete"] = False
    one_line_error(path, "did not finish")


def test_run_directory_resolves_to_its_cache(tmp_path: Path) -> None:
    write(tmp_path / "cache.h5", make_data())
    with read_cache(tmp_path) as cache:
        assert cache.path == tmp_path / "cache.h5"


# -- config hash ------------------------------------------------------------------------


def test_config_hash_is_stable_and_ignores_non_result_keys() -> None:
    digest = config_hash(CONFIG)
    assert len(digest) == 64 and digest == config_hash(dict(reversed(list(CONFIG.items()))))
    # a literal: canonicalisation must not drift between versions (sweeps reuse runs by it)
    assert config_hash({"seed": 0, "method": {"name": "cam"}}) == config_hash({"method": {"name": "cam"}, "seed": 0.0})
    same = {
        **CONFIG,
        "device": "cuda:1",
        "output_dir": "/elsewhere",
        "quiet": True,
        "train": {**CONFIG["train"], "workers": 8, "log_every": 1},
    }
    assert config_hash(same) == digest
    assert config_hash({**CONFIG, "train": {**CONFIG["train"], "lr": 0.01}}) != digest
    assert config_hash({**CONFIG, "seed": 4}) != digest
    assert config_hash({**CONFIG, "method": {"name": "danet", "k": 4.0}}) == digest  # 4 == 4.0
    assert config_hash({**CONFIG, "eval": {"cam_threshold": None}, "x": (1, 2)}) == config_hash({**CONFIG, "x": [1, 2]})
    assert config_hash(CONFIG, exclude=()) != digest


def test_config_hash_literal_value() -> None:
    # Changing this value invalidates every cached sweep: bump deliberately, never by accident.
    assert config_hash({"method": {"name": "cam"}, "seed": 0}) == (
        __import__("hashlib").sha256(b'{"method":{"name":"cam"},"seed":0}').hexdigest()
    )


def test_bad_batches_are_rejected_before_anything_is_written(tmp_path: Path) -> None:
    data = make_data()
    bad_map = {**data, "fused_gt": data["fused_gt"] * 2}
    bad_box = {**data, "boxes": [np.array([[5, 5, 2, 9]])] + data["boxes"][1:]}
    bad_label = {**data, "labels": np.full(7, C)}
    path = tmp_path / "cache.h5"
    with CacheWriter(
        path,
        meta=CacheMeta.from_config(CONFIG),
        num_images=7,
        map_size=(H, W),
        num_classes=C,
        has_masks=True,
        extra_maps={"levels": ((2, H, W), EXTRA_NAMES["levels"]), "k_maps": ((3, 4, 5), EXTRA_NAMES["k_maps"])},
    ) as writer:
        for bad, match in (
            (bad_map, r"outside \[0, 1\]"),
            (bad_box, "x1 >= x0"),
            (bad_label, r"class ids in \[0, 10\)"),
            ({**data, "masks": None}, "masks=None"),
            ({**data, "extras": {**data["extras"], "k_maps": data["extras"]["k_maps"][:, :2]}}, "k_maps has shape"),
            ({**data, "extras": {"levels": data["extras"]["levels"]}}, "extra maps"),
        ):
            with pytest.raises(ValueError, match=match):
                writer.write_batch(**bad)
            assert writer.num_written == 0
        writer.write_batch(**data)
    with read_cache(path) as cache:
        np.testing.assert_array_equal(cache.fused_gt[:], data["fused_gt"])


def test_eval_settings_and_the_data_folder_do_not_change_the_hash() -> None:
    digest = config_hash(CONFIG)
    evaluated_otherwise = {
        **CONFIG,
        "dataset": {**CONFIG["dataset"], "root": "/data/moved/here"},
        "eval": {"cam_threshold": 0.2, "cam_curve_interval": 0.001, "batch_size": 7, "splits": ["test", "val"]},
    }
    assert config_hash(evaluated_otherwise) == digest  # the same trained model: the same run folder
    assert config_hash({k: v for k, v in CONFIG.items() if k != "eval"}) == digest
    # only the top-level eval section and dataset.root go: same-named options elsewhere count
    assert config_hash({**CONFIG, "method": {**CONFIG["method"], "eval": 1}}) != digest
    assert config_hash({**CONFIG, "backbone": {**CONFIG["backbone"], "root": "/x"}}) != digest
    # the training data's fingerprint stands in for its folder
    assert config_hash(CONFIG, dataset_fingerprint="aa") == config_hash(evaluated_otherwise, dataset_fingerprint="aa")
    assert config_hash(CONFIG, dataset_fingerprint="aa") != config_hash(CONFIG, dataset_fingerprint="ab")
    assert config_hash(CONFIG, dataset_fingerprint="aa") != digest


class _Opaque:
    """A dataset that can only be read item by item (no ``image_ids`` / ``labels``)."""

    def __init__(self, dataset):
        self.dataset, self.hierarchy = dataset, dataset.hierarchy

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def test_dataset_fingerprint_names_the_items_not_the_folder(registry) -> None:
    from wsolbench.cache import dataset_fingerprint

    def synthetic(**options):
        return registry.build("datasets", "synthetic", split="train", **{"num_train": 40, "image_size": 32, **options})

    data = synthetic()
    digest = dataset_fingerprint(data)
    assert len(digest) == 64 and digest == dataset_fingerprint(_Opaque(data))  # the cheap path = reading every item
    assert dataset_fingerprint(synthetic(root="/anywhere")) == digest
    assert dataset_fingerprint(synthetic(num_train=41)) != digest  # one more image
    assert dataset_fingerprint(synthetic(orders=2)) != digest  # another hierarchy (and labels)
    assert (
        dataset_fingerprint(registry.build("datasets", "synthetic", split="val", num_val=40, image_size=32)) != digest
    )

    from wsolbench.specs import Hierarchy
    from wsolbench_plugins.datasets._common import BoxDataset, Record

    def boxes(root: str, labels: list[int]) -> BoxDataset:
        records = [
            Record(f"im{i}.jpg", Path(root), label, np.zeros((1, 4)), "list.csv", i) for i, label in enumerate(labels)
        ]
        return BoxDataset("folder", "train", records, Hierarchy.flat(["a", "b"]), resize=8, crop=8)

    moved = boxes("/old", [0, 1, 1])
    assert dataset_fingerprint(moved) == dataset_fingerprint(boxes("/new/place", [0, 1, 1]))
    assert dataset_fingerprint(moved) != dataset_fingerprint(boxes("/old", [0, 1, 0]))  # a relabelled image
