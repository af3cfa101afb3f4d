"""Honest-statistics benchmark (SPEC 8): recovery, false alarms and interval coverage on `fairaudit synth`.

Three checks per discovery method (geo-tree, zip-demographic, embedding-kmeans), plus the timing of
the issue's performance bar. See benchmarks/README.md for what each check measures and the recorded
output.

1. Recovery: F1 between the audit's bottom-cohort speakers and the planted speakers, 2,000 speakers,
   30% relative WER effect, one method planted per log (and, as a secondary figure, all three
   planted). geo-tree uses ``bottom_share`` = the planted box's speaker share, as
   tests/integration/test_recovery.py does. Bar: mean F1 >= 0.9.
2. False alarms: on null logs (``plant=()``), default audit options with 200 permutations, the share
   of seeds whose verdict is ``disparity`` (the 5% level). Bar: at most 5%. Clopper-Pearson 95% CI.
3. Interval coverage: the speaker-bootstrap 95% percentile interval (1,000 replicates) of the
   planted cohort's WER, with the cohort assigned by the generator's rule (the planted box, the
   planted ZIP rule, the planted embedding cluster) rather than discovered, so its definition does
   not depend on the outcomes. The target is the population cohort WER (see ``true_cohort_wer``).
   Bar: 93% <= coverage <= 97%.

Usage::

    python benchmarks/calibration.py                 # full size (8-13 min on 2 cores)
    python benchmarks/calibration.py --quick         # smoke run (~30 s)
    python benchmarks/calibration.py --json out.json # also write every number to a JSON file
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

import fairaudit
from fairaudit.methods.registry import discovery_names
from fairaudit.synth.generator import PLANTABLE, SynthLog, synthesize

METHODS = PLANTABLE  # recovery and coverage: ("geo-tree", "zip-demographic", "embedding-kmeans")
NULL_METHODS = tuple(discovery_names())  # false alarms: every method that runs by default
N_SPEAKERS = 2000
EFFECT = 0.3
ALPHA = 0.05
LEVEL = 0.95  # level of the binomial intervals printed for rates

RECOVERY_BAR = 0.9  # mean F1 >= this
FALSE_ALARM_BAR = 0.05  # rate <= this
COVERAGE_BAND = (0.93, 0.97)  # nominal 95% interval covers the truth this often

# Seeds of the different checks never overlap.
RECOVERY_SEED0 = 0
NULL_SEED0 = 10_000
COVERAGE_SEED0 = 20_000
POPULATION_SEED0 = 90_000
SIZING_SEED = 99_999  # the single audits timed before the run

COHORT_COLUMN = "calibration_cohort"  # the rule-assigned cohort added to the log for check 3


@dataclass
class Sizes:
    """How much of each check to run."""

    n_speakers: int = N_SPEAKERS
    recovery_seeds: int = 30
    null_seeds: int = 1000
    permutations: int = 200
    coverage_seeds: int = 1200
    bootstrap: int = 1000
    population_speakers: int = 50_000
    population_draws: int = 4
    workers: int = 2


QUICK = Sizes(
    recovery_seeds=3,
    null_seeds=20,
    permutations=200,
    coverage_seeds=40,
    bootstrap=1000,
    population_speakers=20_000,
    population_draws=1,
)


# --------------------------------------------------------------------------------------------------
# statistics helpers
# --------------------------------------------------------------------------------------------------


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) binomial interval for k successes out of n."""
    if n <= 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return (low, high)


def f1(predicted: set[str], planted: set[str]) -> float:
    """Speaker-level F1 between two sets of speaker ids."""
    if not predicted and not planted:
        return 1.0
    return 2 * len(predicted & planted) / (len(predicted) + len(planted))


# --------------------------------------------------------------------------------------------------
# check 1: planted-cohort recovery
# --------------------------------------------------------------------------------------------------


def recovery_options(method: str, synth: SynthLog, seed: int) -> dict:
    """Default options, no hint of the planted share (benchmarks/recovery.py covers every shape)."""
    return dict(seed=seed, bootstrap=0, permutations=0)


