"""Issue 14 benchmark: --adjust recovers a direct effect, power figures are calibrated, and both are cheap.

    python benchmarks/adjust_power.py [--runs 400]

Prints, in one run:
1. --adjust on simulated confounded logs (a device that raises errors x1.6 and is used more by the
   planted group): over seeds, how often the 95% interval of the adjusted rate ratio holds the true
   direct effect (1.0 and 1.3), against the raw ratio's.
2. Power: logs with a planted gap equal to the detectable gap computed on a null log; the share of
   them that the audit's verdict calls "disparity" (search-aware permutation test, 200 permutations)
   and that a fixed two-group test rejects (both should be near 80%; the search costs a little).
3. Wall time at 100,000 speakers of the two NB2 fits and the power figures.
4. Utterance-level cohorts (--by on a device that varies within speakers): false alarms on logs
   with no device effect but speakers of varying accuracy, and power for a device whose users do
   worse (between speakers) and for one that is worse within speakers.
5. --adjust with a covariate that varies within speakers (a per-utterance noisy channel used more
   by the planted group, no direct effect): the adjusted rate ratio and its interval's coverage.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

import fairaudit
from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.model.speakers import SpeakerTable
from fairaudit.stats.adjust import adjusted_rate_ratios
from fairaudit.stats.power import selection_power


def confounded(rng: np.random.Generator, direct: float, n: int = 1500) -> tuple[np.ndarray, SpeakerTable]:
    group = rng.random(n) < 0.4
    noisy = rng.random(n) < np.where(group, 0.75, 0.25)
    rate = 0.08 * rng.gamma(4.0, 0.25, n) * np.where(noisy, 1.6, 1.0) * np.where(group, direct, 1.0)
    words = rng.integers(40, 250, n)
    frame = pd.DataFrame(
        {
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
            "utterances": 10,
            "device": np.where(noisy, "far", "near"),
        },
        index=pd.Index([f"s{i}" for i in range(n)], name="speaker_id"),
    )
    return group, SpeakerTable(frame=frame, metadata_columns=["device"])


def adjust_coverage(runs: int) -> None:
    print("1. --adjust on confounded logs (1,500 speakers; device x1.6, used by 75% of the group vs 25%)")
    print("| true direct effect | raw RR mean | raw CI holds truth | adjusted RR mean | adjusted CI holds truth |")
    print("|---|---:|---:|---:|---:|")
    for direct in (1.0, 1.3):
        rng = np.random.default_rng(int(direct * 100))
        raw, adj, raw_hit, adj_hit = [], [], 0, 0
        for _ in range(runs):
            group, table = confounded(rng, direct)
            out = adjusted_rate_ratios(table, group, ~group, ["device"])
            raw.append(out["raw"]["rate_ratio"])
            adj.append(out["adjusted"]["rate_ratio"])
            raw_hit += out["raw"]["ci"][0] <= direct <= out["raw"]["ci"][1]
            adj_hit += out["adjusted"]["ci"][0] <= direct <= out["adjusted"]["ci"][1]
        print(
            f"| {direct:.1f} | {np.mean(raw):.3f} | {100 * raw_hit / runs:.1f}% | {np.mean(adj):.3f} | "
            f"{100 * adj_hit / runs:.1f}% |"
        )


def two_group_log(rng: np.random.Generator, n: int, gap: float) -> pd.DataFrame:
    group = np.where(np.arange(n) < n // 3, "a", "b")
    rate = 0.1 * rng.gamma(4.0, 0.25, n) * np.where(group == "a", 1 + gap, 1.0)
    utterances = rng.integers(5, 25, n)
    speaker = np.repeat(np.arange(n), utterances)
    words = rng.integers(2, 12, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in speaker],
            "group": group[speaker],
            "errors": rng.binomial(words, np.clip(rate[speaker], 0, 1)),
            "ref_words": words,
        }
    )


def power_check(runs: int) -> None:
    print("\n2. Power: planted gap = the detectable gap of a null log (600 speakers, groups of 200 and 400)")
    rng = np.random.default_rng(1)
    speakers = build_speaker_table(load_log(two_group_log(rng, 600, 0.0)))
    in_a = speakers.frame["group"].to_numpy() == "a"
    gap, _ = selection_power(in_a, ~in_a, speakers.errors, speakers.ref_words, 0.05, None)
    hits = 0
    for seed in range(runs):
        log = two_group_log(rng, 600, gap / 100)
        result = fairaudit.audit(
            log, methods=["attribute"], by=["group"], bootstrap=0, permutations=200, min_speakers=20, seed=seed
        )
        hits += result.methods["attribute"].verdict == "disparity"
    print(
        f"detectable gap {gap:.1f}%; audits with verdict 'disparity': {hits}/{runs} = {100 * hits / runs:.1f}% "
        f"(target 80%)"
    )


def timing() -> None:
    print("\n3. Cost at 100,000 speakers")
    rng = np.random.default_rng(0)
    n = 100_000
    group = rng.random(n) < 0.3
    frame = pd.DataFrame(
        {
            "errors": rng.binomial(200, np.clip(0.1 * rng.gamma(4.0, 0.25, n), 0, 1)),
            "ref_words": 200,
            "utterances": 20,
            "device": rng.choice(["far", "near"], n),
            "age": rng.choice(["18-24", "25-34", "35-54", "55+"], n),
        },
        index=pd.Index([f"s{i}" for i in range(n)], name="speaker_id"),
    )
    table = SpeakerTable(frame=frame, metadata_columns=["device", "age"])
    start = time.perf_counter()
    adjusted_rate_ratios(table, group, ~group, ["device", "age"])
    fits = time.perf_counter() - start
    start = time.perf_counter()
    selection_power(group, ~group, table.errors, table.ref_words, 0.05, 5.0)
    power = time.perf_counter() - start
    print(f"--adjust device age (two NB2 fits, speaker dispersion 0.25): {fits:.2f} s; power: {1000 * power:.1f} ms")


def device_log(rng: np.random.Generator, n: int, between: float, within: float) -> pd.DataFrame:
    """300-speaker logs: 70% of a speaker's utterances on their own device; phone users' speaker rates
    are x``between``, and phone utterances x``within``."""
    devices = np.array(["car", "tv", "phone"])
    speaker = np.repeat(np.arange(n), 10)
    own = rng.integers(0, 3, n)
    device = np.where(rng.random(len(speaker)) < 0.7, own[speaker], rng.integers(0, 3, len(speaker)))
    rate = 0.1 * rng.gamma(4.0, 0.25, n)[speaker] * np.where(own[speaker] == 2, between, 1.0)
    rate = rate * np.where(device == 2, within, 1.0)
    words = rng.integers(3, 15, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": speaker.astype(str),
            "device": devices[device],
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
        }
    )


def utterance_level(runs: int) -> None:
    print("\n4. Utterance-level cohorts (300 speakers, 10 utterances each, 30% off their own device)")
    print("| planted | share of logs with verdict 'disparity' |")
    print("|---|---:|")
    rng = np.random.default_rng(7)
    for label, between, within in (
        ("none (false alarms)", 1.0, 1.0),
        ("phone users x1.4 (between speakers)", 1.4, 1.0),
        ("phone utterances x1.3 (within speakers)", 1.0, 1.3),
    ):
        hits = 0
        count = max(runs, 1500) if between == within == 1.0 else runs  # false alarms need many logs
        for seed in range(count):
            result = fairaudit.audit(
                device_log(rng, 300, between, within),
                methods=["attribute"],
                by=["device"],
                bootstrap=0,
                permutations=200,
                seed=seed,
            )
            hits += result.methods["attribute"].verdict == "disparity"
        print(f"| {label} | {100 * hits / count:.1f}% ({hits}/{count}) |")


def utterance_confounder(runs: int) -> None:
    print("\n5. --adjust channel, a per-utterance confounder (1,000 speakers x 12 utterances; no direct effect)")
    ratios, covered = [], 0
    for seed in range(runs):
        rng = np.random.default_rng([seed, 5])
        n = 1000
        speaker = np.repeat(np.arange(n), 12)
        group = np.where(rng.random(n) < 0.4, "a", "b")
        noisy = rng.random(len(speaker)) < np.where(group[speaker] == "a", 0.7, 0.3)
        rate = 0.1 * rng.gamma(4.0, 0.25, n)[speaker] * np.where(noisy, 1.6, 1.0)
        words = rng.integers(3, 15, len(speaker))
        log = pd.DataFrame(
            {
                "speaker_id": speaker.astype(str),
                "group": group[speaker],
                "channel": np.where(noisy, "noisy", "clean"),
                "errors": rng.binomial(words, np.clip(rate, 0, 1)),
                "ref_words": words,
            }
        )
        result = fairaudit.audit(
            log, methods=["attribute"], by=["group"], adjust=["channel"], bootstrap=0, permutations=0
        )
        adjusted = result.to_dict()["methods"]["attribute"]["adjusted"]["adjusted"]
        ratios.append(adjusted["rate_ratio"])
        covered += adjusted["ci"][0] <= 1.0 <= adjusted["ci"][1]
    print(
        f"adjusted rate ratio mean {np.mean(ratios):.3f} (truth 1.000); interval covers 1.0 in "
        f"{covered}/{runs} = {100 * covered / runs:.1f}% of logs"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=400)
    args = parser.parse_args()
    adjust_coverage(args.runs)
    power_check(args.runs)
    timing()
    utterance_level(args.runs)
    utterance_confounder(max(args.runs // 4, 1))
