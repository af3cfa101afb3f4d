"""Real data nobody here wrote: the Artie Bias Corpus (Common Voice clips with accent tags) and what
three commercial/open recognisers produced on it (../shared/data/artie-bias-corpus/).

fairaudit scores each system's predictions against the references and audits by accent. The test
recomputes per-accent pooled counts independently (its own normalisation + jiwer on each pair) and
checks fairaudit's figures equal them, and that Indian-accented speech has a higher WER than
US-accented speech for every system, as the corpus README reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from pathlib import Path

import jiwer
import numpy as np
import pandas as pd
import pytest

import fairaudit

pytestmark = pytest.mark.shared_data

from builders import ARTIE, COLUMNS, SYSTEMS, artie_log  # noqa: E402


def normalise(text: str) -> list[str]:
    """Independent re-implementation of the documented default normalisation."""
    text = text.lower()
    for apostrophe in "'’‘`":
        text = text.replace(apostrophe, "")
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return text.split()


def independent_counts(log: pd.DataFrame) -> pd.DataFrame:
    """Per-accent errors and reference words, one jiwer call per utterance."""
    errors, words = [], []
    for reference, hypothesis in zip(log["sentence"], log["prediction"]):
        ref, hyp = normalise(reference), normalise(hypothesis)
        if not ref:
            errors.append(len(hyp))
        elif not hyp:
            errors.append(len(ref))
        else:
            out = jiwer.process_words(" ".join(ref), " ".join(hyp))
            errors.append(out.substitutions + out.deletions + out.insertions)
        words.append(len(ref))
    frame = pd.DataFrame({"accent": log["accent"], "errors": errors, "ref_words": words})
    frame = frame[frame["accent"] != "NA"]
    return frame.groupby("accent")[["errors", "ref_words"]].sum()


def test_corpus_is_present():
    assert (ARTIE / "artie-bias-corpus.tsv").is_file(), f"real data expected at {ARTIE}"
    assert len(SYSTEMS) == 3


@pytest.mark.parametrize("system", SYSTEMS)
def test_per_accent_wer_equals_independent_pooled_counts_and_indian_is_worse_than_us(system):
    log = artie_log(system)
    assert len(log) == 1712
    result = fairaudit.audit(
        log,
        methods=["attribute"],
        columns=COLUMNS,
        by=["accent"],
        min_speakers=20,
        bootstrap=200,
        permutations=100,
        seed=0,
    )
    cohorts = result.methods["attribute"].cohorts.set_index("id")
    expected = independent_counts(log)
    # Every accent with at least min_report_speakers speakers is reported with exact pooled counts.
    for accent, row in expected.iterrows():
        assert cohorts.loc[accent, "errors"] == row["errors"], accent
        assert cohorts.loc[accent, "ref_words"] == row["ref_words"], accent
        assert cohorts.loc[accent, "wer"] == pytest.approx(row["errors"] / row["ref_words"])
    indian = expected.loc["indian", "errors"] / expected.loc["indian", "ref_words"]
    us = expected.loc["us", "errors"] / expected.loc["us", "ref_words"]
    assert indian > us, f"{system}: Indian {indian:.3f} vs US {us:.3f}"
    assert cohorts.loc["indian", "wer"] > cohorts.loc["us", "wer"]
    assert cohorts.loc["indian", "rank"] < cohorts.loc["us", "rank"]
    # Speakers with accent NA are unassigned, not a cohort called "NA".
    assert "NA" not in cohorts.index
    assert sum(result.methods["attribute"].partition.unassigned_reasons.values()) == 281


def test_cli_on_a_real_tsv_matches_the_python_api(tmp_path):
    """The same audit through the command line on a TSV file gives the same per-accent figures."""
    system = "google-en-US-dec-4-2019"  # 36 empty predictions: real all-deletion results
    log = artie_log(system)
    path = tmp_path / "google.tsv"
    log.to_csv(path, sep="\t", index=False, quoting=3)
    out = tmp_path / "audit.json"
    args = [
        sys.executable,
        "-m",
        "fairaudit.cli",
        "audit",
        str(path),
        "--method",
        "attribute",
        "--by",
        "accent",
        "--min-speakers",
        "20",
        "--bootstrap",
        "0",
        "--permutations",
        "0",
        "--json",
        str(out),
        "--quiet",
    ]
    for canonical, actual in COLUMNS.items():
        args += ["--column", f"{canonical}={actual}"]
    run = subprocess.run(args, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    cli = {c["id"]: c for c in report["methods"]["attribute"]["cohorts"]}
    expected = independent_counts(log)
    for accent in ("indian", "us", "england", "canada"):
        assert cli[accent]["errors"] == expected.loc[accent, "errors"]
        assert cli[accent]["ref_words"] == expected.loc[accent, "ref_words"]
    assert report["input"]["utterances"] == 1712 and report["input"]["speakers"] == 969


GATE_POLICY = {
    "on": "point",
    "max-wer-gap-pct": {"warn": 100.0, "fail": 200.0},
    "max-bottom-wer": {"warn": 0.30, "fail": 0.50},
}


def expected_level(value: float, level: dict) -> str:
    return "fail" if value > level["fail"] else "warn" if value > level["warn"] else "pass"


@pytest.mark.parametrize("system", SYSTEMS)
def test_gate_verdicts_follow_independently_computed_per_accent_figures(system):
    """One policy for all three systems; expected outcomes come from the test's own pooled counts."""
    from fairaudit.gate.judge import run_gate
    from fairaudit.gate.policy import parse_policy

    log = artie_log(system)
    counts = independent_counts(log)
    speakers = log[log["accent"] != "NA"].groupby("accent")["client_id"].nunique()
    eligible = counts.loc[speakers[speakers >= 20].index]
    wer = eligible["errors"] / eligible["ref_words"]
    bottom_wer, top_wer = wer.max(), wer.min()
    gap = 100 * (bottom_wer - top_wer) / top_wer
    report = fairaudit.audit(
        log,
        methods=["attribute"],
        columns=COLUMNS,
        by=["accent"],
        min_speakers=20,
        bootstrap=100,
        permutations=50,
        seed=0,
        bottom="worst",
        top="best",  # the worst vs the best accent, as computed above
    ).to_dict()
    gate = run_gate(report, parse_policy(GATE_POLICY, "policy"))
    outcomes = {r.rule: r.outcome for r in gate.results}
    assert outcomes["max-wer-gap-pct"] == expected_level(gap, GATE_POLICY["max-wer-gap-pct"]), (system, gap)
    assert outcomes["max-bottom-wer"] == expected_level(bottom_wer, GATE_POLICY["max-bottom-wer"]), (system, bottom_wer)
    worst = max(
        expected_level(gap, GATE_POLICY["max-wer-gap-pct"]),
        expected_level(bottom_wer, GATE_POLICY["max-bottom-wer"]),
        key=["pass", "warn", "fail"].index,
    )
    assert gate.outcome == worst
    assert gate.exit_code == (1 if worst == "fail" else 0)


