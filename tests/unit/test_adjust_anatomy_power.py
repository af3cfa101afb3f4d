"""Issue 14: adjusted gaps, error anatomy and power, each checked against an independent computation."""

from __future__ import annotations

from statistics import NormalDist

import jiwer
import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.stats.power import selection_power

FAST = {"bootstrap": 0, "permutations": 0, "min_speakers": 20}


def confounded_log(rng: np.random.Generator, direct: float, n: int = 1500, device_effect: float = 1.8) -> pd.DataFrame:
    """Speakers in group "a" mostly use the noisy device (``device_effect`` x errors); ``direct`` is the
    group's own effect."""
    group = np.where(rng.random(n) < 0.4, "a", "b")
    noisy = rng.random(n) < np.where(group == "a", 0.8, 0.2)
    rate = 0.08 * rng.gamma(4.0, 0.25, n) * np.where(noisy, device_effect, 1.0) * np.where(group == "a", direct, 1.0)
    utterances = rng.integers(5, 20, n)
    speaker = np.repeat(np.arange(n), utterances)
    words = rng.integers(3, 15, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i:05d}" for i in speaker],
            "group": group[speaker],
            "device": np.where(noisy, "far-field", "headset")[speaker],
            "errors": rng.binomial(words, np.clip(rate[speaker], 0, 1)),
            "ref_words": words,
        }
    )


def adjusted(log: pd.DataFrame) -> dict:
    result = fairaudit.audit(log, methods=["attribute"], by=["group"], adjust=["device"], **FAST)
    return result.to_dict()["methods"]["attribute"]["adjusted"]


def test_a_confounder_is_explained_away_and_a_real_effect_is_not():
    rng = np.random.default_rng(5)
    confounded = adjusted(confounded_log(rng, direct=1.0))
    assert confounded["raw"]["rate_ratio"] > 1.3 and confounded["raw"]["ci"][0] > 1  # a clear raw gap
    assert confounded["adjusted"]["ci"][0] < 1 < confounded["adjusted"]["ci"][1]  # gone once device is known
    assert confounded["explained_pct"] > 70 and "removes most" in confounded["sentence"]

    real = adjusted(confounded_log(rng, direct=1.3))
    assert real["adjusted"]["ci"][0] < 1.3 < real["adjusted"]["ci"][1]  # recovers the true direct effect
    assert real["raw"]["rate_ratio"] > real["adjusted"]["ci"][1]  # which the raw ratio overstates
    assert "remains" in real["sentence"]


def test_nb2_rate_ratios_equal_statsmodels_fitted_independently():
    import statsmodels.formula.api as smf

    log = confounded_log(np.random.default_rng(8), direct=1.2, n=800)
    ours = adjusted(log)
    speakers = log.groupby("speaker_id").agg(
        errors=("errors", "sum"), words=("ref_words", "sum"), group=("group", "first"), device=("device", "first")
    )
    speakers["bottom"] = (speakers["group"] == "a").astype(float)
    for formula, key in (("errors ~ bottom", "raw"), ("errors ~ bottom + C(device)", "adjusted")):
        fit = smf.negativebinomial(formula, speakers, offset=np.log(speakers["words"])).fit(disp=0, maxiter=500)
        assert ours[key]["rate_ratio"] == pytest.approx(np.exp(fit.params["bottom"]), rel=1e-3)
        low, high = np.exp(fit.conf_int().loc["bottom"])
        assert ours[key]["ci"] == pytest.approx([low, high], rel=1e-3)


def test_adjust_names_an_unknown_column_clearly():
    log = confounded_log(np.random.default_rng(1), direct=1.0, n=100)
    with pytest.raises(fairaudit.errors.UsageError, match="--adjust names 'site'"):
        fairaudit.audit(log, methods=["attribute"], by=["group"], adjust=["site"], **FAST)


