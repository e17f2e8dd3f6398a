"""``wsolbench eval RUN_OR_CACHE``: recompute every metric from a run's cache, without the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsolbench.results import render_runs, resolve_run_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="recompute a run's metrics from its HDF5 cache")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_OR_CACHE", help="run folder(s) or cache.h5 file(s)")
    parser.add_argument(
        "--format", default="github", choices=["github", "markdown", "latex", "csv"], help="table format"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    run_dirs = [resolve_run_dir(path) for path in args.runs]
    print(render_runs(run_dirs, fmt=args.format, recompute=True, group_seeds=False))
    return 0