def recovery_task(
    method: str, seed: int, plant: str = "one", n_speakers: int = N_SPEAKERS, effect: float = EFFECT
) -> dict:
    """F1 of the bottom cohort against the planted speakers for one synthetic log.

    ``plant="one"`` plants only ``method``'s cohort; ``"all"`` plants all three (the CLI default).
    The audit seed is the synth seed; intervals and p-values are skipped (they do not change which
    speakers are in the bottom cohort).
    """
    planted_methods = [method] if plant == "one" else list(PLANTABLE)
    synth = synthesize(n_speakers, effect=effect, plant=planted_methods, seed=seed)
    result = fairaudit.audit(
        synth.log,
        methods=[method],
        embeddings=synth.embeddings if method == "embedding-kmeans" else None,
        **recovery_options(method, synth, seed),
    )
    assignments = result.assignments()
    assignments = assignments[assignments["method"] == method]
    predicted = set(assignments.loc[assignments["bottom"].astype(bool), "speaker_id"].astype(str))
    planted = set(synth.truth["planted"][method]["speaker_ids"])
    return {
        "method": method,
        "seed": seed,
        "plant": plant,
        "f1": f1(predicted, planted),
        "predicted": len(predicted),
        "planted": len(planted),
    }


# --------------------------------------------------------------------------------------------------
# check 2: false alarms on null logs
# --------------------------------------------------------------------------------------------------


def null_task(
    seed: int, n_speakers: int = N_SPEAKERS, permutations: int = 200, methods: Sequence[str] = NULL_METHODS
) -> dict:
    """Verdict and p-value of every method on one null log (nothing planted), default options.

    ``bootstrap=0``: the verdict uses only the search-aware permutation p-value, not the intervals.
    """
    synth = synthesize(n_speakers, plant=(), seed=seed)
    result = fairaudit.audit(
        synth.log,
        methods=list(methods),
        embeddings=synth.embeddings,
        seed=seed,
        bootstrap=0,
        permutations=permutations,
        alpha=ALPHA,
    )
    return {
        "seed": seed,
        "verdict": {m: result.methods[m].verdict for m in methods},
        "p_value": {m: result.methods[m].discovery.p_value for m in methods},
        "cohorts": {m: result.methods[m].partition.n_cohorts for m in methods},
    }


# --------------------------------------------------------------------------------------------------
# check 3: interval coverage of the true cohort WER
# --------------------------------------------------------------------------------------------------


def true_cohort_wer(cohort: str, effect: float = EFFECT, base_wer: float = 0.08) -> float:
    """Population WER of a rule-defined cohort on logs with one method planted.

    The speaker bootstrap targets the *population* cohort WER: the pooled WER of the cohort in the
    limit of infinitely many speakers drawn from the generator, E[errors_i] / E[words_i] over
    speakers i of the cohort. In `fairaudit synth` a speaker's words (utterance count x reference
    lengths) are drawn independently of its error rate r_i, and E[errors_i | r_i, words_i] =
    r_i x words_i exactly, so the population cohort WER is E[r_i | cohort] =
    base_wer x E[speaker effect] x (1 + effect)^[planted] = base_wer x (1 + effect) for the planted
    cohort and base_wer for the rest (the lognormal speaker effect has mean 1; clipping the rate
    at 1 needs a 7.5-sd draw at these parameters and is ignored). ``population_cohort_wers``
    checks this by simulation.
    """
    return base_wer * (1 + effect) if cohort == "planted" else base_wer


def cohort_labels(method: str, synth: SynthLog) -> np.ndarray:
    """Per log row: "planted" / "rest" / None, by the generator's rule for ``method``.

    The planted speakers are the generator's rule (box, ZIP median-age rule, embedding cluster),
    never a discovery. "rest" is every other speaker the method could assign (located speakers for
    geo-tree and zip-demographic, everyone for embedding-kmeans); unlocated speakers are left out.
    """
    planted = set(synth.truth["planted"][method]["speaker_ids"])
    labels = np.where(synth.log["speaker_id"].isin(planted).to_numpy(), "planted", "rest").astype(object)
    if method in ("geo-tree", "zip-demographic"):
        labels[synth.log["latitude"].isna().to_numpy()] = None
    return labels


