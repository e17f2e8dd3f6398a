"""``wsolbench search SPACE.yaml``: hyperparameter search, each trial an ordinary run."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from wsolbench import config as configuration
from wsolbench.cli.run_cmd import add_format_option, add_run_options
from wsolbench.cli.sweep_cmd import add_launch_options, launch_settings, worker_log_format
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.progress import Progress
from wsolbench.registry import default_registry


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="hyperparameter search (random, the protocol of Choe et al.; or TPE), each trial a run",
        description="Search the hyperparameters of SPACE.yaml (format: wsolbench/search.py). Each trial is an "
        "ordinary run under --out, scored on the val split; the study lives in optuna storage (a SQLite file "
        "beside the runs by default), so a killed search resumes and several workers share it. Prints the "
        "search table and the best trial's numbers.",
    )
    parser.add_argument("space", type=Path, help="search file: base config, space, trials, sampler, metric")
    parser.add_argument("--trials", type=int, help="number of trials (default: the file's, else 30)")
    parser.add_argument("--sampler", help="random (the protocol's, default) or tpe")
    parser.add_argument("--sampler-seed", type=int, help="seed of the sampler (default: the file's, else 0)")
    parser.add_argument("--metric", help="metrics key to maximise (auto: pxap with masks, else maxboxacc_v2)")
    parser.add_argument("--split", help="split whose metrics score a trial: val (default) or test")
    parser.add_argument("--study-name", help="optuna study name (default: the file's study, else its name)")
    parser.add_argument("--storage", help="optuna RDB URL (default: sqlite:///<out>/search-<study>.db)")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=60,
        metavar="SECONDS",
        help="seconds between a running trial's heartbeats; a trial silent for three is re-run (default 60)",
    )
    add_format_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="print the planned trials without training")
    add_run_options(parser)
    add_launch_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from wsolbench import search, study

    registry = default_registry()
    spec = search.load_search_file(args.space)
    trials = args.trials if args.trials is not None else spec.trials
    sampler = args.sampler or spec.sampler
    metric, split = args.metric or spec.metric, args.split or spec.split
    search.check_settings(trials, sampler, metric, split)
    if args.heartbeat < 1:
        raise UsageError(f"--heartbeat {args.heartbeat}: give a whole number of seconds, at least 1")
    base_config = configuration.resolve(
        registry, file=args.config, base=spec.base, sets=args.sets, flags={"device": args.device, "amp": args.amp}
    )
    base_config = search.with_scored_split(registry, base_config, split)
    space = search.build_space(spec, registry, base_config)
    study_name = args.study_name or spec.study
    launch = launch_settings(args, name=f"wsolbench-search-{study_name}")
    if launch.launcher == "slurm" and launch.gpus_per_job > 1:
        raise UsageError("search trials train on one GPU each: use --gpus-per-job 1 and --jobs N for N trials at once")
    job = study.SearchJob(
        storage=args.storage or study.default_storage(args.out, study_name),
        study=study_name,
        base_config=base_config,
        space=space,
        trials=trials,
        sampler=sampler,
        sampler_seed=args.sampler_seed if args.sampler_seed is not None else spec.sampler_seed,
        metric=metric,
        split=split,
        out=args.out,
        force=args.force,
        heartbeat=args.heartbeat,
        log_format=worker_log_format(args.log_format, launch.workers),
        quiet=args.quiet,
        settings={
            "base": spec.base,
            "config_file": configuration.load_yaml(args.config) if args.config else None,
            "sets": args.sets,
            "amp": bool(args.amp),
        },
    )
    if args.dry_run:
        print(_dry_run(job, args.format), end="")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    handle = study.prepare_study(job)
    if study.next_action(handle.get_trials(deepcopy=False), job) != "stop":
        from wsolbench.launch import run_jobs

        Progress(args.log_format, quiet=args.quiet).message(
            f"search {study_name!r}", trials=trials, launcher=launch.launcher, jobs=launch.workers, storage=job.storage
        )
        run_jobs(functools.partial(study.search_worker, job), list(range(launch.workers)), launch)
    return _report(job, handle, args.format)


def _dry_run(job, fmt: str) -> str:
    from wsolbench import search

    if job.adaptive:
        lines = [f"{key}: {distribution}" for key, distribution in job.space.items()]
        return f"{job.sampler} samples as it goes; the space:\n" + "\n".join(lines) + "\n"
    plan = search.plan_trials(job.space, job.trials, job.sampler_seed)
    rows = [search.SlotRow(slot, "planned", params) for slot, params in enumerate(plan)]
    return search.render_search(rows, list(job.space), "score", fmt=fmt)


def _report(job, handle, fmt: str) -> int:
    from wsolbench import search, study
    from wsolbench.results import render_runs

    rows = study.search_rows(handle.get_trials(deepcopy=False), job)
    labels = {row.scored_on for row in rows if row.scored_on}
    label = labels.pop() if len(labels) == 1 else f"{job.split} {job.metric}"
    done = sum(row.status in ("done", "failed") for row in rows)
    print(
        f"search {job.study!r}: {done}/{len(rows)} trials finished; {job.sampler} sampler, seed {job.sampler_seed}; study {job.storage}"
    )
    print(search.render_search(rows, list(job.space), label, fmt=fmt), end="")
    if label.split(" ", 1)[0] != job.split:
        print(f"note: the runs have no {job.split} metrics, so the trials were scored on the test split")
    best = search.best_row(rows, label.rsplit(" ", 1)[-1])
    if best is not None:
        params = ", ".join(f"{key}={search.format_value(value)}" for key, value in best.params.items())
        print(f"\nbest: trial {best.slot} ({params}): {label} {search.format_value(best.score)}; its run:")
        print(render_runs([Path(best.run)], fmt=fmt), end="")
    unfinished = len(rows) - done
    if unfinished:
        raise WsolbenchError(
            f"{unfinished} of {len(rows)} trials did not finish (their workers stopped): run the same command "
            "again to resume them"
        )
    return 0
