"""The ``--json`` audit report (SPEC 6): schema validity, field-level arithmetic, determinism and
agreement with the Python API (SPEC 7).

Every expected figure is recomputed here from the input file (pandas) or from other fields of the
same report (e.g. the gap from the cohort entries' errors and ref_words), never copied from output.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from jsonschema import Draft202012Validator

import fairaudit
from fairaudit.cli import main

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "data_schemas" / "audit_report.schema.json").read_text(encoding="utf-8"))
FAST = ["--bootstrap", "100", "--permutations", "20"]
METHODS = ["geo-tree", "geo-scan", "zip-demographic", "embedding-kmeans", "attribute"]
TOL = 1e-9

CONFIGS = {
    "default": [*FAST],
    "holdout": [*FAST, "--holdout", "0.5", "--top", "best"],
    "worst-best": [*FAST, "--bottom", "worst", "--top", "best"],
    "bottom-share-rest": [*FAST, "--bottom-share", "0.2", "--top", "rest"],
    "nulls": ["--permutations", "0", "--bootstrap", "0"],
}


def run_main(*args: object) -> int:
    """The console entry point ``fairaudit.cli:main`` in-process; returns its exit code."""
    argv, sys.argv = sys.argv, ["fairaudit", *map(str, args)]
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            main()
    except SystemExit as done:
        code = 0 if done.code is None else int(done.code)
    else:  # pragma: no cover - main() always exits
        code = -1
    finally:
        sys.argv = argv
    assert code == 0, err.getvalue()
    return code


@pytest.fixture(scope="module")
def reports(log, emb, synth_600) -> dict[str, dict]:
    """One audit per configuration: all three discovery methods plus --by accent."""
    out = {}
    for name, options in CONFIGS.items():
        path = synth_600 / f"{name}.json"
        run_main("audit", log, "--embeddings", emb, "--by", "accent", *options, "--json", path, "-q")
        out[name] = json.loads(path.read_text(encoding="utf-8"))
    return out


def figure_sets(report: dict):
    """(method name, label, figures dict) for the discovery figures and, when present, the hold-out."""
    for name, method in report["methods"].items():
        yield name, "discovery", method
        if method["holdout"] is not None:
            yield name, "holdout", method["holdout"]


def pooled(cohorts: list[dict], ids: list[str]) -> float:
    chosen = [c for c in cohorts if c["id"] in ids]
    assert len(chosen) == len(ids) and all(not c["suppressed"] for c in chosen)
    return sum(c["errors"] for c in chosen) / sum(c["ref_words"] for c in chosen)


# --- 3. schema -----------------------------------------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema():
    Draft202012Validator.check_schema(SCHEMA)


def test_every_registered_method_name_is_a_valid_report_key():
    """The schema's method-name pattern admits every registered method, and rejects junk."""
    import re

    from fairaudit.methods.registry import method_names

    pattern = re.compile(SCHEMA["properties"]["methods"]["propertyNames"]["pattern"])
    assert len(method_names()) >= 5
    for name in [*method_names(), "attribute:accent,gender"]:
        assert pattern.match(name), name
    for bad in ["", "Geo Tree", "-x", "geo-"]:
        assert not pattern.match(bad), bad


@pytest.mark.parametrize("config", list(CONFIGS))
def test_report_validates_against_the_schema(reports, config):
    report = reports[config]
    errors = sorted(Draft202012Validator(SCHEMA).iter_errors(report), key=lambda e: list(e.absolute_path))
    assert not errors, [(list(e.absolute_path), e.message) for e in errors[:5]]
    assert sorted(report["methods"]) == sorted(METHODS)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda r: r["methods"]["geo-tree"].pop("verdict"),
        lambda r: r["methods"]["geo-tree"].__setitem__("verdict", "unfair"),
        lambda r: r["methods"]["attribute"].pop("wer_gap_ci"),
        lambda r: r["methods"]["attribute"]["cohorts"][0].pop("wer"),
        lambda r: r["methods"]["attribute"]["cohorts"][0].__setitem__("wer_ci", [0.1]),
        lambda r: r["methods"]["zip-demographic"].__setitem__("bottom_share_pct", 120.0),
        lambda r: r["input"].__setitem__("sha256", "xyz"),
        lambda r: r["methods"].__setitem__("K Means!", r["methods"]["embedding-kmeans"]),
        lambda r: r.pop("parameters"),
        lambda r: r["methods"]["geo-tree"].pop("holdout"),
    ],
    ids=[
        "no-verdict",
        "bad-verdict",
        "no-gap-ci",
        "cohort-no-wer",
        "short-ci",
        "share-over-100",
        "bad-sha",
        "bad-method-name",
        "no-parameters",
        "no-holdout-key",
    ],
)
def test_schema_rejects_broken_reports(reports, mutate):
    """The schema is not vacuous: each contract violation makes a valid report invalid."""
    report = copy.deepcopy(reports["default"])
    mutate(report)
    assert not Draft202012Validator(SCHEMA).is_valid(report)


