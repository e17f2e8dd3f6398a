"""Where many runs run: worker processes on this machine, or SLURM jobs through submitit.

A launcher only decides *where* a callable runs; the work itself stays ordinary run folders
(a sweep) or optuna workers on one shared study (a search). Nothing here schedules or queues:
local jobs go to :class:`concurrent.futures.ProcessPoolExecutor`, cluster jobs to submitit
(SLURM job arrays, requeueing on timeout or preemption).

Launchers:

* ``local``: ``jobs`` worker processes on this machine (spawned, so CUDA starts fresh in each).
  With several GPUs visible each worker is pinned to one with ``CUDA_VISIBLE_DEVICES``
  (round robin when there are more workers than GPUs); every worker uses
  ``max(1, cores // jobs)`` torch threads. One job runs in this process.
* ``slurm``: one SLURM job per item through submitit's ``AutoExecutor`` (a job array at most
  ``jobs`` wide), ``gpus_per_job`` GPUs and ``time_min`` minutes each, on ``partition``, with
  extra ``#SBATCH`` options. A job that times out or is preempted is requeued and resumes.
* ``submitit-local``: submitit's ``LocalExecutor``: the very job path of ``slurm`` (pickled
  job, submitit's runner, requeue support) as subprocesses of this machine, all at once. It
  exists to test the cluster path without a cluster.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import queue
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from submitit.helpers import Checkpointable, DelayedSubmission, TorchDistributedEnvironment

from wsolbench.errors import UsageError, WsolbenchError

LAUNCHERS = ("local", "slurm", "submitit-local")

T = TypeVar("T")

#: The search process's pid, recorded in each local worker (None outside a local worker).
_PARENT_PID: int | None = None


@dataclass(frozen=True)
class Launch:
    """Where the jobs of one command go.

    Attributes:
        launcher: One of :data:`LAUNCHERS`.
        jobs: Worker processes (``local``), or the most SLURM jobs running at once; None:
            one per visible GPU when several are visible, else 1.
        device: The runs' ``device`` setting; ``cpu`` turns GPU pinning off.
        partition: SLURM partition (None: the cluster's default).
        gpus_per_job: GPUs of each SLURM job; more than one trains with DDP, one task per GPU.
        time_min: Time limit of each SLURM job in minutes.
        slurm_options: Extra ``#SBATCH --KEY=VALUE`` options, e.g. ``{"account": "lab"}``.
        folder: Where submitit keeps its pickles and job logs.
        name: SLURM job name.
        max_requeues: How often submitit requeues a job that hit its time limit.
    """

    launcher: str = "local"
    jobs: int | None = None
    device: str = "auto"
    partition: str | None = None
    gpus_per_job: int = 1
    time_min: int = 240
    slurm_options: Mapping[str, str] = field(default_factory=dict)
    folder: Path = Path("runs") / ".submitit"
    name: str = "wsolbench"
    max_requeues: int = 3

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise UsageError(f"unknown launcher {self.launcher!r}; choose one of: {', '.join(LAUNCHERS)}")
        if self.jobs is not None and self.jobs < 1:
            raise UsageError(f"--jobs {self.jobs}: give at least 1 job")
        if self.gpus_per_job < 0:
            raise UsageError(f"--gpus-per-job {self.gpus_per_job}: give 0 or more GPUs")
        if self.time_min < 1:
            raise UsageError(f"--time {self.time_min}: give the time limit in minutes (at least 1)")

    @property
    def workers(self) -> int:
        """The resolved number of jobs (see :attr:`jobs`)."""
        if self.jobs is not None:
            return self.jobs
        if self.launcher == "local" and self.device != "cpu":
            return max(1, len(visible_gpus()))
        return 1


def visible_gpus() -> list[str]:
    """CUDA device ids this process may hand out: ``CUDA_VISIBLE_DEVICES``'s entries (as
    many as torch sees), else ``0 .. device_count - 1``; empty without CUDA."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def cpu_cores() -> int:
    """CPU cores this process may use (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def parent_alive() -> bool:
    """False in a local worker whose launching process died (``kill -9``): such a worker
    finishes what it is doing and takes no new work, instead of outliving its command."""
    return _PARENT_PID is None or os.getppid() == _PARENT_PID


def run_jobs(fn: Callable[[T], Any], items: Sequence[T], launch: Launch) -> list[Any]:
    """``[fn(item) for item in items]``, each call a job of ``launch``; results in item order.

    ``fn`` must be picklable (a module-level function, a ``functools.partial`` of one, or an
    instance of a module-level class). If ``fn`` has an ``on_requeue()`` method, a SLURM job
    requeued after a timeout or preemption calls ``fn.on_requeue()(item)`` instead (e.g. the
    same run with ``resume=True``). Every job runs to its end; then the first failure is
    raised: a :class:`~wsolbench.errors.WsolbenchError` raised in a job keeps its class and
    one-line message.
    """
    if not items:
        return []
    if launch.launcher == "local":
        outcomes = _run_local(fn, items, launch)
    else:
        outcomes = gather(submit_jobs(fn, items, launch))
    for outcome in outcomes:
        outcome.reraise()
    return [outcome.value for outcome in outcomes]


# --------------------------------------------------------------------------------------
# Outcomes: a job's result or its one-line error, picklable both ways
# --------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What one job returned, or the user-facing error it raised."""

    value: Any = None
    error: str | None = None
    usage: bool = False

    def reraise(self) -> None:
        if self.error is not None:
            raise (UsageError if self.usage else WsolbenchError)(self.error)


