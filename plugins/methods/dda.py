"""DDA: discrepant divergent activation (DANet, Xue et al., ICCV 2019, Sec. 3.3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from wsolbench import hookimpl
from wsolbench.errors import UsageError
from wsolbench.specs import MapSet, Outputs
from wsolbench_plugins.methods._common import check_int, gt_maps, joint_divergence, level_divergence, random_subset
from wsolbench_plugins.methods.multiloss import MultiLoss

SCOPES = ("level", "joint")
MAP_FUSIONS = ("mean", "relu_mean")


class DDA(MultiLoss):
    """Discrepant divergent activation (Xue et al., "DANet: Divergent Activation for WSOL", ICCV 2019).

    Every head predicts K maps per class; a class's map is the mean of its K maps and its score
    the map's global average. A cosine penalty makes the K maps of the ground-truth class c
    mutually exclusive so that together they cover more of the object. Eq. 4:
    ``L_D = sum_{k<k'} cos(A_c^k, A_c^k')``, averaged over the batch. Total (Eq. 2 without the
    hierarchy): ``L = sum_h CE(y, s_h) + lam * L_D``, every head on the fine labels.

    Options:
        levels: Number of deepest backbone levels that get a head (default 3, the heads of
            multi-loss/HDA, so DDA's ablation row differs from multi-loss only by L_D; 1 gives
            CAM + DDA).
        k: Maps per class K (default 8, the official code's ``num_maps`` for VGG16; its
            Inception-v3 model uses 4). A class score is the mean of K maps, so under SGD it
            moves K times slower than one map's would: on short from-scratch budgets scale
            ``train.head_lr_mult`` by K (benchmarks/RESULTS.md, "What does DDA do?").
        lam: Weight of L_D (default 0.01, the official ``cos_alpha``).
        drop_ratio: While training, each head's class map averages a random subset of
            ``round(K * (1 - drop_ratio))`` of its K maps, drawn per batch from torch's global RNG
            (seeded runs are reproducible); at test time all K maps are averaged. Default 0.5.
            The official code averages all K maps while training: ``drop_ratio=0`` mirrors it.
        scope: Which maps L_D compares.
            ``"joint"`` (default), the official code's L_D: the target class's K maps of all
            heads together (N = heads * K, resized bilinearly to the shallowest head's size), a
            random half of them per batch, ``mean_b |sum_{k<k'} cos| / pairs`` (the mean
            absolute cosine, in [0, 1]). ``"level"``: Eq. 4 as printed, on each head's K maps,
            summed over heads (in [-K/2, K(K-1)/2] per head).
            Why "joint" is the default: it is the objective behind the published numbers and
            the one ``lam=0.01`` was tuned for (Eq. 4's sum over 28 pairs x 3 heads is up to 84x
            larger); and its absolute value makes orthogonal maps the optimum, while Eq. 4
            without it is minimised by anti-correlated maps, which cancel in the class mean
            instead of covering different parts (on the synthetic data Eq. 4 reaches -9.8 of its
            -12 floor within 50 SGD steps). "level" is kept for the equation as published.
        map_fusion: How the K maps of a class become the map that is localized at test time.
            ``"mean"`` (default): their mean, the map whose average is the class score.
            ``"relu_mean"``: the mean of the K maps after a ReLU each, the official code's
            localization map (``get_child_maps``: ``mean(relu(maps), dim=2)``); its scores
            stay the plain mean. The two differ where K maps go negative: in ``mean`` a map's
            negative part cancels another map's positive part, in ``relu_mean`` every map's
            positive part shows (the union of the parts DDA spreads the maps over).

    Deviations from the official code (xuehaolan/DANet, ``models/vgg/vgg_DA.py``): it weights
    every head's cross-entropy by 0.5 (``L = 0.5 * sum_h CE + cos_alpha * L_D``), so its
    ``cos_alpha = 0.01`` is ``lam = 0.02`` here; and it trains with all K maps averaged
    (``drop_ratio=0``).
    """

    table_rank = 80

    #: ``wsolbench search``'s default space: the paper's Fig. 6 sweeps K over 1-16 (picks 8) and
    #: lambda over several decades (picks 0.01); the drop ratio and the scope are this library's options.
    search_space = {
        "k": {"choice": [1, 2, 4, 8, 16]},
        "lam": {"log_uniform": [1e-3, 1.0]},
        "drop_ratio": {"choice": [0.0, 0.5]},
    }

    def __init__(
        self,
        *,
        levels: int = 3,
        k: int = 8,
        lam: float = 0.01,
        drop_ratio: float = 0.5,
        scope: str = "joint",
        map_fusion: str = "mean",
    ):
        name = type(self).__name__.lower()
        super().__init__(levels=levels)
        self.maps_per_class = check_int(name, "k", k)
        if not isinstance(lam, (int, float)) or isinstance(lam, bool) or lam < 0:
            raise UsageError(f"method {name!r}: lam must be a number >= 0, not {lam!r}")
        if not isinstance(drop_ratio, (int, float)) or isinstance(drop_ratio, bool) or not 0 <= drop_ratio < 1:
            raise UsageError(f"method {name!r}: drop_ratio must be in [0, 1), not {drop_ratio!r}")
        if scope not in SCOPES:
            raise UsageError(f"method {name!r}: scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if map_fusion not in MAP_FUSIONS:
            raise UsageError(f"method {name!r}: map_fusion must be one of {', '.join(MAP_FUSIONS)}, not {map_fusion!r}")
        self.k, self.lam, self.drop_ratio, self.scope = k, float(lam), float(drop_ratio), scope
        self.map_fusion = map_fusion

    def combine_maps(self, raw_maps: Tensor, *, training: bool) -> Tensor:
        """Mean of the K maps; while training, of a random ``1 - drop_ratio`` share of them."""
        if training and self.drop_ratio > 0:
            count = raw_maps.shape[2]
            index = random_subset(count, max(1, round(count * (1 - self.drop_ratio))), raw_maps.device)
            if index is not None:
                return raw_maps.index_select(2, index).mean(dim=2)
        return raw_maps.mean(dim=2)

    def localization_maps(self, outputs: Outputs) -> list[Tensor]:
        """Per head, each class's K maps fused by ``map_fusion`` (``mean``: the class maps)."""
        if self.map_fusion == "relu_mean":
            return [raw.clamp(min=0).mean(dim=2) for raw in outputs.raw_maps]
        return super().localization_maps(outputs)

    def divergence(self, raw_maps: Sequence[Tensor], targets: Sequence[Tensor]) -> Tensor:
        """L_D of the batch in this method's ``scope``."""
        if self.scope == "joint":
            return joint_divergence(raw_maps, targets)
        return level_divergence(raw_maps, targets)

    def extra_maps(self, model: Any, outputs: Outputs, classes: list[Tensor]) -> dict[str, MapSet]:
        """The per-head maps, plus the deepest head's K maps of the class (``"k_maps"``, the paper's Fig. 7)."""
        k_maps = gt_maps(outputs.raw_maps[-1], classes[-1])
        names = tuple(f"k = {j + 1}" for j in range(k_maps.shape[1]))
        return {**super().extra_maps(model, outputs, classes), "k_maps": MapSet(k_maps, names)}

    def loss(self, outputs: Outputs, targets: list[Tensor]) -> dict[str, Tensor]:
        terms = super().loss(outputs, targets)
        div = self.divergence(outputs.raw_maps, targets)
        terms["div"] = div
        terms["loss"] = terms["loss"] + self.lam * div
        return terms


@hookimpl
def register_methods(register):
    register("dda", DDA)