# --- 3. field-level checks -----------------------------------------------------------------------


@pytest.mark.parametrize("config", list(CONFIGS))
def test_input_provenance(reports, config, log, frame):
    report = reports[config]
    assert report["input"]["sha256"] == hashlib.sha256(log.read_bytes()).hexdigest()
    assert report["input"]["path"] == str(log)
    assert report["input"]["utterances"] == len(frame)
    assert report["input"]["speakers"] == frame.speaker_id.nunique()
    assert report["input"]["error_form"] == "errors"


@pytest.mark.parametrize("config", list(CONFIGS))
def test_parameters_record_the_options(reports, config):
    report = reports[config]
    params = report["parameters"]
    options = CONFIGS[config]
    assert params["bootstrap"] == int(options[options.index("--bootstrap") + 1])
    assert params["permutations"] == int(options[options.index("--permutations") + 1])
    assert params["by"] == ["accent"]
    assert params["seed"] == report["seed"] == 0
    assert params["min_speakers"] == 30
    assert params["holdout"] == (0.5 if config == "holdout" else None)
    assert params["bottom_share"] == (0.2 if config == "bottom-share-rest" else None)
    assert params["top"] == ("best" if config in ("holdout", "worst-best") else "rest")  # rest: the default
    assert params["bottom"] == ("worst" if config == "worst-best" else "auto")
    assert params["max_bottom_share"] == 0.5


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cohort_wer_shares_and_totals(reports, config):
    report = reports[config]
    for name, label, figures in figure_sets(report):
        cohorts = figures["cohorts"]
        visible = [c for c in cohorts if not c["suppressed"]]
        # reported cohorts ranked 1..m, suppressed ones last and unranked (position would leak WER)
        assert [c["rank"] for c in visible] == list(range(1, len(visible) + 1)), (name, label)
        assert all(c["rank"] is None for c in cohorts[len(visible) :]), (name, label)
        assert visible, (name, label)
        for cohort in visible:
            assert cohort["ref_words"] > 0
            assert cohort["wer"] == pytest.approx(cohort["errors"] / cohort["ref_words"], rel=TOL), (name, cohort["id"])
            assert cohort["speaker_share_pct"] == pytest.approx(
                100 * cohort["speakers"] / figures["assigned_speakers"], rel=TOL
            )
            lo, hi = cohort["wer_ci"]
            if report["parameters"]["bootstrap"] == 0:
                assert (lo, hi) == (None, None)
            else:
                assert lo is not None and hi is not None and 0 <= lo <= hi
        wers = [c["wer"] for c in visible]
        assert wers == sorted(wers, reverse=True), (name, label)  # rank 1 = highest WER
        if not any(c["suppressed"] for c in cohorts):
            assert sum(c["speakers"] for c in cohorts) == figures["assigned_speakers"]
        if label == "discovery":
            unassigned = sum(report["methods"][name]["unassigned"].values())
            speakers = figures["speakers"]
            assert figures["assigned_speakers"] + unassigned == speakers, name


@pytest.mark.parametrize("config", list(CONFIGS))
def test_gap_and_share_recomputed_from_the_cohort_entries(reports, config):
    for name, label, figures in figure_sets(reports[config]):
        bottom, top = figures["bottom_cohorts"], figures["top_cohorts"]
        assert bottom and top and not set(bottom) & set(top), (name, label)
        assert figures["bottom"] == " + ".join(bottom)
        bottom_wer, top_wer = pooled(figures["cohorts"], bottom), pooled(figures["cohorts"], top)
        assert figures["bottom_wer"] == pytest.approx(bottom_wer, rel=TOL)
        assert figures["top_wer"] == pytest.approx(top_wer, rel=TOL)
        assert figures["wer_gap_pct"] == pytest.approx(100 * (bottom_wer - top_wer) / top_wer, rel=1e-9, abs=1e-9), (
            name,
            label,
        )
        in_bottom = sum(c["speakers"] for c in figures["cohorts"] if c["id"] in bottom)
        assert figures["bottom_share_pct"] == pytest.approx(100 * in_bottom / figures["assigned_speakers"], rel=TOL)
        if label == "discovery":
            assert figures["wer_gap_pct"] > 0  # the discovered bottom is worse than the top
            eligible = [c for c in figures["cohorts"] if c["eligible"]]
            worst_first = [c["id"] for c in sorted(eligible, key=lambda c: -c["wer"])]
            assert worst_first[: len(bottom)] == [
                c["id"] for c in sorted([c for c in figures["cohorts"] if c["id"] in bottom], key=lambda c: -c["wer"])
            ], (name, "bottom = the worst eligible cohorts")


