"""The real-data loaders (``cub``, ``ilsvrc``, ``folder``) on miniature trees made here with PIL.

Every image is a grey canvas with one red rectangle whose inclusive corners are the
annotated box, so a transform is checked by finding the red pixels again.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from wsolbench.data import collate_samples
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.specs import WSOLDataset
from wsolbench_plugins.datasets import cub as cub_module
from wsolbench_plugins.datasets._common import SkippedSamplesWarning
from wsolbench_plugins.datasets._transforms import crop_boxes, flip_boxes, scale_boxes
from wsolbench_plugins.datasets.cub import convert_box, load_cub
from wsolbench_plugins.datasets.folder import load_folder
from wsolbench_plugins.datasets.ilsvrc import load_ilsvrc

RED = (230, 20, 20)
GREY = (128, 128, 128)


def make_image(path, size, box, *, fmt=None, mask_path=None):
    """A ``size = (w, h)`` grey image with a red rectangle on the inclusive ``box``."""
    w, h = size
    array = np.full((h, w, 3), GREY, dtype=np.uint8)
    x0, y0, x1, y1 = box
    array[y0 : y1 + 1, x0 : x1 + 1] = RED
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(
        path, format=fmt or ("JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"), quality=98
    )
    if mask_path is not None:
        mask = np.zeros((h, w), dtype=np.uint8)
        mask[y0 : y1 + 1, x0 : x1 + 1] = 255
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(mask_path)


def red_box(image: torch.Tensor) -> tuple[int, int, int, int] | None:
    """Inclusive bounding box of the red pixels of a normalised ``(3, H, W)`` image."""
    rgb = WSOLDataset().denormalize(image)
    red = (rgb[0] > 0.6) & (rgb[1] < 0.35) & (rgb[2] < 0.35)
    if not red.any():
        return None
    ys, xs = torch.nonzero(red, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def assert_near(found, expected, tol=1):
    assert found is not None
    assert np.abs(np.subtract(found, expected)).max() <= tol, (found, expected)


def error_of(call, kind=WsolbenchError) -> str:
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- CUB


CUB_CLASSES = ["001.Black_footed_Albatross", "004.Groove_billed_Ani", "045.Northern_Fulmar"]
#          id, class id, train, size (w, h), CUB box (x, y, width, height)
CUB_IMAGES = [
    (1, 1, 1, (80, 60), (10.0, 20.0, 30.0, 25.0)),
    (2, 2, 1, (64, 64), (0.0, 0.0, 64.0, 64.0)),
    (3, 3, 1, (90, 70), (40.0, 5.0, 20.0, 50.0)),
    (4, 1, 0, (100, 80), (20.0, 10.0, 30.0, 30.0)),
    (5, 3, 0, (60, 90), (5.0, 30.0, 40.0, 20.0)),
]


def cub_path(image_id, class_id):
    folder = CUB_CLASSES[class_id - 1]
    return f"{folder}/{folder.split('.')[1]}_{image_id:04d}.jpg"


@pytest.fixture
def cub_root(tmp_path):
    root = tmp_path / "CUB_200_2011"
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{i} {name}\n" for i, name in enumerate(CUB_CLASSES, 1)))
    images, labels, split, boxes = [], [], [], []
    for image_id, class_id, train, size, (x, y, w, h) in CUB_IMAGES:
        rel = cub_path(image_id, class_id)
        make_image(root / "images" / rel, size, convert_box(x, y, w, h), fmt="PNG")
        images.append(f"{image_id} {rel}\n")
        labels.append(f"{image_id} {class_id}\n")
        split.append(f"{image_id} {train}\n")
        boxes.append(f"{image_id} {x} {y} {w} {h}\n")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("bounding_boxes.txt", boxes),
    ):
        (root / name).write_text("".join(lines))
    return root


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_cub_box_conversion_by_hand():
    assert convert_box(10.0, 20.0, 30.0, 25.0) == (10, 20, 39, 44)
    assert convert_box(10.5, 20.2, 30.0, 40.3) == (10, 20, 40, 60)  # floor / ceil(x + w) - 1
    assert convert_box(0.0, 0.0, 64.0, 64.0) == (0, 0, 63, 63)


def test_cub_loads_splits_labels_boxes_and_hierarchy(cub_root):
    train = load_cub(split="train", root=str(cub_root))
    test = load_cub(split="test", root=str(cub_root))
    assert len(train) == 3 and len(test) == 2
    assert [r.label for r in train.records] == [0, 1, 2]
    assert [r.label for r in test.records] == [0, 2]
    assert train.image_ids[0] == "001.Black_footed_Albatross/Black_footed_Albatross_0001.jpg"
    np.testing.assert_array_equal(train.records[0].boxes, [[10, 20, 39, 44]])
    np.testing.assert_array_equal(test.records[1].boxes, [[5, 30, 44, 49]])
    h = train.hierarchy
    assert h.level_names == ("order", "family", "species")
    assert h.class_names == (
        ("Procellariiformes", "Cuculiformes"),
        ("Diomedeidae", "Cuculidae", "Procellariidae"),
        tuple(CUB_CLASSES),
    )
    np.testing.assert_array_equal(h.ancestors, [[0, 0, 0], [1, 1, 1], [0, 2, 2]])
    assert train.skipped == {} and not train.has_masks
    flat = load_cub(split="train", root=str(cub_root), hierarchy="flat")
    assert flat.hierarchy.depth == 1
    assert load_cub(split="train", root=str(cub_root), hierarchy_levels="family").hierarchy.num_classes == (3, 3)


def test_cub_test_transform_keeps_box_on_object(cub_root):
    test = load_cub(split="test", root=str(cub_root), crop=50, resize=64)
    sample = test[0]  # 100x80 image, box (20, 10, 49, 39) -> scale 0.5 x 0.625
    assert sample.image.shape == (3, 50, 50)
    assert sample.boxes.dtype == torch.int64 and sample.boxes.tolist() == [[10, 6, 24, 24]]
    assert_near(red_box(sample.image), sample.boxes[0].tolist())
    batch = collate_samples([test[0], test[1]])
    assert batch.images.shape == (2, 3, 50, 50) and batch.masks is None


def test_cub_train_transform_crop_flip_follow_the_object(cub_root):
    train = load_cub(split="train", root=str(cub_root), resize=96, crop=64)
    flips = set()
    for seed in range(12):
        torch.manual_seed(seed)
        sample = train[2]  # 90x70, box (40, 5, 59, 54) -> away from the centre, flips are visible
        assert sample.image.shape == (3, 64, 64)
        box = sample.boxes[0].tolist()
        found = red_box(sample.image)
        if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
            assert_near(found, box)
        flips.add(box[0] < 64 - 1 - box[2])  # object in the left half: flipped
        torch.manual_seed(seed)
        again = train[2]
        assert torch.equal(again.image, sample.image) and torch.equal(again.boxes, sample.boxes)
    assert flips == {True, False}


def test_dataloader_workers_make_crops_reproducible(cub_root):
    train = load_cub(split="train", root=str(cub_root), resize=48, crop=32)

    def first_batch(seed):
        loader = torch.utils.data.DataLoader(
            train,
            batch_size=3,
            num_workers=2,
            collate_fn=collate_samples,
            generator=torch.Generator().manual_seed(seed),
        )
        return next(iter(loader))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert torch.equal(a.images, b.images) and all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes, strict=True))
    assert not torch.equal(a.images, c.images)


def test_box_transform_helpers():
    boxes = np.array([[10, 6, 24, 24]])
    np.testing.assert_array_equal(scale_boxes(np.array([[20, 10, 49, 39]]), 0.5, 0.625, 50, 50), boxes)
    np.testing.assert_array_equal(scale_boxes(np.array([[0, 0, 0, 0]]), 0.1, 0.1, 10, 10), [[0, 0, 0, 0]])
    # crop offset + clipping; a box fully outside collapses onto the border, never dropped
    np.testing.assert_array_equal(
        crop_boxes(np.array([[5, 5, 30, 30], [0, 0, 3, 3]]), 10, 4, 16), [[0, 1, 15, 15], [0, 0, 0, 0]]
    )
    np.testing.assert_array_equal(flip_boxes(np.array([[0, 2, 3, 5]]), 16), [[12, 2, 15, 5]])
    assert scale_boxes(np.zeros((0, 4), np.int64), 2, 2, 8, 8).shape == (0, 4)


def test_cub_missing_root_and_metadata(cub_root, tmp_path):
    message = error_of(lambda: load_cub(split="train", root=None), UsageError)
    assert "--data-root" in message
    assert "is not a folder" in error_of(lambda: load_cub(split="train", root=str(tmp_path / "nope")))
    assert "unknown split 'valid'" in error_of(lambda: load_cub(split="valid", root=str(cub_root)), UsageError)
    message = error_of(lambda: load_cub(split="val", root=str(cub_root)), UsageError)
    assert "has no val split; pass holdout_per_class=N" in message and "metadata_root=PATH" in message
    # pointed one level too high
    assert f"--data-root {cub_root}" in error_of(lambda: load_cub(split="train", root=str(tmp_path)))
    (cub_root / "bounding_boxes.txt").unlink()
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert message.startswith(f"{cub_root / 'bounding_boxes.txt'}: metadata file not found")
    with pytest.raises(UsageError, match="resize=32 is smaller than crop=64"):
        load_cub(split="train", root=str(cub_root), resize=32, crop=64)


def test_cub_missing_image_names_file_and_line(cub_root):
    (cub_root / "images" / cub_path(2, 2)).unlink()
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert f"{cub_root / 'images.txt'}:2: image '{cub_path(2, 2)}' is listed but its file" in message
    assert "skip_bad=true" in message
    assert len(load_cub(split="test", root=str(cub_root))) == 2  # the other split is unaffected


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_cub_corrupt_image_is_named(cub_root, damage):
    path = cub_root / "images" / cub_path(4, 1)
    data = path.read_bytes()
    path.write_bytes(b"not an image at all" if damage == "garbage" else data[: len(data) // 2])
    test = load_cub(split="test", root=str(cub_root))  # images are decoded lazily
    message = error_of(lambda: test[0])
    assert message.startswith(f"{path}: cannot decode image")
    assert "truncated or corrupt" in message and "images.txt:4" in message
    message = error_of(lambda: load_cub(split="test", root=str(cub_root), verify_images=True))
    assert f"{path}: cannot decode image" in message


def test_cub_bad_boxes(cub_root):
    boxes = cub_root / "bounding_boxes.txt"
    edit(boxes, "1 10.0 20.0 30.0 25.0", "1 10.0 20.0 -5.0 25.0")
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert f"{boxes}:1: box of image" in message and "must be positive" in message
    edit(boxes, "1 10.0 20.0 -5.0 25.0", "1 70.0 20.0 30.0 25.0")  # x1 = 99 in an 80 px wide image
    train = load_cub(split="train", root=str(cub_root))  # sizes are only known once decoded
    message = error_of(lambda: train[0])
    assert f"{boxes}:1:" in message and "lies outside the 80x60 image" in message
    message = error_of(lambda: load_cub(split="train", root=str(cub_root), verify_images=True))
    assert "lies outside the 80x60 image" in message


def test_cub_class_without_hierarchy_entry(cub_root):
    edit(cub_root / "classes.txt", "3 045.Northern_Fulmar", "3 999.Dodo")
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert message.startswith(f"{cub_root / 'classes.txt'}:3: class '999.Dodo' has no entry")
    assert "hierarchy=flat" in message
    assert load_cub(split="train", root=str(cub_root), hierarchy="flat").hierarchy.class_names[0][2] == "999.Dodo"


def test_cub_duplicate_ids_and_foreign_ids(cub_root):
    images = cub_root / "images.txt"
    images.write_text(images.read_text() + f"3 {cub_path(3, 3)}\n")
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert f"{images}:6: duplicate image id '3' (first at line 3)" in message
    images.write_text("".join(images.read_text().splitlines(keepends=True)[:5]))
    labels = cub_root / "image_class_labels.txt"
    labels.write_text(labels.read_text() + "77 1\n")
    message = error_of(lambda: load_cub(split="train", root=str(cub_root)))
    assert f"{labels}:6: image id '77' is not in images.txt" in message


def test_cub_skip_bad_reports_ids(cub_root):
    (cub_root / "images" / cub_path(2, 2)).unlink()
    (cub_root / "images" / cub_path(3, 3)).write_bytes(b"corrupt")
    with pytest.warns(SkippedSamplesWarning) as caught:
        train = load_cub(split="train", root=str(cub_root), skip_bad=True)
    assert len(train) == 1 and train.image_ids == [cub_path(1, 1)]
    assert set(train.skipped) == {cub_path(2, 2), cub_path(3, 3)}
    assert "is missing" in train.skipped[cub_path(2, 2)] and "cannot decode" in train.skipped[cub_path(3, 3)]
    text = str(caught[0].message)
    assert "skipped 2 bad samples" in text and cub_path(2, 2) in text and "\n" not in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_cub(split="test", root=str(cub_root), skip_bad=True).skipped == {}


# --------------------------------------------------------------------------- ILSVRC


#        image id, label, size, boxes
ILSVRC = {
    "train": [
        ("train/n01440764/n01440764_1.JPEG", 0, (64, 48), [(5, 5, 30, 40)]),
        ("train/n01443537/n01443537_1.JPEG", 1, (50, 50), [(10, 10, 20, 20)]),
        ("train/n01484850/n01484850_1.JPEG", 2, (40, 60), [(0, 0, 39, 59)]),
    ],
    "val": [("val2/0/0.jpeg", 0, (40, 40), [(4, 4, 20, 30)])],
    "test": [
        ("val/ILSVRC2012_val_00000001.JPEG", 2, (80, 60), [(8, 6, 39, 29), (50, 30, 69, 49)]),
        ("val/ILSVRC2012_val_00000002.JPEG", 1, (60, 80), [(10, 20, 49, 59)]),
    ],
}


@pytest.fixture
def ilsvrc_root(tmp_path):
    root = tmp_path / "imagenet"
    for split, items in ILSVRC.items():
        meta = root / "metadata" / "ILSVRC" / split
        meta.mkdir(parents=True)
        ids, labels, sizes, boxes = [], [], [], []
        for image_id, label, size, item_boxes in items:
            make_image(root / image_id, size, item_boxes[0], fmt="PNG")
            ids.append(f"{image_id}\n")
            labels.append(f"{image_id},{label}\n")
            sizes.append(f"{image_id},{size[0]},{size[1]}\n")
            if split != "train":
                boxes.extend(f"{image_id},{x0},{y0},{x1},{y1}\n" for x0, y0, x1, y1 in item_boxes)
        (meta / "image_ids.txt").write_text("".join(ids))
        (meta / "class_labels.txt").write_text("".join(labels))
        (meta / "image_sizes.txt").write_text("".join(sizes))
        (meta / "localization.txt").write_text("".join(boxes))
    return root


def meta(root, split, name):
    return root / "metadata" / "ILSVRC" / split / name


def test_ilsvrc_loads_with_imagenet_hierarchy(ilsvrc_root):
    train = load_ilsvrc(split="train", root=str(ilsvrc_root), resize=48, crop=32)
    assert len(train) == 3 and [r.label for r in train.records] == [0, 1, 2]
    assert train.hierarchy.num_classes == (91, 425, 1000)
    sample = train[0]
    assert sample.boxes.shape == (0, 4) and sample.image.shape == (3, 32, 32)
    test = load_ilsvrc(split="test", root=str(ilsvrc_root), crop=40)
    np.testing.assert_array_equal(test.records[0].boxes, [[8, 6, 39, 29], [50, 30, 69, 49]])
    sample = test[0]  # 80x60 -> 40x40: scale 0.5 x (2/3)
    assert sample.boxes.tolist() == [[4, 4, 19, 19], [25, 20, 34, 32]]
    assert_near(red_box(sample.image), sample.boxes[0].tolist())
    assert len(load_ilsvrc(split="val", root=str(ilsvrc_root))) == 1


def test_ilsvrc_present_classes_subset_hierarchy(ilsvrc_root):
    test = load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present")
    h = test.hierarchy
    assert h.class_names[-1] == ("tench", "goldfish", "great white shark")
    assert [r.label for r in test.records] == [2, 1]
    assert (h.ancestors[0, :2] == h.ancestors[1, :2]).all() and (h.ancestors[0, 1] != h.ancestors[2, 1])
    assert load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present", hierarchy="flat").hierarchy.depth == 1
    with pytest.raises(UsageError, match="unknown classes='some'"):
        load_ilsvrc(split="test", root=str(ilsvrc_root), classes="some")


def test_ilsvrc_yaml_hierarchy_by_wnid(ilsvrc_root, tmp_path):
    path = tmp_path / "fish.yaml"
    path.write_text("levels: [kind, class]\nclasses:\n  n01440764: [bony]\n  n01443537: [bony]\n  '2': [shark]\n")
    test = load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present", hierarchy=str(path))
    assert test.hierarchy.class_names == (("bony", "shark"), ("tench", "goldfish", "great white shark"))
    path.write_text("levels: [kind, class]\nclasses:\n  n01440764: [bony]\n")
    message = error_of(lambda: load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present", hierarchy=str(path)))
    assert "class 'goldfish' of the dataset has no entry; add it under 'classes' (as 'n01443537')" in message


def test_ilsvrc_labels_beyond_imagenet(ilsvrc_root):
    for split in ILSVRC:
        edit(meta(ilsvrc_root, split, "class_labels.txt"), ",2\n", ",1500\n") if split != "val" else None
    message = error_of(lambda: load_ilsvrc(split="test", root=str(ilsvrc_root)))
    assert "class_labels.txt:1: class index 1500" in message
    message = error_of(lambda: load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present"))
    assert "label 1500 is not an ImageNet-1k class index" in message and "hierarchy=flat" in message
    flat = load_ilsvrc(split="test", root=str(ilsvrc_root), classes="present", hierarchy="flat")
    assert flat.hierarchy.class_names[0] == ("tench", "goldfish", "class_1500")


def test_ilsvrc_missing_metadata(ilsvrc_root, tmp_path):
    assert "--data-root" in error_of(lambda: load_ilsvrc(split="test"), UsageError)
    message = error_of(lambda: load_ilsvrc(split="test", root=str(tmp_path)))
    assert "metadata folder not found" in message and "metadata_root=PATH" in message
    meta(ilsvrc_root, "test", "localization.txt").unlink()
    message = error_of(lambda: load_ilsvrc(split="test", root=str(ilsvrc_root)))
    assert message.startswith(f"{meta(ilsvrc_root, 'test', 'localization.txt')}: metadata file not found")
    moved = load_ilsvrc(split="train", root=str(ilsvrc_root), metadata_root=str(ilsvrc_root / "metadata" / "ILSVRC"))
    assert len(moved) == 3


def test_ilsvrc_bad_inputs_name_file_and_line(ilsvrc_root):
    ids = meta(ilsvrc_root, "test", "image_ids.txt")
    boxes = meta(ilsvrc_root, "test", "localization.txt")
    load = lambda: load_ilsvrc(split="test", root=str(ilsvrc_root))  # noqa: E731
    original = ids.read_text()
    ids.write_text(original + "val/ILSVRC2012_val_00000002.JPEG\n")
    assert f"{ids}:3: duplicate image id 'val/ILSVRC2012_val_00000002.JPEG' (first at line 2)" in error_of(load)
    ids.write_text(original)
    edit(boxes, "50,30,69,49", "50,30,80,49")
    assert f"{boxes}:2: image 'val/ILSVRC2012_val_00000001.JPEG': box" in error_of(load)
    assert "lies outside the 80x60 image" in error_of(load)
    edit(boxes, "50,30,80,49", "50,30,40,49")
    assert "has x1 < x0" in error_of(load)
    edit(boxes, "50,30,40,49", "50,30,69,49")
    edit(boxes, "val/ILSVRC2012_val_00000002.JPEG,10,20,49,59\n", "")
    assert f"{ids}:2: image 'val/ILSVRC2012_val_00000002.JPEG' has no box" in error_of(load)


def test_ilsvrc_size_mismatch_and_missing_image(ilsvrc_root):
    edit(meta(ilsvrc_root, "test", "image_sizes.txt"), "00000002.JPEG,60,80", "00000002.JPEG,61,80")
    test = load_ilsvrc(split="test", root=str(ilsvrc_root))
    assert "is 60x80 but the metadata says 61x80" in error_of(lambda: test[1])
    (ilsvrc_root / "val" / "ILSVRC2012_val_00000001.JPEG").unlink()
    with pytest.warns(SkippedSamplesWarning, match="skipped 2 bad samples"):
        test = load_ilsvrc(split="test", root=str(ilsvrc_root), skip_bad=True)
    assert len(test) == 0 and len(test.skipped) == 2


# --------------------------------------------------------------------------- folder


@pytest.fixture
def folder_root(tmp_path):
    root = tmp_path / "shapes"
    make_image(root / "a.png", (64, 48), (8, 8, 31, 23), mask_path=root / "masks" / "a.png")
    make_image(root / "sub" / "b.png", (40, 40), (20, 4, 35, 35), mask_path=root / "masks" / "b.png")
    make_image(root / "c.png", (50, 60), (5, 10, 24, 39), mask_path=root / "masks" / "c.png")
    make_image(root / "d.jpg", (30, 30), (3, 3, 10, 10))
    (root / "annotations.csv").write_text(
        "image,label,x0,y0,x1,y1,split,mask\n"
        "a.png,square,8,8,31,23,train,masks/a.png\n"
        "sub/b.png,bar,20,4,35,35,train,masks/b.png\n"
        "c.png,square,5,10,24,39,test,masks/c.png\n"
        "c.png,square,30,40,40,50,test,masks/c.png\n"
    )
    return root


def test_folder_csv_several_boxes_and_masks(folder_root):
    train = load_folder(split="train", root=str(folder_root), resize=40, crop=32)
    test = load_folder(split="test", root=str(folder_root), crop=30)
    assert train.class_names == ("bar", "square") and [r.label for r in train.records] == [1, 0]
    assert train.hierarchy.depth == 1 and train.has_masks
    np.testing.assert_array_equal(test.records[0].boxes, [[5, 10, 24, 39], [30, 40, 40, 50]])
    sample = test[0]  # 50x60 -> 30x30
    assert sample.boxes.tolist() == [[3, 5, 14, 19], [18, 20, 24, 25]]
    assert sample.mask.shape == (30, 30) and sample.mask.dtype == torch.uint8
    for seed in range(6):
        torch.manual_seed(seed)
        sample = train[0]
        found = red_box(sample.image)
        assert_near(found, sample.boxes[0].tolist())
        ys, xs = torch.nonzero(sample.mask == 1, as_tuple=True)
        assert_near((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), sample.boxes[0].tolist())
        assert set(sample.mask.unique().tolist()) <= {0, 1}


def test_folder_yaml_annotations_and_hierarchy(folder_root, tmp_path):
    (folder_root / "ann.yaml").write_text(
        "images:\n"
        "  - {image: a.png, label: square, split: train, boxes: [[8, 8, 31, 23]]}\n"
        "  - {image: sub/b.png, label: bar, split: train}\n"
        "  - image: c.png\n"
        "    label: square\n"
        "    split: test\n"
        "    boxes: [[5, 10, 24, 39], [30, 40, 40, 50]]\n"
    )
    hierarchy = tmp_path / "h.yaml"
    hierarchy.write_text("levels: [shape, class]\nparents: {square: box, bar: box}\n")
    train = load_folder(split="train", root=str(folder_root), annotations="ann.yaml", hierarchy=str(hierarchy))
    assert train.hierarchy.class_names == (("box",), ("bar", "square"))
    assert train.records[1].boxes.shape == (0, 4) and not train.has_masks
    test = load_folder(split="test", root=str(folder_root), annotations=str(folder_root / "ann.yaml"))
    assert test.records[0].boxes.tolist() == [[5, 10, 24, 39], [30, 40, 40, 50]]


def test_folder_class_without_hierarchy_entry(folder_root, tmp_path):
    hierarchy = tmp_path / "h.yaml"
    hierarchy.write_text("levels: [shape, class]\nclasses: {square: [box]}\n")
    message = error_of(lambda: load_folder(split="train", root=str(folder_root), hierarchy=str(hierarchy)))
    assert message.startswith(f"{hierarchy}:2: class 'bar' of the dataset has no entry")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ("d.jpg,square,3,3,50,10,train,", r"annotations\.csv:6: image 'd\.jpg': box .* lies outside the 30x30 image"),
        ("d.jpg,square,10,3,3,10,train,", r"annotations\.csv:6: box .* has x1 < x0"),
        ("d.jpg,square,3,3,1.5,10,train,", r"annotations\.csv:6: box .* must be four integer pixel coordinates"),
        ("d.jpg,square,3,3,10,10,training,", r"annotations\.csv:6: image 'd\.jpg' has split 'training'"),
        (
            "a.png,bar,8,8,31,23,train,masks/a.png",
            r"annotations\.csv:6: image 'a\.png' has label 'bar' but 'square' at .*:2",
        ),
        ("e.png,square,1,1,2,2,train,", r"annotations\.csv:6: image 'e\.png' is listed but its file .* is missing"),
        ("d.jpg,square,,,,,test,", r"annotations\.csv:6: test image 'd\.jpg' has no box"),
        ("d.jpg,square,3,3,10,train,", r"annotations\.csv:6: expected 8 fields"),
    ],
)
def test_folder_bad_rows(folder_root, row, expected):
    csv_path = folder_root / "annotations.csv"
    csv_path.write_text(csv_path.read_text() + row + "\n")
    split = "test" if ",test," in row else "train"
    message = error_of(lambda: load_folder(split=split, root=str(folder_root), verify_images=True))
    assert re.search(expected, message), message


def test_folder_bad_files(folder_root):
    csv_path = folder_root / "annotations.csv"
    csv_path.write_text("image,label,x0,y0,x1,y1,fold\n")
    message = error_of(lambda: load_folder(split="train", root=str(folder_root)))
    assert f"{csv_path}:1: missing column 'split'" in message
    csv_path.unlink()
    assert "no annotation file" in error_of(lambda: load_folder(split="train", root=str(folder_root)))
    assert "annotation file not found" in error_of(
        lambda: load_folder(split="train", root=str(folder_root), annotations="nope.csv")
    )
    (folder_root / "x.yaml").write_text("images:\n  - {image: a.png, label: q, split: train, box: [1, 2, 3, 4]}\n")
    message = error_of(lambda: load_folder(split="train", root=str(folder_root), annotations="x.yaml"))
    assert "x.yaml:2: unknown key 'box'" in message


def test_folder_skip_bad(folder_root):
    csv_path = folder_root / "annotations.csv"
    csv_path.write_text(csv_path.read_text() + "d.jpg,square,3,3,50,10,train,\nmissing.png,bar,1,1,2,2,train,\n")
    with pytest.warns(SkippedSamplesWarning, match=r"skipped 2 bad samples \(skip_bad=true\): d\.jpg, missing\.png"):
        train = load_folder(split="train", root=str(folder_root), skip_bad=True)
    assert train.image_ids == ["a.png", "sub/b.png"] and list(train.skipped) == ["d.jpg", "missing.png"]


def test_registered_datasets_options():
    from wsolbench.plugins import PluginSet, new_plugin_manager
    from wsolbench.registry import Registry
    from wsolbench_plugins.datasets import folder, ilsvrc

    manager = new_plugin_manager()
    for module in (cub_module, ilsvrc, folder):
        manager.register(module)
    registry = Registry(PluginSet(manager))
    assert registry.names("datasets") == ["cub", "folder", "ilsvrc"]
    for name in ("cub", "folder", "ilsvrc"):
        options = registry.get("datasets", name).options
        assert {"root", "resize", "crop", "hierarchy", "skip_bad"} <= set(options)
        assert options["resize"] == 256 and options["crop"] == 224 and options["skip_bad"] is False
        assert "--data-root" in error_of(lambda n=name: registry.build("datasets", n, split="train"), UsageError)


def test_folder_grayscale_and_palette_images_become_rgb(tmp_path):
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).convert("P").save(tmp_path / "p.png")
    (tmp_path / "annotations.csv").write_text(
        "image,label,x0,y0,x1,y1,split\ng.png,a,0,0,29,19,test\np.png,b,1,1,5,5,test\n"
    )
    test = load_folder(split="test", root=str(tmp_path), crop=16, verify_images=True)
    assert [s.image.shape for s in (test[0], test[1])] == [(3, 16, 16), (3, 16, 16)]
    assert test[0].boxes.tolist() == [[0, 0, 15, 15]]