def _guarded(fn: Callable[[T], Any], item: T) -> Outcome:
    try:
        return Outcome(fn(item))
    except WsolbenchError as error:
        return Outcome(error=str(error), usage=isinstance(error, UsageError))


# --------------------------------------------------------------------------------------
# local: a process pool
# --------------------------------------------------------------------------------------


def _init_local_worker(gpu_slots: Any, threads: int, parent_pid: int) -> None:
    global _PARENT_PID
    _PARENT_PID = parent_pid
    try:
        gpu = gpu_slots.get(timeout=60)
    except queue.Empty:  # pragma: no cover - a replacement worker (the pool never starts one)
        gpu = None
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    set_threads(threads)


def set_threads(threads: int) -> None:
    """Use ``threads`` CPU threads for torch: set now if torch is loaded, else through
    ``OMP_NUM_THREADS``, which torch reads when it is first imported (a worker that never
    needs torch does not pay for importing it)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    else:
        os.environ["OMP_NUM_THREADS"] = str(threads)


def _run_local(fn: Callable[[T], Any], items: Sequence[T], launch: Launch) -> list[Outcome]:
    jobs = min(launch.workers, len(items))
    if jobs == 1:
        return [_guarded(fn, item) for item in items]
    context = multiprocessing.get_context("spawn")
    gpus = visible_gpus() if launch.device != "cpu" else []
    slots = context.Queue()
    for worker in range(jobs):
        slots.put(gpus[worker % len(gpus)] if gpus else None)
    threads = max(1, cpu_cores() // jobs)
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_local_worker, initargs=(slots, threads, os.getpid())
    ) as pool:
        futures = [pool.submit(_guarded, fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BrokenProcessPool:
            raise WsolbenchError(
                "a worker process died (killed, or out of memory); run the same command again (a sweep with "
                "--resume): finished runs are reused and unfinished ones resume from their checkpoints"
            ) from None


# --------------------------------------------------------------------------------------
# slurm / submitit-local: submitit
# --------------------------------------------------------------------------------------


class SubmititJob(Checkpointable):
    """One item in a submitit job. On a timeout or preemption submitit calls
    :meth:`checkpoint` and requeues the job with ``fn.on_requeue()`` where ``fn`` has one."""

    def __init__(self, fn: Callable[[Any], Any], threads: int | None = None, distributed: bool = False):
        self.fn, self.threads, self.distributed = fn, threads, distributed

    def __call__(self, item: Any) -> Outcome:
        if self.threads is not None:
            set_threads(self.threads)
        if self.distributed:  # one task per GPU: the torchrun variables wsolbench.runtime reads
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return _guarded(self.fn, item)

    def checkpoint(self, item: Any) -> DelayedSubmission:
        fn = self.fn.on_requeue() if hasattr(self.fn, "on_requeue") else self.fn
        return DelayedSubmission(SubmititJob(fn, self.threads, self.distributed), item)


def slurm_parameters(launch: Launch, count: int) -> dict[str, Any]:
    """submitit ``AutoExecutor`` parameters of ``count`` SLURM jobs (an array ``jobs`` wide)."""
    gpus = launch.gpus_per_job
    params: dict[str, Any] = {
        "name": launch.name,
        "timeout_min": launch.time_min,
        "gpus_per_node": gpus,
        "tasks_per_node": max(1, gpus),
        "slurm_array_parallelism": min(launch.workers, count),
        "slurm_additional_parameters": dict(launch.slurm_options),
    }
    if launch.partition:
        params["slurm_partition"] = launch.partition
    return params


def make_executor(launch: Launch, count: int) -> Any:
    """The submitit executor of ``launch`` (``slurm`` or ``submitit-local``) for ``count`` jobs."""
    import submitit

    folder = Path(launch.folder) / "%j"
    if launch.launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=launch.max_requeues)
        gpus = 0 if launch.device == "cpu" else min(launch.gpus_per_job, len(visible_gpus()))
        executor.update_parameters(timeout_min=launch.time_min, gpus_per_node=gpus)
        return executor
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=launch.max_requeues)
    except RuntimeError as error:
        raise UsageError(f"--launcher slurm: {error} (run on a SLURM login node, or use --launcher local)") from None
    try:
        executor.update_parameters(**slurm_parameters(launch, count))
    except (NameError, ValueError) as error:
        raise UsageError(f"--launcher slurm: bad SLURM parameters ({str(error).splitlines()[0]})") from None
    return executor


def submit_jobs(fn: Callable[[T], Any], items: Sequence[T], launch: Launch) -> list[Any]:
    """Submit one submitit job per item (``slurm``: one job array); returns submitit's jobs."""
    from submitit.core.utils import FailedSubmissionError

    executor = make_executor(launch, len(items))
    threads = max(1, cpu_cores() // len(items)) if launch.launcher == "submitit-local" else None
    job = SubmititJob(fn, threads, distributed=launch.launcher == "slurm" and launch.gpus_per_job > 1)
    try:
        return executor.map_array(job, list(items))
    except (FailedSubmissionError, OSError) as error:
        raise WsolbenchError(
            f"{launch.launcher}: submitting the jobs failed: {str(error).strip().splitlines()[-1]}"
        ) from None


def gather(jobs: Sequence[Any]) -> list[Outcome]:
    """Wait for every submitit job; a crashed job becomes an error naming its log."""
    from submitit.core.utils import UncompletedJobError

    outcomes = []
    for job in jobs:
        try:
            outcomes.append(job.result())
        except UncompletedJobError as error:
            last = next((line for line in reversed(str(error).splitlines()) if line.strip()), "no message")
            outcomes.append(Outcome(error=f"job {job.job_id} failed: {last.strip()} (log: {job.paths.stderr})"))
    return outcomes
