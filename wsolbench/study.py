"""The optuna study of a search: its storage, its slots, and the workers that run its trials.

How trials stay exact under kills and many workers: the random search *plans* its trials once
(the first ``trials`` distinct draws of ``optuna.samplers.RandomSampler(seed)``), stores the
plan in the study and enqueues each planned trial (``Study.enqueue_trial``) with its slot
number. Workers run ``Study.optimize`` one trial at a time, with optuna's heartbeat: a trial
whose worker died goes stale, is failed and re-enqueued with the same parameters
(``RetryHeartbeatStaleTrialCallback``); its run resumes from its checkpoint. A table row is
one slot, so a retried trial is never counted twice; a slot left without a live trial (say,
after a usage error) is enqueued again by the next ``wsolbench search``. TPE samples
adaptively, so it has no plan: its budget is the first ``trials`` slots by trial number.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
)
from optuna.trial import FrozenTrial, TrialState

from wsolbench import config as configuration
from wsolbench.errors import UsageError, WsolbenchError
from wsolbench.registry import Registry
from wsolbench.search import DEFAULT_TRIALS, SlotRow, direction, plan_trials, resolve_metric, split_metrics, trial_score

#: Trial user attributes.
SLOT, STARTED, ERROR, RUN, SCORED_ON = "slot", "started", "error", "run", "scored_on"
#: Study user attributes.
FINGERPRINT, PLAN = "wsolbench_fingerprint", "wsolbench_plan"
#: Retries of a trial whose worker died, before the slot waits for the next ``wsolbench search``.
MAX_RETRY = 3


# --------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------


@dataclass
class SearchJob:
    """Everything a worker needs to work a study (picklable: it travels to worker processes).

    Attributes:
        storage: optuna RDB URL (``sqlite:///...``, ``postgresql://...``).
        study: Study name.
        base_config: Resolved config every trial starts from.
        space: Dotted config key -> optuna distribution.
        trials: Number of trials (slots) of the search.
        sampler: ``random`` or ``tpe``.
        sampler_seed: Seed of the sampler.
        metric: Metrics key or ``auto``; split: whose metrics score a trial.
        out: Folder of the run folders.
        force: Retrain a trial's run on its first attempt even if it is finished.
        heartbeat: optuna heartbeat interval in seconds; a trial silent for 3 beats is stale.
        log_format, quiet: The workers' progress output.
        settings: The config as the user gave it (search file base, ``--config`` file,
            ``--set``, ``--amp``): part of the study's fingerprint.
    """

    storage: str
    study: str
    base_config: dict[str, Any]
    space: dict[str, BaseDistribution]
    trials: int = DEFAULT_TRIALS
    sampler: str = "random"
    sampler_seed: int = 0
    metric: str = "auto"
    split: str = "val"
    out: Path = Path("runs")
    force: bool = False
    heartbeat: int = 60
    log_format: str = "plain"
    quiet: bool = False
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def adaptive(self) -> bool:
        """Whether the sampler samples as it goes (TPE) instead of following a plan."""
        return self.sampler != "random"

    def fingerprint(self) -> str:
        """What makes two searches the same study: the space, the config the user gave
        (:attr:`settings`), the sampler and the score. Defaults a newer wsolbench adds do not
        count, so a study resumes after an upgrade (its runs then get new folders)."""
        text = json.dumps(
            {
                "space": {key: distribution_to_json(d) for key, d in self.space.items()},
                "settings": self.settings,
                "sampler": [self.sampler, self.sampler_seed],
                "score": [self.metric, self.split],
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def default_storage(out: Path, study: str) -> str:
    """The SQLite file beside the runs: ``<out>/search-<study>.db``."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in study)
    return f"sqlite:///{(Path(out) / f'search-{name}.db').resolve()}"


def quiet_optuna() -> None:
    """optuna's per-trial log lines and experimental-feature warnings off (wsolbench reports)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_storage(url: str, heartbeat: int) -> optuna.storages.RDBStorage:
    """optuna RDB storage with heartbeats; stale trials are retried with the same parameters."""
    if "://" not in url:
        raise UsageError(f"--storage {url!r}: give an RDB URL, e.g. sqlite:///runs/search.db or postgresql://host/db")
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine,
            heartbeat_interval=heartbeat,
            grace_period=3 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY),
        )
    except Exception as error:  # sqlalchemy's URL, driver and connection errors
        raise UsageError(f"--storage {url!r}: cannot open it ({type(error).__name__}: {error})") from None


def _sampler(job: SearchJob, worker: int) -> optuna.samplers.BaseSampler:
    # Workers draw different streams; the random search's trials come from its plan anyway.
    if job.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=job.sampler_seed + worker)
    return optuna.samplers.RandomSampler(seed=job.sampler_seed + worker)


def prepare_study(job: SearchJob) -> optuna.Study:
    """Create or load the study, check it is this search's, and enqueue the planned trials
    that have no live trial (all of them at first; after a failure, the failed ones)."""
    quiet_optuna()
    storage = make_storage(job.storage, job.heartbeat)
    study = optuna.create_study(
        study_name=job.study,
        storage=storage,
        sampler=_sampler(job, 0),
        direction=direction(job.metric),
        load_if_exists=True,
    )
    attrs = study.user_attrs
    if attrs.get(FINGERPRINT, job.fingerprint()) != job.fingerprint():
        raise UsageError(
            f"study {job.study!r} in {job.storage} was made by a different search (space, base config, sampler, "
            "metric or split changed): pass --study-name NEW for a new study, or restore the original settings"
        )
    study.set_user_attr(FINGERPRINT, job.fingerprint())
    if job.adaptive:
        return study
    plan = extend_plan(attrs.get(PLAN, []), plan_trials(job.space, job.trials, job.sampler_seed), job.trials)
    study.set_user_attr(PLAN, plan)
    live = live_slots(study.get_trials(deepcopy=False))
    for slot, params in enumerate(plan[: job.trials]):
        if slot not in live:
            study.enqueue_trial(params, user_attrs={SLOT: slot})
    return study


def extend_plan(stored: list[dict[str, Any]], fresh: list[dict[str, Any]], trials: int) -> list[dict[str, Any]]:
    """The stored plan, grown with fresh draws it lacks up to ``trials`` (a search given more trials)."""
    plan = list(stored)
    for params in fresh:
        if len(plan) >= trials:
            break
        if params not in plan:
            plan.append(params)
    return plan


def open_study(job: SearchJob, worker: int = 0) -> optuna.Study:
    """A worker's handle on the (already prepared) study."""
    quiet_optuna()
    return optuna.load_study(
        study_name=job.study, storage=make_storage(job.storage, job.heartbeat), sampler=_sampler(job, worker)
    )


# --------------------------------------------------------------------------------------
# Slots: one logical trial and its attempts
# --------------------------------------------------------------------------------------

_PRIORITY = {"done": 0, "failed": 1, "running": 2, "waiting": 3, "interrupted": 4}


def trial_status(trial: FrozenTrial) -> str | None:
    """``done``, ``failed`` (the run raised: diverged, ...), ``running``, ``waiting``,
    ``interrupted`` (its worker died or was stopped) or None (pruned: not part of the search)."""
    if trial.state == TrialState.COMPLETE:
        return "done"
    if trial.state == TrialState.FAIL:
        return "failed" if ERROR in trial.user_attrs else "interrupted"
    if trial.state == TrialState.RUNNING:
        return "running"
    if trial.state == TrialState.WAITING:
        return "waiting"
    return None


def slot_of(trial: FrozenTrial) -> int | None:
    """A trial's slot: the planned trial it runs (a retry keeps its original's)."""
    slot = trial.user_attrs.get(SLOT)
    if slot is None and trial.state == TrialState.RUNNING:
        return trial.number  # a TPE trial between ask and its objective's first line
    return slot


def representatives(trials: Sequence[FrozenTrial]) -> dict[int, FrozenTrial]:
    """Per slot, the attempt that stands for it: done over failed over running over waiting
    over interrupted (the latest attempt among equals)."""
    best: dict[int, FrozenTrial] = {}
    for trial in trials:
        status, slot = trial_status(trial), slot_of(trial)
        if status is None or slot is None:
            continue
        current = best.get(slot)
        if current is None or _PRIORITY[status] <= _PRIORITY[trial_status(current)]:  # type: ignore[index]
            best[slot] = trial
    return best


def live_slots(trials: Sequence[FrozenTrial]) -> set[int]:
    """Slots that are done, failed for good, running or queued."""
    return {slot for slot, t in representatives(trials).items() if trial_status(t) != "interrupted"}


def next_action(trials: Sequence[FrozenTrial], job: SearchJob) -> str:
    """What a worker does next: ``run`` a trial, ``wait`` for others' running trials (they may
    go stale and be re-queued), or ``stop``."""
    if any(t.state == TrialState.WAITING for t in trials):
        return "run"
    if job.adaptive and len(live_slots(trials)) < job.trials:
        return "run"
    if any(t.state == TrialState.RUNNING for t in trials):
        return "wait"
    return "stop"


# --------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------


class TrialError(Exception):
    """A trial's run failed (diverged, ...): the trial is marked failed, the search goes on."""


class Objective:
    """optuna objective: one trial = one :func:`wsolbench.runner.execute` run."""

    def __init__(self, job: SearchJob, registry: Registry, progress: Any):
        self.job, self.registry, self.progress = job, registry, progress

    def __call__(self, trial: optuna.Trial) -> float:
        import torch

        from wsolbench.runner import execute

        job = self.job
        slot = trial.user_attrs.get(SLOT)
        if slot is None and job.adaptive:
            slot = trial.number
            trial.set_user_attr(SLOT, slot)
        params = {key: suggest(trial, key, distribution) for key, distribution in job.space.items()}
        skip = self.skip_reason(trial, slot, params)
        if skip:
            raise optuna.TrialPruned(skip)
        force = job.force and not trial.user_attrs.get(STARTED)
        trial.set_user_attr(STARTED, True)
        config = configuration.resolve(self.registry, base=job.base_config, flags=params)
        self.progress.message(f"trial {slot}", **params)
        try:
            result = execute(config, self.registry, out=job.out, resume=True, force=force, progress=self.progress)
        except UsageError:
            raise
        except WsolbenchError as error:
            trial.set_user_attr(ERROR, str(error))
            raise TrialError(str(error)) from None
        except (MemoryError, torch.OutOfMemoryError) as error:  # too big a batch: a result, not a crash
            message = f"out of memory: {str(error).splitlines()[0][:100]}" if str(error) else "out of memory"
            trial.set_user_attr(ERROR, message)
            raise TrialError(message) from None
        trial.set_user_attr(RUN, str(result.run_dir))
        values, scored_split = split_metrics(result.metrics, job.split)
        trial.set_user_attr(SCORED_ON, f"{scored_split} {resolve_metric(job.metric, values)}")
        score = trial_score(result.metrics, job.metric, job.split)
        self.progress.message(f"trial {slot} done", score=round(score, 4), run=str(result.run_dir))
        return score

    def skip_reason(self, trial: optuna.Trial, slot: int | None, params: dict[str, Any]) -> str | None:
        """Why this trial must not run (it becomes PRUNED, which no table or budget counts), or None.

        Queue races are rare but possible with many workers: a random search's worker may ask
        after another took the last queued trial (a fresh, unplanned trial), a slot may be queued
        twice, TPE may overshoot its budget or propose parameters another worker is running;
        two processes must never train the same run folder.
        """
        job = self.job
        if slot is None:
            return "not a planned trial (the queued one went to another worker)"
        trials = trial.study.get_trials(deepcopy=False)
        if not job.adaptive and slot >= job.trials:
            return f"slot {slot} is beyond the {job.trials} trials of this search"
        if job.adaptive and len({s for s in live_slots(trials) if s < slot}) >= job.trials:
            return "the search has its trials"
        for other in trials:
            if other.number == trial.number or other.state not in (TrialState.RUNNING, TrialState.COMPLETE):
                continue
            if slot_of(other) == slot:
                return f"trial {slot} already ran or runs (optuna trial {other.number})"
            if other.state == TrialState.RUNNING and other.params == params:
                return f"trial {slot_of(other)} is running the same parameters"
        return None


def suggest(trial: optuna.Trial, key: str, distribution: BaseDistribution) -> Any:
    """``trial.suggest_*`` for a distribution (queued and retried trials return their values)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(key, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(key, distribution.low, distribution.high, log=distribution.log)
    assert isinstance(distribution, FloatDistribution)
    return trial.suggest_float(key, distribution.low, distribution.high, log=distribution.log)


def search_worker(job: SearchJob, worker: int = 0) -> int:
    """Work the study until every slot is done: run queued or new trials one at a time under
    optuna's heartbeat, wait while only other workers' trials run. Returns the trials it ran."""
    from wsolbench.launch import parent_alive
    from wsolbench.progress import Progress
    from wsolbench.registry import default_registry

    study = open_study(job, worker)
    objective = Objective(job, default_registry(), Progress(job.log_format, quiet=job.quiet))
    ran = 0
    while parent_alive():
        optuna.storages.fail_stale_trials(study)
        action = next_action(study.get_trials(deepcopy=False), job)
        if action == "stop":
            break
        if action == "wait":
            time.sleep(min(job.heartbeat, 5))
            continue
        study.optimize(objective, n_trials=1, catch=(TrialError,))
        ran += 1
    return ran


def search_rows(trials: Sequence[FrozenTrial], job: SearchJob) -> list[SlotRow]:
    """The search's slots in order. A random search shows its planned slots; TPE its live
    slots (an interrupted TPE trial was replaced by a new one)."""
    rows = []
    for slot, trial in sorted(representatives(trials).items()):
        status = trial_status(trial) or ""
        if (not job.adaptive and slot >= job.trials) or (job.adaptive and status == "interrupted"):
            continue
        attrs = trial.user_attrs
        params = dict(trial.params) or dict(trial.system_attrs.get("fixed_params", {}))
        score = trial.value if trial.state == TrialState.COMPLETE else None
        rows.append(SlotRow(slot, status, params, score, attrs.get(RUN), attrs.get(ERROR), attrs.get(SCORED_ON)))
    return rows
