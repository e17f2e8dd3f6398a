"""Published numbers of Choe et al. (CVPR 2020)'s re-evaluation of WSOL methods, as reference rows.

Choe, Oh, Lee, Chun, Akata, Shim. *Evaluating Weakly Supervised Object Localization Methods
Right.* CVPR 2020 (code and data: clovaai/wsolevaluation).

Their main table evaluates CAM, HaS, ACoL, SPG, ADL, CutMix and a center-Gaussian baseline under
one protocol (hyperparameters searched on the ``train-fullsup`` split, last checkpoint, test
split): MaxBoxAccV2 on ImageNet and CUB, PxAP on OpenImages, for VGG16, InceptionV3 and
ResNet50. Values are percent, with this library's metric keys (:mod:`wsolbench.evaluate`):
``maxboxacc_v2`` and ``pxap``.

Transcription status: **no value is listed yet.** The repository's README shows this table
only as an image (``main_table.png``, its rows given as differences to CAM) and no text copy of
it (the paper's table, the repository's history, or another text source) was available when
this module was written; the numbers are not transcribed from the image, by design. To add
them, fill :data:`VALUES` from the paper's text, one ``(method, dataset)`` entry per row, and
name the table in :data:`SOURCE`: every other part (labels, metric per dataset, registry names)
is in place and tested.
"""

from __future__ import annotations

from typing import Any

from wsolbench import hookimpl

#: Citation shown in the ``source`` column of every row.
SOURCE = "Choe et al. 2020, main table"

#: Backbone registry names, in the order of each :data:`VALUES` entry.
BACKBONES = ("vgg16", "inceptionv3", "resnet50")

#: The metric each dataset is reported with (this library's metric keys).
METRIC = {"ilsvrc": "maxboxacc_v2", "cub": "maxboxacc_v2", "openimages": "pxap"}

#: The paper's method names, by registry name.
LABELS = {
    "cam": "CAM",
    "has": "HaS",
    "acol": "ACoL",
    "spg": "SPG",
    "adl": "ADL",
    "cutmix": "CutMix",
    "center": "Center-gaussian baseline",
}

#: ``(method, dataset) -> (VGG16, InceptionV3, ResNet50)`` in percent, None for a cell the
#: paper leaves empty. Empty until transcribed from a text source (module docstring).
VALUES: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = {}


def choe2020_rows() -> list[dict[str, Any]]:
    """Choe et al. (CVPR 2020) main table, MaxBoxAccV2/PxAP of seven methods x 3 backbones (none transcribed yet).

    One row per filled cell of :data:`VALUES` (a fresh list each call).
    """
    rows = []
    for (method, dataset), values in VALUES.items():
        for backbone, value in zip(BACKBONES, values, strict=True):
            if value is None:
                continue
            rows.append(
                {
                    "method": method,
                    "backbone": backbone,
                    "dataset": dataset,
                    METRIC[dataset]: value,
                    "label": LABELS[method],
                    "source": SOURCE,
                }
            )
    return rows


@hookimpl
def register_references(register):
    register("choe-cvpr2020", choe2020_rows)
