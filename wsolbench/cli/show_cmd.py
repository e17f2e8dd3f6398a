"""``wsolbench show RUN --out DIR``: pictures of a run's maps, from its cache alone."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help="PNG pictures of a run's maps, boxes and curves (from its cache)")
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folder(s) or cache file(s); the IoU histogram compares them")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNG files")
    parser.add_argument("--n", type=int, default=8, help="number of images to draw (default 8)")
    parser.add_argument("--ids", nargs="*", help="draw these image ids instead of a random pick")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random pick (default 0)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wsolbench.results import resolve_run_dir
    from wsolbench.viz import write_pictures

    for path in write_pictures([resolve_run_dir(p) for p in args.runs], args.out, n=args.n, ids=args.ids, seed=args.seed):
        print(path)
    return 0