def coverage_task(
    method: str, seed: int, n_speakers: int = N_SPEAKERS, bootstrap: int = 1000, effect: float = EFFECT
) -> dict:
    """Does the bootstrap 95% interval of each rule-defined cohort's WER contain its true WER?

    The cohort is fixed by rule, so the audit's ``attribute`` method (``by`` the rule column) is
    exactly the library's measurement path (``bootstrap_partitions`` -> ``measure`` ->
    ``percentile_interval``) on a partition that does not depend on the outcomes.
    """
    synth = synthesize(n_speakers, effect=effect, plant=[method], seed=seed)
    frame = synth.log.assign(**{COHORT_COLUMN: cohort_labels(method, synth)})
    result = fairaudit.audit(
        frame, methods=["attribute"], by=[COHORT_COLUMN], seed=seed, bootstrap=bootstrap, permutations=0
    )
    cohorts = result.methods["attribute"].cohorts.set_index("id")
    out = {"method": method, "seed": seed}
    base = synth.truth["base_wer"]
    for cohort in ("planted", "rest"):
        row = cohorts.loc[cohort]
        truth = true_cohort_wer(cohort, effect, base)
        low, high = row["wer_ci_low"], row["wer_ci_high"]
        out[cohort] = {
            "speakers": int(row["speakers"]),
            "wer": float(row["wer"]),
            "low": float(low),
            "high": float(high),
            "truth": truth,
            "covered": bool(low <= truth <= high),
            "miss": "below" if truth < low else ("above" if truth > high else ""),
        }
    return out


def population_cohort_wers(method: str, n_speakers: int, draws: int, effect: float = EFFECT) -> dict:
    """Simulation check of ``true_cohort_wer``: pooled WER of each rule cohort in a large population.

    ``draws`` logs of ``n_speakers`` speakers from the same generator (same seed-independent
    parameters, one method planted); per cohort, the pooled *expected* WER sum(r_i x words_i) /
    sum(words_i) over all their speakers and its Monte-Carlo standard error (ratio estimator).
    """
    totals: dict[str, list[np.ndarray]] = {"planted": [], "rest": []}
    for draw in range(draws):
        synth = synthesize(n_speakers, effect=effect, plant=[method], seed=POPULATION_SEED0 + draw)
        speakers = synth.speakers
        located = np.ones(len(speakers), dtype=bool)
        if method in ("geo-tree", "zip-demographic"):
            unlocated = set(synth.log.loc[synth.log["latitude"].isna(), "speaker_id"].unique())
            located = ~speakers["speaker_id"].isin(unlocated).to_numpy()
        in_planted = speakers[f"planted_{method}"].to_numpy(dtype=bool)
        words = speakers["ref_words"].to_numpy(dtype=np.float64)
        rate = speakers["true_wer"].to_numpy(dtype=np.float64)
        for cohort, mask in (("planted", in_planted), ("rest", located & ~in_planted)):
            totals[cohort].append(np.stack([words[mask], rate[mask]]))
    out = {}
    for cohort, parts in totals.items():
        words, rate = np.concatenate(parts, axis=1)
        value = float((words * rate).sum() / words.sum())
        se = float(np.sqrt(((words * (rate - value)) ** 2).sum()) / words.sum())
        out[cohort] = {
            "simulated": value,
            "se": se,
            "speakers": int(len(words)),
            "analytic": true_cohort_wer(cohort, effect),
        }
    return out


# --------------------------------------------------------------------------------------------------
# the performance bar
# --------------------------------------------------------------------------------------------------


