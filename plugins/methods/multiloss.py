"""CAM + multi-loss: heads on the deepest levels, all trained with the fine labels."""

from __future__ import annotations

from collections.abc import Sequence

from wsolbench import hookimpl
from wsolbench.specs import FeatureLevel, HeadSpec, Hierarchy, Method
from wsolbench_plugins.methods._common import check_int, deepest_levels


class MultiLoss(Method):
    """CAM + multi-loss (the control of DANet's ablation, Xue et al., ICCV 2019).

    One head on each of the ``levels`` deepest backbone levels, every head trained with the
    fine labels: ``L = sum_h CE(y, s_h)``. Same heads as HDA, without the hierarchy, so it
    isolates what the hierarchy adds. Test time: the mean over heads of each head's min-max
    normalised map of the predicted class, resized to the largest head resolution.

    Options:
        levels: Number of deepest backbone levels that get a head (default 3; fewer if the
            backbone has fewer levels).
    """

    table_rank = 60

    #: ``wsolbench search``'s default space: how many of the deepest levels get a head (the DANet
    #: paper uses 3; 1 is CAM).
    search_space = {"levels": {"choice": [1, 2, 3]}}

    #: Maps per class of every head (K); DDA and DANet set it from their ``k`` option.
    maps_per_class = 1

    def __init__(self, *, levels: int = 3):
        self.levels = check_int(type(self).__name__.lower(), "levels", levels)

    def label_levels(self, heads: int, depth: int) -> list[int]:
        """Label level of each head, shallow to deep: here the fine level for all."""
        return [depth - 1] * heads

    def head_specs(self, feature_info: Sequence[FeatureLevel], hierarchy: Hierarchy) -> list[HeadSpec]:
        levels = deepest_levels(feature_info, self.levels)
        labels = self.label_levels(len(levels), hierarchy.depth)
        return [
            HeadSpec(level=lv, label_level=lb, k=self.maps_per_class) for lv, lb in zip(levels, labels, strict=True)
        ]


@hookimpl
def register_methods(register):
    register("multiloss", MultiLoss)
