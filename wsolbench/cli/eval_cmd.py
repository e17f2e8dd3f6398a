"""``wsolbench eval RUN_OR_CACHE``: recompute every metric from a run's caches, without the model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wsolbench.cli.run_cmd import add_format_option
from wsolbench.config import parse_set
from wsolbench.errors import UsageError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="recompute a run's metrics from its HDF5 caches (optionally with other eval settings)",
        description="Recompute the metrics of finished runs from their caches alone and save them as "
        "metrics.json. Settings are the run's own (its config.yaml) unless --set eval.KEY=VALUE or "
        "--cam-threshold override them; metrics.json records the settings used.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_CACHE", help="run folder(s) or cache.h5 file(s)")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="eval.KEY=VALUE",
        help="override an evaluation setting (repeatable): eval.cam_curve_interval, eval.cam_threshold, eval.splits",
    )
    parser.add_argument(
        "--cam-threshold",
        metavar="T|best|val",
        help="operating CAM threshold: a number in [0, 1), best (best on the evaluated split) or val "
        "(chosen on val, applied to test); same as --set eval.cam_threshold=...",
    )
    add_format_option(parser)
    parser.set_defaults(handler=run)


def eval_overrides(sets: list[str], cam_threshold: str | None) -> dict[str, Any]:
    """``--set eval.KEY=VALUE`` and ``--cam-threshold`` as ``{KEY: value}``; other sections are an error."""
    overrides: dict[str, Any] = {}
    for assignment in sets:
        path, value = parse_set(assignment)
        if len(path) != 2 or path[0] != "eval":
            raise UsageError(
                f"--set {assignment!r}: eval changes evaluation settings only (eval.KEY=VALUE); "
                "other keys change the trained model: use `wsolbench run`"
            )
        overrides[path[1]] = value
    if cam_threshold is not None:
        _, overrides["cam_threshold"] = parse_set(f"eval.cam_threshold={cam_threshold}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from wsolbench.evaluate import EvalSettings, apply_eval_overrides, evaluate_run, run_config
    from wsolbench.results import render_runs
    from wsolbench.rundir import RunDir

    overrides = eval_overrides(args.sets, args.cam_threshold)
    runs = [RunDir.resolve(path) for path in args.runs]
    for run_dir in runs:
        evaluation = apply_eval_overrides(run_config(run_dir).get("eval") or {}, overrides)
        evaluate_run(run_dir, EvalSettings.from_config(evaluation))
    print(render_runs([r.path for r in runs], fmt=args.format, group_seeds=False))
    return 0
