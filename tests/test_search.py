"""`wsolbench search`: search files and spaces, the seeded plan, scoring, the study's slots
(retries counted once, stale trials re-queued), and end to end: 2 local jobs surviving
``kill -9``, and submitit's local executor."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from wsolbench import search, study
from wsolbench.cli.main import main
from wsolbench.errors import UsageError

TINY_BASE = {
    "method": {"name": "cam"},
    "backbone": {"name": "tinycnn", "width": 8},
    "head": {"name": "linear"},
    "dataset": {"name": "synthetic", "image_size": 32, "num_train": 64, "num_test": 16, "num_val": 16},
    "train": {"epochs": 1, "batch_size": 16, "lr": 0.02},
    "device": "cpu",
}


def write_space(path: Path, **content) -> Path:
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------
# Bad search files are one-line usage errors, before anything trains
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({"space": {"method.nosuch": {"choice": [1, 2]}}}, "unknown config key 'method.nosuch'"),
        ({"space": {"train.lr": {"uniform": [0.1, 0.01]}}}, "low 0.1 is above high 0.01"),
        ({"space": {"train.lr": {"log_uniform": [0, 0.1]}}}, "needs low > 0"),
        ({"space": {"train.lr": {"log_uniform": [-1.0, 0.1]}}}, "needs low > 0"),
        ({"space": {"train.lr": {"gaussian": [0, 1]}}}, "unknown distribution 'gaussian'"),
        ({"space": {"train.lr": {"uniform": [0.1]}}}, "needs two numbers"),
        ({"space": {"train.epochs": {"uniform": [1, 3]}}}, "config key 'train.epochs' must be"),
        ({"space": {"train.epochs": {"int_uniform": [1.5, 3]}}}, "needs two integers"),
        ({"space": {"method.name": {"choice": ["cam", "hda"]}}}, "run one search per method"),
        ({"space": {"train.lr_decay_epochs": {"choice": [[80], [60]]}}}, "choice values must be numbers"),
        ({"trails": 5, "space": {"train.lr": {"uniform": [0.1, 0.2]}}}, "unknown key 'trails'"),
        ({"space": {}}, "the search space is empty"),
    ],
)
def test_bad_search_spaces_are_one_line_usage_errors(tmp_path, capsys, content, expected):
    space = write_space(tmp_path / "space.yaml", base=TINY_BASE, **content)
    out = tmp_path / "runs"
    assert main(["search", str(space), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and expected in error, error
    assert not out.exists()  # nothing trained, no study created


@pytest.mark.parametrize(
    ("flag", "expected"),
    [
        (["--trials", "0"], "trials must be at least 1"),
        (["--sampler", "grid"], "unknown sampler 'grid'"),
        (["--metric", "maxboxacc2"], "unknown metric 'maxboxacc2'"),
        (["--split", "train"], "unknown split 'train'"),
        (["--storage", "runs/search.db"], "give an RDB URL"),
    ],
)
def test_bad_search_settings_are_one_line_usage_errors(tmp_path, capsys, flag, expected):
    space = write_space(tmp_path / "space.yaml", base=TINY_BASE, space={"train.lr": {"uniform": [0.01, 0.1]}})
    assert main(["search", str(space), "--out", str(tmp_path / "runs"), *flag]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and expected in error, error


def test_method_defaults_come_from_the_method_class_and_the_file_wins(tmp_path, registry, monkeypatch):
    factory = registry.get("methods", "dda").factory
    monkeypatch.setattr(
        factory, "search_space", {"lam": {"log_uniform": [1e-3, 1e-1]}, "k": {"choice": [4, 8]}}, raising=False
    )
    spec = search.load_search_file(
        write_space(
            tmp_path / "dda.yaml", method_defaults=True, base={"method": "dda"}, space={"method.k": {"choice": [2]}}
        )
    )
    base = search.configuration.resolve(registry, base=spec.base)
    space = search.build_space(spec, registry, base)
    assert space == {
        "method.lam": FloatDistribution(1e-3, 1e-1, log=True),
        "method.k": CategoricalDistribution([2]),
    }
    # a method's own space is checked like a file's
    monkeypatch.setattr(factory, "search_space", {"nosuch": {"choice": [1]}})
    with pytest.raises(UsageError, match="unknown config key 'method.nosuch'"):
        search.build_space(spec, registry, base)


# --------------------------------------------------------------------------------------
# The plan of a random search
# --------------------------------------------------------------------------------------

SPACE = {
    "train.lr": FloatDistribution(1e-4, 1e-1, log=True),
    "train.momentum": FloatDistribution(0.5, 0.99),
    "method.k": IntDistribution(2, 8),
    "head.name": CategoricalDistribution(["wsol", "linear"]),
}


def test_the_plan_is_seeded_distinct_and_inside_the_space():
    plan = search.plan_trials(SPACE, 200, seed=0)
    assert plan == search.plan_trials(SPACE, 200, seed=0)
    assert plan[:10] == search.plan_trials(SPACE, 10, seed=0)  # more trials extend, never reshuffle
    assert plan[:10] != search.plan_trials(SPACE, 10, seed=1)
    assert len({json.dumps(p, sort_keys=True) for p in plan}) == 200
    lrs = [p["train.lr"] for p in plan]
    assert all(1e-4 <= lr <= 1e-1 for lr in lrs)
    # log-uniform: half of the draws below the geometric midpoint 10^-2.5 (uniform would put 3% there)
    assert 0.4 <= sum(lr < 10**-2.5 for lr in lrs) / len(lrs) <= 0.6
    assert {p["method.k"] for p in plan} == set(range(2, 9))
    assert {p["head.name"] for p in plan} == {"wsol", "linear"}


def test_a_small_discrete_space_plans_each_point_once():
    space = {"method.k": CategoricalDistribution([2, 4, 8])}
    assert sorted(p["method.k"] for p in search.plan_trials(space, 5, seed=0)) == [2, 4, 8]


# --------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------


def test_trial_score_reads_the_split_and_metric():
    test_only = {"maxboxacc_v2": 50.0, "pxap": 60.0, "loc_err_top1": 30.0}
    with_val = {**test_only, "val": {"maxboxacc_v2": 40.0, "loc_err_top1": float("nan")}}
    assert search.trial_score(with_val, "auto", "val") == 40.0  # val has no masks: MaxBoxAccV2
    assert search.trial_score(with_val, "auto", "test") == 60.0  # test has masks: PxAP
    assert search.trial_score(with_val, "maxboxacc_v2", "test") == 50.0
    assert search.split_metrics(test_only, "val") == (test_only, "test")  # no val numbers yet
    assert search.trial_score(test_only, "maxboxacc_v2", "val") == 50.0
    assert search.trial_score(with_val, "loc_err_top1", "val") == math.inf  # NaN ranks last
    assert search.direction("loc_err_top1") == "minimize" and search.direction("auto") == "maximize"
    with pytest.raises(UsageError, match="'gt_known_loc' is not among"):
        search.trial_score(with_val, "gt_known_loc", "val")


# --------------------------------------------------------------------------------------
# The study: slots, retries, stale trials
# --------------------------------------------------------------------------------------

LR = {"train.lr": FloatDistribution(1e-3, 1e-1, log=True)}


def make_job(tmp_path: Path, **overrides) -> study.SearchJob:
    settings = {
        "storage": study.default_storage(tmp_path, "s"),
        "study": "s",
        "base_config": {},
        "space": LR,
        "trials": 3,
        "heartbeat": 1,
    }
    return study.SearchJob(**{**settings, **overrides})


def add(handle: optuna.Study, state: TrialState, slot: int | None, lr: float | None = None, **attrs) -> None:
    params = {"train.lr": lr} if lr is not None else None
    handle.add_trial(
        create_trial(
            state=state,
            params=params,
            distributions=LR if params else None,
            value=1.0 if state == TrialState.COMPLETE else None,
            user_attrs={**({study.SLOT: slot} if slot is not None else {}), **attrs},
        )
    )


def test_one_row_per_slot_and_what_a_worker_does_next(tmp_path):
    job = make_job(tmp_path)
    handle = optuna.create_study()
    add(handle, TrialState.COMPLETE, 0, 0.01)
    add(handle, TrialState.FAIL, 1, 0.02)  # its worker died ...
    add(handle, TrialState.RUNNING, 1, 0.02)  # ... and its retry runs
    add(handle, TrialState.FAIL, 2, 0.03, error="loss is nan")  # failed for good: counts as finished
    add(handle, TrialState.PRUNED, None)  # a stray ask: not part of the search
    trials = handle.get_trials()
    rows = study.search_rows(trials, job)
    assert [(r.slot, r.status) for r in rows] == [(0, "done"), (1, "running"), (2, "failed")]
    assert rows[2].error == "loss is nan" and rows[1].params == {"train.lr": 0.02}
    assert study.live_slots(trials) == {0, 1, 2}
    assert study.next_action(trials, job) == "wait"  # only another worker's trial is left
    add(handle, TrialState.WAITING, 3)
    assert study.next_action(handle.get_trials(), job) == "run"
    done = optuna.create_study()
    for slot in range(3):
        add(done, TrialState.COMPLETE, slot, 0.01 * (slot + 1))
    assert study.next_action(done.get_trials(), job) == "stop"
    # TPE has no plan: it asks new trials until its slots are live
    assert study.next_action(done.get_trials(), make_job(tmp_path, sampler="tpe", trials=4)) == "run"
    assert study.next_action(done.get_trials(), make_job(tmp_path, sampler="tpe", trials=3)) == "stop"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks by hand
def test_prepare_enqueues_the_plan_once_and_refuses_a_changed_search(tmp_path):
    job = make_job(tmp_path)
    handle = study.prepare_study(job)
    study.prepare_study(job)  # a second `wsolbench search` adds nothing
    waiting = handle.get_trials(states=(TrialState.WAITING,))
    plan = search.plan_trials(LR, 3, seed=0)
    assert [t.system_attrs["fixed_params"] for t in waiting] == plan
    assert [t.user_attrs[study.SLOT] for t in waiting] == [0, 1, 2]
    # a trial stopped by an error that is not the run's (no 'error' attribute) is queued again
    trial = handle.ask()
    handle.tell(trial, state=TrialState.FAIL)
    study.prepare_study(job)
    again = handle.get_trials(states=(TrialState.WAITING,))
    assert sorted(t.user_attrs[study.SLOT] for t in again) == [0, 1, 2] and len(again) == 3
    # more trials extend the plan
    study.prepare_study(make_job(tmp_path, trials=4))
    assert len(handle.get_trials(states=(TrialState.WAITING,))) == 4
    with pytest.raises(UsageError, match="made by a different search"):
        study.prepare_study(make_job(tmp_path, space={"train.lr": FloatDistribution(1e-3, 1.0, log=True)}))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks by hand
def test_a_trial_whose_worker_died_is_retried_with_its_params_and_slot(tmp_path):
    job = make_job(tmp_path, trials=1)
    handle = study.prepare_study(job)
    trial = handle.ask()  # a worker takes slot 0 ... and dies after one heartbeat
    handle._storage.record_heartbeat(trial._trial_id)
    time.sleep(3 * job.heartbeat + 1.5)
    optuna.storages.fail_stale_trials(study.open_study(job))
    trials = handle.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].params == trials[0].params and trials[1].user_attrs[study.SLOT] == 0
    assert [(r.slot, r.status) for r in study.search_rows(trials, job)] == [(0, "waiting")]
    assert study.next_action(trials, job) == "run"


def test_run_failures_fail_their_trial_for_good_and_a_usage_error_stops_the_worker(tmp_path, registry, monkeypatch):
    import torch

    from wsolbench import runner
    from wsolbench.errors import WsolbenchError
    from wsolbench.progress import Progress

    outcomes = iter(
        [
            runner.RunResult(tmp_path / "run0", {"maxboxacc_v2": 30.0, "val": {"maxboxacc_v2": 42.0}}),
            WsolbenchError("loss is nan at epoch 1: lower train.lr"),
            torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
            UsageError("dataset root '/data/cub' does not exist"),
        ]
    )

    def fake_execute(config, registry, **kwargs):
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(runner, "execute", fake_execute)
    job = make_job(tmp_path, trials=4, metric="maxboxacc_v2")
    handle = study.prepare_study(job)
    objective = study.Objective(job, registry, Progress(quiet=True))
    for _ in range(3):
        handle.optimize(objective, n_trials=1, catch=(study.TrialError,))
    with pytest.raises(UsageError, match="does not exist"):
        handle.optimize(objective, n_trials=1, catch=(study.TrialError,))
    rows = study.search_rows(handle.get_trials(), job)
    assert [(r.slot, r.status, r.score) for r in rows] == [
        (0, "done", 42.0),  # scored on val
        (1, "failed", None),
        (2, "failed", None),
        (3, "interrupted", None),
    ]
    assert rows[0].scored_on == "val maxboxacc_v2" and rows[0].run == str(tmp_path / "run0")
    assert rows[1].error.startswith("loss is nan") and rows[2].error.startswith("out of memory: CUDA out of memory")
    study.prepare_study(job)  # the next `wsolbench search` queues the interrupted slot again, only it
    assert [t.user_attrs[study.SLOT] for t in handle.get_trials(states=(TrialState.WAITING,))] == [3]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test asks by hand
def test_a_slot_queued_twice_never_trains_twice_at_once(tmp_path, registry, monkeypatch):
    from wsolbench import runner
    from wsolbench.progress import Progress

    def fail_if_called(*args, **kwargs):
        raise AssertionError("the duplicate trained")

    monkeypatch.setattr(runner, "execute", fail_if_called)
    job = make_job(tmp_path, trials=1)
    handle = study.prepare_study(job)
    first = handle.ask()  # a worker runs slot 0 ...
    first.suggest_float("train.lr", 1e-3, 1e-1, log=True)
    handle.enqueue_trial(first.params, user_attrs={study.SLOT: 0})  # ... while a race queued it again
    handle.optimize(study.Objective(job, registry, Progress(quiet=True)), n_trials=1)
    states = [t.state for t in handle.get_trials()]
    assert states == [TrialState.RUNNING, TrialState.PRUNED]
    assert [(r.slot, r.status) for r in study.search_rows(handle.get_trials(), job)] == [(0, "running")]


# --------------------------------------------------------------------------------------
# End to end (these train)
# --------------------------------------------------------------------------------------


def search_cli(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "wsolbench.cli.main", "search", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def completed_params(storage: str, name: str) -> list[tuple[int, dict]]:
    handle = optuna.load_study(study_name=name, storage=storage)
    return sorted((t.user_attrs[study.SLOT], t.params) for t in handle.get_trials(states=(TrialState.COMPLETE,)))


@pytest.mark.slow
def test_search_with_two_jobs_survives_kill_9_and_resumes_the_same_trials(tmp_path):
    base = {**TINY_BASE, "train": {**TINY_BASE["train"], "epochs": 2}}
    space = write_space(
        tmp_path / "tiny.yaml",
        trials=6,
        base=base,
        space={"train.lr": {"log_uniform": [1e-3, 1e-1]}, "seed": {"choice": [0, 1, 2]}},
    )
    out = tmp_path / "runs"
    args = [str(space), "--out", str(out), "--jobs", "2", "--heartbeat", "1", "--log-format", "plain"]
    dry = search_cli(*args, "--dry-run").communicate()[0]
    planned = [line.split("|")[2:4] for line in dry.splitlines()[2:]]
    assert len(planned) == 6

    first = search_cli(*args, start_new_session=True)
    deadline = time.time() + 300
    unfinished = []
    while time.time() < deadline and not unfinished:
        unfinished = [p for p in out.glob("*/checkpoint.pt") if not (p.parent / "metrics.json").exists()]
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # the search and both workers, mid-trial
    first.wait()
    assert unfinished, "no trial reached its first checkpoint"

    second = search_cli(*args)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert "resumed" in stderr  # the killed trial continued from its checkpoint
    storage = study.default_storage(out, "tiny")
    done = completed_params(storage, "tiny")
    assert [slot for slot, _ in done] == list(range(6))  # every slot once: none lost, none twice
    assert [[search.format_value(p["train.lr"]), str(p["seed"])] for _, p in done] == [
        [cell.strip() for cell in row] for row in planned
    ]
    assert len(list(out.glob("*/metrics.json"))) == 6
    lines = stdout.splitlines()
    assert lines[0].startswith("search 'tiny': 6/6 trials finished")
    assert sum(" done " in line for line in lines) == 6 and "best: trial" in stdout


@pytest.mark.slow
def test_the_submitit_local_executor_runs_the_trials(tmp_path):
    space = write_space(
        tmp_path / "sub.yaml", trials=2, base=TINY_BASE, space={"train.lr": {"log_uniform": [1e-3, 1e-1]}}
    )
    out = tmp_path / "runs"
    proc = search_cli(
        str(space), "--out", str(out), "--launcher", "submitit-local", "--jobs", "2", "--heartbeat", "1", "--quiet"
    )
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert [slot for slot, _ in completed_params(study.default_storage(out, "sub"), "sub")] == [0, 1]
    assert len(list((out / ".submitit").glob("*/*_result.pkl"))) == 2  # two submitit jobs did the work
    assert "2/2 trials finished" in stdout
