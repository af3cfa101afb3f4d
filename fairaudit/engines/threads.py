"""Run the independent stages of one audit at the same time, one thread per available core.

The methods' fits do not depend on each other; after discovery, each method's permutation test and
the shared speaker bootstrap depend on the discovered cells only, not on each other. Their loops run
in numpy, scipy and pyarrow, which release the GIL, so threads overlap them. Every job draws from its
own random stream, so the results are identical to running the jobs one after another, whatever
the number of cores.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import TypeVar

from threadpoolctl import threadpool_info, threadpool_limits

T = TypeVar("T")

#: A job receives a checkpoint to call between blocks of work: it raises JobCancelled once another
#: job has failed or the user has interrupted the run, so no thread keeps computing for nothing.
Checkpoint = Callable[[], None]


class JobCancelled(Exception):
    """Raised at a checkpoint of a job whose run was abandoned (another job failed, or Ctrl-C)."""


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the system tells it, at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_jobs(jobs: Sequence[Callable[[Checkpoint], T]], workers: int | None = None) -> list[T]:
    """The results of ``jobs``, in order, computed on up to ``workers`` threads (default: one per
    available core). With one worker the jobs run in this thread, one after another. When a job fails,
    the others stop at their next checkpoint and the error of the first failed job in the list is
    raised here. A KeyboardInterrupt is raised at once; running jobs stop at their next checkpoint."""
    stop = threading.Event()

    def checkpoint() -> None:
        if stop.is_set():
            raise JobCancelled

    cores = available_cores()
    workers = min(len(jobs), workers or cores)
    if workers <= 1:
        return [job(checkpoint) for job in jobs]
    pool = ThreadPoolExecutor(workers, thread_name_prefix="fairaudit-job")
    interrupted = False
    # Each job's BLAS calls get their share of the cores: with every core running a job, OpenBLAS's
    # own threads would spin waiting for cores that are busy (measured: 1.9x the CPU time of the
    # permutation tests and bootstrap at 100,000 speakers, for no gain in wall time).
    with _library_threads_at_most(max(1, cores // workers)):
        try:
            futures = [pool.submit(job, checkpoint) for job in jobs]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                stop.set()  # the running jobs stop at their next checkpoint; the queued ones never start
                wait([future for future in futures if not future.cancel()])
                errors = [future.exception() for future in futures if not future.cancelled()]
                raise next(e for e in errors if e is not None and not isinstance(e, JobCancelled))
            return [future.result() for future in futures]
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            stop.set()  # after success nothing is running; otherwise the running jobs stop at their next checkpoint
            # after Ctrl-C, return at once: a job without checkpoints (a method's fit) finishes on its own
            pool.shutdown(wait=not interrupted, cancel_futures=True)


_limits_lock = threading.Lock()
_limits_holders = 0
_limits_applied: threadpool_limits | None = None


@contextmanager
def _library_threads_at_most(threads: int) -> Iterator[None]:
    """Lower BLAS libraries' thread counts to ``threads`` while the block runs (never raise one a
    user set lower), then put them back. The limits are process-wide: concurrent or nested callers
    share one setting, made by the first and undone by the last."""
    global _limits_holders, _limits_applied
    with _limits_lock:
        if _limits_holders == 0:
            lower: dict[str, int] = {}
            for library in threadpool_info():
                if library["user_api"] == "blas" and library["num_threads"] > threads:
                    prefix = library["prefix"]
                    lower[prefix] = min(lower.get(prefix, threads), threads)
            _limits_applied = threadpool_limits(limits=lower) if lower else None
        _limits_holders += 1
    try:
        yield
    finally:
        with _limits_lock:
            _limits_holders -= 1
            if _limits_holders == 0 and _limits_applied is not None:
                _limits_applied.restore_original_limits()
                _limits_applied = None


def import_in_background(*modules: str) -> None:
    """Start importing ``modules`` on a daemon thread, so that the later import finds them loaded.

    scikit-learn takes 0.6 s to import; started once a large log is read, its import runs while
    the speaker table is built. Not during pyarrow's parse: a Python thread beside it made the
    parse itself 2.5-3.5x slower. A module that fails to import is left for the real import to
    report, with its own message. Nothing to import: nothing is started.
    """
    if not modules:
        return

    def load() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the real import reports it
                continue

    threading.Thread(target=load, name="fairaudit-imports", daemon=True).start()
