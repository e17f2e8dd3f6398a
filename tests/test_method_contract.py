"""Contract tests: every registered method on every built-in backbone.

One CPU training step at a tiny size, one evaluation batch, a cache round trip of the
method's extra maps and a checkpoint round trip. A new method plugin is tested here for
free. tinycnn cases run in the fast suite; the big backbones are marked slow.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from wsolbench import config as configuration
from wsolbench.cache import CacheMeta, CacheWriter, read_cache
from wsolbench.data import collate_samples
from wsolbench.predict import predict_batch
from wsolbench.registry import default_registry
from wsolbench.runtime import Runtime
from wsolbench.specs import backbone_normalization
from wsolbench.train import build_parts, make_optimizer, train_step

#: Backbone -> (image size, extra config): the smallest inputs each network takes.
BACKBONES = {
    "tinycnn": (32, {"backbone.width": 4}),
    "vgg16": (32, {}),
    "resnet50": (32, {}),
    "googlenet": (32, {}),
    "inceptionv3": (80, {}),
    "timm:resnet18": (32, {}),
}
METHODS = default_registry(warn=False).names("methods")
BATCH = 4


def cases():
    for backbone in BACKBONES:
        marks = () if backbone == "tinycnn" else (pytest.mark.slow,)
        for method in METHODS:
            yield pytest.param(method, backbone, marks=marks, id=f"{method}-{backbone}")


def tiny_config(method: str, backbone: str) -> dict:
    size, extra = BACKBONES[backbone]
    sets = {
        "method.name": method,
        "backbone.name": backbone,
        "head.channels": 8,
        "dataset.image_size": size,
        "dataset.num_train": BATCH,
        "dataset.num_test": BATCH,
        "train.batch_size": BATCH,
        "seed": 0,
        **extra,
    }
    return configuration.resolve(default_registry(warn=False), flags=sets)


def first_batch(dataset):
    return collate_samples([dataset[i] for i in range(BATCH)])


@pytest.mark.parametrize("method, backbone", list(cases()))
def test_method_trains_predicts_and_round_trips(method: str, backbone: str, tmp_path: Path, one_thread) -> None:
    config = tiny_config(method, backbone)
    registry = default_registry(warn=False)
    parts = build_parts(config, registry)
    model = parts.model
    assert parts.train_set.normalization == backbone_normalization(model.backbone)

    # one training step: a finite loss, and every parameter the optimizer holds is in a group
    optimizer = make_optimizer(model, config)
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert grouped == {id(p) for p in model.parameters()}, "a parameter is not trained or trained twice"
    model.train()
    batch = first_batch(parts.train_set)
    before = [p.detach().clone() for p in model.heads.parameters()]
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    terms = train_step(model, model, optimizer, scaler, batch.images, batch.labels)
    assert torch.isfinite(terms["loss"]) and terms["loss"].dim() == 0
    assert any(not torch.equal(a, b) for a, b in zip(before, model.heads.parameters())), "the heads did not learn"

    # one evaluation batch: fused maps at the image size in [0, 1], extras normalised
    runtime = Runtime(device=torch.device("cpu"))
    fields = predict_batch(model, first_batch(parts.test_set), runtime, amp=False, save_maps=True)
    size = parts.test_set[0].image.shape[-2:]
    for key in ("fused_pred", "fused_gt"):
        assert fields[key].shape == (BATCH, *size)
        assert fields[key].min() >= 0 and fields[key].max() <= 1
    for name, maps in fields["extras"].items():
        assert maps.ndim == 4 and maps.shape[0] == BATCH, name
        assert len(fields["extra_names"][name]) == maps.shape[1], name
        assert maps.min() >= 0 and maps.max() <= 1, name

    # the cache keeps the extras, each map quantised to uint8
    path = tmp_path / "cache.h5"
    with CacheWriter(
        path,
        meta=CacheMeta.from_config(config),
        num_images=BATCH,
        map_size=size,
        num_classes=parts.test_set.hierarchy.num_classes[-1],
        has_masks=fields["masks"] is not None,
        extra_maps={name: (maps.shape[1:], fields["extra_names"][name]) for name, maps in fields["extras"].items()},
    ) as writer:
        writer.write_batch(**{key: value for key, value in fields.items() if key != "extra_names"})
    with read_cache(path) as cache:
        assert list(cache.extra_maps) == list(fields["extras"])
        for name, maps in fields["extras"].items():
            np.testing.assert_allclose(cache.extra_maps[name].store[:], maps, atol=1 / 255 + 1e-6)
            assert cache.extra_maps[name].names == list(fields["extra_names"][name])

    # a checkpoint restores the model the method built (its own modules included)
    rebuilt = build_parts(copy.deepcopy(config), registry).model
    rebuilt.load_state_dict(model.state_dict())
    model.eval(), rebuilt.eval()
    images = first_batch(parts.test_set).images
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(images).logits[-1], model(images).logits[-1])


@pytest.mark.parametrize("method", METHODS)
def test_default_search_space_names_options_the_method_accepts_at_both_ends(method: str) -> None:
    """Every range of a method's ``search_space`` is a declared option, and its extreme values build."""
    from wsolbench.search import method_search_space

    registry = default_registry(warn=False)
    component = registry.get("methods", method)
    space = method_search_space(registry, method)
    assert {key.removeprefix("method.") for key in space} <= set(component.options)
    for end in (0, -1):
        options = {}
        for key, distribution in space.items():
            ((kind, values),) = distribution.items()
            options[key.removeprefix("method.")] = values[end] if kind == "choice" else values[0 if end == 0 else 1]
        registry.build("methods", method, **options)  # a usage error here would stop every search
