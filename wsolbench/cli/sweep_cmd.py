"""``wsolbench sweep GRID.yaml``: run every combination of a grid, then print the comparison table."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsolbench import config as configuration
from wsolbench.cli.run_cmd import add_run_options
from wsolbench.progress import Progress
from wsolbench.registry import default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run the cross product of methods x backbones x datasets x seeds",
        description="Runs whose results already exist with the same config hash are reused, not retrained.",
    )
    parser.add_argument(
        "grid", type=Path, help="grid YAML: methods, backbones, datasets, seeds lists and a base config"
    )
    parser.add_argument(
        "--format", default="github", choices=["github", "markdown", "latex", "csv"], help="table format"
    )
    parser.add_argument("--dry-run", action="store_true", help="list the runs without training")
    add_run_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wsolbench.results import render_runs
    from wsolbench.runner import execute
    from wsolbench.sweep import grid_points, load_grid

    registry = default_registry()
    axes, base = load_grid(args.grid)
    configs = [
        configuration.resolve(
            registry,
            file=args.config,
            base=base,
            sets=args.sets,
            flags={**point, "device": args.device, "amp": args.amp},
        )
        for point in grid_points(axes)
    ]
    progress = Progress(args.log_format, quiet=args.quiet)
    run_dirs = []
    for index, config in enumerate(configs, 1):
        label = f"{config['method']['name']} / {config['backbone']['name']} / {config['dataset']['name']} / seed {config['seed']}"
        if args.dry_run:
            print(f"[{index}/{len(configs)}] {label}")
            continue
        progress.message(f"[{index}/{len(configs)}] {label}")
        run_dirs.append(execute(config, registry, out=args.out, force=args.force, progress=progress).run_dir)
    if run_dirs:
        print(render_runs(run_dirs, fmt=args.format))
    return 0
