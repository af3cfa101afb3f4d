"""Two systems on the same cohorts (SPEC 9): `fairaudit compare BASELINE NEW`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_runner import run_main
from jsonschema import Draft202012Validator

import fairaudit
from fairaudit.report.schema import load_schema
from fairaudit.synth.generator import synthesize


@pytest.fixture(scope="module")
def logs():
    """A baseline log with a planted metro circle, and two new systems on the same utterances:
    one worse inside the circle and better elsewhere, one better everywhere. The new errors are
    thinned or thickened copies of the baseline's, so the systems agree on which speakers are hard."""
    synth = synthesize(3000, effect=0.5, plant=["circle"], seed=4, embeddings="none")
    base = synth.log
    planted = base["speaker_id"].isin(set(synth.truth["planted"]["circle"]["speaker_ids"])).to_numpy()
    rng = np.random.default_rng(1)
    errors, words = base["errors"].to_numpy(), base["ref_words"].to_numpy()
    regressed = base.copy()
    regressed["errors"] = np.where(planted, errors + rng.binomial(words, 0.06), rng.binomial(errors, 0.8))
    improved = base.copy()
    improved["errors"] = rng.binomial(errors, 0.75)
    return synth, base, regressed, improved, planted


def test_a_regional_regression_is_worse_there_and_better_elsewhere(logs, tmp_path):
    synth, base, regressed, _, planted = logs
    comparison = fairaudit.compare(base, regressed, methods=["geo-scan"], bootstrap=400)
    assert comparison.paired and comparison.matched_utterances == len(base)
    scan = comparison.methods["geo-scan"]
    verdicts = {c.id: c.verdict for c in scan.cohorts}
    assert verdicts["window-1"] == "worse" and verdicts["outside-windows"] == "better"
    window = next(c for c in scan.cohorts if c.id == "window-1")
    assert window.change_ci[0] > 0 and window.probability_improved < 0.05
    assert scan.gap_verdict == "worse" and scan.gap_after_pct > scan.gap_before_pct
    # Independent check of the window's change from the logs themselves.
    assignments = fairaudit.audit(base, methods=["geo-scan"], bootstrap=0, permutations=0).assignments()
    members = set(assignments.loc[assignments["cohort_id"] == "window-1", "speaker_id"])
    rows = base["speaker_id"].isin(members).to_numpy()
    expected = 100 * (regressed["errors"][rows].sum() - base["errors"][rows].sum()) / base["ref_words"][rows].sum()
    assert window.change_points == pytest.approx(expected)


def test_a_uniformly_better_model_is_better_or_unchanged_everywhere(logs):
    _, base, _, improved, _ = logs
    comparison = fairaudit.compare(base, improved, methods=["geo-scan", "geo-tree"], bootstrap=300)
    for method in comparison.methods.values():
        assert {c.verdict for c in method.cohorts} <= {"better", "no evidence", "suppressed"}
        assert any(c.verdict == "better" for c in method.cohorts)


def test_paired_intervals_are_narrower_than_unpaired_on_the_same_data(logs):
    _, base, regressed, _, _ = logs
    paired = fairaudit.compare(base, regressed, methods=["geo-tree"], bootstrap=400)
    unpaired = fairaudit.compare(base, regressed, methods=["geo-tree"], bootstrap=400, pairing="unpaired")
    assert paired.paired and not unpaired.paired
    ratios = [
        (p.change_ci[1] - p.change_ci[0]) / (u.change_ci[1] - u.change_ci[0])
        for p, u in zip(paired.methods["geo-tree"].cohorts, unpaired.methods["geo-tree"].cohorts)
        if not p.suppressed
    ]
    assert np.median(ratios) < 0.8, ratios


def test_unmatched_logs_are_compared_unpaired_and_labelled(logs):
    _, base, regressed, _, _ = logs
    other = regressed.assign(utterance_id="x-" + regressed["utterance_id"])
    comparison = fairaudit.compare(base, other, methods=["geo-scan"], bootstrap=100)
    assert not comparison.paired and comparison.unmatched_new == len(other)
    assert "unpaired" in comparison.to_dict()["pairing"]
    with pytest.raises(fairaudit.errors.UsageError):
        fairaudit.compare(base, other, methods=["geo-scan"], bootstrap=10, pairing="paired")


