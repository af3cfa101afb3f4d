"""--by on a column that varies within speakers: cohorts of utterances, speakers kept whole (issue 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.stats.resampling import bootstrap_partitions, redistribution_null

DEVICES = ("car", "tv", "phone")


def device_log(rng: np.random.Generator, phone_effect: float, n: int = 1500, per_speaker: int = 16) -> pd.DataFrame:
    """Speakers use a primary device 70% of the time; phone utterances have WER x ``phone_effect``."""
    speaker = np.repeat(np.arange(n), per_speaker)
    primary = rng.choice(DEVICES, n)
    device = np.where(rng.random(len(speaker)) < 0.7, primary[speaker], rng.choice(DEVICES, len(speaker)))
    rate = 0.1 * rng.gamma(4.0, 0.25, n)[speaker] * np.where(device == "phone", phone_effect, 1.0)
    words = rng.integers(3, 15, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i:05d}" for i in speaker],
            "device": device,
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
        }
    )


def attribute_report(log: pd.DataFrame, **options) -> dict:
    defaults = {"methods": ["attribute"], "by": ["device"], "bootstrap": 200, "permutations": 200}
    return fairaudit.audit(log, **{**defaults, **options}).to_dict()


def test_cohorts_are_the_utterances_with_each_value():
    log = device_log(np.random.default_rng(1), phone_effect=1.2)
    report = attribute_report(log)
    method = report["methods"]["attribute"]
    assert method["cohort_level"] == "utterance"
    assert any("utterance-level cohorts (device varies within" in note for note in report["notes"])
    totals = log.groupby("device").agg(errors=("errors", "sum"), words=("ref_words", "sum"))
    speakers = log.groupby("device")["speaker_id"].nunique()
    for cohort in method["cohorts"]:
        assert cohort["wer"] == pytest.approx(totals.loc[cohort["id"], "errors"] / totals.loc[cohort["id"], "words"])
        assert cohort["speakers"] == speakers[cohort["id"]]  # distinct speakers with utterances on it
        assert cohort["utterances"] == (log["device"] == cohort["id"]).sum()
        assert cohort["wer_ci"][0] < cohort["wer"] < cohort["wer_ci"][1]
    assert method["bottom_cohorts"] == ["phone"] and method["verdict"] == "disparity"
    assert method["speakers"] == log["speaker_id"].nunique()


def test_speaker_level_is_still_available_and_differs():
    log = device_log(np.random.default_rng(2), phone_effect=1.2)
    method = attribute_report(log, by_level="speaker", bootstrap=0, permutations=0)["methods"]["attribute"]
    assert method["cohort_level"] == "speaker"
    primary = log.groupby("speaker_id")["device"].agg(lambda v: v.value_counts().index[0])
    assert sum(c["speakers"] for c in method["cohorts"]) == len(primary)  # each speaker in one cohort
    utterances = log.groupby("device")["errors"].sum() / log.groupby("device")["ref_words"].sum()
    phone = next(c for c in method["cohorts"] if c["id"] == "phone")
    assert phone["wer"] != pytest.approx(utterances["phone"], rel=1e-6)  # the speaker-level figure is another one


def test_no_device_effect_rarely_gives_disparity():
    rng = np.random.default_rng(3)
    alarms = sum(
        attribute_report(device_log(rng, 1.0, n=300, per_speaker=8), bootstrap=0, permutations=100, seed=seed)[
            "methods"
        ]["attribute"]["verdict"]
        == "disparity"
        for seed in range(80)
    )
    assert alarms <= 9  # 5% nominal: 4 expected of 80; 9 or more has probability below 2%


def test_redistribution_keeps_each_speakers_errors_and_splits_them_by_words():
    clusters = np.array([0, 0, 1, 1, 1, 2])
    errors = np.array([3, 1, 0, 5, 2, 4])
    words = np.array([10, 30, 5, 5, 10, 7])
    drawn = np.concatenate(list(redistribution_null(clusters, errors, words, 4000, np.random.default_rng(0))))
    for speaker in range(3):
        rows = clusters == speaker
        assert (drawn[:, rows].sum(axis=1) == errors[rows].sum()).all()
        expected = errors[rows].sum() * words[rows] / words[rows].sum()
        assert drawn[:, rows].mean(axis=0) == pytest.approx(expected, abs=0.08)


def test_bootstrap_draws_whole_speakers_for_utterance_rows():
    clusters = np.array([0, 0, 1, 1, 2, 2])
    # Rows 0, 2, 4 in cohort 0 and rows 1, 3, 5 in cohort 1: a speaker's two rows are drawn together,
    # so with identical rows the two cohorts' errors stay equal in every replicate.
    indicator = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 0], [0, 1]], dtype=float)
    errors = np.array([1, 1, 4, 4, 9, 9])
    words = np.array([10, 10, 10, 10, 10, 10])
    from fairaudit.stats.metrics import Selection

    selection = Selection(bottom=np.array([[True, False]]), top=np.array([[False, True]]))
    boot = bootstrap_partitions(
        [(indicator, selection)], errors, words, 300, np.random.default_rng(1), clusters=clusters
    )[0]
    assert np.allclose(boot["wer"][:, 0], boot["wer"][:, 1])
    assert boot["wer"][:, 0].std() > 0
