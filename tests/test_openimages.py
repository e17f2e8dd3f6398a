"""The ``openimages`` loader (OpenImages30k in wsolevaluation's layout) on a miniature tree made here.

Every image has several instance masks and an ignore mask; the combined mask is checked
pixel by pixel against a grid written by hand, and PxAP on it against a hand computation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wsolbench.data import collate_samples
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.metrics import pxap
from wsolbench.registry import default_registry
from wsolbench_plugins.datasets._common import MASK_IGNORE, SkippedSamplesWarning
from wsolbench_plugins.datasets.openimages import load_openimages

S = 8  # image side; crop=S keeps val/test images at their size, so masks compare pixel by pixel


def rect(x0, y0, x1, y1, *, side=S, scale=1):
    """An inclusive rectangle as a ``(side * scale)``-square bool array (``scale``: a finer mask)."""
    out = np.zeros((side * scale, side * scale), dtype=bool)
    out[y0 * scale : (y1 + 1) * scale, x0 * scale : (x1 + 1) * scale] = True
    return out


def grid(text: str) -> np.ndarray:
    """A mask from rows of ``.`` (background), ``1`` (object), ``i`` (ignored)."""
    values = {".": 0, "1": 1, "i": MASK_IGNORE}
    return np.array([[values[c] for c in row.split()] for row in text.strip().splitlines()], dtype=np.uint8)


# image A: two instances, the ignore region overlaps the second one (object wins)
A_MASK = grid(
    """
    . . . . i i i i
    . 1 1 1 i i i i
    . 1 1 1 i i i i
    . . . 1 1 1 i i
    . . . 1 1 1 i i
    . . . 1 1 1 . .
    . . . . . . . .
    . . . . . . . .
    """
)
#             id,  split,  folder, label, instances (inclusive rectangles), ignore rectangle, mask scale
TREE = [
    ("a", "test", "0aaaa", 3, [(1, 1, 3, 2), (3, 3, 5, 5)], (4, 0, 7, 4), 1),
    ("b", "test", "0bbbb", 7, [(0, 6, 7, 7), (6, 0, 7, 1), (0, 0, 1, 1)], (0, 2, 2, 4), 1),
    ("c", "val", "0aaaa", 3, [(2, 2, 4, 4), (5, 5, 6, 6)], (0, 0, 7, 1), 2),  # masks at twice the resolution
    ("d", "val", "0aaaa", 3, [(0, 0, 1, 1)], (2, 2, 3, 3), 1),
    ("e", "val", "0bbbb", 7, [(3, 3, 4, 4)], (0, 0, 0, 0), 1),
    ("f", "train", "0aaaa", 3, [], None, 1),
    ("g", "train", "0bbbb", 7, [], None, 1),
]


def save_bool(path, array, mode):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array.astype(np.uint8) * 255)
    # the release's instance masks are 1-bit PNGs and its ignore masks RGB PNGs
    (image.convert("1") if mode == "1" else image.convert("RGB")).save(path)


@pytest.fixture
def oi_root(tmp_path):
    root = tmp_path / "OpenImages"
    rng = np.random.default_rng(0)
    lines: dict[str, dict[str, list[str]]] = {s: {"ids": [], "labels": [], "loc": []} for s in ("train", "val", "test")}
    for name, split, folder, label, instances, ignore, scale in TREE:
        image_id = f"{split}/{folder}/{name}.jpg"
        (root / split / folder).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (S, S, 3), dtype=np.uint8)).save(root / image_id, quality=95)
        lines[split]["ids"].append(image_id)
        lines[split]["labels"].append(f"{image_id},{label}")
        for k, box in enumerate(instances):
            mask_path = f"{split}/{folder}/{name}_m{folder}_{k}.png"
            save_bool(root / mask_path, rect(*box, scale=scale), "1")
            ignore_field = ""
            if k == 0:
                ignore_field = f"{split}/{folder}/{name}_ignore.png"
                save_bool(root / ignore_field, rect(*ignore), "RGB")
            lines[split]["loc"].append(f"{image_id},{mask_path},{ignore_field}")
    for split, files in lines.items():
        meta = root / "metadata" / "OpenImages" / split
        meta.mkdir(parents=True)
        (meta / "image_ids.txt").write_text("".join(f"{x}\n" for x in files["ids"]))
        (meta / "class_labels.txt").write_text("".join(f"{x}\n" for x in files["labels"]))
        (meta / "image_sizes.txt").write_text("")  # empty in the release
        (meta / "localization.txt").write_text("".join(f"{x}\n" for x in files["loc"]))
    return root


def meta(root, split, name):
    return root / "metadata" / "OpenImages" / split / name


def load(root, split="test", **options):
    return load_openimages(split=split, root=str(root), resize=S, crop=S, **options)


def error_of(call, kind=WsolbenchError) -> str:
    with pytest.raises(kind) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_mask_is_the_union_of_instances_with_ignore_outside_them(oi_root):
    test = load(oi_root)
    assert test.image_ids == ["test/0aaaa/a.jpg", "test/0bbbb/b.jpg"] and test.has_masks
    sample = test[0]
    assert sample.mask.dtype == torch.uint8 and sample.mask.shape == (S, S)
    np.testing.assert_array_equal(sample.mask.numpy(), A_MASK)
    # one box per instance, around its pixels (a wsolbench addition)
    assert sample.boxes.tolist() == [[1, 1, 3, 2], [3, 3, 5, 5]]
    b = test[1].mask.numpy()
    expected = np.zeros((S, S), np.uint8)
    expected[rect(0, 2, 2, 4)] = MASK_IGNORE
    for box in [(0, 6, 7, 7), (6, 0, 7, 1), (0, 0, 1, 1)]:
        expected[rect(*box)] = 1
    np.testing.assert_array_equal(b, expected)
    assert test[1].boxes.tolist() == [[0, 6, 7, 7], [6, 0, 7, 1], [0, 0, 1, 1]]


def test_masks_are_resized_nearest_neighbour(oi_root):
    # to the network input: PIL's nearest takes source pixel floor((i + 0.5) * 2) = 2i + 1
    small = load_openimages(split="test", root=str(oi_root), resize=4, crop=4)[0]
    np.testing.assert_array_equal(small.mask.numpy(), A_MASK[1::2, 1::2])
    # a mask finer than its image (image c: masks at 16x16) is brought to the image's size
    val = load(oi_root, split="val")
    c = val[0].mask.numpy()
    expected = np.zeros((S, S), np.uint8)
    expected[rect(0, 0, 7, 1)] = MASK_IGNORE
    expected[rect(2, 2, 4, 4) | rect(5, 5, 6, 6)] = 1
    np.testing.assert_array_equal(c, expected)
    assert set(np.unique(c)) == {0, 1, MASK_IGNORE}


def test_pxap_skips_the_ignored_pixels_by_hand(oi_root):
    mask = load(oi_root)[0].mask.numpy()
    obj, ign, bg = np.argwhere(mask == 1), np.argwhere(mask == MASK_IGNORE), np.argwhere(mask == 0)
    assert (len(obj), len(ign), len(bg)) == (15, 16, 33)
    scores = np.zeros((S, S), np.float64)
    scores[tuple(obj[:10].T)] = 0.905  # 10 object pixels scored high
    scores[tuple(obj[10:].T)] = 0.505  # 5 low
    scores[tuple(ign.T)] = 0.955  # the ignored pixels score highest: counted as background they would cost
    scores[tuple(bg[:3].T)] = 0.705
    scores[tuple(bg[3:].T)] = 0.105
    # From the top threshold down: only ignored pixels (nothing counted: no point), recall 10/15
    # at precision 1, precision 10/13 at the same recall, recall 1 at precision 15/18, then
    # 15/48. The area sums precision x recall gain: 1 x 10/15 + (15/18) x (5/15).
    value = pxap(scores[None], mask[None]).value
    assert value == pytest.approx(100 * (10 / 15 + (15 / 18) * (5 / 15)))
    # counted as background, the ignored pixels are false positives at the top: 16 more of them
    assert pxap(scores[None], np.where(mask == MASK_IGNORE, 0, mask)[None]).value == pytest.approx(
        100 * ((10 / 26) * (10 / 15) + (15 / 34) * (5 / 15))
    )


def test_classes_come_from_the_metadata(oi_root):
    train = load_openimages(split="train", root=str(oi_root), resize=16, crop=8)
    assert train.class_names == ("0aaaa", "0bbbb")  # labels 3 and 7 of a miniature copy -> 0 and 1
    assert [r.label for r in train.records] == [0, 1] and not train.has_masks
    assert train[0].boxes.shape == (0, 4) and train[0].mask is None
    assert [r.label for r in load(oi_root).records] == [0, 1]
    assert train.hierarchy.depth == 1
    batch = collate_samples([load(oi_root)[0], load(oi_root)[1]])
    assert batch.masks.shape == (2, S, S)


def test_registered_and_metadata_root(oi_root, tmp_path):
    moved = tmp_path / "meta"
    (oi_root / "metadata" / "OpenImages").rename(moved)
    message = error_of(lambda: load(oi_root))
    assert "metadata folder not found" in message and "metadata_root=PATH" in message
    dataset = default_registry().build(
        "datasets", "openimages", split="val", root=str(oi_root), metadata_root=str(moved), crop=S, resize=S
    )
    assert len(dataset) == 3
    assert "--data-root" in error_of(lambda: load_openimages(split="test"), UsageError)


def test_val_cap_per_class(oi_root):
    val = load(oi_root, split="val")
    assert [r.label for r in val.records] == [0, 0, 1]
    capped = load(oi_root, split="val", val_per_class=1)
    assert sorted(r.label for r in capped.records) == [0, 1]
    seen = {load(oi_root, split="val", val_per_class=1, val_seed=seed).image_ids[0] for seed in range(12)}
    assert seen == {"val/0aaaa/c.jpg", "val/0aaaa/d.jpg"}  # the seed picks among the class's images
    assert len(load(oi_root, val_per_class=1)) == 2  # test is never capped


@pytest.mark.parametrize(
    ("old", "new", "split", "expected"),
    [
        (
            "test/0aaaa/a_m0aaaa_1.png,",
            "test/0aaaa/a_m0aaaa_1.png,test/0aaaa/b_ignore.png",
            "test",
            "localization.txt:2: image 'test/0aaaa/a.jpg' has a second ignore mask",
        ),
        ("a_m0aaaa_1.png,", "a_m0aaaa_1.png", "test", "localization.txt:2: expected '<image_id>,<mask>,<ignore mask>'"),
        ("a_m0aaaa_1.png", "a_m0aaaa_9.png", "test", "localization.txt:2: mask 'test/0aaaa/a_m0aaaa_9.png' of image"),
        ("test/0bbbb/b.jpg,", "x.jpg,", "test", "image_ids.txt:2: image 'test/0bbbb/b.jpg' has no mask"),
    ],
)
def test_bad_localization_lines(oi_root, old, new, split, expected):
    path = meta(oi_root, split, "localization.txt")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    message = error_of(lambda: load(oi_root, split=split))
    assert expected in message, message
    assert str(path.parent) in message


def test_bad_labels_and_images(oi_root):
    labels = meta(oi_root, "test", "class_labels.txt")
    labels.write_text(labels.read_text().replace(",7", ",x"))
    assert "class_labels.txt:2: expected '<image_id>,<class index>'" in error_of(lambda: load(oi_root))
    labels.write_text(labels.read_text().replace(",x", ",7"))
    (oi_root / "test" / "0bbbb" / "b.jpg").unlink()
    assert "image 'test/0bbbb/b.jpg' is listed but its file" in error_of(lambda: load(oi_root))
    with pytest.warns(SkippedSamplesWarning, match="skipped 1 bad sample"):
        assert load(oi_root, skip_bad=True).image_ids == ["test/0aaaa/a.jpg"]


def test_masks_without_object_pixels_are_one_line_errors(oi_root):
    for k in (0, 1):
        save_bool(oi_root / "test" / "0aaaa" / f"a_m0aaaa_{k}.png", np.zeros((S, S), bool), "1")
    test = load(oi_root)
    message = error_of(lambda: test[0])
    assert "no instance mask of image 'test/0aaaa/a.jpg' has an object pixel" in message
    assert "localization.txt:1" in message and "skip_bad=true" in message
    with pytest.warns(SkippedSamplesWarning):
        assert load(oi_root, skip_bad=True).image_ids == ["test/0bbbb/b.jpg"]
    save_bool(oi_root / "test" / "0aaaa" / "a_m0aaaa_0.png", rect(0, 0, 1, 1), "1")
    assert load(oi_root)[0].boxes.tolist() == [[0, 0, 1, 1]]  # the empty instance gives no box
    (oi_root / "test" / "0bbbb" / "b_ignore.png").write_bytes(b"not a png")
    assert "cannot decode mask" in error_of(lambda: load(oi_root, verify_images=True))
