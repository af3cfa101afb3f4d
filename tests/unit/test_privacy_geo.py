"""Privacy of suppressed geographic cells (SPEC 6): a region or scan window under
--min-report-speakers keeps neither its figures nor its geometry in any output."""

from __future__ import annotations

import io
import json

import numpy as np
from rich.console import Console

import fairaudit
from fairaudit.render.terminal import print_audit
from fairaudit.synth.generator import synthesize


def small_cell_audit():
    """geo-tree with 5-speaker leaves allowed, so several regions fall under the reporting minimum."""
    synth = synthesize(400, effect=0.5, plant=["lat-band"], seed=3, embeddings="none")
    return fairaudit.audit(
        synth.log,
        methods=["geo-tree"],
        min_speakers=5,
        min_gain=0,
        max_regions=16,
        min_report_speakers=25,
        bootstrap=20,
        permutations=0,
    )


def test_suppressed_regions_keep_no_bounds_description_or_rank_in_json_and_terminal():
    result = small_cell_audit()
    geo = result.methods["geo-tree"]
    cohorts = geo.discovery.cohorts
    suppressed = cohorts.loc[cohorts["suppressed"], "id"].tolist()
    assert suppressed, "the fixture must produce suppressed regions"
    hidden_descriptions = cohorts.loc[cohorts["suppressed"], "description"].tolist()
    report = result.to_dict()["methods"]["geo-tree"]
    text = json.dumps(report)
    region_ids = {region["id"] for region in report["details"]["regions"]}
    assert not region_ids & set(suppressed)
    assert region_ids == set(cohorts.loc[~cohorts["suppressed"], "id"])
    for description in hidden_descriptions:
        assert description not in text
    buffer = io.StringIO()
    print_audit(result, Console(file=buffer, width=200, color_system=None))
    terminal = buffer.getvalue()
    for description in hidden_descriptions:
        assert description not in terminal
    # Suppressed rows are unranked: ranks shown are 1..m over the reported cohorts only.
    shown = [line.split("│")[1].strip() for line in terminal.splitlines() if line.startswith("│") and "region-" in line]
    ranks = [int(r) for r in shown if r]
    assert ranks == list(range(1, len(ranks) + 1)) and len(ranks) == int((~cohorts["suppressed"]).sum())


def test_suppressed_scan_windows_are_withheld():
    synth = synthesize(600, effect=0.8, plant=["two-circles"], seed=2, embeddings="none")
    result = fairaudit.audit(
        synth.log, methods=["geo-scan"], min_speakers=5, min_report_speakers=40, bootstrap=0, permutations=0
    )
    scan = result.methods["geo-scan"]
    cohorts = scan.discovery.cohorts
    suppressed = set(cohorts.loc[cohorts["suppressed"], "id"])
    assert suppressed, "the fixture must produce suppressed windows"
    report = result.to_dict()["methods"]["geo-scan"]
    published = {window["id"] for window in report["details"]["windows"]}
    assert not published & suppressed
    all_windows = {window["id"] for window in scan.partition.details["windows"]}
    assert published == all_windows - suppressed
    assert np.all([c["description"].startswith("suppressed") for c in report["cohorts"] if c["suppressed"]])


def test_the_cluster_view_publishes_aggregates_only():
    """The embedding projection holds each cluster's mean and covariance, never per-speaker points
    or sparsely filled bins (issue 11: 189 of 237 published cells once held a single speaker)."""
    synth = synthesize(600, effect=0.5, plant=["emb-cluster"], seed=2)
    result = fairaudit.audit(
        synth.log,
        embeddings=synth.embeddings,
        methods=["embedding-kmeans"],
        clusters=12,
        min_speakers=5,
        min_report_speakers=40,
        bootstrap=0,
        permutations=0,
    )
    details = result.to_dict()["methods"]["embedding-kmeans"]["details"]
    projection = details["projection"]
    assert "cells" not in projection and set(projection) == {"explained_variance_pct", "centres", "covariances"}
    cohorts = result.methods["embedding-kmeans"].discovery.cohorts.set_index("id")
    for cid, centre, cov, profile in zip(
        result.methods["embedding-kmeans"].partition.cohort_ids,
        projection["centres"],
        projection["covariances"],
        details["profiles"],
    ):
        if cohorts.loc[cid, "suppressed"]:
            assert centre is None and cov is None and profile == []
        else:
            assert cohorts.loc[cid, "speakers"] >= 40 and len(centre) == 2 and len(cov) == 2
