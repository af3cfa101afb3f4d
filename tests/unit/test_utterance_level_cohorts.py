"""--by on a column that varies within speakers: cohorts of utterances, speakers kept whole (issue 14)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.stats.resampling import bootstrap_partitions, utterance_level_null

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
    assert method["top_description"] == "all other utterances"
    html = fairaudit.audit(log, methods=["attribute"], by=["device"], bootstrap=0, permutations=0).to_html()
    assert "utterance-level cohorts: a cohort is the utterances with that value" in html


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


def test_null_moves_whole_speakers_and_spreads_their_totals_by_words():
    clusters = np.array([0, 0, 1, 1, 1, 2])
    errors = np.array([3, 1, 0, 5, 2, 4])
    words = np.array([10, 30, 5, 5, 10, 7])
    totals = {0: (4, 40.0), 1: (7, 20.0), 2: (4, 7.0)}
    shares = words / np.array([40.0, 40.0, 20.0, 20.0, 20.0, 7.0])
    blocks = list(utterance_level_null(clusters, errors, words, 3000, np.random.default_rng(0)))
    drawn = np.concatenate([d for d, _ in blocks])
    null_words = np.concatenate([w for _, w in blocks])
    donors = set()
    for speaker in range(3):
        rows = clusters == speaker
        got = {(int(e), float(w)) for e, w in zip(drawn[:, rows].sum(axis=1), null_words[:, rows].sum(axis=1))}
        assert got <= {(e, w) for e, w in totals.values()}  # some speaker's whole totals, never a mix
        donors |= got
        assert np.allclose(null_words[:, rows] / null_words[:, rows].sum(axis=1, keepdims=True), shares[rows])
    assert donors == {(e, w) for e, w in totals.values()}  # speakers are shuffled
    assert drawn.sum(axis=1).tolist() == [errors.sum()] * len(drawn)


def test_a_value_whose_speakers_do_worse_is_found_even_if_few_speakers_vary():
    """Phone users have twice the WER; a single speaker uses both devices (so cohorts are utterances)."""
    rng = np.random.default_rng(6)
    n = 600
    device = np.where(np.arange(n) < 200, "phone", "tv")
    speaker = np.repeat(np.arange(n), 10)
    utterance_device = device[speaker].copy()
    utterance_device[:5] = "tv"  # speaker 0 (a phone user) has five tv utterances
    rate = 0.08 * rng.gamma(4.0, 0.25, n)[speaker] * np.where(device[speaker] == "phone", 2.0, 1.0)
    words = rng.integers(3, 15, len(speaker))
    log = pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in speaker],
            "device": utterance_device,
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
        }
    )
    method = attribute_report(log, bootstrap=0)["methods"]["attribute"]
    assert method["cohort_level"] == "utterance"
    assert method["verdict"] == "disparity" and method["bottom_cohorts"] == ["phone"]


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


def test_suppressed_utterance_cohorts_hide_at_least_the_minimum_of_distinct_speakers():
    """Devices C and D are used by the same six speakers: together they hold 6 speakers, not 12."""
    rng = np.random.default_rng(9)
    rows = []
    for s in range(300):
        own = "A" if s < 150 else "B"
        devices = [own] * 8 + (["C", "D"] if s < 6 else [])
        for d in devices:
            w = int(rng.integers(3, 12))
            rows.append({"speaker_id": f"s{s}", "device": d, "errors": int(rng.binomial(w, 0.1)), "ref_words": w})
    log = pd.DataFrame(rows)
    method = attribute_report(log, bootstrap=0, permutations=0)["methods"]["attribute"]
    hidden = [c for c in method["cohorts"] if c["suppressed"]]
    assert len(hidden) >= 3  # C, D and a complementary cohort
    shown = {c["id"] for c in method["cohorts"] if not c["suppressed"]}
    hidden_speakers = log.loc[~log["device"].isin(shown), "speaker_id"].nunique()
    assert hidden_speakers >= 10


def test_stored_utterance_level_cohorts_are_refused_not_remeasured_per_speaker(tmp_path):
    log = device_log(np.random.default_rng(4), phone_effect=1.2, n=300, per_speaker=8)
    result = fairaudit.audit(log, methods=["attribute"], by=["device"], bootstrap=0, permutations=0)
    report = result.to_dict()
    assert report["methods"]["attribute"]["definition"]["level"] == "utterance"
    with pytest.raises(fairaudit.errors.UsageError, match="utterance-level cohorts"):
        fairaudit.audit(log, cohorts=report, bootstrap=0, permutations=0)


def test_compare_on_a_varying_column_says_to_use_speaker_level():
    log = device_log(np.random.default_rng(5), phone_effect=1.0, n=200, per_speaker=6)
    with pytest.raises(fairaudit.errors.UsageError, match="--by-level speaker"):
        fairaudit.compare(log, log, methods=["attribute"], by=["device"], bootstrap=0)
    same = fairaudit.compare(log, log, methods=["attribute"], by=["device"], by_level="speaker", bootstrap=0)
    assert same.to_dict()["methods"]


def test_power_with_one_row_per_speaker_equals_the_speaker_level_formula_and_is_reported():
    from fairaudit.model.partition import Partition
    from fairaudit.stats.power import detectable_gap_pct

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 400)
    errors, words = rng.integers(0, 30, 400), rng.integers(50, 200, 400)
    partition = Partition("test", labels, ["a", "b", "c"], ["a", "b", "c"])
    plain = detectable_gap_pct(partition, errors, words, 0.05)
    clustered = detectable_gap_pct(partition, errors, words, 0.05, clusters=np.arange(400))
    np.testing.assert_allclose(clustered, plain)
    method = attribute_report(device_log(rng, 1.0, n=300, per_speaker=8), bootstrap=0, permutations=0)
    cohorts = method["methods"]["attribute"]["cohorts"]
    assert all(c["detectable_gap_pct"] is not None and c["detectable_gap_pct"] > 0 for c in cohorts)


def test_a_few_speakers_missing_values_cannot_be_recovered_across_methods():
    """Three speakers have some utterances without a device. Published next to a speaker-level method
    over every speaker, the device totals would differ by exactly those utterances: so those three
    speakers leave both methods."""
    rng = np.random.default_rng(10)
    log = device_log(rng, 1.0, n=300, per_speaker=8)
    log["gender"] = np.where(log["speaker_id"].str[-1].astype(int) % 2 == 0, "f", "m")
    missing = log["speaker_id"].isin(["s00001", "s00002", "s00003"]) & (log.groupby("speaker_id").cumcount() < 2)
    log.loc[missing, "device"] = None
    report = fairaudit.audit(log, methods=["attribute"], by=["device", "gender"], bootstrap=0, permutations=0)
    methods = report.to_dict()["methods"]
    device, gender = methods["attribute:device"], methods["attribute:gender"]
    assert device["cohort_level"] == "utterance" and gender["cohort_level"] == "speaker"
    assert device["assigned_speakers"] == gender["assigned_speakers"] == 297
    reported = sum(c["utterances"] for c in device["cohorts"]) + sum(c["utterances"] for c in gender["cohorts"])
    assert reported == 2 * (len(log) - 3 * 8)  # the same utterances behind both methods' totals


@pytest.mark.parametrize("command", ["audit", "gate"])
def test_by_level_is_an_option_of_the_command_line(tmp_path, command):
    """--by-level is documented in the README and suggested by the tool's own notes, so the command
    line must take it (it was once only a configuration-file key)."""
    import json

    from cli_runner import run_main

    log = device_log(np.random.default_rng(6), phone_effect=1.2, n=300, per_speaker=8)
    path = tmp_path / "log.csv"
    log.to_csv(path, index=False)
    levels = {}
    for level in ("speaker", "utterance"):
        out = tmp_path / f"{level}.json"
        if command == "audit":
            args = ["audit", path, "--by", "device", "--by-level", level, "--bootstrap", "0", "--permutations", "0"]
        else:
            policy = tmp_path / "policy.toml"
            policy.write_text("[audit]\nbootstrap = 0\npermutations = 0\n[gate]\nmax-wer-gap-pct = 1000\n")
            args = ["gate", path, "--policy", policy, "--by", "device", "--by-level", level]
        done = run_main(*args, "--json", out, "--quiet")
        assert done.code == 0, done.stderr
        levels[level] = json.loads(out.read_text())["methods"]["attribute"]["cohort_level"]
    assert levels == {"speaker": "speaker", "utterance": "utterance"}


def test_every_audit_option_is_on_the_audit_command():
    """Each option declared in AuditOptions with a flag is accepted by ``fairaudit audit``."""
    from typer.testing import CliRunner

    from fairaudit.cli.app import app
    from fairaudit.options import AuditOptions

    shown = CliRunner().invoke(app, ["audit", "--help"], env={"COLUMNS": "200"}).output
    flags = [AuditOptions.field_info(name).get("flag") for name in AuditOptions.names()]
    missing = [flag for flag in flags if flag and not re.search(rf"{re.escape(flag)}\b(?!-)", shown)]
    assert not missing
