"""``wsolbench show RUN --out DIR``: pictures of a run's maps, from its cache alone."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help="PNG pictures of a run's maps, boxes and curves (from its cache)")
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="run folder(s) or cache file(s); the IoU histogram and accuracy curve compare them",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--n", type=int, default=8, help="number of images to draw (default 8)")
    parser.add_argument("--ids", nargs="+", metavar="ID", help="draw these image ids instead of a random pick")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pick (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wsolbench.results import resolve_run_dir
    from wsolbench.viz import PicturesWarning, write_pictures

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PicturesWarning)
        paths = write_pictures(
            [resolve_run_dir(p) for p in args.runs], args.out, n=args.n, ids=args.ids, seed=args.seed
        )
    for warning in caught:  # one line each, not Python's two-line warning format
        if issubclass(warning.category, PicturesWarning):
            print(f"wsolbench show: warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    for path in paths:
        print(path)
    return 0