def test_error_anatomy_equals_jiwer_counts_pooled_per_cohort():
    rng = np.random.default_rng(2)
    vocabulary = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    rows = []
    for speaker in range(80):
        group = "a" if speaker % 2 else "b"
        for _ in range(6):
            reference = " ".join(rng.choice(vocabulary, rng.integers(2, 8)))
            words = reference.split()
            roll = rng.random()
            if roll < 0.1:
                hypothesis = ""  # an empty transcript
            elif roll < 0.5:
                words = [w if rng.random() > (0.3 if group == "a" else 0.1) else "x" for w in words]
                hypothesis = " ".join(words[: max(1, len(words) - 1)] + (["um"] if rng.random() < 0.3 else []))
            else:
                hypothesis = reference
            rows.append({"speaker_id": f"s{speaker}", "group": group, "reference": reference, "hypothesis": hypothesis})
    log = pd.DataFrame(rows)
    report = fairaudit.audit(log, methods=["attribute"], by=["group"], **FAST).to_dict()["methods"]["attribute"]
    for cohort in report["cohorts"]:
        part = log[log["group"] == cohort["id"]]
        counts = {"substitutions": 0, "deletions": 0, "insertions": 0, "words": 0, "empty": 0, "wers": []}
        for reference, hypothesis in zip(part["reference"], part["hypothesis"]):
            if hypothesis:
                out = jiwer.process_words(reference, hypothesis)
                s, d, i = out.substitutions, out.deletions, out.insertions
            else:
                s, d, i = 0, len(reference.split()), 0
            counts["substitutions"] += s
            counts["deletions"] += d
            counts["insertions"] += i
            counts["words"] += len(reference.split())
            counts["empty"] += hypothesis == ""
            counts["wers"].append((s + d + i) / len(reference.split()))
        assert cohort["substitution_rate"] == pytest.approx(counts["substitutions"] / counts["words"])
        assert cohort["deletion_rate"] == pytest.approx(counts["deletions"] / counts["words"])
        assert cohort["insertion_rate"] == pytest.approx(counts["insertions"] / counts["words"])
        assert cohort["empty_hypothesis_pct"] == pytest.approx(100 * counts["empty"] / len(part))
        assert cohort["mean_utterance_wer"] == pytest.approx(np.mean(counts["wers"]))
        assert cohort["wer"] == pytest.approx(
            (counts["substitutions"] + counts["deletions"] + counts["insertions"]) / counts["words"]
        )


def simulated_speakers(rng: np.random.Generator, n: int, gap: float, n_a: int | None = None):
    """Speaker totals: group a (the first ``n_a`` speakers) has WER x (1 + gap); gamma speaker effects."""
    n_a = n // 3 if n_a is None else n_a
    in_a = np.arange(n) < n_a
    rate = 0.1 * rng.gamma(4.0, 0.25, n) * np.where(in_a, 1 + gap, 1.0)
    words = rng.integers(40, 200, n)
    return in_a, rng.binomial(words, np.clip(rate, 0, 1)), words


def rejection_rate(rng: np.random.Generator, n: int, gap: float, runs: int, n_a: int | None = None) -> float:
    """Share of simulated logs whose fixed two-group test (log WER ratio, speaker-clustered variance) rejects."""
    z = NormalDist().inv_cdf(0.975)
    hits = 0
    for _ in range(runs):
        in_a, errors, words = simulated_speakers(rng, n, gap, n_a)
        logs, variances = [], []
        for mask in (in_a, ~in_a):
            p = errors[mask].sum() / words[mask].sum()
            logs.append(np.log(p))
            variances.append(((errors[mask] - p * words[mask]) ** 2).sum() / (p * words[mask].sum()) ** 2)
        hits += abs(logs[0] - logs[1]) / np.sqrt(sum(variances)) > z
    return hits / runs


def test_detectable_gap_is_detected_about_80_percent_of_the_time():
    rng = np.random.default_rng(11)
    in_a, errors, words = simulated_speakers(rng, 600, 0.0)
    gap, _ = selection_power(in_a, ~in_a, errors, words, 0.05, None)
    assert 5 < gap < 40
    assert 0.74 <= rejection_rate(rng, 600, gap / 100, runs=600) <= 0.86


def test_speakers_needed_make_the_target_gap_detectable():
    rng = np.random.default_rng(12)
    in_a, errors, words = simulated_speakers(rng, 600, 0.0, n_a=100)
    detectable, needed = selection_power(in_a, ~in_a, errors, words, 0.05, 15.0)
    assert detectable > 15 and needed > 0
    bigger = 100 + int(needed)
    in_a2, errors2, words2 = simulated_speakers(rng, 500 + bigger, 0.0, n_a=bigger)
    again, _ = selection_power(in_a2, ~in_a2, errors2, words2, 0.05, 15.0)
    assert again == pytest.approx(15.0, abs=2.5)  # a new sample: its own speaker variance
    assert 0.72 <= rejection_rate(rng, 500 + bigger, 0.15, runs=400, n_a=bigger) <= 0.88