def time_performance_bar(
    n_speakers: int = N_SPEAKERS, bootstrap: int = 1000, permutations: int = 200, repeats: int = 1
) -> dict:
    """Wall time of auditing the default synth log with all three methods (the issue's < 60 s bar).

    The first run is cold (it loads the census table); ``repeats`` > 1 adds warm runs.
    """
    synth = synthesize(n_speakers, effect=EFFECT, seed=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fairaudit.audit(
            synth.log,
            methods=list(METHODS),
            embeddings=synth.embeddings,
            seed=0,
            bootstrap=bootstrap,
            permutations=permutations,
        )
        times.append(time.perf_counter() - start)
    return {
        "n_speakers": n_speakers,
        "utterances": int(len(synth.log)),
        "bootstrap": bootstrap,
        "permutations": permutations,
        "seconds": times,
        "bar_seconds": 60.0,
        "pass": bool(times[0] < 60.0),
    }


# --------------------------------------------------------------------------------------------------
# running many seeds on a process pool
# --------------------------------------------------------------------------------------------------


def _limit_threads() -> None:
    """Worker initializer: one BLAS/OpenMP thread per worker (the pool already uses every core)."""
    try:
        from threadpoolctl import threadpool_limits

        global _LIMITS
        _LIMITS = threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def run_tasks(
    fn: Callable[..., dict], calls: Sequence[tuple], *, workers: int, label: str, log: Callable[[str], None] = print
) -> list[dict]:
    """Run ``fn(*args)`` for every args tuple, on a pool of ``workers`` processes; print progress.

    Results come back in the order of ``calls``. ``workers <= 1`` runs in this process.
    """
    n = len(calls)
    results: list[dict | None] = [None] * n
    start = time.perf_counter()
    step = max(1, n // 10)
    done = 0

    def report() -> None:
        elapsed = time.perf_counter() - start
        eta = elapsed / done * (n - done) if done else float("nan")
        log(f"  [{label}] {done}/{n} done, {elapsed:.0f} s elapsed, ~{eta:.0f} s to go")

    if workers <= 1:
        for i, args in enumerate(calls):
            results[i] = fn(*args)
            done += 1
            if done % step == 0 or done == n:
                report()
        return results  # type: ignore[return-value]
    with ProcessPoolExecutor(max_workers=workers, initializer=_limit_threads) as pool:
        futures = {pool.submit(fn, *args): i for i, args in enumerate(calls)}
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            done += 1
            if done % step == 0 or done == n:
                report()
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# summaries and the table
# --------------------------------------------------------------------------------------------------


@dataclass
class Rate:
    k: int
    n: int
    rate: float
    ci: tuple[float, float]

    @classmethod
    def of(cls, k: int, n: int) -> Rate:
        return cls(int(k), int(n), k / n if n else float("nan"), clopper_pearson(int(k), int(n)))

    def text(self) -> str:
        return f"{self.k}/{self.n} = {100 * self.rate:.1f}% [{100 * self.ci[0]:.1f}, {100 * self.ci[1]:.1f}]"


@dataclass
class MethodSummary:
    method: str
    recovery_mean: float
    recovery_min: float
    recovery_hits: int  # seeds with F1 >= bar
    recovery_n: int
    recovery_all_mean: float
    recovery_all_min: float
    recovery_all_hits: int
    recovery_all_n: int
    false_alarms: Rate
    insufficient: int  # null seeds with verdict "insufficient data"
    no_split: int  # null seeds on which the method found < 2 cohorts (no p-value)
    null_p_mean: float  # mean null p-value where one was computed (0.5 for an exact test)
    coverage: Rate
    coverage_rest: Rate
    misses_below: int  # truth below the planted cohort's interval
    misses_above: int
    mean_width: float  # mean width of the planted cohort's interval
    status: dict = field(default_factory=dict)


def judge_rate(rate: Rate, low: float | None, high: float | None) -> str:
    """PASS when the observed rate is within [low, high]; else MISS, marked "(n.s.)" when the
    binomial CI still reaches the bar (the excess is within sampling noise)."""
    inside = (low is None or rate.rate >= low) and (high is None or rate.rate <= high)
    if inside:
        return "PASS"
    reaches = (low is None or rate.ci[1] >= low) and (high is None or rate.ci[0] <= high)
    return "MISS (n.s.)" if reaches else "MISS"


def summarise(method: str, recovery: list[dict], nulls: list[dict], coverage: list[dict]) -> MethodSummary:
    one = [r["f1"] for r in recovery if r["method"] == method and r["plant"] == "one"]
    every = [r["f1"] for r in recovery if r["method"] == method and r["plant"] == "all"]
    verdicts = [r["verdict"][method] for r in nulls]
    cov = [r for r in coverage if r["method"] == method]

    def mean(x: list[float]) -> float:
        return float(np.mean(x)) if x else float("nan")

    def least(x: list[float]) -> float:
        return float(np.min(x)) if x else float("nan")

    summary = MethodSummary(
        method=method,
        recovery_mean=mean(one),
        recovery_min=least(one),
        recovery_hits=sum(x >= RECOVERY_BAR for x in one),
        recovery_n=len(one),
        recovery_all_mean=mean(every),
        recovery_all_min=least(every),
        recovery_all_hits=sum(x >= RECOVERY_BAR for x in every),
        recovery_all_n=len(every),
        false_alarms=Rate.of(sum(v == "disparity" for v in verdicts), len(verdicts)),
        insufficient=sum(v == "insufficient data" for v in verdicts),
        no_split=sum(r["p_value"][method] is None for r in nulls),
        null_p_mean=mean([r["p_value"][method] for r in nulls if r["p_value"][method] is not None]),
        coverage=Rate.of(sum(r["planted"]["covered"] for r in cov), len(cov)),
        coverage_rest=Rate.of(sum(r["rest"]["covered"] for r in cov), len(cov)),
        misses_below=sum(r["planted"]["miss"] == "below" for r in cov),
        misses_above=sum(r["planted"]["miss"] == "above" for r in cov),
        mean_width=mean([r["planted"]["high"] - r["planted"]["low"] for r in cov]),
    )
    summary.status = {
        "recovery": ("PASS" if summary.recovery_mean >= RECOVERY_BAR else "MISS") if one else "-",
        "false_alarms": judge_rate(summary.false_alarms, None, FALSE_ALARM_BAR) if verdicts else "-",
        "coverage": judge_rate(summary.coverage, *COVERAGE_BAND) if cov else "-",
    }
    return summary


def format_table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(header, widths)), line]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def main_table(summaries: list[MethodSummary]) -> str:
    header = [
        "method",
        "recovery F1 mean / min",
        "",
        "false alarms (disparity @5%)",
        "",
        "95% CI coverage (planted cohort)",
        "",
    ]
    rows = []
    for s in summaries:
        rows.append(
            [
                s.method,
                f"{s.recovery_mean:.3f} / {s.recovery_min:.3f} ({s.recovery_hits}/{s.recovery_n} >= 0.9)",
                s.status["recovery"],
                s.false_alarms.text(),
                s.status["false_alarms"],
                s.coverage.text(),
                s.status["coverage"],
            ]
        )
    return format_table(rows, header)


