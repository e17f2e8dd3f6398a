"""The ``train`` / ``val`` (train-fullsup) / ``test`` splits of the real-data loaders, and the val cap.

Trees made here: CUB in wsolevaluation's metadata layout (val = CUBV2-like images), CUB in
the official layout with ``val`` held out of ``train``, ILSVRC with an ImageNetV2-like val.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_real_datasets import CUB_CLASSES, assert_near, edit, error_of, make_image, red_box

from wsolbench.errors import UsageError
from wsolbench.registry import default_registry
from wsolbench_plugins.datasets._common import per_class_subset
from wsolbench_plugins.datasets.cub import load_cub
from wsolbench_plugins.datasets.folder import load_folder
from wsolbench_plugins.datasets.ilsvrc import load_ilsvrc

# --------------------------------------------------------------------------- CUB, wsolevaluation's metadata

#: label in the files (CUB class index), folder = the class name
LABELS = {0: CUB_CLASSES[0], 3: CUB_CLASSES[1], 44: CUB_CLASSES[2]}
#        split, label, file, size (w, h), boxes (inclusive x0, y0, x1, y1)
CUB_META = [
    ("train", 0, "Black_footed_Albatross_0001_1.jpg", (60, 40), [(5, 5, 30, 20)]),
    ("train", 3, "Groove_billed_Ani_0002_2.jpg", (40, 40), [(0, 0, 39, 39)]),
    ("train", 44, "Northern_Fulmar_0003_3.jpg", (50, 30), [(10, 2, 40, 25)]),
    ("val", 0, "30107316117.jpg", (56, 42), [(17, 13, 45, 29)]),
    ("val", 0, "33844942958.jpg", (40, 30), [(4, 3, 20, 25)]),
    ("val", 0, "44272303765.jpg", (30, 30), [(1, 1, 10, 10)]),
    ("val", 44, "12345.jpg", (40, 40), [(8, 8, 31, 31), (2, 2, 5, 5)]),
    ("test", 3, "Groove_billed_Ani_0004_4.jpg", (64, 48), [(8, 6, 39, 29)]),
]


@pytest.fixture
def cub_meta(tmp_path):
    """``(image root, metadata root)`` of a miniature wsolevaluation CUB tree."""
    root, metadata = tmp_path / "dataset" / "CUB", tmp_path / "wsolevaluation" / "metadata" / "CUB"
    files = {split: {name: [] for name in ("ids", "labels", "sizes", "loc")} for split in ("train", "val", "test")}
    for split, label, name, size, boxes in CUB_META:
        image_id = f"{LABELS[label]}/{name}"
        make_image(root / image_id, size, boxes[0], fmt="PNG")
        files[split]["ids"].append(image_id)
        files[split]["labels"].append(f"{image_id},{label}")
        files[split]["sizes"].append(f"{image_id},{size[0]},{size[1]}")
        files[split]["loc"].extend(f"{image_id},{x0},{y0},{x1},{y1}" for x0, y0, x1, y1 in boxes)
    for split, lines in files.items():
        (metadata / split).mkdir(parents=True)
        for key, filename in (
            ("ids", "image_ids"),
            ("labels", "class_labels"),
            ("sizes", "image_sizes"),
            ("loc", "localization"),
        ):
            (metadata / split / f"{filename}.txt").write_text("".join(f"{line}\n" for line in lines[key]))
    return root, metadata


def test_cub_metadata_layout_reads_every_split(cub_meta):
    root, metadata = cub_meta
    load = lambda split, **kw: load_cub(split=split, root=str(root), metadata_root=str(metadata), **kw)  # noqa: E731
    train, val, test = load("train"), load("val", crop=32), load("test")
    assert (len(train), len(val), len(test)) == (3, 4, 1)
    assert val.image_ids[0] == "001.Black_footed_Albatross/30107316117.jpg"
    # labels 0, 3, 44 of the files are the classes present, numbered 0..2; named by their folder
    assert train.class_names == tuple(CUB_CLASSES)
    assert [r.label for r in val.records] == [0, 0, 0, 2] and [r.label for r in test.records] == [1]
    assert train.hierarchy.level_names == ("order", "family", "species")
    assert train.hierarchy.class_names[1] == ("Diomedeidae", "Cuculidae", "Procellariidae")
    np.testing.assert_array_equal(val.records[3].boxes, [[8, 8, 31, 31], [2, 2, 5, 5]])
    np.testing.assert_array_equal(train.records[0].boxes, [[5, 5, 30, 20]])  # train boxes are read too
    sample = val[0]  # 56x42 -> 32x32
    assert_near(red_box(sample.image), sample.boxes[0].tolist())
    assert sample.boxes.tolist() == [[10, 10, 25, 22]]


def test_cub_metadata_default_folder_and_bad_input(cub_meta, tmp_path):
    root, metadata = cub_meta
    (root / "metadata").mkdir()
    metadata.rename(root / "metadata" / "CUB")
    assert len(load_cub(split="val", root=str(root))) == 4  # <root>/metadata/CUB, found without the option
    message = error_of(lambda: load_cub(split="val", root=str(root), holdout_per_class=5), UsageError)
    assert "holdout_per_class applies to the official CUB_200_2011 layout only" in message
    sizes = root / "metadata" / "CUB" / "val" / "image_sizes.txt"
    edit(sizes, "12345.jpg,40,40", "12345.jpg,30,40")
    message = error_of(lambda: load_cub(split="val", root=str(root)))
    assert f"{sizes.parent / 'localization.txt'}:4: image '045.Northern_Fulmar/12345.jpg': box" in message
    assert "lies outside the 30x40 image" in message
    (sizes.parent / "localization.txt").unlink()
    message = error_of(lambda: load_cub(split="val", root=str(root)))
    assert message.startswith(f"{sizes.parent / 'localization.txt'}: metadata file not found")
    assert "metadata folder not found" in error_of(
        lambda: load_cub(split="test", root=str(root), metadata_root=str(tmp_path / "nope"))
    )


# --------------------------------------------------------------------------- CUB, official layout: val held out


def official_cub(path, per_class, *, test_per_class=1, order=None):
    """A CUB_200_2011 folder with ``per_class[k]`` training images of class k (+ test images)."""
    (path / "images").mkdir(parents=True)
    (path / "classes.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(CUB_CLASSES, 1)))
    rows = []
    image_id = 0
    for class_id, count in enumerate(per_class, 1):
        for k in range(count + test_per_class):
            image_id += 1
            rel = f"{CUB_CLASSES[class_id - 1]}/img_{image_id:03d}.png"
            make_image(path / "images" / rel, (16, 16), (2, 2, 9, 9), fmt="PNG")
            rows.append((image_id, rel, class_id, int(k < count)))
    ordered = [rows[i] for i in (order or range(len(rows)))]
    (path / "images.txt").write_text("".join(f"{i} {rel}\n" for i, rel, _, _ in ordered))
    (path / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, _, c, _ in ordered))
    (path / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, _, _, t in ordered))
    (path / "bounding_boxes.txt").write_text("".join(f"{i} 2.0 2.0 8.0 8.0\n" for i, _, _, _ in ordered))
    return path


def test_cub_official_val_is_held_out_of_train(tmp_path):
    root = official_cub(tmp_path / "CUB_200_2011", [6, 5, 1])
    load = lambda split, **kw: load_cub(split=split, root=str(root), holdout_per_class=2, **kw)  # noqa: E731
    train, val, test = load("train"), load("val"), load("test")
    full = load_cub(split="train", root=str(root))  # no holdout: the whole official train split
    assert len(full) == 12 and len(test) == 3
    assert not set(train.image_ids) & set(val.image_ids)  # never overlapping
    assert set(train.image_ids) | set(val.image_ids) == set(full.image_ids)
    # 2 per class; the class with one training image keeps it for training
    assert np.bincount([r.label for r in val.records], minlength=3).tolist() == [2, 2, 0]
    assert np.bincount([r.label for r in train.records], minlength=3).tolist() == [4, 3, 1]
    assert all(len(r.boxes) == 1 for r in val.records) and val[0].boxes.shape == (1, 4)
    assert not set(val.image_ids) & set(test.image_ids)
    # seeded: the same seed gives the same images, whatever the order of the metadata files
    shuffled = official_cub(tmp_path / "shuffled" / "CUB_200_2011", [6, 5, 1], order=list(range(14, -1, -1)))
    again = load_cub(split="val", root=str(shuffled), holdout_per_class=2)
    assert sorted(again.image_ids) == sorted(val.image_ids)
    others = {tuple(load("val", holdout_seed=seed).image_ids) for seed in range(1, 6)}
    assert len(others | {tuple(val.image_ids)}) > 1
    # a smaller holdout keeps a subset; the val cap picks among the held-out images
    assert set(load_cub(split="val", root=str(root), holdout_per_class=1).image_ids) < set(val.image_ids)
    capped = load("val", val_per_class=1)
    assert len(capped) == 2 and set(capped.image_ids) < set(val.image_ids)
    assert load("train", val_per_class=1).image_ids == train.image_ids  # the cap never touches train


def test_cub_holdout_options_are_checked(tmp_path):
    root = official_cub(tmp_path / "CUB_200_2011", [2, 2, 2])
    for bad in (-1, 1.5, True):
        message = error_of(lambda b=bad: load_cub(split="val", root=str(root), holdout_per_class=b), UsageError)
        assert "holdout_per_class" in message and "integer >= 0" in message


# --------------------------------------------------------------------------- ILSVRC val (ImageNetV2)


@pytest.fixture
def imagenet(tmp_path):
    root = tmp_path / "ILSVRC"
    items = {
        "val": [
            ("val2/0/0.jpeg", 0, (40, 40), [(4, 4, 20, 30)]),
            ("val2/0/1.jpeg", 0, (40, 30), [(1, 1, 9, 9), (20, 10, 39, 29)]),
            ("val2/0/2.jpeg", 0, (30, 40), [(5, 5, 25, 35)]),
            ("val2/1/0.jpeg", 1, (40, 40), [(0, 0, 39, 39)]),
        ],
        "test": [("val/ILSVRC2012_val_00000001.JPEG", 1, (40, 40), [(3, 3, 30, 30)])],
    }
    for split, rows in items.items():
        meta = root / "metadata" / "ILSVRC" / split
        meta.mkdir(parents=True)
        (meta / "image_ids.txt").write_text("".join(f"{r[0]}\n" for r in rows))
        (meta / "class_labels.txt").write_text("".join(f"{r[0]},{r[1]}\n" for r in rows))
        (meta / "image_sizes.txt").write_text("".join(f"{r[0]},{r[2][0]},{r[2][1]}\n" for r in rows))
        (meta / "localization.txt").write_text(
            "".join(f"{r[0]},{x0},{y0},{x1},{y1}\n" for r in rows for x0, y0, x1, y1 in r[3])
        )
        for image_id, _, size, boxes in rows:
            make_image(root / image_id, size, boxes[0], fmt="PNG")
    return root


def test_ilsvrc_val_is_read_like_test(imagenet):
    val = load_ilsvrc(split="val", root=str(imagenet), crop=20)
    assert val.image_ids == ["val2/0/0.jpeg", "val2/0/1.jpeg", "val2/0/2.jpeg", "val2/1/0.jpeg"]
    assert [r.label for r in val.records] == [0, 0, 0, 1] and val.num_classes == 1000
    np.testing.assert_array_equal(val.records[1].boxes, [[1, 1, 9, 9], [20, 10, 39, 29]])
    sample = val[1]  # 40x30 -> 20x20, resized like test (no random crop)
    assert sample.boxes.tolist() == [[1, 1, 4, 6], [10, 7, 19, 19]]  # x: round(1 * 0.5), y: round(1 * 2 / 3)
    assert_near(red_box(sample.image), sample.boxes[0].tolist())
    meta = imagenet / "metadata" / "ILSVRC" / "val"
    edit(meta / "localization.txt", "val2/1/0.jpeg,0,0,39,39\n", "")
    message = error_of(lambda: load_ilsvrc(split="val", root=str(imagenet)))
    assert f"{meta / 'image_ids.txt'}:4: image 'val2/1/0.jpeg' has no box" in message
    edit(meta / "localization.txt", "val2/0/2.jpeg,5,5,25,35", "val2/0/2.jpeg,5,5,25,45")
    message = error_of(lambda: load_ilsvrc(split="val", root=str(imagenet)))
    assert f"{meta / 'localization.txt'}:4: image 'val2/0/2.jpeg': box" in message


def test_ilsvrc_val_cap_per_class(imagenet):
    val = load_ilsvrc(split="val", root=str(imagenet))
    capped = load_ilsvrc(split="val", root=str(imagenet), val_per_class=2)
    assert [r.label for r in capped.records] == [0, 0, 1]
    assert set(capped.image_ids) < set(val.image_ids) and capped.image_ids[-1] == "val2/1/0.jpeg"
    assert capped.image_ids == load_ilsvrc(split="val", root=str(imagenet), val_per_class=2).image_ids
    picks = {
        tuple(load_ilsvrc(split="val", root=str(imagenet), val_per_class=2, val_seed=s).image_ids) for s in range(8)
    }
    assert len(picks) > 1
    assert len(load_ilsvrc(split="test", root=str(imagenet), val_per_class=1)) == 1
    for bad in (-1, 2.5, "3"):
        message = error_of(lambda b=bad: load_ilsvrc(split="val", root=str(imagenet), val_per_class=b), UsageError)
        assert message.startswith("dataset 'ilsvrc': val_per_class=") and "integer >= 0" in message


# --------------------------------------------------------------------------- folder


def test_folder_val_rows_and_cap(tmp_path):
    rows = ["image,label,x0,y0,x1,y1,split"]
    for k, (label, split) in enumerate([("a", "train"), ("a", "val"), ("a", "val"), ("a", "val"), ("b", "val")]):
        make_image(tmp_path / f"{k}.png", (20, 20), (2, 2, 9, 9))
        rows.append(f"{k}.png,{label},2,2,9,9,{split}")
    rows.append("5.png,b,,,,,val")  # a val image needs a box
    make_image(tmp_path / "5.png", (20, 20), (2, 2, 9, 9))
    (tmp_path / "annotations.csv").write_text("\n".join(rows[:-1]) + "\n")
    val = load_folder(split="val", root=str(tmp_path))
    assert val.image_ids == ["1.png", "2.png", "3.png", "4.png"] and all(len(r.boxes) == 1 for r in val.records)
    capped = load_folder(split="val", root=str(tmp_path), val_per_class=2)
    assert [r.label for r in capped.records].count(0) == 2 and capped.image_ids[-1] == "4.png"
    assert load_folder(split="train", root=str(tmp_path), val_per_class=1).image_ids == ["0.png"]
    (tmp_path / "annotations.csv").write_text("\n".join(rows) + "\n")
    assert "val image '5.png' has no box" in error_of(lambda: load_folder(split="val", root=str(tmp_path)))


# --------------------------------------------------------------------------- all datasets


def test_per_class_subset_by_hand():
    labels = [0, 1, 0, 0, 2, 1, 0]
    keep = per_class_subset(labels, 2, seed=0)
    assert np.bincount(np.asarray(labels)[keep]).tolist() == [2, 2, 1] and (np.diff(keep) > 0).all()
    # the choice of class 0 is a permutation seeded by (seed, 0) alone
    members = np.array([0, 2, 3, 6])
    rng = np.random.default_rng(np.random.SeedSequence([0, 0]))
    assert set(members[rng.permutation(4)[:2]]) == set(keep) & set(members)
    assert per_class_subset(labels, 9, seed=3).tolist() == list(range(7))
    left = per_class_subset(labels, 9, seed=3, leave=1)  # one of each class stays out
    assert np.bincount(np.asarray(labels)[left], minlength=3).tolist() == [3, 1, 0]
    assert per_class_subset([], 2, seed=0).shape == (0,)


def test_every_dataset_has_the_three_splits_and_the_val_cap():
    registry = default_registry()
    for name in ("cub", "folder", "ilsvrc", "openimages", "synthetic"):
        options = registry.get("datasets", name).options
        assert options["val_per_class"] is None and options["val_seed"] == 0, name
    for split in ("train", "val", "test"):
        assert len(registry.build("datasets", "synthetic", split=split, num_train=4, num_val=3, num_test=2)) > 0
