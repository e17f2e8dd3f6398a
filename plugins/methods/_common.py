"""Shared pieces of the built-in methods: level choice, label-level mapping, the divergence terms.

Private to ``wsolbench_plugins.methods`` (not an entry point, registers nothing).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from wsolbench.errors import UsageError
from wsolbench.specs import FeatureLevel


def check_int(method: str, option: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``, else a one-line :class:`UsageError`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"method {method!r}: {option} must be an integer >= {minimum}, not {value!r}")
    return value


def check_float(
    method: str, option: str, value: object, low: float, high: float = math.inf, *, low_open: bool = False
) -> float:
    """``value`` as a float in ``[low, high]`` (``(low, high]`` with ``low_open``), else a one-line :class:`UsageError`."""
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    if not math.isfinite(number) or not (low < number if low_open else low <= number) or not number <= high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if math.isinf(high) else ']'}"
        raise UsageError(f"method {method!r}: {option} must be a number in {interval}, not {value!r}")
    return number


def deepest_levels(feature_info: Sequence[FeatureLevel], count: int) -> list[int]:
    """Indices of the ``count`` deepest backbone levels, shallow to deep (all of them if fewer)."""
    total = len(feature_info)
    return list(range(max(0, total - count), total))


def hierarchical_label_levels(heads: int, depth: int) -> list[int]:
    """Coarse-to-fine label levels for ``heads`` heads ordered shallow to deep.

    The deepest head gets the fine level ``depth - 1``, each shallower head the next coarser
    level: head ``i`` gets ``max(0, depth - heads + i)``. A hierarchy deeper than the number of
    heads uses its ``heads`` finest levels; a shallower one repeats its coarsest level on the
    extra shallow heads (with a flat hierarchy every head gets the fine labels: multi-loss).
    """
    return [max(0, depth - heads + i) for i in range(heads)]


def gt_maps(raw_maps: Tensor, target: Tensor) -> Tensor:
    """``(B, C, K, h, w)``, ``(B,)`` -> ``(B, K, h, w)``: the K maps of each image's target class."""
    return raw_maps[torch.arange(raw_maps.shape[0], device=raw_maps.device), target]


def pairwise_cosine_sum(maps: Tensor) -> Tensor:
    """``(B, K, h, w)`` -> ``(B,)``: ``sum_{k < k'} cos(A^k, A^k')`` over the flattened maps.

    Vectorised: L2-normalise the flattened maps, one batched Gram matrix, sum of its strict
    upper triangle. An all-zero map has cosine 0 with every map.
    """
    flat = F.normalize(maps.flatten(2), dim=2, eps=1e-8)
    gram = flat @ flat.transpose(1, 2)
    return torch.triu(gram, diagonal=1).sum(dim=(1, 2))


def random_subset(count: int, keep: int, device: torch.device) -> Tensor | None:
    """``keep`` random indices out of ``count`` from torch's global RNG (None: keep all, no draw)."""
    if keep >= count:
        return None
    return torch.randperm(count)[:keep].to(device)


def level_divergence(raw_maps: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """Eq. 4 per head, summed over heads: ``sum_h mean_b sum_{k<k'} cos(A_c^k, A_c^k')``."""
    return sum(pairwise_cosine_sum(gt_maps(raw, target)).mean() for raw, target in zip(raw_maps, targets, strict=True))


def joint_divergence(raw_maps: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
    """The official DANet code's divergence over all heads' target-class maps together.

    The target class's K maps of every head are resized (bilinear, ``align_corners=True``) to
    the largest head resolution (the shallowest level) and stacked: N maps per image. A random
    half of them (``torch.randperm(N)[:max(2, N // 2)]`` from the global RNG, shared by the
    batch) is kept; the loss is ``mean_b |sum_{k<k'} cos| / P`` with ``P`` the number of kept
    pairs: the mean absolute pairwise cosine, 0 for orthogonal maps, 1 for identical ones.
    """
    size = max((raw.shape[-2:] for raw in raw_maps), key=lambda s: s[0] * s[1])
    stacked = []
    for raw, target in zip(raw_maps, targets, strict=True):
        maps = gt_maps(raw, target)
        if maps.shape[-2:] != size:
            maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=True)
        stacked.append(maps)
    maps = torch.cat(stacked, dim=1)
    count = maps.shape[1]
    if count < 2:
        return maps.sum() * 0.0
    keep = min(count, max(2, count // 2))
    index = random_subset(count, keep, maps.device)
    if index is not None:
        maps = maps[:, index]
    pairs = keep * (keep - 1) / 2
    return pairwise_cosine_sum(maps).abs().mean() / pairs