def test_no_evidence_verdict_says_what_could_be_detected_and_what_it_takes():
    rng = np.random.default_rng(3)
    log = confounded_log(rng, direct=1.0, n=300, device_effect=1.0)  # no gap at all
    result = fairaudit.audit(log, methods=["attribute"], by=["group"], target_gap=20, bootstrap=0, permutations=100)
    method = result.to_dict()["methods"]["attribute"]
    assert method["verdict"] == "no evidence"
    assert f"gap of {method['detectable_gap_pct']:.0f}% or more" in method["verdict_reason"]
    assert method["speakers_needed"] > 0
    assert (
        f"to detect 20%, the bottom cohort needs {method['speakers_needed']:,} more speakers"
        in method["verdict_reason"]
    )


def test_speaker_table_sums_keep_the_anatomy_of_sdi_logs():
    log = pd.DataFrame(
        {
            "speaker_id": ["a", "a", "b"],
            "substitutions": [1, 0, 2],
            "deletions": [0, 3, 0],
            "insertions": [1, 0, 0],
            "ref_words": [4, 3, 5],
        }
    )
    table = build_speaker_table(load_log(log)).frame
    assert table.loc["a", ["substitutions", "deletions", "insertions", "empty_hypotheses"]].tolist() == [1, 3, 1, 1]
    assert table.loc["a", "utterance_wer_sum"] == pytest.approx(2 / 4 + 3 / 3)


def test_adjust_without_statsmodels_says_how_to_install_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "statsmodels" else real(name, *a))
    with pytest.raises(fairaudit.errors.UsageError, match=r"pip install statsmodels .*pip install '\.\[adjust\]'"):
        fairaudit.AuditOptions(adjust=["device"])


def test_without_overdispersion_the_poisson_limit_gives_finite_intervals():
    rng = np.random.default_rng(4)
    n = 2000
    group = rng.random(n) < 0.3
    frame = pd.DataFrame(
        {
            "errors": rng.binomial(200, np.where(group, 0.12, 0.1)),
            "ref_words": 200,
            "utterances": 10,
            "device": rng.choice(["far", "near"], n),
        },
        index=pd.Index([f"s{i}" for i in range(n)], name="speaker_id"),
    )
    from fairaudit.model.speakers import SpeakerTable
    from fairaudit.stats.adjust import adjusted_rate_ratios

    out = adjusted_rate_ratios(SpeakerTable(frame=frame, metadata_columns=["device"]), group, ~group, ["device"])
    assert out["model"] == "Poisson, robust errors"
    assert out["adjusted"]["ci"][0] < 1.2 < out["adjusted"]["ci"][1]


def test_a_covariate_that_varies_within_speakers_is_adjusted_on_the_utterances():
    rng = np.random.default_rng(21)
    n = 1200
    speaker = np.repeat(np.arange(n), 12)
    group = np.where(rng.random(n) < 0.4, "a", "b")
    noisy = rng.random(len(speaker)) < np.where(group[speaker] == "a", 0.7, 0.3)  # per utterance
    rate = 0.1 * rng.gamma(4.0, 0.25, n)[speaker] * np.where(noisy, 1.6, 1.0)
    words = rng.integers(3, 15, len(speaker))
    log = pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in speaker],
            "group": group[speaker],
            "channel": np.where(noisy, "noisy", "clean"),
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
        }
    )
    result = fairaudit.audit(log, methods=["attribute"], by=["group"], adjust=["channel"], **FAST)
    adjusted = result.to_dict()["methods"]["attribute"]["adjusted"]
    assert adjusted["model"] == "Poisson GLM on utterances, speaker-clustered errors"
    assert adjusted["raw"]["ci"][0] > 1.05  # channel makes group a look worse
    assert adjusted["adjusted"]["ci"][0] < 1 < adjusted["adjusted"]["ci"][1]  # no direct effect left


def test_adjusting_for_a_covariate_constant_over_bottom_and_top_says_it_cannot_change_the_gap():
    """Bottom and top both one device: the report said the excess "remains after adjusting" with the
    ratio unchanged (6.01 to 6.01), as if the adjustment had been informative."""
    log = confounded_log(np.random.default_rng(2), direct=1.3).assign(device="headset")
    result = adjusted(log)
    assert "cannot change the gap" in result["error"] and "sentence" not in result


def test_an_unknown_adjust_column_is_an_error_even_when_no_cohort_can_be_chosen():
    """With too few speakers for any bottom cohort, --adjust nosuch was silently ignored."""
    log = confounded_log(np.random.default_rng(1), direct=1.0, n=30)
    with pytest.raises(fairaudit.errors.UsageError, match="--adjust names 'nosuch'"):
        fairaudit.audit(log, methods=["attribute"], by=["group"], adjust=["nosuch"], **FAST)