def test_paired_comparison_of_two_real_systems_matches_independent_per_accent_changes(tmp_path):
    """Google vs Amazon on the same Artie clips, cohorts = accents: the per-accent WER before and
    after equal the test's own pooled counts, pairing is detected from the clip ids, and the
    paired intervals are narrower than unpaired ones on the same data."""
    before, after = artie_log("google-en-US-dec-4-2019"), artie_log("amazon-en-US-dec-9-2019")
    options = dict(methods=["attribute"], columns=COLUMNS, by=["accent"], min_speakers=20, bootstrap=400, seed=0)
    paired = fairaudit.compare(before, after, **options)
    unpaired = fairaudit.compare(before, after, pairing="unpaired", **options)
    assert paired.paired and not unpaired.paired and paired.matched_utterances == len(before)
    counts_before, counts_after = independent_counts(before), independent_counts(after)
    widths = []
    for cohort, other in zip(paired.methods["attribute"].cohorts, unpaired.methods["attribute"].cohorts):
        if cohort.suppressed:
            continue
        # "other-values": the accents the audit withheld (too few speakers), together, as in its rest
        named = {c.id for c in paired.methods["attribute"].cohorts} - {"other-values"}
        rows = [a for a in counts_before.index if a not in named] if cohort.id == "other-values" else [cohort.id]
        wer_before = counts_before.loc[rows, "errors"].sum() / counts_before.loc[rows, "ref_words"].sum()
        wer_after = counts_after.loc[rows, "errors"].sum() / counts_after.loc[rows, "ref_words"].sum()
        assert cohort.wer_before == pytest.approx(wer_before) and cohort.wer_after == pytest.approx(wer_after), (
            cohort.id
        )
        assert cohort.change_points == pytest.approx(100 * (wer_after - wer_before))
        assert cohort.change_ci[0] <= cohort.change_points <= cohort.change_ci[1]
        widths.append((cohort.change_ci[1] - cohort.change_ci[0], other.change_ci[1] - other.change_ci[0]))
    assert np.median([p / u for p, u in widths]) < 0.9, widths  # pairing removes the shared speaker variance


def test_logs_without_utterance_ids_are_paired_by_speaker_and_reference():
    """The same clips without their file names: matched by speaker and reference text (a speaker
    who read one sentence twice is matched in order), with the same per-accent figures."""
    columns = {k: v for k, v in COLUMNS.items() if k != "utterance_id"}
    before = artie_log("google-en-US-dec-4-2019").drop(columns=["path"])
    after = artie_log("amazon-en-US-dec-9-2019").drop(columns=["path"])
    options = dict(methods=["attribute"], by=["accent"], min_speakers=20, bootstrap=100, seed=0)
    by_text = fairaudit.compare(before, after, columns=columns, **options)
    by_id = fairaudit.compare(
        artie_log("google-en-US-dec-4-2019"), artie_log("amazon-en-US-dec-9-2019"), columns=COLUMNS, **options
    )
    assert by_text.paired and by_text.matched_utterances == by_id.matched_utterances == len(before)
    for a, b in zip(by_text.methods["attribute"].cohorts, by_id.methods["attribute"].cohorts):
        assert (a.id, a.wer_before, a.wer_after) == (b.id, b.wer_before, b.wer_after)


def test_readme_adjusted_gap_example_is_what_the_script_prints(capsys):
    """The README's real-data example of --adjust, error anatomy and power is regenerated, not hand-edited."""
    import importlib.util
    import re

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("artie_adjusted", root / "examples" / "real" / "artie_adjusted.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main()
    printed = capsys.readouterr().out.splitlines()
    readme = (root / "README.md").read_text(encoding="utf-8")
    block = re.search(r"prints, for Amazon Transcribe:\n\n```\n(.+?)```", readme, re.S).group(1)
    assert block.splitlines() == printed
    raw, adjusted = (float(x) for x in re.findall(r"(?:raw|adjusted for gender, age) (\d\.\d\d)", printed[1]))
    assert raw > 1.3 and adjusted > 1.3  # the gap is not explained by gender and age
