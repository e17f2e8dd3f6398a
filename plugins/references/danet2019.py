"""Published numbers of the DANet paper (Xue et al., ICCV 2019), as reference rows.

Xue, Liu, Wan, Jiao, Ji, Ye. *DANet: Divergent Activation for Weakly Supervised Object
Localization.* ICCV 2019.

Only numbers checked against the paper are listed, each with its table number; a metric the
paper does not report for a row is absent (the table shows it blank). The paper's localization
errors use its own protocol (a fixed CAM threshold tuned by the authors, largest connected
component, IoU >= 0.5), close to but not identical to ``loc_err_top1`` at the best threshold
computed here: compare trends, not decimals. ``multiloss`` is the paper's "CAM + multi-loss"
and ``danet`` its "HDA + DDA".
"""

from __future__ import annotations

from typing import Any

from wsolbench import hookimpl

#: Table 1: ablation on CUB-200-2011 with VGG16 (top-1 localization error).
_TABLE_1 = (
    ("cam", "CAM", 55.85),
    ("multiloss", "CAM + multi-loss", 58.58),
    ("hda", "HDA", 50.71),
    ("danet", "HDA + DDA", 47.48),
)


def danet_rows() -> list[dict[str, Any]]:
    """The paper's rows (a fresh list each call)."""
    return [
        {
            "method": method,
            "backbone": "vgg16",
            "dataset": "cub",
            "loc_err_top1": value,
            "label": label,
            "source": "Xue et al. 2019, T1",
        }
        for method, label, value in _TABLE_1
    ]


@hookimpl
def register_references(register):
    register("danet-iccv2019", danet_rows)
