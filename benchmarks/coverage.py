"""Interval coverage of the true cohort WER, WER gap and bottom-cohort share: expanded BCa (what reports
use) vs BCa vs percentile (SPEC 5 and 8).

For each log (``fairaudit synth`` with one cohort planted, 2,000 speakers, +30%), the planted
cohort and the rest are fixed by the generator's rule (never by discovery, which would select on
the outcomes), measured with the library's shared speaker bootstrap (1,000 replicates), and the
intervals of both cohorts' WERs and of the WER gap (bottom = the worse side on the log) are
computed from the *same* replicates: the expanded BCa interval the reports use
(Student-t quantiles on the cohort's effective degrees of freedom), plain BCa and the plain
percentile interval. The true cohort WER is the population value (benchmarks/calibration.py,
``true_cohort_wer``). The bottom-cohort share's interval (plain BCa in the reports: a share is
a proportion of speakers, not a ratio of sums) is checked against the population share of the
planted cohort, measured once per method on a 1,000,000-speaker log of the same generator
(``population_planted_share``). Bar: 93-97% coverage with misses balanced between the two sides.

    python benchmarks/coverage.py --seeds 1200     # as recorded in benchmarks/README.md
    python benchmarks/coverage.py --seeds 1200 --first-seed 500000 --speakers 1000 --effect 0.5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import COVERAGE_SEED0, METHODS, Rate, cohort_labels, run_tasks, true_cohort_wer  # noqa: E402

from fairaudit.api import load_log  # noqa: E402
from fairaudit.engines.speaker_table import build_speaker_table  # noqa: E402
from fairaudit.methods import AttributeGroups
from fairaudit.stats.measure import discover_selection  # noqa: E402
from fairaudit.stats.metrics import cohort_sums  # noqa: E402
from fairaudit.stats.resampling import (  # noqa: E402
    bca_interval,
    bootstrap_partitions,
    cohort_wer_accelerations,
    cohort_wer_degrees_of_freedom,
    percentile_interval,
    selection_accelerations,
    selection_degrees_of_freedom,
)
from fairaudit.stats.selection import SelectionRule  # noqa: E402
from fairaudit.synth.generator import synthesize  # noqa: E402

COLUMN = "rule_cohort"


def population_planted_share(method: str, effect: float, speakers: int = 1_000_000) -> float:
    """Share (%) of the planted cohort among the speakers the method can assign, in the limit of
    many speakers: the planted speakers' share of a log this large (its sampling error, about
    0.03 percentage points, is small against a 2,000-speaker interval's half-width of 1.5)."""
    synth = synthesize(speakers, effect=effect, plant=[method], seed=0, embeddings="none", mean_utterances=1)
    labels = synth.log.assign(cohort=cohort_labels(method, synth)).groupby("speaker_id")["cohort"].first()
    labels = labels[labels.notna()]
    return float(100 * (labels == "planted").mean())