def detail_table(summaries: list[MethodSummary]) -> str:
    header = [
        "method",
        "F1 all three planted mean / min",
        "null: <2 cohorts / insufficient",
        "mean null p",
        "coverage (rest cohort)",
        "planted misses below / above",
        "mean CI width",
    ]
    rows = []
    for s in summaries:
        rows.append(
            [
                s.method,
                f"{s.recovery_all_mean:.3f} / {s.recovery_all_min:.3f} "
                f"({s.recovery_all_hits}/{s.recovery_all_n} >= 0.9)",
                f"{s.no_split} / {s.insufficient} of {s.false_alarms.n}",
                f"{s.null_p_mean:.3f}",
                s.coverage_rest.text(),
                f"{s.misses_below} / {s.misses_above}",
                f"{s.mean_width:.4f}",
            ]
        )
    return format_table(rows, header)


# --------------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------------


def sizing(sizes: Sizes, log: Callable[[str], None] = print) -> dict:
    """Time one task of each kind in this process and estimate the run's wall time."""
    timings = {}
    start = time.perf_counter()
    null_task(SIZING_SEED, sizes.n_speakers, sizes.permutations)
    timings["null audit (3 methods)"] = time.perf_counter() - start
    start = time.perf_counter()
    coverage_task(METHODS[0], SIZING_SEED, sizes.n_speakers, sizes.bootstrap)
    timings["coverage audit"] = time.perf_counter() - start
    start = time.perf_counter()
    recovery_task(METHODS[0], SIZING_SEED, "one", sizes.n_speakers)
    timings["recovery audit"] = time.perf_counter() - start
    core_seconds = (
        sizes.null_seeds * timings["null audit (3 methods)"]
        + len(METHODS) * sizes.coverage_seeds * timings["coverage audit"]
        + 2 * len(METHODS) * sizes.recovery_seeds * timings["recovery audit"]
    )
    estimate = core_seconds / max(sizes.workers, 1)
    log("single-task timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    log(f"estimated wall time of the checks on {sizes.workers} worker(s): ~{estimate / 60:.1f} min")
    return {"timings": timings, "estimate_seconds": estimate}


def run(sizes: Sizes, *, log: Callable[[str], None] = print, perf: bool = True) -> dict:
    """Run every check at ``sizes`` and return all results (also printed as tables)."""
    t0 = time.perf_counter()
    log(
        f"fairaudit {fairaudit.__version__} calibration benchmark; python {platform.python_version()}, "
        f"{os.cpu_count()} cores; sizes: {asdict(sizes)}"
    )
    output: dict = {"sizes": asdict(sizes), "fairaudit_version": fairaudit.__version__}

    if perf:
        log(
            "\nperformance bar: 2,000-speaker synth log, all three methods, 1,000 bootstrap replicates, "
            "200 permutations (run before the benchmark starts its worker processes)"
        )
        perf_result = time_performance_bar(N_SPEAKERS, 1000, 200, repeats=3)
        output["performance"] = perf_result
        log(
            f"  audit wall time: {perf_result['seconds'][0]:.2f} s cold (first audit in the process, "
            f"loads the census table), warm: {', '.join(f'{t:.2f}' for t in perf_result['seconds'][1:])} s; "
            f"{perf_result['utterances']} utterances; bar < 60 s: {'PASS' if perf_result['pass'] else 'MISS'}"
        )

    log("")
    output["sizing"] = sizing(sizes, log)

    log("\ntrue cohort WER (population cohort WER; analytic vs. simulated large population):")
    population = {}
    for method in METHODS:
        population[method] = population_cohort_wers(method, sizes.population_speakers, sizes.population_draws)
        for cohort, row in population[method].items():
            log(
                f"  {method:17s} {cohort:8s} analytic {row['analytic']:.5f}  simulated {row['simulated']:.5f} "
                f"+- {row['se']:.5f} ({row['speakers']} speakers)"
            )
    output["population"] = population

    log("\ncheck 1: planted-cohort recovery")
    calls = [
        (m, RECOVERY_SEED0 + i, plant, sizes.n_speakers)
        for plant in ("one", "all")
        for m in METHODS
        for i in range(sizes.recovery_seeds)
    ]
    recovery = run_tasks(recovery_task, calls, workers=sizes.workers, label="recovery", log=log)

    log("\ncheck 2: false alarms on null logs")
    calls = [(NULL_SEED0 + i, sizes.n_speakers, sizes.permutations) for i in range(sizes.null_seeds)]
    nulls = run_tasks(null_task, calls, workers=sizes.workers, label="null", log=log)

    log("\ncheck 3: interval coverage of the true cohort WER")
    calls = [
        (m, COVERAGE_SEED0 + i, sizes.n_speakers, sizes.bootstrap) for m in METHODS for i in range(sizes.coverage_seeds)
    ]
    coverage = run_tasks(coverage_task, calls, workers=sizes.workers, label="coverage", log=log)

    summaries = [summarise(m, recovery, nulls, coverage) for m in METHODS]
    output["summaries"] = [asdict(s) for s in summaries]
    output["raw"] = {"recovery": recovery, "null": nulls, "coverage": coverage}
    output["wall_seconds"] = time.perf_counter() - t0

    log("\n" + "=" * 100)
    log(
        f"RESULTS ({sizes.n_speakers} speakers per log, effect {EFFECT}; recovery over {sizes.recovery_seeds} "
        f"seeds, false alarms over {sizes.null_seeds} null seeds with {sizes.permutations} permutations, "
        f"coverage over {sizes.coverage_seeds} seeds per method with {sizes.bootstrap} bootstrap replicates; "
        f"rates with Clopper-Pearson {int(100 * LEVEL)}% CIs)"
    )
    log(
        "bars: recovery mean F1 >= 0.9; false-alarm rate <= 5%; coverage within 93-97%  "
        "(MISS (n.s.) = misses the bar but the CI reaches it)"
    )
    log(main_table(summaries))
    log(
        "\nfalse alarms of every default method (the whole discovery, cells and bottom-cohort selection, "
        "re-run on every shuffle):"
    )
    for method in NULL_METHODS:
        rate = Rate.of(sum(r["verdict"][method] == "disparity" for r in nulls), len(nulls))
        log(f"  {method:17s} {rate.text()} -> {judge_rate(rate, None, ALPHA)}")
    log("\ndetails:")
    log(detail_table(summaries))
    if perf:
        p = output["performance"]
        log(
            f"\nperformance bar (2,000 speakers, 3 methods, 1,000 bootstrap, 200 permutations): "
            f"{p['seconds'][0]:.2f} s cold, {', '.join(f'{t:.2f}' for t in p['seconds'][1:])} s warm -> "
            f"{'PASS' if p['pass'] else 'MISS'} (< 60 s)"
        )
    log(f"total benchmark wall time: {output['wall_seconds'] / 60:.1f} min")
    return output


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (about 30 s)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--recovery-seeds", type=int)
    parser.add_argument("--null-seeds", type=int)
    parser.add_argument("--coverage-seeds", type=int)
    parser.add_argument("--permutations", type=int)
    parser.add_argument("--no-perf", action="store_true", help="skip the performance-bar timing")
    parser.add_argument("--json", metavar="FILE", help="write every result to this JSON file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = Sizes(**asdict(QUICK)) if args.quick else Sizes()
    sizes.workers = args.workers
    for name in ("recovery_seeds", "null_seeds", "coverage_seeds", "permutations"):
        if getattr(args, name) is not None:
            setattr(sizes, name, getattr(args, name))

    def log(message: str) -> None:
        print(message, flush=True)

    output = run(sizes, log=log, perf=not args.no_perf)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(output, handle, indent=1, default=_json_default)
    return 0


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    sys.exit(main())
