"""``wsolbench table [RUNS...]``: one comparison table from many runs' caches."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsolbench.cli.run_cmd import add_format_option
from wsolbench.config import parse_set
from wsolbench.results import find_run_dirs, render_runs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("table", help="comparison table of finished runs")
    parser.add_argument(
        "runs",
        nargs="*",
        type=Path,
        default=[Path("runs")],
        help="run folders, cache files or folders of runs (default: runs/)",
    )
    add_format_option(parser)
    parser.add_argument("--sort", metavar="COLUMN", help="sort rows by this column (e.g. loc_err_top1)")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep rows whose KEY equals VALUE, e.g. --filter method=danet (repeatable)",
    )
    parser.add_argument("--no-group", action="store_true", help="one row per seed instead of mean ± std over seeds")
    parser.add_argument(
        "--paper",
        action="store_true",
        help="add the published numbers that plugins ship for the methods in the table, marked with their source",
    )
    parser.add_argument(
        "--split",
        default="test",
        choices=["test", "val"],
        help="whose numbers to show: the test split (default) or val (runs that evaluated it)",
    )
    parser.add_argument("--recompute", action="store_true", help="recompute metrics from the caches")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    filters = {}
    for assignment in args.filter:
        key, value = parse_set(assignment)
        filters[".".join(key)] = str(value)
    print(
        render_runs(
            find_run_dirs(args.runs),
            fmt=args.format,
            recompute=args.recompute,
            split=args.split,
            sort_by=args.sort,
            filters=filters,
            group_seeds=not args.no_group,
            include_paper=args.paper,
        )
    )
    return 0
