"""Running an audit's independent stages on several threads (fairaudit.engines.threads)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

import fairaudit
import fairaudit.engines.threads as threads
from fairaudit.engines.threads import JobCancelled, run_jobs
from fairaudit.model.partition import Partition
from fairaudit.synth.generator import synthesize


def test_results_come_back_in_job_order_whatever_finishes_first():
    def job(delay, value):
        def run(checkpoint):
            time.sleep(delay)
            checkpoint()
            return value

        return run

    assert run_jobs([job(0.2, "slow"), job(0.0, "fast"), job(0.1, "middle")], workers=3) == ["slow", "fast", "middle"]


def test_a_failing_job_raises_and_stops_the_others_at_their_next_checkpoint():
    steps = []
    started = threading.Event()

    def long_job(checkpoint):
        started.set()
        for step in range(500):
            checkpoint()
            steps.append(step)
            time.sleep(0.01)
        return "finished"

    def failing_job(checkpoint):
        started.wait(5)
        raise ValueError("broken input")

    with pytest.raises(ValueError, match="broken input"):
        run_jobs([long_job, failing_job], workers=2)
    assert 0 < len(steps) < 500  # it ran, and it stopped long before its 5 seconds


def test_when_several_jobs_fail_the_first_in_the_list_is_reported_whatever_fails_first():
    def failing(delay, message):
        def run(checkpoint):
            time.sleep(delay)  # no checkpoint: a job like a method's fit runs to its end
            raise ValueError(message)

        return run

    for workers in (2, 3):
        with pytest.raises(ValueError, match="first job"):
            run_jobs(
                [failing(0.3, "first job"), failing(0.0, "second job"), failing(0.0, "third job")], workers=workers
            )


def test_a_job_run_alone_gets_a_checkpoint_that_passes():
    assert run_jobs([lambda checkpoint: (checkpoint(), 7)[1]], workers=4) == [7]
    assert issubclass(JobCancelled, Exception)


def test_an_audit_is_identical_on_one_thread_and_on_several(monkeypatch):
    synth = synthesize(900, effect=0.5, plant=["circle", "zip-age", "emb-cluster"], seed=3)
    results = []
    for cores in (1, 3):
        monkeypatch.setattr(threads, "available_cores", lambda cores=cores: cores)
        result = fairaudit.audit(synth.log, embeddings=synth.embeddings, bootstrap=200, permutations=50, seed=11)
        results.append(result.to_json())
    assert results[0] == results[1]
    p_values = [m.discovery.p_value for m in fairaudit.audit(synth.log, bootstrap=0, permutations=50).methods.values()]
    assert any(p is not None for p in p_values)  # the permutation tests ran


def test_cohort_sums_equal_the_indicator_product():
    labels = np.array([0, 2, -1, 1, 2, 0, -1])
    partition = Partition("m", labels, ["a", "b", "c"], ["a", "b", "c"])
    values = np.arange(21, dtype=np.float64).reshape(3, 7) ** 1.5
    expected = np.zeros((3, 3))
    for speaker, label in enumerate(labels):  # summed by hand, speaker by speaker
        if label >= 0:
            expected[:, label] += values[:, speaker]
    np.testing.assert_allclose(partition.cohort_sums(values), expected)
    everyone = Partition("m", np.array([1, 0, 1]), ["a", "b"], ["a", "b"])
    np.testing.assert_allclose(everyone.cohort_sums(np.array([1.0, 2.0, 4.0])), [[2.0, 5.0]])


def test_import_in_background_loads_modules_and_leaves_failures_quiet(tmp_path, monkeypatch, capfd):
    import sys

    (tmp_path / "fairaudit_warm_probe.py").write_text("VALUE = 42\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fairaudit_warm_probe", raising=False)
    threads.import_in_background("fairaudit_no_such_module", "fairaudit_warm_probe")
    for thread in threading.enumerate():
        if thread.name == "fairaudit-imports":
            thread.join(10)
    assert sys.modules["fairaudit_warm_probe"].VALUE == 42
    assert capfd.readouterr().err == ""  # the failed import is left for a real import to report


def test_progress_callbacks_run_one_at_a_time_and_count_every_replicate(monkeypatch):
    from fairaudit.api import load_log
    from fairaudit.engines.speaker_table import build_speaker_table
    from fairaudit.options import AuditOptions
    from fairaudit.pipeline.audit import run_audit

    monkeypatch.setattr(threads, "available_cores", lambda: 3)
    synth = synthesize(700, effect=0.5, plant=["circle", "zip-age"], seed=4)
    log = load_log(synth.log)
    inside, overlaps, done = [0], [0], {}

    def factory(description, total):
        done[description] = 0

        def tick(count):
            inside[0] += 1
            overlaps[0] += inside[0] > 1
            time.sleep(0.002)  # a slow, thread-unsafe callback, as a user's might be
            done[description] += count
            inside[0] -= 1

        return tick

    run_audit(log, build_speaker_table(log), AuditOptions(bootstrap=120, permutations=60), progress=factory)
    assert overlaps[0] == 0
    assert done["bootstrap (all methods)"] == 120
    assert [count for name, count in done.items() if "permutation" in name] == [60] * (len(done) - 1)
    assert len(done) >= 3  # the bootstrap and at least two permutation tests ran


def test_jobs_share_the_cores_with_blas_and_the_limits_come_back(monkeypatch):
    """With one job per core, numpy's BLAS runs one thread inside each job (its own threads would
    wait for busy cores), and the process's limits are as before once the jobs are done."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads() -> list[int]:
        return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]

    np.ones((2, 2)) @ np.ones((2, 2))  # BLAS is loaded
    before = blas_threads()
    assert before, "numpy's BLAS library was not found by threadpoolctl"
    monkeypatch.setattr(threads, "available_cores", lambda: 4)

    def job(checkpoint) -> list[int]:
        return blas_threads()

    inside = run_jobs([job, job], workers=4)  # two jobs on four cores: at most two BLAS threads each
    assert inside == [[min(threads, 2) for threads in before]] * 2
    inside = run_jobs([job, job, job, job], workers=4)
    assert inside == [[1] * len(before)] * 4
    assert blas_threads() == before
    with threadpool_limits(1):  # a limit the caller set lower is kept, never raised
        assert run_jobs([job, job], workers=4) == [[1] * len(before)] * 2
    assert blas_threads() == before


def test_ctrl_c_returns_at_once_even_from_jobs_without_checkpoints():
    """A method's fit never calls its checkpoint: Ctrl-C must not wait for it to finish."""
    import os
    import signal

    finished = []

    def fit_like(checkpoint):
        time.sleep(3)
        finished.append(1)

    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    start = time.perf_counter()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        run_jobs([fit_like, fit_like], workers=2)
    assert time.perf_counter() - start < 1.5 and not finished
