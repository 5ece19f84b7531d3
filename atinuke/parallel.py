"""Run a set of dependent jobs on a few worker processes (``atinuke experiment --jobs``, ``atinuke lr-sweep``).

Small models use two CPU cores poorly from one process: a tiny Atinuke fine-tuning step spends much of its time
in single-threaded Python and small kernels, so two one-thread processes finish two jobs sooner than one
two-thread process finishes them one after the other. :func:`run_jobs` schedules :class:`Job` objects whose
``after`` names other jobs; each ready job is *prepared in this process* (``prepare`` may finish it there, e.g.
by copying a shipped checkpoint, or return the picklable work to do) and its work runs in a ``spawn`` worker
with ``threads`` torch threads. With ``jobs=1`` everything runs in this process, in order, as before.
"""
from __future__ import annotations

import concurrent.futures as futures
import logging
import multiprocessing
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

logger = logging.getLogger(__name__)

# What a ready job runs: a module-level function and its (picklable) arguments, or None when ``prepare``
# already finished the job in this process.
Work = Optional[tuple[Callable[..., Any], tuple[Any, ...]]]


@dataclass(frozen=True)
class Job:
    """One unit of work.

    Attributes:
        name: unique name (``after`` refers to it; progress reports show it).
        prepare: called in this process when every job in ``after`` is done; returns the work to run.
        after: names of the jobs that must finish first.
    """

    name: str
    prepare: Callable[[], Work]
    after: frozenset[str] = field(default_factory=frozenset)


def resolve_jobs(jobs: int) -> int:
    """A ``--jobs`` value in joblib's convention (N, or -1 for every core, -2 all but one) as a worker count."""
    return jobs if jobs > 0 else max(1, (os.cpu_count() or 1) + 1 + jobs)


def threads_per_worker(jobs: int) -> int:
    """torch threads for each of ``jobs`` workers: this machine's cores shared out, at least one each."""
    return max(1, (os.cpu_count() or 1) // max(1, jobs))


def _init_worker(threads: int, level: int) -> None:
    # Before anything imports tqdm: per-job progress bars from several processes would interleave in the log.
    os.environ["TQDM_DISABLE"] = "1"
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s")


def run_jobs(jobs: Sequence[Job], workers: int, on_start: Callable[[Sequence[str]], None] = lambda running: None,
             on_done: Callable[[str], None] = lambda name: None) -> None:
    """Run every job once its ``after`` jobs are done, at most ``workers`` at a time.

    Args:
        jobs: the jobs, in the order to start them when several are ready.
        workers: worker processes (1: run everything here, in order).
        on_start: called with the names of the running jobs whenever one starts.
        on_done: called in this process with a job's name after it finished (results, progress).

    Raises:
        The first job's exception (after the jobs already running have finished; none is started after it).
        ValueError: when a job waits for a name that is not a job.
    """
    names = {job.name for job in jobs}
    for job in jobs:
        unknown = job.after - names
        if unknown:
            raise ValueError(f"job {job.name} waits for unknown jobs {sorted(unknown)}")
    if workers <= 1:
        for job in jobs:
            on_start([job.name])
            work = job.prepare()
            if work is not None:
                work[0](*work[1])
            on_done(job.name)
        return
    threads = threads_per_worker(workers)
    logger.info("%d worker processes, %d torch thread(s) each", workers, threads)
    pending = list(jobs)
    finished: set[str] = set()
    running: dict[futures.Future, str] = {}
    failure: Optional[BaseException] = None
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                     initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        while (pending and failure is None) or running:
            progressed = True
            while progressed and failure is None and len(running) < workers:
                progressed = False
                for job in pending:
                    if job.after <= finished:
                        pending.remove(job)
                        progressed = True
                        try:
                            work = job.prepare()
                        except BaseException as error:  # noqa: BLE001 - re-raised once the running jobs end
                            failure = error
                            break
                        if work is None:
                            finished.add(job.name)
                            on_done(job.name)
                        else:
                            running[pool.submit(work[0], *work[1])] = job.name
                            on_start(sorted(running.values()))
                        break
            if not running:
                if pending and failure is None:  # cannot happen with known names and no cycles
                    raise ValueError(f"jobs wait for each other: {[job.name for job in pending]}")
                break
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                raised = future.exception()
                if raised is not None:
                    failure = failure or raised
                    continue
                finished.add(name)
                try:
                    on_done(name)
                except BaseException as error:  # noqa: BLE001 - re-raised once the running jobs end
                    failure = failure or error
            if running:
                on_start(sorted(running.values()))
    if failure is not None:
        raise failure
