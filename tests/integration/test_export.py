"""fairaudit export: cohorts, weights and lists for training, checked against the audit and by hand (issue 15)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_runner import run_main


@pytest.fixture(scope="module")
def audited(tmp_path_factory, log):
    """An audit of the shared 600-speaker log with its speaker assignments."""
    work = tmp_path_factory.mktemp("export")
    run = run_main(
        "audit",
        log,
        "--by",
        "accent",
        "-m",
        "attribute",
        "-m",
        "geo-tree",
        "--bootstrap",
        40,
        "--permutations",
        20,
        "-q",
        "--json",
        work / "audit.json",
        "--assignments",
        work / "assignments.csv",
    )
    assert run.code == 0, run.stderr
    return work


@pytest.mark.parametrize("share", [0.3, 0.45])
def test_weights_give_the_requested_share_of_words(audited, log, share):
    out = audited / f"out-{share}"
    run = run_main("export", audited / "audit.json", log, "-o", out, "--method", "geo-tree", "--target-share", share)
    assert run.code == 0, run.stderr
    utterances = pd.read_csv(out / "utterances.csv")
    words = pd.read_csv(log, usecols=["utterance_id", "ref_words"]).set_index("utterance_id")["ref_words"]
    weighted = utterances.set_index("utterance_id")["weight"] * words.loc[utterances["utterance_id"]].to_numpy()
    bottom = utterances["geo-tree:bottom"].to_numpy()
    assigned = utterances["geo-tree:group"].to_numpy() >= 0
    assert weighted[bottom].sum() / weighted.sum() == pytest.approx(share)  # of every exported utterance
    assert set(utterances.loc[~bottom, "weight"]) == {1.0}
    target = (out / "target_utterances.txt").read_text().split()
    assert sorted(target) == sorted(utterances.loc[bottom, "utterance_id"])
    protect = set((out / "protect_utterances.txt").read_text().split())
    assert protect == set(utterances.loc[assigned & ~bottom, "utterance_id"])


def test_speaker_cohorts_equal_the_audits_assignments(audited, log):
    out = audited / "same"
    assert run_main("export", audited / "audit.json", log, "-o", out, "--format", "parquet").code == 0
    speakers = pd.read_parquet(out / "speakers.parquet").set_index("speaker_id")
    assignments = pd.read_csv(audited / "assignments.csv", dtype={"speaker_id": str})
    for method, rows in assignments.groupby("method"):
        # The audit leaves out a few speakers whose figures could be recovered by subtraction
        # (privacy of a published report); the export is training data and assigns them too.
        rows = rows[rows["cohort_id"].notna()].set_index("speaker_id")
        assert (speakers.loc[rows.index, f"{method}:cohort"].fillna("") == rows["cohort_id"].fillna("")).all()
        assert (speakers.loc[rows.index, f"{method}:bottom"] == rows["bottom"]).all()
    manifest = [json.loads(line) for line in (out / "manifest.nemo.jsonl").read_text().splitlines()]
    assert len(manifest) == len(pd.read_csv(log)) and {"audio_filepath", "weight", "fairaudit_group"} <= set(
        manifest[0]
    )


def test_export_errors_are_clear(audited, log):
    run = run_main("export", audited / "audit.json", log, "-o", audited / "x", "--method", "geo-scan")
    assert run.code == 2 and "is not in the audit report" in run.stderr
    run = run_main("export", audited / "audit.json", log, "-o", audited / "y", "--target-share", 1.5)
    assert run.code == 2 and "--target-share must be a fraction" in run.stderr


def test_another_methods_missing_input_leaves_its_columns_out_not_the_export(tmp_path, log, emb):
    """An audit with embedding-kmeans exported for geo-tree on a log without --embeddings: the
    k-means columns are left out with a note; exporting embedding-kmeans itself still needs them."""
    report = tmp_path / "audit.json"
    options = ["--bootstrap", 0, "--permutations", 0, "-q"]
    run = run_main(
        "audit", log, "--embeddings", emb, "-m", "geo-tree", "-m", "embedding-kmeans", "--json", report, *options
    )
    assert run.code == 0, run.stderr
    run = run_main("export", report, log, "-o", tmp_path / "out", "--method", "geo-tree")
    assert run.code == 0, run.stderr
    assert "left out the cohorts of embedding-kmeans: this log has no speaker embeddings" in run.stdout + run.stderr
    speakers = pd.read_csv(next((tmp_path / "out").glob("*speaker*.csv")))
    assert "geo-tree:group" in speakers.columns and not any(c.startswith("embedding-kmeans") for c in speakers.columns)
    run = run_main("export", report, log, "-o", tmp_path / "out2", "--method", "embedding-kmeans")
    assert run.code == 2 and "speaker embeddings" in run.stderr


def test_exporting_a_method_without_a_bottom_cohort_says_why(tmp_path):
    """Groups below --min-speakers: no bottom cohort; export said only that no utterance fell in it."""
    from builders import accent_groups_log

    log = accent_groups_log({"a": (20, 0.12), "b": (20, 0.06)})
    log.to_csv(tmp_path / "log.csv", index=False)
    run = run_main("audit", tmp_path / "log.csv", "--by", "accent", "--json", tmp_path / "a.json", "-q")
    assert run.code == 0, run.stderr
    run = run_main("export", tmp_path / "a.json", tmp_path / "log.csv", "-o", tmp_path / "out", "--method", "attribute")
    assert run.code == 2 and "attribute has no bottom cohort in the audit report" in run.stderr
    assert "insufficient data" in run.stderr or "fewer than two cohorts" in run.stderr


def test_the_default_target_is_the_share_the_audit_reports(tmp_path):
    """With speakers outside every cohort (no accent), the default target was the bottom cohort's share
    of all the log's speakers (37.5% here), not the 50% the audit reports."""
    from builders import accent_groups_log

    log = accent_groups_log({"a": (60, 0.12), "b": (60, 0.06), "x": (40, 0.06)})
    log.loc[log["accent"] == "x", "accent"] = None
    log.to_csv(tmp_path / "log.csv", index=False)
    run = run_main("audit", tmp_path / "log.csv", "--by", "accent", "--json", tmp_path / "a.json", "-q")
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["methods"]["attribute"]["bottom_share_pct"] == pytest.approx(50.0)
    run = run_main("export", tmp_path / "a.json", tmp_path / "log.csv", "-o", tmp_path / "out")
    assert run.code == 0, run.stderr
    assert "becomes 50.0%" in run.stdout, run.stdout
