"""Portable cohort definitions (SPEC 6, 9): every method writes what is needed to put new speakers
into the same cohorts, and `audit --cohorts AUDIT_JSON` measures another log on them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from builders import accent_groups_log
from cli_runner import run_main

import fairaudit
from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.methods import GeoTree
from fairaudit.synth.generator import synthesize, write_synth

FAST = dict(bootstrap=50, permutations=20)


@pytest.fixture(scope="module")
def baseline():
    """A log with geographic, census and embedding cohorts planted, and its audit report."""
    synth = synthesize(2500, effect=0.5, plant=["circle", "zip-majority", "emb-cluster"], seed=7)
    result = fairaudit.audit(synth.log, embeddings=synth.embeddings, by=["accent"], **FAST)
    return synth, json.loads(result.to_json())


def other_model(synth, seed: int = 1, factor: float = 1.0) -> pd.DataFrame:
    """The same utterances transcribed by another system: new error counts, same speakers."""
    rng = np.random.default_rng(seed)
    log = synth.log.copy()
    rate = np.clip(log["errors"] / log["ref_words"] * factor, 0, 1)
    log["errors"] = rng.binomial(log["ref_words"].to_numpy(), (0.5 * rate + 0.04).to_numpy())
    return log


def test_every_method_writes_definitions_that_reproduce_its_cohorts(baseline):
    synth, report = baseline
    again = json.loads(fairaudit.audit(synth.log, embeddings=synth.embeddings, cohorts=report, **FAST).to_json())
    assert (
        set(again["methods"])
        == set(report["methods"])
        == {"geo-tree", "geo-scan", "zip-demographic", "embedding-kmeans", "attribute"}
    )
    for name, method in report["methods"].items():
        stored = again["methods"][name]
        assert method["definition"]["method"] == name and method["definition"]["cells"], name
        assert stored["cohort_source"] == "stored" and method["cohort_source"] == "discovered"
        assert stored["bottom_cohorts"] == method["bottom_cohorts"], name
        for before, after in zip(method["cohorts"], stored["cohorts"]):
            assert (before["id"], before["speakers"], before["errors"], before["ref_words"]) == (
                after["id"],
                after["speakers"],
                after["errors"],
                after["ref_words"],
            ), name
        assert stored["wer_gap_pct"] == pytest.approx(method["wer_gap_pct"])
        assert "no search" in stored["verdict_reason"]


def test_another_model_is_measured_on_the_same_speaker_cohorts(baseline):
    synth, report = baseline
    first = fairaudit.audit(synth.log, embeddings=synth.embeddings, cohorts=report, **FAST).assignments()
    second_result = fairaudit.audit(other_model(synth), embeddings=synth.embeddings, cohorts=report, **FAST)
    second = second_result.assignments()
    merged = first.merge(second, on=["method", "speaker_id"], suffixes=("_a", "_b"))
    assert len(merged) == len(first) == len(second)
    assert (merged["cohort_id_a"] == merged["cohort_id_b"]).all()
    # Figures are the new model's own: recomputed here from its log for the stored bottom cohort.
    log = other_model(synth)
    geo = second_result.methods["geo-scan"]
    bottom = set(merged.loc[(merged["method"] == "geo-scan") & merged["bottom_b"], "speaker_id"])
    rows = log[log["speaker_id"].isin(bottom)]
    assert geo.discovery.bottom_wer == pytest.approx(rows["errors"].sum() / rows["ref_words"].sum())


def test_geo_tree_bounds_assign_exactly_as_the_fitted_tree():
    synth = synthesize(1500, effect=0.5, plant=["box"], seed=3, embeddings="none")
    speakers = build_speaker_table(load_log(synth.log))
    tree = GeoTree(min_gain=0).fit(speakers)
    coords = speakers.frame[["latitude", "longitude"]].to_numpy()
    located = ~np.isnan(coords).any(axis=1)
    leaves = tree.tree_.leaf_of_point  # the grown tree's own leaves
    labels = tree.partition_.labels[located]
    # One leaf <-> one region, in both directions.
    assert len(set(zip(leaves, labels))) == len(set(leaves)) == len(set(labels)) == len(tree.regions_)
    rebuilt = GeoTree.from_definition(json.loads(json.dumps(tree.definition())))
    assert (rebuilt.assign(speakers).labels == tree.partition_.labels).all()


def test_definitions_that_cannot_apply_are_clear_errors(baseline, tmp_path):
    synth, report = baseline
    path = tmp_path / "audit.json"
    path.write_text(json.dumps(report), encoding="utf-8")
    paths = write_synth(tmp_path / "new.csv", synthesize(300, seed=2, embedding_dim=8))
    # Another embedding dimension (8 instead of 32).
    run = run_main(
        "audit", paths["log"], "--embeddings", paths["embeddings"], "--cohorts", path, "-q", "--bootstrap", 0
    )
    assert run.code == 2 and "dimension" in run.stderr and "Traceback" not in run.stderr
    # A missing column.
    run = run_main("audit", paths["log"], "--cohorts", path, "-q")
    assert run.code == 2 and "embedding" in run.stderr
    # Another census table (the stored one was the built-in table).
    table = tmp_path / "census.csv"
    pd.DataFrame({"zip_code": ["00501", "10001"], "median_household_income": [50000, 60000]}).to_csv(table, index=False)
    run = run_main(
        "audit",
        paths["log"],
        "--embeddings",
        paths["embeddings"],
        "--cohorts",
        path,
        "--method",
        "zip-demographic",
        "--demographics",
        table,
        "-q",
    )
    assert run.code == 2 and "census table" in run.stderr, run.stderr
    # Not an audit report; and a report without definitions.
    (tmp_path / "bad.json").write_text("{}", encoding="utf-8")
    assert run_main("audit", paths["log"], "--cohorts", tmp_path / "bad.json", "-q").code == 2
    old = json.loads(json.dumps(report))
    del old["methods"]["geo-tree"]["definition"]
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    run = run_main("audit", paths["log"], "--cohorts", tmp_path / "old.json", "-q")
    assert run.code == 2 and "no cohort definitions" in run.stderr


def test_suppressed_cells_are_withheld_from_the_definitions():
    synth = synthesize(400, effect=0.5, plant=["lat-band"], seed=3, embeddings="none")
    result = fairaudit.audit(
        synth.log, methods=["geo-tree"], min_speakers=5, min_gain=0, min_report_speakers=25, bootstrap=0, permutations=0
    )
    cohorts = result.methods["geo-tree"].discovery.cohorts
    suppressed = set(cohorts.loc[cohorts["suppressed"], "id"])
    assert suppressed
    definition = result.to_dict()["methods"]["geo-tree"]["definition"]
    assert not {cell["id"] for cell in definition["cells"]} & suppressed
    # Re-applied, their speakers are one "withheld-regions" cell, not moved to a published region,
    # so the rest is the audit's rest and the same log gives the same gap (a self-comparison is 0).
    again = fairaudit.audit(
        synth.log, cohorts=result.to_dict(), bootstrap=0, permutations=0, min_report_speakers=25, min_speakers=5
    )
    partition = again.methods["geo-tree"].partition
    first = result.methods["geo-tree"]
    counts = dict(zip(partition.cohort_ids, partition.speaker_counts()))
    assert counts.pop("withheld-regions") == cohorts.loc[cohorts["suppressed"], "speakers"].sum()
    assert counts == dict(
        zip(cohorts.loc[~cohorts["suppressed"], "id"], cohorts.loc[~cohorts["suppressed"], "speakers"])
    )
    assert again.methods["geo-tree"].discovery.wer_gap_pct == pytest.approx(first.discovery.wer_gap_pct)


def test_a_log_measured_on_its_own_stored_groups_has_its_own_gap_when_groups_were_withheld(tmp_path):
    """Groups of 60, 60 and 5 speakers (the 5 and a complement withheld): stored definitions
    left their speakers unassigned, so the same log measured on its own audit lost them from the
    rest, changed the gap and failed a gate against itself. They now form one "other-values" cell."""
    accent_groups_log({"a": (60, 0.12), "b": (60, 0.06), "c": (5, 0.08)}).to_csv(tmp_path / "log.csv", index=False)
    options = dict(bootstrap=0, permutations=0)
    audit = fairaudit.audit(tmp_path / "log.csv", by=["accent"], **options)
    report = audit.to_dict()
    assert report["methods"]["attribute"]["definition"]["withheld_cells"] == 2
    again = fairaudit.audit(tmp_path / "log.csv", cohorts=report, **options).methods["attribute"]
    assert again.discovery.wer_gap_pct == pytest.approx(audit.methods["attribute"].discovery.wer_gap_pct)
    assert again.partition.unassigned_reasons == {}
    (tmp_path / "release.json").write_text(audit.to_json())
    (tmp_path / "policy.toml").write_text("[gate]\nmax-gap-increase-points = 1\n")
    run = run_main(
        "gate", tmp_path / "log.csv", "--by", "accent", "--baseline", tmp_path / "release.json",
        "--policy", tmp_path / "policy.toml",
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr


def test_clusters_withheld_for_privacy_are_counted_and_their_absorption_is_noted():
    """k-means clusters under --min-report-speakers are withheld from the definitions (their
    centroids too), so on re-application their speakers join the nearest published cluster. That
    cannot be undone without publishing the centroids, so the definition counts the withheld
    clusters and an audit on it says where their speakers went; geo-tree, whose withheld regions
    leave speakers unassigned with a reason, needs no such note."""
    synth = synthesize(600, effect=0.5, plant=["emb-cluster"], seed=5)
    options = dict(methods=["embedding-kmeans", "geo-tree"], bootstrap=0, permutations=0, min_speakers=5)
    result = fairaudit.audit(synth.log, embeddings=synth.embeddings, clusters=40, min_report_speakers=15, **options)
    published = result.to_dict()
    cohorts = result.methods["embedding-kmeans"].discovery.cohorts
    n_withheld = int(cohorts["suppressed"].sum())
    assert n_withheld > 0  # 40 clusters of 600 speakers: some hold fewer than 15
    definition = published["methods"]["embedding-kmeans"]["definition"]
    assert definition["withheld_cells"] == n_withheld and len(definition["cells"]) == 40 - n_withheld
    again = fairaudit.audit(synth.log, embeddings=synth.embeddings, cohorts=published, **options)
    notes = [note for note in again.notes if "withheld" in note]
    assert len(notes) == 1 and notes[0].startswith(f"embedding-kmeans: the stored audit withheld {n_withheld} ")
    stored = again.methods["embedding-kmeans"].partition
    assert (stored.labels >= 0).sum() == (result.methods["embedding-kmeans"].partition.labels >= 0).sum()


@pytest.mark.parametrize("damage", ["unknown census attribute", "text threshold", "nan centroid", "deep nesting"])
def test_hand_edited_definitions_are_input_errors_not_internal_ones(baseline, tmp_path, damage):
    """Edited definitions raised KeyError or a numpy type error (exit 3), or, with a NaN centroid,
    put every speaker in one cluster silently; JSON nested 100,000 deep hit the recursion limit."""
    synth, report = baseline
    report = json.loads(json.dumps(report))
    methods = report["methods"]
    candidate = methods["zip-demographic"]["definition"]["candidate"]
    if damage == "unknown census attribute":
        candidate.update(kind="threshold", attribute="nosuch", value=3.0)
    elif damage == "text threshold":
        candidate.update(kind="threshold", attribute="median_household_income", value="abc")
    elif damage == "nan centroid":
        methods["embedding-kmeans"]["definition"]["cells"][0]["centroid"][0] = float("nan")
    path = tmp_path / "audit.json"
    path.write_text("[" * 100_000 + "]" * 100_000 if damage == "deep nesting" else json.dumps(report))
    paths = write_synth(tmp_path / "new.csv", synthesize(300, seed=2))
    run = run_main(
        "audit", paths["log"], "--embeddings", paths["embeddings"], "--cohorts", path, "-q", "--bootstrap", 0
    )
    assert run.code == 2 and "audit.json" in run.stderr and "internal error" not in run.stderr, run.stderr


def test_stored_cohorts_that_place_few_of_the_speakers_are_noted():
    """Cohorts from another log (accents this one barely has) matched 8% of its speakers, and the
    stored audit said nothing about it."""
    first = accent_groups_log({"a": (60, 0.12), "b": (60, 0.06)})
    other = accent_groups_log({"a": (10, 0.12), "z": (110, 0.06)}, seed=1)
    report = fairaudit.audit(first, by=["accent"], bootstrap=0, permutations=0).to_dict()
    notes = fairaudit.audit(other, cohorts=report, bootstrap=0, permutations=0).notes
    assert any("only 10 of 120 speakers fall in the stored cohorts" in note for note in notes), notes
    same = fairaudit.audit(first, cohorts=report, bootstrap=0, permutations=0).notes
    assert not any("fall in the stored cohorts" in note for note in same)


def test_withheld_groups_stay_one_cell_when_stored_cohorts_are_reused_and_its_id_is_unique():
    """An audit on stored cohorts dropped `withheld_cells` from its own definitions, so a third audit
    lost the withheld speakers; and a real group named "other-values" got the extra cell's id too."""
    log = accent_groups_log({"a": (60, 0.12), "other-values": (60, 0.06), "c": (5, 0.08)})
    options = dict(bootstrap=0, permutations=0)
    report = fairaudit.audit(log, by=["accent"], **options).to_dict()
    gaps, ids = [], []
    for _ in range(3):
        result = fairaudit.audit(log, cohorts=report, **options)
        method = result.methods["attribute"]
        gaps.append(method.discovery.wer_gap_pct)
        ids.append(method.partition.cohort_ids)
        report = result.to_dict()
    first = fairaudit.audit(log, by=["accent"], **options).methods["attribute"].discovery.wer_gap_pct
    assert gaps == pytest.approx([first] * 3)
    assert all(len(set(cohorts)) == len(cohorts) for cohorts in ids), ids
