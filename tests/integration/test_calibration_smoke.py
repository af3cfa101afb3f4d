"""Smoke test of benchmarks/calibration.py (the SPEC 8 calibration benchmark) at tiny sizes.

The benchmark itself runs for minutes; here each of its checks runs on a handful of small logs, in
this process, to show the functions work and return sensible numbers. One assertion has teeth: on
null logs a method whose cohorts do not depend on the outcomes (embedding-kmeans: a fixed
partition, so the permutation test is exact) raises few false alarms.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("fairaudit")

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "calibration.py"


@pytest.fixture(scope="module")
def calibration():
    spec = importlib.util.spec_from_file_location("fairaudit_calibration_benchmark", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def in_unit(x: float) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


def test_recovery_returns_an_f1(calibration):
    for method in calibration.METHODS:
        row = calibration.recovery_task(method, seed=0, plant="one", n_speakers=600)
        assert in_unit(row["f1"]), row
        assert row["planted"] > 0


def test_null_false_alarms_are_rare_on_a_fixed_partition(calibration):
    calls = [(seed, 600, 99, ("embedding-kmeans",)) for seed in range(20)]
    rows = calibration.run_tasks(calibration.null_task, calls, workers=1, label="null", log=lambda _: None)
    verdicts = [r["verdict"]["embedding-kmeans"] for r in rows]
    p_values = [r["p_value"]["embedding-kmeans"] for r in rows]
    assert all(p is not None and 0 < p <= 1 for p in p_values)
    assert set(verdicts) <= {"disparity", "no evidence", "insufficient data"}
    # 5% level over 20 exchangeable null logs: P(>= 4 alarms) ~ 1.6% for an exact test.
    assert sum(v == "disparity" for v in verdicts) <= 3, verdicts


def test_coverage_task_and_summary(calibration):
    rows = [
        calibration.coverage_task(m, seed, n_speakers=600, bootstrap=200)
        for m in calibration.METHODS
        for seed in range(2)
    ]
    for row in rows:
        for cohort in ("planted", "rest"):
            cell = row[cohort]
            assert cell["low"] <= cell["wer"] <= cell["high"]
            assert cell["truth"] == pytest.approx(calibration.true_cohort_wer(cohort))
    recovery = [calibration.recovery_task("zip-demographic", 1, "all", n_speakers=600)]
    nulls = [calibration.null_task(0, n_speakers=600, permutations=20)]
    for method in calibration.METHODS:
        summary = calibration.summarise(method, recovery, nulls, rows)
        assert in_unit(summary.false_alarms.rate)
        assert in_unit(summary.coverage.rate) and in_unit(summary.coverage_rest.rate)
        low, high = summary.coverage.ci
        assert 0.0 <= low <= summary.coverage.rate <= high <= 1.0
    table = calibration.main_table([calibration.summarise(m, recovery, nulls, rows) for m in calibration.METHODS])
    assert "embedding-kmeans" in table and ("PASS" in table or "MISS" in table)


def test_true_cohort_wer_matches_a_simulated_population(calibration):
    population = calibration.population_cohort_wers("embedding-kmeans", n_speakers=20_000, draws=1)
    for cohort, row in population.items():
        assert math.isclose(row["simulated"], row["analytic"], abs_tol=4 * row["se"] + 1e-4), (cohort, row)


def test_clopper_pearson(calibration):
    assert calibration.clopper_pearson(0, 20)[0] == 0.0
    low, high = calibration.clopper_pearson(10, 200)
    assert low < 0.05 < high and high - low < 0.08
