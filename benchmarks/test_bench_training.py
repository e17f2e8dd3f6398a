"""Training-step overhead of the library against a plain PyTorch loop of the same network and loss.

For each backbone x method case one model is built from the registry (random weights, the
``wsol`` head at a reduced width, SGD as :func:`wsolbench.train.make_optimizer` configures it
from the default config). A deep copy of its backbone and heads is trained by a plain loop
written here in plain torch: the modules called directly, the loss written inline (per-head
cross-entropy of the GAP of the class maps, DDA's random map drop and the joint cosine
divergence of the official DANet code), a ``torch.optim.SGD`` written out with the same
settings. Before timing, one step of each from the same weights and RNG state must give the
same loss and the same updated weights: the plain loop is the same computation.

The library step is :func:`wsolbench.train.train_step`, the function the training loop calls
(prepare_images, autocast, ``model.loss(model(images), labels)``, the finiteness check,
zero_grad, the GradScaler's backward/step/update), plus the loop's loss logging through
:class:`wsolbench.progress.Progress`, without data loading, which both sides would share.

Both steps run alternately on a fixed batch (AB, BA, ...), each timed in wall-clock and in
CPU time of the process. ``benchmark.extra_info["overhead"]`` is the median over the pairs of
``library CPU time / plain CPU time``, minus 1. Target: <= 5%; each case asserts <= 15% so
that a loaded machine does not fail the run (``compare.py`` then checks the overhead against
the committed baseline).

Why not ``median(library wall) / median(plain wall) - 1``: on the shared machine the wall time
of a step is bimodal (the same GoogLeNet step takes 38 or 55 ms depending on whether another
process holds the core), and when each side's median falls in a different mode that ratio is
off by 20-30 points (measured: -24% and +33% on googlenet-cam) while the per-pair and CPU-time
estimates of the same runs stayed within 2%. A pair runs both steps in the same spell, and
CPU time leaves out the time spent waiting for a core. The other three estimates are kept as
context (``wall_estimate``, ``paired_wall_estimate``, ``cpu_estimate``). Torch runs with one
intra-op thread (``one_torch_thread`` in conftest.py), so CPU time is the step's own work.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.config import DEFAULTS
from wsolbench.model import WSOLModel
from wsolbench.progress import Progress
from wsolbench.registry import default_registry
from wsolbench.specs import Hierarchy
from wsolbench.train import TermSums, TrainingDiverged, make_optimizer, train_step

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Asserted bound on every case's overhead; the target (reported, see README) is 5%.
MAX_OVERHEAD = 0.15
TARGET_OVERHEAD = 0.05

BATCH = 4
#: Input size per backbone: 32 px for VGG16/ResNet-50/GoogLeNet (their deepest level is 2 x 2),
#: 64 px for Inception-v3 (its valid convolutions need it) and tinycnn (as in the tests).
INPUT_PX = {"tinycnn": 64, "vgg16": 32, "resnet50": 32, "googlenet": 32, "inceptionv3": 64}
#: Width of the two 3x3 convolutions of the ``wsol`` head (the paper's 1024 would dwarf the
#: backbone at these sizes and hide the per-step overhead this file looks for).
HEAD_CHANNELS = 128
#: Seconds of interleaved timing per case (pairs are clamped to [MIN_PAIRS, MAX_PAIRS]).
BUDGET_S = 6.0
MIN_PAIRS, MAX_PAIRS = 8, 80
WARMUP_STEPS = 3

METHODS = ("cam", "multiloss", "hda", "dda", "danet")
CASES = [("tinycnn", m) for m in METHODS] + [
    (backbone, method) for backbone in ("vgg16", "resnet50", "googlenet", "inceptionv3") for method in ("cam", "danet")
]


def make_hierarchy() -> Hierarchy:
    """2 coarse -> 4 middle -> 16 fine classes (a miniature CUB order/family/species tree)."""
    fine = 16
    ancestors = np.array([[c // 8, c // 4, c] for c in range(fine)], dtype=np.int64)
    names = tuple(tuple(f"{level}{i}" for i in range(n)) for level, n in (("o", 2), ("f", 4), ("s", fine)))
    return Hierarchy(("order", "family", "species"), names, ancestors)


# --------------------------------------------------------------------------- the plain loop


@dataclass(frozen=True)
class Recipe:
    """What a method trains, spelled out for the plain loop (not read from the library).

    ``levels``: backbone levels with a head (shallow to deep); ``label_levels``: the hierarchy
    level of each head's labels; ``k``: maps per class; ``keep``: maps averaged per class while
    training (DDA's drop; ``k`` = no drop); ``lam``: weight of the joint cosine divergence.
    """

    levels: tuple[int, ...]
    label_levels: tuple[int, ...]
    k: int = 1
    keep: int = 1
    lam: float = 0.0


#: For 3-level backbones and the 3-level hierarchy above, with every method's default options.
RECIPES = {
    "cam": Recipe(levels=(2,), label_levels=(2,)),
    "multiloss": Recipe(levels=(0, 1, 2), label_levels=(2, 2, 2)),
    "hda": Recipe(levels=(0, 1, 2), label_levels=(0, 1, 2)),
    "dda": Recipe(levels=(0, 1, 2), label_levels=(2, 2, 2), k=8, keep=4, lam=0.01),
    "danet": Recipe(levels=(0, 1, 2), label_levels=(0, 1, 2), k=8, keep=4, lam=0.01),
}


class PlainLoop:
    """One SGD step of ``backbone`` + ``heads`` with the loss of ``recipe``, in plain torch."""

    def __init__(self, backbone: nn.Module, heads: nn.ModuleList, recipe: Recipe, hierarchy: Hierarchy):
        self.backbone, self.heads, self.recipe = backbone, heads, recipe
        # fine label -> label at each head's level, as lookup tensors built once
        self.tables = [torch.as_tensor(hierarchy.ancestors[:, level]) for level in recipe.label_levels]
        train = DEFAULTS["train"]
        self.optimizer = torch.optim.SGD(
            [
                {"params": list(backbone.parameters()), "lr": train["lr"]},
                {"params": list(heads.parameters()), "lr": train["lr"] * train["head_lr_mult"]},
            ],
            lr=train["lr"],
            momentum=train["momentum"],
            nesterov=train["nesterov"],
            weight_decay=train["weight_decay"],
        )

    def loss(self, images: Tensor, labels: Tensor) -> Tensor:
        r = self.recipe
        features = self.backbone(images)
        losses, gt_maps = [], []
        for head, level, table in zip(self.heads, r.levels, self.tables, strict=True):
            raw = head(features[level])  # (B, C, K, h, w)
            if r.keep < r.k:  # DDA: a random subset of each class's K maps while training
                kept = torch.randperm(r.k)[: r.keep]
                class_maps = raw.index_select(2, kept).mean(2)
            else:
                class_maps = raw.mean(2)
            target = table[labels]
            losses.append(F.cross_entropy(class_maps.mean((2, 3)), target))
            gt_maps.append(raw[torch.arange(raw.shape[0]), target])  # (B, K, h, w)
        loss = sum(losses)
        if r.lam:  # the official DANet divergence: mean |cos| of a random half of all GT maps
            size = gt_maps[0].shape[-2:]  # the shallowest head has the largest maps
            maps = torch.cat(
                [
                    m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear", align_corners=True)
                    for m in gt_maps
                ],
                1,
            )
            count = maps.shape[1]
            keep = max(2, count // 2)
            maps = maps[:, torch.randperm(count)[:keep]]
            flat = F.normalize(maps.flatten(2), dim=2, eps=1e-8)
            cosines = torch.triu(flat @ flat.transpose(1, 2), diagonal=1).sum((1, 2))
            loss = loss + r.lam * cosines.abs().mean() / (keep * (keep - 1) / 2)
        return loss

    def step(self, images: Tensor, labels: Tensor) -> float:
        loss = self.loss(images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.item()


# --------------------------------------------------------------------------- the library's step


class LibraryLoop:
    """:func:`wsolbench.train.train_step` plus the loop's progress logging (CPU, no AMP)."""

    def __init__(self, model: WSOLModel):
        self.model = model
        self.config = copy.deepcopy(DEFAULTS)
        self.optimizer = make_optimizer(model, self.config)
        self.scaler = torch.amp.GradScaler("cpu", enabled=False)
        self.progress = Progress("plain", stream=io.StringIO())
        self.progress.start_epoch(0, 1, 10**9)
        self.window = TermSums()
        self.index = 0

    def step(self, images: Tensor, labels: Tensor) -> Tensor:
        """One step; like the training loop, the loss is read (and checked) every ``log_every`` steps."""
        terms = train_step(self.model, self.model, self.optimizer, self.scaler, images, labels)
        self.window.add(terms)
        logged = None
        if (self.index + 1) % self.config["train"]["log_every"] == 0:
            logged = self.window.means()
            self.window = TermSums()
            if not math.isfinite(logged["loss"]):
                raise TrainingDiverged("loss is not finite")
        self.progress.step(self.index, len(labels), logged["loss"] if logged else None)
        self.index += 1
        return terms["loss"]


# --------------------------------------------------------------------------- the benchmark


def build(backbone_name: str, method_name: str) -> tuple[LibraryLoop, PlainLoop, Tensor, Tensor]:
    registry = default_registry()
    hierarchy = make_hierarchy()
    torch.manual_seed(0)
    head = functools.partial(registry.get("heads", "wsol").factory, channels=HEAD_CHANNELS)
    model = WSOLModel(
        registry.build("backbones", backbone_name), head, registry.build("methods", method_name), hierarchy
    )
    model.train()
    recipe = RECIPES[method_name]
    specs = [(s.level, s.label_level, s.k) for s in model.head_specs]
    assert specs == [(lv, lb, recipe.k) for lv, lb in zip(recipe.levels, recipe.label_levels, strict=True)], (
        f"{method_name} builds heads {specs}: update RECIPES"
    )
    twin = copy.deepcopy(model)  # same weights, independent modules for the plain loop
    plain = PlainLoop(twin.backbone, twin.heads, recipe, hierarchy)
    size = INPUT_PX[backbone_name]
    generator = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, size, size, generator=generator)
    labels = torch.randint(0, hierarchy.num_classes[-1], (BATCH,), generator=generator)
    return LibraryLoop(model), plain, images, labels


