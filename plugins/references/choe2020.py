"""Published numbers of Choe et al. (CVPR 2020)'s re-evaluation of WSOL methods, as reference rows.

Choe, Oh, Lee, Chun, Akata, Shim. *Evaluating Weakly Supervised Object Localization Methods
Right.* CVPR 2020 (code and data: clovaai/wsolevaluation).

Their main table evaluates CAM, HaS, ACoL, SPG, ADL, CutMix and a center-Gaussian baseline under
one protocol (hyperparameters searched on the ``train-fullsup`` split, last checkpoint, test
split): MaxBoxAccV2 on ImageNet and CUB, PxAP on OpenImages, for VGG16, InceptionV3 and
ResNet50. Values are percent, with this library's metric keys (:mod:`wsolbench.evaluate`):
``maxboxacc_v2`` and ``pxap``.

Transcription: from the repository README's ``main_table.png`` (clovaai/wsolevaluation, the
paper's main re-evaluation table; read twice, at full and at 2x scale). The image gives CAM's values and every
other method's **difference to CAM**, rounded to 0.1; :data:`CAM` and :data:`DELTAS` hold them
as printed, and a method's value is CAM's plus its delta (so it can be 0.1 off the unrounded
number). :data:`PRINTED_MEANS` holds the table's per-dataset Mean column, which
``tests/references/test_choe2020.py`` recomputes from the transcribed cells: a misread cell
shows up as a mean that does not round to the printed one. :data:`CENTER` is the center
baseline's printed value (the same for every backbone). One visible rounding effect: CUB ResNet50
ACoL is 63.0 + 3.5 = 66.5 here while the table's "Best WSOL" row prints 66.4.
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

#: CAM's values as printed: dataset -> (VGG16, InceptionV3, ResNet50).
CAM: dict[str, tuple[float, float, float]] = {
    "ilsvrc": (60.0, 63.4, 63.7),
    "cub": (63.7, 56.7, 63.0),
    "openimages": (58.3, 63.2, 58.5),
}

#: Differences to CAM as printed: (method, dataset) -> (VGG16, InceptionV3, ResNet50).
DELTAS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("has", "ilsvrc"): (+0.6, +0.3, -0.3),
    ("has", "cub"): (+0.0, -3.3, +1.7),
    ("has", "openimages"): (-0.2, -5.1, -2.6),
    ("acol", "ilsvrc"): (-2.6, +0.3, -1.4),
    ("acol", "cub"): (-6.3, -0.5, +3.5),
    ("acol", "openimages"): (-4.0, -6.0, -1.2),
    ("spg", "ilsvrc"): (-0.1, -0.1, -0.4),
    ("spg", "cub"): (-7.4, -0.8, -2.6),
    ("spg", "openimages"): (+0.0, -0.9, -1.8),
    ("adl", "ilsvrc"): (-0.2, -2.0, +0.0),
    ("adl", "cub"): (+2.6, +2.1, -4.6),
    ("adl", "openimages"): (+0.4, -6.4, -3.3),
    ("cutmix", "ilsvrc"): (-0.6, +0.5, -0.4),
    ("cutmix", "cub"): (-1.4, +0.8, -0.2),
    ("cutmix", "openimages"): (-0.2, -0.7, -0.8),
}

#: The center-Gaussian baseline as printed (one value per dataset, every backbone).
CENTER: dict[str, float] = {"ilsvrc": 52.5, "cub": 59.7, "openimages": 45.8}

#: The table's Mean column (over the three backbones) as printed: CAM's value, the others' deltas.
PRINTED_MEANS: dict[tuple[str, str], float] = {
    ("cam", "ilsvrc"): 62.4,
    ("cam", "cub"): 61.1,
    ("cam", "openimages"): 60.0,
    ("has", "ilsvrc"): +0.2,
    ("has", "cub"): -0.5,
    ("has", "openimages"): -2.6,
    ("acol", "ilsvrc"): -1.2,
    ("acol", "cub"): -1.1,
    ("acol", "openimages"): -3.7,
    ("spg", "ilsvrc"): -0.2,
    ("spg", "cub"): -3.6,
    ("spg", "openimages"): -0.9,
    ("adl", "ilsvrc"): -0.7,
    ("adl", "cub"): +0.0,
    ("adl", "openimages"): -3.1,
    ("cutmix", "ilsvrc"): -0.2,
    ("cutmix", "cub"): -0.3,
    ("cutmix", "openimages"): -0.6,
}


def _values() -> dict[tuple[str, str], tuple[float | None, float | None, float | None]]:
    """``(method, dataset) -> (VGG16, InceptionV3, ResNet50)`` in percent: CAM + delta, rounded to 0.1."""
    values: dict[tuple[str, str], tuple[float | None, ...]] = {("cam", d): v for d, v in CAM.items()}
    for (method, dataset), deltas in DELTAS.items():
        values[(method, dataset)] = tuple(round(c + d, 1) for c, d in zip(CAM[dataset], deltas, strict=True))
    values.update({("center", d): (v, v, v) for d, v in CENTER.items()})
    return values


#: ``(method, dataset) -> (VGG16, InceptionV3, ResNet50)`` in percent, None for a cell the paper leaves empty.
VALUES: dict[tuple[str, str], tuple[float | None, float | None, float | None]] = _values()


def choe2020_rows() -> list[dict[str, Any]]:
    """Choe et al. (CVPR 2020) main table: MaxBoxAccV2 (ImageNet, CUB) and PxAP (OpenImages) of seven methods x 3 backbones.

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
