"""CAM: the base method, one head on the deepest level (Zhou et al., CVPR 2016)."""

from __future__ import annotations

from wsolbench import hookimpl
from wsolbench.specs import Method


class CAM(Method):
    """Class activation mapping (Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016).

    One K=1 head on the deepest backbone level, trained with the fine labels:
    ``L = CE(y, s)`` with class scores ``s_c = GAP(A_c)`` of the class maps ``A_c``. At test
    time the map of the predicted class, min-max normalised, is the localization map. No options.
    """

    table_rank = 0


@hookimpl
def register_methods(register):
    register("cam", CAM)