def test_top_best_is_the_lowest_eligible_cohort(reports):
    for name, method in reports["worst-best"]["methods"].items():
        eligible = [c for c in method["cohorts"] if c["eligible"]]
        assert method["top_cohorts"] == [min(eligible, key=lambda c: c["wer"])["id"]], name
        assert method["bottom_cohorts"] == [max(eligible, key=lambda c: c["wer"])["id"]], name
        assert method["top"] == method["top_cohorts"][0]


def test_top_rest_is_everyone_outside_the_bottom(reports):
    for name, method in reports["bottom-share-rest"]["methods"].items():
        everyone = {c["id"] for c in method["cohorts"] if c["speakers"]}
        assert set(method["top_cohorts"]) == everyone - set(method["bottom_cohorts"]), name
        if len(method["top_cohorts"]) > 1:
            assert method["top"] == "rest"
        in_bottom = sum(c["speakers"] for c in method["cohorts"] if c["id"] in method["bottom_cohorts"])
        in_top = sum(c["speakers"] for c in method["cohorts"] if c["id"] in method["top_cohorts"])
        assert in_bottom + in_top == method["assigned_speakers"], name


def placed_by_every_method(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of speakers every method can place: with all methods run, the 1-9 speakers without
    coordinates (here also without a ZIP code) are left out of the attribute method too, else the
    two methods' published totals would differ by exactly their errors (SPEC 6)."""
    located = frame.groupby("speaker_id")[["latitude", "zip_code"]].first().notna().all(axis=1)
    assert 0 < (~located).sum() < 10  # the log is built so
    return frame[frame.speaker_id.map(located)]


def test_attribute_cohorts_match_a_pandas_groupby(reports, frame):
    """The attribute method's cohorts recomputed straight from the log."""
    assert frame.groupby("speaker_id").accent.nunique().max() == 1  # one accent per speaker
    expected = (
        placed_by_every_method(frame)
        .groupby("accent")
        .agg(
            speakers=("speaker_id", "nunique"),
            utterances=("speaker_id", "size"),
            errors=("errors", "sum"),
            ref_words=("ref_words", "sum"),
        )
    )
    for config, report in reports.items():
        if config == "holdout":
            continue
        cohorts = {c["id"]: c for c in report["methods"]["attribute"]["cohorts"]}
        assert set(cohorts) == set(expected.index), config
        for accent, row in expected.iterrows():
            got = cohorts[accent]
            assert (got["speakers"], got["utterances"], got["errors"], got["ref_words"]) == tuple(
                int(v) for v in row
            ), (config, accent)


def test_geo_tree_unassigned_are_speakers_without_coordinates(reports, frame):
    located = frame.dropna(subset=["latitude", "longitude"]).speaker_id.unique()
    method = reports["default"]["methods"]["geo-tree"]
    assert method["assigned_speakers"] == len(located)
    assert sum(method["unassigned"].values()) == frame.speaker_id.nunique() - len(located)


def test_attribute_cohorts_have_p_values_and_bh_adjustment(reports):
    method = reports["default"]["methods"]["attribute"]
    cohorts = method["cohorts"]
    p = np.array([c["p_value"] for c in cohorts], dtype=float)
    bh = np.array([c["p_value_bh"] for c in cohorts], dtype=float)
    permutations = reports["default"]["parameters"]["permutations"]
    assert np.all((p >= 1 / (permutations + 1) - TOL) & (p <= 1))
    assert np.all(bh >= p - TOL) and np.all(bh <= 1)
    # Benjamini-Hochberg recomputed: adjusted p_(i) = min_{k >= i} p_(k) * m / k, capped at 1
    order = np.argsort(p, kind="stable")
    m = len(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    expected = np.empty(m)
    expected[order] = adjusted
    np.testing.assert_allclose(bh, expected, rtol=1e-9)
    for other in ("geo-tree", "zip-demographic", "embedding-kmeans"):
        assert "p_value_bh" not in reports["default"]["methods"][other]["cohorts"][0]


def test_attribute_cohorts_p_values_are_null_without_permutations(reports):
    for cohort in reports["nulls"]["methods"]["attribute"]["cohorts"]:
        assert "p_value" in cohort and "p_value_bh" in cohort
        assert cohort["p_value"] is None and cohort["p_value_bh"] is None


def test_nulls_when_intervals_and_tests_are_off(reports):
    for name, method in reports["nulls"]["methods"].items():
        assert method["wer_gap_ci"] == [None, None] and method["bottom_share_ci"] == [None, None], name
        assert method["p_value"] is None
        assert method["wer_gap_pct"] is not None  # point estimates are still computed
        assert method["verdict"] != "disparity"  # never a disparity without a test


def test_intervals_and_p_values_when_on(reports):
    permutations = reports["default"]["parameters"]["permutations"]
    for name, method in reports["default"]["methods"].items():
        lo, hi = method["wer_gap_ci"]
        assert lo is not None and hi is not None and lo <= hi, name
        lo, hi = method["bottom_share_ci"]
        assert 0 <= lo <= hi <= 100, name
        p = method["p_value"]
        assert 1 / (permutations + 1) - TOL <= p <= 1
        # p = (1 + exceedances) / (1 + permutations): a multiple of 1 / (permutations + 1)
        assert math.isclose(p * (permutations + 1), round(p * (permutations + 1)), abs_tol=1e-6)
        alpha = reports["default"]["parameters"]["alpha"]
        assert method["verdict"] == ("disparity" if p < alpha else "no evidence"), name


def test_holdout_figures(reports, frame):
    report = reports["holdout"]
    n = frame.speaker_id.nunique()
    for name, method in report["methods"].items():
        held = method["holdout"]
        assert held is not None, name
        assert method["speakers"] + held["speakers"] == n, name
        assert held["speakers"] == round(0.5 * n)
        # the same cohorts, chosen on discovery, are re-measured on the held-out speakers
        assert held["bottom_cohorts"] == method["bottom_cohorts"] and held["top_cohorts"] == method["top_cohorts"]
        reported = {c["id"] for c in held["cohorts"] if not c["suppressed"]}  # suppressed ones have placeholder ids
        assert reported <= {c["id"] for c in method["cohorts"]}, name
    for method in reports["default"]["methods"].values():
        assert method["holdout"] is None and method["speakers"] == n


# --- 4. determinism ------------------------------------------------------------------------------


def _audit_process(directory: Path, out: str, seed: int, hash_seed: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairaudit.cli",
            "audit",
            "log.csv",
            "--embeddings",
            "log.embeddings.parquet",
            "--by",
            "accent",
            *FAST,
            "--seed",
            str(seed),
            "--json",
            out,
            "-q",
        ],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return (directory / out).read_bytes()


def test_same_input_and_seed_give_identical_json_bytes(synth_600, monkeypatch):
    first = _audit_process(synth_600, "det1.json", 3, "1")
    second = _audit_process(synth_600, "det2.json", 3, "2")
    assert first == second
    monkeypatch.chdir(synth_600)  # same relative input path, so only the seed differs
    run_main(
        "audit",
        "log.csv",
        "--embeddings",
        "log.embeddings.parquet",
        "--by",
        "accent",
        *FAST,
        "--seed",
        4,
        "--json",
        "det3.json",
        "-q",
    )
    third = (synth_600 / "det3.json").read_bytes()
    assert third != first
    a, b = json.loads(first), json.loads(third)
    assert (a["seed"], b["seed"]) == (3, 4) and a["input"] == b["input"]
    assert any(
        a["methods"][m]["wer_gap_ci"] != b["methods"][m]["wer_gap_ci"] for m in METHODS
    )  # not just the seed field


# --- 9. Python API -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_result(log, emb):
    return fairaudit.audit(str(log), embeddings=str(emb), by="accent", bootstrap=100, permutations=20)


def test_api_json_equals_cli_json(api_result, reports, synth_600):
    # ``reports`` writes the CLI's default.json (requested here, so the test also runs alone)
    assert api_result.to_json() == (synth_600 / "default.json").read_text(encoding="utf-8")


def test_api_to_frame_matches_the_json(api_result, reports):
    table = api_result.to_frame()
    report = reports["default"]
    assert set(table["method"]) == set(report["methods"])
    for name, method in report["methods"].items():
        rows = table[table["method"] == name].sort_values("rank")
        assert rows["id"].tolist() == [c["id"] for c in method["cohorts"]], name
        for (_, row), cohort in zip(rows.iterrows(), method["cohorts"]):
            for key in ("rank", "speakers", "utterances", "ref_words", "errors"):
                assert int(row[key]) == cohort[key], (name, cohort["id"], key)
            assert row["wer"] == pytest.approx(cohort["errors"] / cohort["ref_words"], rel=TOL)
            assert row["wer"] == pytest.approx(cohort["wer"], rel=TOL)
            assert bool(row["bottom"]) == (cohort["id"] in method["bottom_cohorts"])
            assert bool(row["top"]) == (cohort["id"] in method["top_cohorts"])
            assert (row["wer_ci_low"], row["wer_ci_high"]) == pytest.approx(tuple(cohort["wer_ci"]), rel=TOL)
            if name == "attribute":
                assert row["p_value_bh"] == pytest.approx(cohort["p_value_bh"], rel=TOL)


def test_api_summary_matches_the_json(api_result, reports):
    lines = api_result.summary().splitlines()
    report = reports["default"]
    assert len(lines) == len(report["methods"])
    for line, (name, method) in zip(lines, report["methods"].items()):
        assert line.startswith(
            f"{name}: {method['verdict']} ({method['verdict_reason']}); WER gap {method['wer_gap_pct']:.1f}%"
        )
        assert f"between {method['bottom']}" in line and f"and {method['top']}" in line
        assert f"bottom-cohort share {method['bottom_share_pct']:.1f}%" in line
        assert f"WER {100 * method['bottom_wer']:.2f}%" in line


def test_api_accepts_a_data_frame(frame, reports):
    """A DataFrame in gives the same cohorts as the file (no path or hash to record)."""
    result = fairaudit.audit(
        placed_by_every_method(frame), methods=["attribute"], by="accent", bootstrap=0, permutations=0
    )
    got = {
        c["id"]: (c["speakers"], c["errors"], c["ref_words"])
        for c in result.to_dict()["methods"]["attribute"]["cohorts"]
    }
    want = {
        c["id"]: (c["speakers"], c["errors"], c["ref_words"])
        for c in reports["nulls"]["methods"]["attribute"]["cohorts"]
    }
    assert got == want
    assert Draft202012Validator(SCHEMA).is_valid(result.to_dict())


# --- input formats (SPEC 2) through the CLI --------------------------------------------------------


def test_every_input_format_gives_the_same_report_figures(frame, tmp_path):
    subset = frame[["speaker_id", "utterance_id", "errors", "ref_words", "accent"]].head(3000)
    paths = {
        "csv": tmp_path / "log.csv",
        "tsv": tmp_path / "log.tsv",
        "csv.gz": tmp_path / "log.csv.gz",
        "parquet": tmp_path / "log.parquet",
    }
    subset.to_csv(paths["csv"], index=False)
    subset.to_csv(paths["tsv"], index=False, sep="\t")
    subset.to_csv(paths["csv.gz"], index=False, compression="gzip")
    subset.to_parquet(paths["parquet"], index=False)
    expected = subset.groupby("accent").agg(errors=("errors", "sum"), ref_words=("ref_words", "sum"))
    figures = {}
    for kind, path in paths.items():
        out = tmp_path / f"{kind}.json"
        run_main(
            "audit",
            path,
            "--by",
            "accent",
            "--min-speakers",
            5,
            "--min-report-speakers",
            0,
            "--bootstrap",
            0,
            "--permutations",
            0,
            "--json",
            out,
            "-q",
        )
        report = json.loads(out.read_text())
        assert report["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest(), kind
        assert (
            report["input"]["utterances"] == len(subset) and report["input"]["speakers"] == subset.speaker_id.nunique()
        )
        method = report["methods"]["attribute"]
        got = {c["id"]: (c["errors"], c["ref_words"]) for c in method["cohorts"]}
        assert got == {a: (int(r.errors), int(r.ref_words)) for a, r in expected.iterrows()}, kind
        figures[kind] = {k: method[k] for k in ("bottom", "top", "wer_gap_pct", "bottom_share_pct", "verdict")}
    assert all(f == figures["csv"] for f in figures.values())
