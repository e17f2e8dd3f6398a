"""``wsolbench show`` / :func:`wsolbench.viz.write_pictures` on tiny hand-built caches."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsolbench.cache import CacheMeta, CacheWriter, read_cache
from wsolbench.cli.main import main
from wsolbench.errors import UsageError
from wsolbench.registry import default_registry
from wsolbench.viz import PicturesWarning, _load_images, pick_indices, write_pictures

N, S, C, K = 8, 32, 36, 3  # images, map side, classes (synthetic's 4 x 3 x 3), DDA maps
SYNTHETIC = {"name": "synthetic", "num_test": N, "image_size": S}
PER_RUN = ("overlays.png", "levels.png", "k_maps.png")
COMPARED = ("iou_histogram.png", "maxboxacc_curve.png")


def blob(cx: float, cy: float, r: float, size: int = S) -> np.ndarray:
    """A Gaussian bump min-max normalised to [0, 1] (float32)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    m = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
    return ((m - m.min()) / (m.max() - m.min())).astype(np.float32)


def make_run(
    root: Path,
    name: str = "run-a",
    *,
    dataset: dict | None = None,
    method: str = "danet",
    levels: bool = True,
    k_maps: bool = True,
    threshold: float | None = 0.3,
) -> Path:
    """A run folder with a cache of the first N synthetic test images (true boxes and labels)."""
    dataset = dict(SYNTHETIC if dataset is None else dataset)
    run_dir = root / name
    run_dir.mkdir(parents=True)
    config = {
        "method": {"name": method},
        "backbone": {"name": "tinycnn"},
        "dataset": dataset,
        "eval": {"cam_curve_interval": 0.05},
        "seed": 0,
    }
    synthetic = default_registry().build("datasets", "synthetic", split="test", num_test=N, image_size=S)
    items = [synthetic.generate(i) for i in range(N)]
    rng = np.random.default_rng(0)
    names = ["0:order", "1:family", "2:species"]
    with CacheWriter(
        run_dir / "cache.h5",
        meta=CacheMeta.from_config(config),
        num_images=N,
        map_size=(S, S),
        num_classes=C,
        extra_maps={
            **({"levels": ((len(names), S, S), names)} if levels else {}),
            **({"k_maps": ((K, 4, 4), [f"k = {j + 1}" for j in range(K)])} if k_maps else {}),
        },
    ) as writer:
        for i, item in enumerate(items):
            x0, y0, x1, y1 = item.box
            fused = blob((x0 + x1) / 2 + i % 3, (y0 + y1) / 2, max(2.0, (x1 - x0) / 3))
            logits = rng.normal(size=(1, C)).astype(np.float32)
            logits[0, item.label] += 3.0 * (i % 2)  # every other image classified right
            writer.write_batch(
                image_ids=[f"test/{i:06d}"],
                labels=[item.label],
                logits=logits,
                fused_pred=fused[None],
                fused_gt=fused[None],
                boxes=[item.box[None]],
                extras={
                    **({"levels": np.stack([blob(x0, y0, 3 + j) for j in range(len(names))])[None]} if levels else {}),
                    **({"k_maps": rng.random((1, K, 4, 4))} if k_maps else {}),
                },
            )
    if threshold is not None:
        (run_dir / "metrics.json").write_text(json.dumps({"cam_threshold": threshold}))
    return run_dir


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("runs"))


def check_png(path: Path, min_side: int = 300) -> tuple[int, int]:
    assert path.is_file(), path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert min(width, height) >= min_side, (path.name, image.size)
        assert max(width, height) <= 4000, (path.name, image.size)
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.std() > 10, f"{path.name} looks blank"
    return width, height


