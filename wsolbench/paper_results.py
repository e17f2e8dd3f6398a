"""Published numbers of the DANet paper, shown as reference rows in tables.

Xue, Liu, Wan, Jiao, Ji, Ye. *DANet: Divergent Activation for Weakly Supervised Object
Localization.* ICCV 2019.

Only numbers checked against the paper are listed, each with its table number; a metric
the paper does not report for a row is absent (the table shows it blank). Values are in
percent, with this library's metric keys (see :mod:`wsolbench.evaluate`). The paper's
localization errors use its own evaluation protocol (a fixed CAM threshold tuned by the
authors, largest connected component, IoU >= 0.5), which is close to but not identical to
``loc_err_top1`` at the best threshold computed here: compare trends, not decimals.

Method names are this library's registry names: ``multiloss`` is the paper's
"CAM + multi-loss" (hierarchy heads without divergence) and ``danet`` its "HDA + DDA".
"""

from __future__ import annotations

import copy
from typing import Any

#: Citation shown with paper rows.
PAPER = "Xue et al., DANet, ICCV 2019"

_ROWS: list[dict[str, Any]] = [
    # Table 1: ablation on CUB-200-2011 with VGG16 (top-1 localization error).
    {"method": "cam", "label": "CAM", "table": 1, "loc_err_top1": 55.85},
    {"method": "multiloss", "label": "CAM + multi-loss", "table": 1, "loc_err_top1": 58.58},
    {"method": "hda", "label": "HDA", "table": 1, "loc_err_top1": 50.71},
    {"method": "danet", "label": "HDA + DDA", "table": 1, "loc_err_top1": 47.48},
]

_COMMON = {"backbone": "vgg16", "dataset": "cub"}


def paper_rows() -> list[dict[str, Any]]:
    """The paper's rows as table rows: ``method``, ``backbone``, ``dataset``, metric keys,
    ``source`` (``"paper T<n>"``), ``paper_table``, ``paper_label``; a fresh copy each call."""
    rows = []
    for entry in _ROWS:
        entry = copy.deepcopy(entry)
        table = entry.pop("table")
        label = entry.pop("label")
        rows.append({**_COMMON, **entry, "source": f"paper T{table}", "paper_table": table, "paper_label": label})
    return rows
