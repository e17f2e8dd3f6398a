"""``wsolbench sweep GRID.yaml``: run every combination of a grid, then print the comparison table."""

from __future__ import annotations

import argparse
from pathlib import Path

from wsolbench import config as configuration
from wsolbench.cli.run_cmd import add_format_option, add_run_options
from wsolbench.errors import UsageError
from wsolbench.progress import Progress
from wsolbench.registry import default_registry


def add_launch_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``sweep`` and ``search``: where the runs run (see :mod:`wsolbench.launch`)."""
    from wsolbench.launch import LAUNCHERS

    group = parser.add_argument_group("launching (README: Evaluating WSOL right, many runs on many machines)")
    group.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="runs at once: local worker processes, or SLURM jobs (default: one per visible GPU when "
        "several are visible, else 1)",
    )
    group.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: worker processes here, one per GPU, pinned with CUDA_VISIBLE_DEVICES (default); "
        "slurm: SLURM jobs through submitit; submitit-local: submitit's local executor (tests the cluster path)",
    )
    group.add_argument("--partition", help="SLURM partition")
    group.add_argument("--gpus-per-job", type=int, default=1, metavar="G", help="GPUs of each SLURM job (default 1)")
    group.add_argument(
        "--time", type=int, default=240, metavar="MINUTES", help="time limit of each SLURM job (default 240)"
    )
    group.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra sbatch option, e.g. --slurm-option account=lab --slurm-option qos=high (repeatable)",
    )


def launch_settings(args: argparse.Namespace, name: str):
    """The :class:`wsolbench.launch.Launch` of parsed launch options."""
    from wsolbench.launch import Launch

    options = {}
    for assignment in args.slurm_option:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--slurm-option {assignment!r}: expected KEY=VALUE, e.g. --slurm-option account=lab")
        options[key.strip().lstrip("-")] = value.strip()
    return Launch(
        launcher=args.launcher,
        jobs=args.jobs,
        device=args.device or "auto",
        partition=args.partition,
        gpus_per_job=args.gpus_per_job,
        time_min=args.time,
        slurm_options=options,
        folder=args.out / ".submitit",
        name=name,
    )


def worker_log_format(log_format: str, jobs: int) -> str:
    """Progress bars of several processes would overwrite each other: plain lines instead."""
    return "plain" if jobs > 1 and log_format in ("auto", "bar") else log_format


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run the cross product of methods x backbones x datasets x seeds (x listed options)",
        description="Runs whose results already exist with the same config hash are reused, not retrained.",
    )
    parser.add_argument(
        "grid",
        type=Path,
        help="grid YAML: methods, backbones, datasets, seeds lists, options (dotted config keys with lists of values) and a base config",
    )
    add_format_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="list the runs without training")
    parser.add_argument("--resume", action="store_true", help="continue interrupted runs from their checkpoints")
    add_run_options(parser)
    add_launch_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wsolbench.cache import config_hash
    from wsolbench.launch import run_jobs
    from wsolbench.results import render_runs
    from wsolbench.sweep import RunCall, grid_points, load_grid, point_label

    registry = default_registry()
    axes, base = load_grid(args.grid)
    configs, labels, seen = [], [], set()
    for point in grid_points(axes):
        config = configuration.resolve(
            registry,
            file=args.config,
            base=base,
            sets=args.sets,
            flags={**point, "device": args.device, "amp": args.amp},
        )
        digest = config_hash(config)
        if digest not in seen:  # two workers must never train the same run folder
            seen.add(digest)
            configs.append(config)
            labels.append(point_label(point))
    launch = launch_settings(args, name=f"wsolbench-sweep-{args.grid.stem}")
    for index, (config, options) in enumerate(zip(configs, labels), 1):
        label = f"{config['method']['name']} / {config['backbone']['name']} / {config['dataset']['name']} / seed {config['seed']}"
        if args.dry_run:
            print(f"[{index}/{len(configs)}] {label}" + (f" / {options}" if options else ""))
    if args.dry_run or not configs:
        return 0
    progress = Progress(args.log_format, quiet=args.quiet)
    progress.message(f"{len(configs)} runs", launcher=launch.launcher, jobs=min(launch.workers, len(configs)))
    call = RunCall(
        out=args.out,
        resume=args.resume,
        force=args.force,
        log_format=worker_log_format(args.log_format, launch.workers),
        quiet=args.quiet,
    )
    run_dirs = run_jobs(call, configs, launch)
    print(render_runs(run_dirs, fmt=args.format))
    return 0