def test_cli_writes_schema_valid_json_markdown_and_a_table(logs, tmp_path):
    _, base, regressed, _, _ = logs
    base.to_csv(tmp_path / "base.csv", index=False)
    regressed.to_csv(tmp_path / "new.csv", index=False)
    run = run_main(
        "compare",
        tmp_path / "base.csv",
        tmp_path / "new.csv",
        "--method",
        "geo-scan",
        "--bootstrap",
        200,
        "--json",
        tmp_path / "c.json",
        "--markdown",
        tmp_path / "c.md",
        "--html",
        tmp_path / "c.html",
    )
    assert run.code == 0, run.stderr
    page = (tmp_path / "c.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "Content-Security-Policy" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page  # offline, no script
    assert "window-1" in page and ">worse<" in page and "data:image/png;base64," in page
    report = json.loads((tmp_path / "c.json").read_text())
    assert not list(Draft202012Validator(load_schema("compare_report")).iter_errors(report))
    assert "window-1" in run.stdout and "worse" in run.stdout and "paired" in run.stdout
    markdown = (tmp_path / "c.md").read_text()
    assert "| window-1 |" in markdown and "worse" in markdown
    # An output may not replace an input.
    assert run_main("compare", tmp_path / "base.csv", tmp_path / "new.csv", "--json", tmp_path / "new.csv").code == 2


def test_html_escapes_cohort_descriptions(logs):
    from fairaudit.render.comparison import comparison_html

    _, base, regressed, _, _ = logs
    hostile = base.assign(accent=np.where(base.index % 2 == 0, "<script>x</script>", "plain"))
    data = fairaudit.compare(
        hostile,
        regressed.assign(accent=hostile["accent"]),
        methods=["attribute"],
        by=["accent"],
        by_level="speaker",  # the accent alternates within speakers here
        bootstrap=50,
    ).to_dict()
    page = comparison_html(data)
    assert "<script>x" not in page and "&lt;script&gt;x" in page


def _groups_log(sizes: dict[str, int], seed: int, utterances: int = 1):
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = [
        (f"{group}{i}", f"{group}{i}-u{u}", group, int(rng.binomial(100, 0.1)), 100)
        for group, n in sizes.items()
        for i in range(n)
        for u in range(utterances)
    ]
    return pd.DataFrame(rows, columns=["speaker_id", "utterance_id", "accent", "errors", "ref_words"])


def test_a_cohort_small_in_the_new_log_is_suppressed_not_published(tmp_path):
    """Unpaired: 12 speakers of group c in the release but 3 in the candidate; the row showed the
    candidate's WER of those 3 speakers (under the release's count of 12)."""
    release = _groups_log({"a": 60, "b": 60, "c": 12}, 1).drop(columns="utterance_id")
    candidate = _groups_log({"a": 60, "b": 60, "c": 3}, 2).drop(columns="utterance_id")
    result = fairaudit.compare(release, candidate, by=["accent"], bootstrap=50)
    rows = {c.id: c for c in result.methods["attribute"].cohorts}
    assert rows["c"].suppressed and rows["c"].wer_after is None and rows["c"].speakers is None
    assert not rows["a"].suppressed


def test_paired_cohort_sizes_count_the_speakers_with_matched_utterances():
    """The new log transcribed only part of the set: a cohort's WERs come from its speakers with
    matched utterances, and that is the count shown (it showed every baseline speaker)."""
    baseline = _groups_log({"a": 60, "b": 60}, 1, utterances=2)
    new = baseline[~baseline["speaker_id"].isin([f"a{i}" for i in range(20)])].copy()
    result = fairaudit.compare(baseline, new, by=["accent"], bootstrap=50)
    assert result.paired
    rows = {c.id: c for c in result.methods["attribute"].cohorts}
    assert rows["a"].speakers == 40 and rows["b"].speakers == 60


def test_a_model_compared_with_itself_has_even_odds_of_being_better():
    """Every paired replicate's change is exactly 0: P(better) was 0.00 ("certainly not better")."""
    log = _groups_log({"a": 60, "b": 60}, 3, utterances=2)
    result = fairaudit.compare(log, log.copy(), by=["accent"], bootstrap=50)
    assert result.paired
    assert {c.probability_improved for c in result.methods["attribute"].cohorts} == {0.5}


def test_a_method_without_a_bottom_cohort_says_so_instead_of_a_broken_gap_line(tmp_path):
    """Groups below --min-speakers give no bottom cohort: the line read
    "WER gap of none vs : n/a -> n/a, change  points : no evidence"."""
    from fairaudit.render.comparison import gap_line

    log = _groups_log({"a": 20, "b": 20}, 5)  # below --min-speakers 30: no cohort can be chosen
    data = fairaudit.compare(log, log.copy(), by=["accent"], bootstrap=20).to_dict()
    line = gap_line(data["methods"]["attribute"])
    assert "no WER gap to compare" in line and "none" not in line and "n/a" not in line


def test_with_holdout_both_systems_are_measured_on_the_held_out_speakers():
    """The gate's absolute rules judge held-out figures; its regression rules compared all speakers
    (the discovery half inflates the gap). compare --holdout measures both logs on the held-out half."""
    from fairaudit.api import load_log
    from fairaudit.engines.speaker_table import build_speaker_table
    from fairaudit.pipeline.audit import split_speakers

    baseline = _groups_log({"a": 60, "b": 60, "c": 60}, 6, utterances=2)
    result = fairaudit.compare(baseline, baseline.copy(), by=["accent"], bootstrap=50, holdout=0.5, seed=3)
    speakers = build_speaker_table(load_log(baseline))
    held = set(speakers.speaker_ids[split_speakers(speakers.speaker_ids, 0.5, 3)[1]])
    rows = {c.id: c for c in result.methods["attribute"].cohorts}
    for accent, row in rows.items():
        in_cohort = baseline[(baseline["accent"] == accent) & baseline["speaker_id"].isin(held)]
        assert row.speakers == in_cohort["speaker_id"].nunique()
        assert row.wer_before == pytest.approx(in_cohort["errors"].sum() / in_cohort["ref_words"].sum())
    from fairaudit.render.comparison import comparison_markdown

    assert "held out (--holdout)" in comparison_markdown(result.to_dict())


def test_gate_against_its_own_log_with_holdout_uses_held_out_figures_on_both_sides(tmp_path):
    """A log gated against itself as a baseline log, with holdout = 0.5: the regression rule read
    "24.1% -> 91.2%" (all speakers vs held-out) for one cohort; both sides are now held out."""
    log = _groups_log({"a": 100, "b": 100, "c": 100}, 7, utterances=2)
    log.loc[log["accent"] == "a", "errors"] *= 2
    log.to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "policy.toml").write_text(
        "by = ['accent']\nholdout = 0.5\nbootstrap = 100\npermutations = 0\n[gate]\nmax-gap-increase-points = 1\n"
    )
    run = run_main(
        "gate", tmp_path / "log.csv", "--baseline", tmp_path / "log.csv", "--policy", tmp_path / "policy.toml",
        "--json", tmp_path / "audit.json", "--markdown", tmp_path / "gate.md",
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    held_gap = json.loads((tmp_path / "audit.json").read_text())["methods"]["attribute"]["holdout"]["wer_gap_pct"]
    assert f"WER gap {held_gap:.1f}% -&gt; {held_gap:.1f}%" in (tmp_path / "gate.md").read_text()


def test_a_paired_comparison_refuses_matched_utterances_with_other_references():
    """The same utterance ids with different reference word counts were paired silently."""
    from fairaudit.errors import InputError

    baseline = _groups_log({"a": 60, "b": 60}, 8, utterances=2)
    new = baseline.assign(ref_words=baseline["ref_words"] + (baseline.index == 5))
    with pytest.raises(InputError) as caught:
        fairaudit.compare(baseline, new, by=["accent"], bootstrap=20)
    assert "101 in the new log" in caught.value.message and "--pairing unpaired" in caught.value.message
    unpaired = fairaudit.compare(baseline, new, by=["accent"], bootstrap=20, pairing="unpaired")
    assert not unpaired.paired
