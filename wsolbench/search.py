"""Hyperparameter search: many ordinary runs as the trials of one optuna study.

Choe et al. ("Evaluating WSOL Methods Right", CVPR 2020) tune every method with 30 trials of
random search, scored on held-out fully annotated images, never on the test set. A search file
names the space, and ``wsolbench search`` runs it; each trial is a run through
:func:`wsolbench.runner.execute` (cached, resumable, listed by ``wsolbench table``).

Random search samples every trial from one seeded plan; how a study stays exact when workers
are killed is in :mod:`wsolbench.study`. A search file (YAML)::

    study: cam-synthetic     # study name (default: the file name without .yaml)
    trials: 30               # default 30, the protocol's
    sampler: random          # random (default, the protocol's) or tpe
    sampler_seed: 0          # the random search's seed: the same seed plans the same trials
    metric: auto             # a metrics key; auto: pxap where the runs have masks, else maxboxacc_v2
    split: val               # the split whose metrics score a trial (see trial_score)
    method_defaults: true    # include the method's own search_space
    base:                    # config of every trial (sections as in a run config)
      method: {name: dda}
      train: {epochs: 10}
    space:                   # dotted config key -> distribution
      train.lr: {log_uniform: [1.0e-4, 1.0e-1]}
      method.k: {choice: [2, 4, 8]}

Distributions: ``uniform: [low, high]``, ``log_uniform: [low, high]`` (low > 0),
``int_uniform: [low, high]``, ``int_log_uniform: [low, high]`` (bounds inclusive) and
``choice: [a, b, ...]`` (numbers, strings, booleans or null).

Methods ship default spaces as a class attribute ``search_space``: the same mapping with keys
relative to ``method.``, each range commented with where it comes from, e.g.::

    class DDA(MultiLoss):
        search_space = {
            "lam": {"log_uniform": [1e-3, 1e-1]},  # around the official cos_alpha = 0.01
        }
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from wsolbench import config as configuration
from wsolbench.errors import UsageError
from wsolbench.registry import Registry
from wsolbench.tables import METRIC_COLUMNS, render_table

#: Choe et al. (CVPR 2020), Sec. 5: 30 random-search trials per method.
DEFAULT_TRIALS = 30
SAMPLERS = ("random", "tpe")
SPLITS = ("val", "test")
DEFAULT_METRIC = "maxboxacc_v2"
MASK_METRIC = "pxap"
#: Metric keys where lower is better (the study minimises them).
LOWER_IS_BETTER = frozenset({"cls_err_top1", "cls_err_top5", "loc_err_top1", "loc_err_top5"})
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "int_log_uniform", "choice")
SEARCH_KEYS = ("study", "trials", "sampler", "sampler_seed", "metric", "split", "method_defaults", "base", "space")


# --------------------------------------------------------------------------------------
# The search file and its space
# --------------------------------------------------------------------------------------


@dataclass
class SearchFile:
    """A search file's settings (see the module docstring); ``space`` still unparsed."""

    path: Path
    study: str
    trials: int = DEFAULT_TRIALS
    sampler: str = "random"
    sampler_seed: int = 0
    metric: str = "auto"
    split: str = "val"
    method_defaults: bool = False
    base: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)


def load_search_file(path: str | Path) -> SearchFile:
    """Read and check a search file's top-level keys; its space is parsed by :func:`build_space`."""
    path = Path(path)
    data = configuration.load_yaml(path)
    where = f"search file {str(path)!r}"
    unknown = sorted(set(data) - set(SEARCH_KEYS))
    if unknown:
        raise UsageError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(SEARCH_KEYS)}")
    spec = SearchFile(path=path, study=str(data.get("study") or path.stem))
    for key, kind in (("trials", int), ("sampler_seed", int), ("method_defaults", bool)):
        if key in data:
            if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
                raise UsageError(f"{where}: {key!r} must be {'an integer' if kind is int else 'true or false'}")
            setattr(spec, key, data[key])
    for key in ("sampler", "metric", "split"):
        if key in data:
            setattr(spec, key, str(data[key]))
    for key in ("base", "space"):
        value = data.get(key) or {}
        if not isinstance(value, dict):
            raise UsageError(f"{where}: {key!r} must be a mapping, e.g. {key}: {{train.lr: ...}}")
        setattr(spec, key, value)
    return spec


