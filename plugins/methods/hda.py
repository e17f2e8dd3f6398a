"""HDA: hierarchical divergent activation (DANet, Xue et al., ICCV 2019, Sec. 3.2)."""

from __future__ import annotations

from wsolbench import hookimpl
from wsolbench_plugins.methods._common import hierarchical_label_levels
from wsolbench_plugins.methods.multiloss import MultiLoss


class HDA(MultiLoss):
    """Hierarchical divergent activation (Xue et al., "DANet: Divergent Activation for WSOL", ICCV 2019).

    One head on each of the ``levels`` deepest backbone levels; the shallower the level, the
    coarser the labels it is trained with (CUB: order on the shallowest head, family, then
    species on the deepest). Eq. 3: ``L_H = sum_h CE(y^h, s^h)``, ``y^h`` the image's ancestor
    at head h's hierarchy level. Coarse classes share features across their fine classes, which
    spreads the activation over more of the object.

    Label levels: head ``i`` of ``n`` (shallow to deep) trains on level
    ``max(0, depth - n + i)``: the deepest head always on the fine classes; a hierarchy deeper
    than ``n`` uses its ``n`` finest levels; a shallower one repeats its coarsest level on the
    extra shallow heads (a flat dataset makes HDA equal to multi-loss).

    Options:
        levels: Number of deepest backbone levels that get a head (default 3, as in the paper).
    """

    table_rank = 70

    def label_levels(self, heads: int, depth: int) -> list[int]:
        return hierarchical_label_levels(heads, depth)


@hookimpl
def register_methods(register):
    register("hda", HDA)