def check_same_computation(library: LibraryLoop, plain: PlainLoop, images: Tensor, labels: Tensor) -> None:
    """One step each from the same weights and RNG state: same loss, same updated weights."""
    torch.manual_seed(123)
    library_loss = float(library.step(images, labels))
    torch.manual_seed(123)
    plain_loss = plain.step(images, labels)
    assert plain_loss == pytest.approx(library_loss, rel=1e-5, abs=1e-6), "the plain loop computes another loss"
    library_state = library.model.state_dict()
    plain_state = {
        **{f"backbone.{k}": v for k, v in plain.backbone.state_dict().items()},
        **{f"heads.{k}": v for k, v in plain.heads.state_dict().items()},
    }
    assert library_state.keys() == plain_state.keys()
    for key, value in library_state.items():
        assert torch.allclose(value.float(), plain_state[key].float(), rtol=1e-4, atol=1e-6), (
            f"{key} differs after one step"
        )


@pytest.mark.parametrize(("backbone_name", "method_name"), CASES, ids=[f"{b}-{m}" for b, m in CASES])
def test_training_step_overhead(benchmark, interleaved, backbone_name, method_name):
    library, plain, images, labels = build(backbone_name, method_name)
    check_same_computation(library, plain, images, labels)

    def library_step():
        library.step(images, labels)

    def plain_step():
        plain.step(images, labels)

    def measure():
        start = time.perf_counter()
        for _ in range(WARMUP_STEPS):
            library_step()
            plain_step()
        per_pair = (time.perf_counter() - start) / WARMUP_STEPS
        pairs = int(min(MAX_PAIRS, max(MIN_PAIRS, BUDGET_S / per_pair)))
        return interleaved(library_step, plain_step, pairs)

    timing = benchmark.pedantic(measure, rounds=1, iterations=1)
    overhead = timing.paired_cpu_ratio - 1
    benchmark.extra_info.update(
        overhead=round(overhead, 4),
        wall_estimate=round(timing.ratio - 1, 4),
        paired_wall_estimate=round(timing.paired_ratio - 1, 4),
        cpu_estimate=round(timing.cpu_ratio - 1, 4),
        library_ms=round(1000 * timing.first_median, 3),
        plain_ms=round(1000 * timing.second_median, 3),
        pairs=len(timing.first),
        input_px=INPUT_PX[backbone_name],
        batch=BATCH,
        torch_threads=torch.get_num_threads(),
        overhead_target=TARGET_OVERHEAD,
    )
    print(
        f"\n{backbone_name}-{method_name}: library {1000 * timing.first_median:.2f} ms, "
        f"plain {1000 * timing.second_median:.2f} ms per step (wall medians, {len(timing.first)} pairs): "
        f"overhead {100 * overhead:+.2f}% (target <= {100 * TARGET_OVERHEAD:.0f}%; other estimates: "
        f"wall medians {100 * (timing.ratio - 1):+.1f}%, wall pairs {100 * (timing.paired_ratio - 1):+.1f}%, "
        f"CPU medians {100 * (timing.cpu_ratio - 1):+.1f}%)"
    )
    assert overhead <= MAX_OVERHEAD, (
        f"{backbone_name}-{method_name}: training step {100 * overhead:.1f}% slower than the plain loop "
        f"(allowed {100 * MAX_OVERHEAD:.0f}%, target {100 * TARGET_OVERHEAD:.0f}%)"
    )