def check_settings(trials: int, sampler: str, metric: str, split: str) -> None:
    """One-line errors for a bad trial count, sampler, metric or split."""
    if trials < 1:
        raise UsageError(f"trials must be at least 1, got {trials}")
    if sampler not in SAMPLERS:
        raise UsageError(f"unknown sampler {sampler!r}; choose one of: {', '.join(SAMPLERS)}")
    if metric != "auto" and metric not in METRIC_COLUMNS:
        raise UsageError(f"unknown metric {metric!r}; choose auto or one of: {', '.join(METRIC_COLUMNS)}")
    if split not in SPLITS:
        raise UsageError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def parse_distribution(key: str, spec: Any, where: str) -> BaseDistribution:
    """``{"log_uniform": [1e-4, 1e-1]}`` -> optuna's distribution; a bad one is a one-line error."""
    prefix = f"{where}: {key!r}"
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UsageError(
            f"{prefix}: give one distribution, e.g. {key}: {{uniform: [0.1, 0.5]}}; one of: {', '.join(DISTRIBUTIONS)}"
        )
    ((kind, args),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise UsageError(f"{prefix}: unknown distribution {kind!r}; use one of: {', '.join(DISTRIBUTIONS)}")
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise UsageError(f"{prefix}: choice needs a non-empty list, e.g. {{choice: [2, 4, 8]}}")
        for value in args:
            if value is not None and not isinstance(value, (bool, int, float, str)):
                raise UsageError(f"{prefix}: choice values must be numbers, strings, booleans or null, not {value!r}")
        return CategoricalDistribution(args)
    integer = kind.startswith("int_")
    number = int if integer else (int, float)
    if (
        not isinstance(args, list)
        or len(args) != 2
        or any(isinstance(v, bool) or not isinstance(v, number) for v in args)
    ):
        kind_text = "integers" if integer else "numbers"
        raise UsageError(f"{prefix}: {kind} needs two {kind_text} [low, high], got {args!r}")
    low, high = args
    if low > high:
        raise UsageError(f"{prefix}: {kind} low {low} is above high {high}; write [low, high]")
    log = kind.endswith("log_uniform")
    if log and low <= 0:
        raise UsageError(f"{prefix}: {kind} needs low > 0 (a log scale), got {low}; use uniform or a positive low")
    return IntDistribution(low, high, log=log) if integer else FloatDistribution(float(low), float(high), log=log)


def method_search_space(registry: Registry, method: str) -> dict[str, Any]:
    """A method's default space as dotted keys: its class's ``search_space``, keys prefixed
    with ``method.``; empty where the method declares none."""
    factory = registry.get("methods", method).factory
    return {f"method.{key}": value for key, value in (getattr(factory, "search_space", None) or {}).items()}


def build_space(spec: SearchFile, registry: Registry, base_config: Mapping[str, Any]) -> dict[str, BaseDistribution]:
    """The search space: the method's defaults (``method_defaults``) under the file's entries,
    every key and bound checked against the run config before anything trains."""
    where = f"search file {str(spec.path)!r}"
    raw = {
        **(method_search_space(registry, base_config["method"]["name"]) if spec.method_defaults else {}),
        **spec.space,
    }
    if not raw:
        raise UsageError(
            f"{where}: the search space is empty; add keys under space:, or method_defaults: true with a method "
            "that declares a search_space"
        )
    space = {}
    for key, entry in raw.items():
        key = str(key)
        section = key.split(".", 1)[0]
        if key.endswith(".name") and section in configuration.COMPONENT_SECTIONS:
            raise UsageError(f"{where}: {key!r} cannot be searched: run one search per {section}, set it under base:")
        space[key] = distribution = parse_distribution(key, entry, where)
        for value in _probe_values(distribution):
            try:
                configuration.resolve(registry, base=base_config, flags={key: value})
            except UsageError as error:
                raise UsageError(f"{where}: {key!r} = {value!r}: {error}") from None
    return space


def with_scored_split(registry: Registry, base_config: Mapping[str, Any], split: str) -> dict[str, Any]:
    """The base config, evaluating ``split`` too: a search scored on val adds val to
    ``eval.splits`` (where the runner has that setting), so every trial's metrics hold val numbers."""
    splits = base_config.get("eval", {}).get("splits", ["test"])
    if split == "test" or split in splits or "splits" not in configuration.DEFAULTS["eval"]:
        return dict(base_config)
    return configuration.resolve(registry, base=base_config, flags={"eval.splits": [*splits, split]})


def _probe_values(distribution: BaseDistribution) -> list[Any]:
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    return [distribution.low, distribution.high]  # type: ignore[attr-defined]


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def split_metrics(metrics: Mapping[str, Any], split: str) -> tuple[Mapping[str, Any], str]:
    """The metrics of ``split`` and the split they really come from.

    A run's ``metrics.json`` keeps a split's numbers under its name (``metrics["val"]``) where it
    evaluated that split; its top-level keys are the test split's. A run without a ``val``
    section (a dataset or runner without val evaluation) falls back to the test numbers, and
    the split returned says so.
    """
    section = metrics.get(split)
    if isinstance(section, Mapping):
        return section, split
    return metrics, "test"


def trial_score(metrics: Mapping[str, Any], metric: str = "auto", split: str = "val") -> float:
    """The number a trial is ranked by: ``metric`` of ``split`` in a run's metrics.

    Args:
        metrics: A run's metrics (:attr:`wsolbench.runner.RunResult.metrics`).
        metric: A metrics key; ``"auto"``: ``pxap`` where the run has masks (the key is
            present), else ``maxboxacc_v2``.
        split: Whose metrics (see :func:`split_metrics`).

    Returns:
        The value (a percentage for the built-in metrics); NaN becomes -inf/+inf so a broken
        trial ranks last.
    """
    values, _ = split_metrics(metrics, split)
    key = resolve_metric(metric, values)
    if key not in values:
        raise UsageError(
            f"metric {key!r} is not among the run's metrics ({', '.join(sorted(values))}); pick another --metric"
        )
    value = float(values[key])
    if math.isnan(value):
        return math.inf if key in LOWER_IS_BETTER else -math.inf
    return value


def resolve_metric(metric: str, metrics: Mapping[str, Any]) -> str:
    """``auto`` -> ``pxap`` when ``metrics`` has it, else ``maxboxacc_v2``; other keys unchanged."""
    if metric != "auto":
        return metric
    return MASK_METRIC if MASK_METRIC in metrics else DEFAULT_METRIC


def direction(metric: str) -> str:
    """optuna's study direction for a metric key."""
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


# --------------------------------------------------------------------------------------
# The plan of a random search
# --------------------------------------------------------------------------------------


def plan_trials(space: Mapping[str, BaseDistribution], trials: int, seed: int) -> list[dict[str, Any]]:
    """The parameters of a random search's trials: the first ``trials`` distinct draws of
    ``RandomSampler(seed)``. Fewer when the space has fewer distinct points (choices only)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    plan: list[dict[str, Any]] = []
    seen: set[str] = set()
    for _ in range(50 * trials):
        params = scratch.ask(dict(space)).params
        digest = json.dumps(params, sort_keys=True)
        if digest not in seen:
            seen.add(digest)
            plan.append(params)
            if len(plan) == trials:
                break
    return plan


# --------------------------------------------------------------------------------------
# The search as a table
# --------------------------------------------------------------------------------------


@dataclass
class SlotRow:
    """One row of the search table: a slot and the attempt that stands for it."""

    slot: int
    status: str
    params: dict[str, Any]
    score: float | None = None
    run: str | None = None
    error: str | None = None
    scored_on: str | None = None


def best_row(rows: Sequence[SlotRow], metric: str) -> SlotRow | None:
    """The done slot with the best score (lowest for error metrics)."""
    done = [row for row in rows if row.status == "done" and row.score is not None]
    if not done:
        return None
    sign = -1 if metric in LOWER_IS_BETTER else 1
    return max(done, key=lambda row: (sign * row.score, -row.slot))  # type: ignore[operator]


def format_value(value: Any) -> str:
    """A parameter or score for the table: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_search(rows: Sequence[SlotRow], space: Sequence[str], score_label: str, *, fmt: str = "github") -> str:
    """The search table: trial, parameters, status, score, run folder."""
    headers = ["trial", *space, "status", score_label, "run"]
    body = []
    for row in rows:
        status = row.status if row.error is None else f"failed: {row.error}"
        score = format_value(row.score) if row.score is not None else "—"
        run = Path(row.run).name if row.run else "—"
        body.append([str(row.slot), *(format_value(row.params.get(k, "—")) for k in space), status, score, run])
    return render_table((headers, body), fmt=fmt)
