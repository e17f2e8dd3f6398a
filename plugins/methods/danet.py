"""DANet: HDA + DDA (Xue et al., ICCV 2019)."""

from __future__ import annotations

from wsolbench import hookimpl
from wsolbench_plugins.methods._common import hierarchical_label_levels
from wsolbench_plugins.methods.dda import DDA


class DANet(DDA):
    """DANet (Xue et al., "DANet: Divergent Activation for Weakly Supervised Object Localization", ICCV 2019).

    HDA's heads (coarse labels on shallow levels, fine on the deepest) with DDA's K maps per
    class and divergence. Eq. 2: ``L = L_H + lam * L_D`` with ``L_H = sum_h CE(y^h, s^h)``
    (Eq. 3) and ``L_D`` the cosine divergence of the ground-truth class's maps, Eq. 4
    ``sum_{k<k'} cos(A_c^k, A_c^k')`` (scope "level": per head, summed over heads) or the
    official code's variant (scope "joint", default: a random half of all heads' maps, mean
    absolute cosine). With ``scope="joint", drop_ratio=0, lam=0.02, map_fusion="relu_mean"``
    this is the official code's (``lam = 2 * cos_alpha`` for its 0.5 weight on every
    cross-entropy).
    Test time: the mean over heads of each head's min-max normalised map of the predicted fine
    class and its ancestors, resized to the largest head resolution.

    Label levels as HDA: head ``i`` of ``n`` (shallow to deep) trains on level
    ``max(0, depth - n + i)``.

    Options:
        levels: Number of deepest backbone levels that get a head (default 3).
        k: Maps per class K (default 8).
        lam: Weight of L_D (default 0.01).
        drop_ratio: Share of each class's K maps dropped, at random per batch, from the class
            map while training (default 0.5; the official code: 0).
        scope: ``"joint"`` (default, the official code's L_D) or ``"level"`` (Eq. 4 per head);
            see ``dda`` for the definitions and why "joint" is the default.
        map_fusion: ``"mean"`` (default) or ``"relu_mean"`` (the official code's test map:
            the mean of the ReLU'd K maps); see ``dda``.
    """

    table_rank = 90

    def label_levels(self, heads: int, depth: int) -> list[int]:
        return hierarchical_label_levels(heads, depth)


@hookimpl
def register_methods(register):
    register("danet", DANet)