def test_writes_every_picture(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with warnings.catch_warnings():
        warnings.simplefilter("error", PicturesWarning)  # the dataset is rebuilt: no warning
        paths = write_pictures([run_dir], out, n=3, ids=None, seed=0)
    expected = [out / run_dir.name / name for name in PER_RUN] + [out / name for name in COMPARED]
    assert paths == expected
    sizes = {path.name: check_png(path) for path in paths}
    # three images: one row of overlays, three rows of level/K maps, each wider than tall
    assert sizes["overlays.png"][0] > sizes["overlays.png"][1]
    assert sizes["levels.png"][1] > sizes["overlays.png"][1]
    assert sizes["k_maps.png"][0] >= 2 * S * (K + 2)


def test_optional_maps_and_n_larger_than_cache(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs", "plain-cam", method="cam", levels=False, k_maps=False, threshold=None)
    paths = write_pictures([run], tmp_path / "out", n=50, ids=None, seed=1)  # 50 > N: all 8 images
    assert [p.name for p in paths] == ["overlays.png", *COMPARED]  # no level or K maps in this cache
    width, height = check_png(paths[0])
    assert height > width / 2  # two rows of four


def test_same_seed_same_pictures(run_dir: Path, tmp_path: Path) -> None:
    ids = read_cache(run_dir, load=True).image_ids
    assert pick_indices(ids, n=3, ids=None, seed=5) == pick_indices(ids, n=3, ids=None, seed=5)
    picks = {tuple(pick_indices(ids, n=3, ids=None, seed=s)) for s in range(6)}
    assert len(picks) > 1  # the seed matters
    first = write_pictures([run_dir], tmp_path / "a", n=2, ids=None, seed=7)
    second = write_pictures([run_dir], tmp_path / "b", n=2, ids=None, seed=7)
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_given_ids_and_unknown_id(run_dir: Path, tmp_path: Path) -> None:
    ids = read_cache(run_dir, load=True).image_ids
    assert pick_indices(ids, n=1, ids=["test/000005", "test/000002"], seed=0) == [5, 2]
    paths = write_pictures([run_dir], tmp_path / "out", n=8, ids=["test/000005", "test/000002"], seed=0)
    check_png(paths[0])
    with pytest.raises(UsageError, match=r"unknown image id 'test/999999'") as error:
        write_pictures([run_dir], tmp_path / "bad", n=2, ids=["test/000001", "test/999999"], seed=0)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "bad").exists()  # nothing drawn before the ids are checked
    with pytest.raises(UsageError, match="--n"):
        write_pictures([run_dir], tmp_path / "bad", n=0, ids=None, seed=0)


def test_images_are_the_datasets(run_dir: Path) -> None:
    dataset = default_registry().build("datasets", "synthetic", split="test", num_test=N, image_size=S)
    with read_cache(run_dir) as cache:
        images, note = _load_images(cache, [6, 1])
    assert note == ""
    assert np.array_equal(images[0], dataset.raw_image(6)) and np.array_equal(images[1], dataset.raw_image(1))


@pytest.mark.parametrize(
    "dataset, reason",
    [
        ({"name": "cub", "root": "/nonexistent/CUB_200_2011"}, "cannot be built"),  # real data absent
        ({"name": "no-such-dataset"}, "cannot be built"),  # plugin not installed
        ({**SYNTHETIC, "num_test": N + 1}, "has 9 images"),  # dataset no longer matches the cache
    ],
)
def test_pictures_without_the_dataset(tmp_path: Path, dataset: dict, reason: str) -> None:
    run = make_run(tmp_path / "runs", dataset=dataset, levels=False, k_maps=False)
    with pytest.warns(PicturesWarning, match=reason) as caught:
        paths = write_pictures([run], tmp_path / "out", n=2, ids=None, seed=0)
    assert len(caught) == 1 and "\n" not in str(caught[0].message)
    for path in paths:
        check_png(path)


def test_runs_compared(tmp_path: Path) -> None:
    first = make_run(tmp_path / "x", "same-name")
    second = make_run(tmp_path / "y", "same-name", method="cam", k_maps=False, threshold=None)
    out = tmp_path / "out"
    paths = write_pictures([first, second / "cache.h5"], out, n=2, ids=None, seed=0)
    assert (out / "same-name" / "k_maps.png") in paths and (out / "same-name-2" / "overlays.png") in paths
    assert not (out / "same-name-2" / "k_maps.png").exists()
    assert paths[-2:] == [out / name for name in COMPARED]
    for path in paths:
        check_png(path)


def test_cli(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["show", str(run_dir), "--out", str(out), "--n", "2"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / run_dir.name / name) for name in PER_RUN] + [str(out / name) for name in COMPARED]
    assert main(["show", str(run_dir), "--out", str(out), "--ids", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown image id 'nope'" in err


def test_cli_warning_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(
        tmp_path / "runs", dataset={"name": "cub", "root": str(tmp_path / "missing")}, levels=False, k_maps=False
    )
    assert main(["show", str(run), "--out", str(tmp_path / "out"), "--n", "1"]) == 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("wsolbench show: warning: run-a: no images (dataset 'cub' cannot be built")
    assert err.count("\n") == 0 and "maps drawn on grey" in err


@pytest.mark.parametrize("saved", [None, 0.45])
def test_statistics_are_evaluates_numbers(tmp_path: Path, saved: float | None) -> None:
    from wsolbench.evaluate import evaluate_cache, per_image
    from wsolbench.metrics import box_accuracy
    from wsolbench.viz import _Run, _statistics

    run_dir = make_run(tmp_path, threshold=saved, levels=False, k_maps=False)
    with read_cache(run_dir) as cache:
        run = _Run(run_dir=run_dir, name="r", cache=cache)
        _statistics(run)
        maps = cache.fused_gt[:]
        expected = saved if saved is not None else evaluate_cache(cache, cam_curve_interval=0.05)["cam_threshold"]
        assert run.threshold == pytest.approx(expected)
        np.testing.assert_array_equal(run.gt_ious, per_image(cache, expected).iou)
        reference = box_accuracy(maps, cache.boxes, cam_curve_interval=0.05, iou_thresholds=(50,), multi_contour=False)
    np.testing.assert_allclose(run.curves.thresholds, reference.thresholds)  # the run's grid (step 0.05)
    np.testing.assert_allclose(run.curves.accuracy("gt_known"), reference.curves[50], atol=1e-9)
    assert run.curves.best("gt_known")[0] == pytest.approx(reference.value)