def coverage_task(
    method: str,
    seed: int,
    n_speakers: int = 2000,
    bootstrap: int = 1000,
    effect: float = 0.3,
    planted_share: float = float("nan"),
) -> dict:
    """Every interval of the planted and the rest cohort's WER, the gap and the bottom-cohort
    share on one log, against the truth (``planted_share``: the population share, %)."""
    synth = synthesize(n_speakers, effect=effect, plant=[method], seed=seed)
    frame = synth.log.assign(**{COLUMN: cohort_labels(method, synth)})
    speakers = build_speaker_table(load_log(frame))
    partition = AttributeGroups(by=[COLUMN], min_speakers=1).fit(speakers).partition_
    selection = discover_selection(partition, speakers, SelectionRule(min_speakers=1))
    boot = bootstrap_partitions(
        [(partition.indicator(), selection)],
        speakers.errors,
        speakers.ref_words,
        bootstrap,
        np.random.default_rng([seed, 0xB007]),
    )[0]
    wer = cohort_sums(partition, speakers.errors, speakers.ref_words, speakers.utterances).wer
    accel = cohort_wer_accelerations(partition.labels, speakers.errors, speakers.ref_words, partition.n_cohorts)
    freedom = cohort_wer_degrees_of_freedom(partition.labels, speakers.errors, speakers.ref_words, partition.n_cohorts)
    intervals = {
        "expanded bca": bca_interval(boot["wer"], wer, accel, degrees_of_freedom=freedom),
        "bca": bca_interval(boot["wer"], wer, accel),
        "percentile": percentile_interval(boot["wer"]),
    }
    out = {"method": method, "seed": seed}
    truths = {}
    for index, cohort in enumerate(partition.cohort_ids):
        truth = truths[cohort] = true_cohort_wer(cohort, effect, synth.truth["base_wer"])
        for kind, bounds in intervals.items():
            low, high = bounds[index]
            out[f"{cohort}:{kind}"] = "below" if truth < low else ("above" if truth > high else "")
    # The WER gap of the selection (bottom = the worse side on this log), as the reports give it.
    bottom, top = selection.bottom[0], selection.top[0]
    ids = np.asarray(partition.cohort_ids)
    true_gap = 100 * (truths[str(ids[bottom][0])] / truths[str(ids[top][0])] - 1)
    gap = float(100 * (wer[bottom].item() / wer[top].item() - 1))
    gap_a, _ = selection_accelerations(partition.labels, speakers.errors, speakers.ref_words, bottom, top)
    gap_df = selection_degrees_of_freedom(partition.labels, speakers.errors, speakers.ref_words, bottom, top)
    for kind, freedom in (("expanded bca", gap_df), ("bca", np.inf)):
        low, high = bca_interval(boot["gap_pct"], gap, gap_a, degrees_of_freedom=freedom)
        out[f"gap:{kind}"] = "below" if true_gap < low else ("above" if true_gap > high else "")
    out["gap:percentile"] = "skipped"
    # The bottom-cohort share (bottom = the worse side on this log; its truth is the planted share
    # or its complement), as the reports give it: plain BCa.
    n_assigned = int((partition.labels >= 0).sum())
    share = 100 * int(np.isin(partition.labels, np.flatnonzero(bottom)).sum()) / n_assigned
    true_share = planted_share if str(ids[bottom][0]) == "planted" else 100 - planted_share
    _, share_a = selection_accelerations(partition.labels, speakers.errors, speakers.ref_words, bottom, top)
    for kind, (low, high) in (
        ("bca", bca_interval(boot["share_pct"], share, share_a)),
        ("percentile", percentile_interval(boot["share_pct"])),
    ):
        out[f"share:{kind}"] = "below" if true_share < low else ("above" if true_share > high else "")
    out["share:expanded bca"] = "skipped"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1200, help="logs per method (default 1200)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--first-seed",
        type=int,
        default=COVERAGE_SEED0,
        help="first log seed (another range checks a change on unseen logs)",
    )
    parser.add_argument("--speakers", type=int, default=2000, help="speakers per log (default 2000)")
    parser.add_argument(
        "--effect", type=float, default=0.3, help="relative WER effect of the planted cohort (default 0.3)"
    )
    args = parser.parse_args(argv)
    start = time.perf_counter()
    shares = {m: population_planted_share(m, args.effect) for m in METHODS}
    print("population share of the planted cohort (%): " + ", ".join(f"{m} {v:.2f}" for m, v in shares.items()))
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    calls = [(m, seed, args.speakers, 1000, args.effect, shares[m]) for m in METHODS for seed in seeds]
    rows = run_tasks(coverage_task, calls, workers=args.workers, label="coverage")
    print(f"\n{len(rows)} logs in {time.perf_counter() - start:.0f} s")
    print("| method | cohort | interval | coverage [95% CI] | truth below | truth above |\n|---|---|---|---|---|---|")
    for method in METHODS:
        for cohort in ("planted", "rest", "gap", "share"):
            for kind in ("expanded bca", "bca", "percentile"):
                misses = [r[f"{cohort}:{kind}"] for r in rows if r["method"] == method]
                if "skipped" in misses:
                    continue
                rate = Rate.of(sum(m == "" for m in misses), len(misses))
                print(
                    f"| {method} | {cohort} | {kind} | {rate.text()} | "
                    f"{misses.count('below')} | {misses.count('above')} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
