"""Trust (issue 11): outputs never replace inputs or leave fragments; data strings cannot inject
into the terminal, JUnit XML, CSV or Markdown. Each test is a defect of the previous release."""

from __future__ import annotations

import csv
import hashlib
import os
import resource
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from builders import accent_groups_log
from cli_runner import run_main

import fairaudit
from fairaudit.gate.judge import run_gate
from fairaudit.gate.policy import parse_policy
from fairaudit.render import safe_text
from fairaudit.render.gate_report import gate_markdown, junit_xml
from fairaudit.render.markdown import render_markdown


def small_log(groups=("a", "b"), n=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(n), 5)
    words = rng.integers(3, 10, size=len(speakers))
    group = np.asarray(groups, dtype=object)[speakers % len(groups)]
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in speakers],
            "utterance_id": [f"u{i}" for i in range(len(speakers))],
            "errors": rng.binomial(words, 0.1 + 0.1 * (group == groups[0])),
            "ref_words": words,
            "group": group,
        }
    )


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_output_may_not_replace_the_config_file_just_read(tmp_path, monkeypatch):
    small_log().to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "pyproject.toml").write_text("[tool.fairaudit]\nbootstrap = 0\npermutations = 0\n")
    before = digest(tmp_path / "pyproject.toml")
    monkeypatch.chdir(tmp_path)
    run = run_main("audit", "log.csv", "--by", "group", "--markdown", "pyproject.toml", "-q")
    assert run.code == 2 and "refusing to overwrite" in run.stderr
    assert digest(tmp_path / "pyproject.toml") == before


def test_an_output_may_not_replace_a_hard_link_to_the_log(tmp_path):
    small_log().to_csv(tmp_path / "log.csv", index=False)
    os.link(tmp_path / "log.csv", tmp_path / "h.csv")
    before = digest(tmp_path / "log.csv")
    run = run_main("audit", tmp_path / "log.csv", "--by", "group", "--json", tmp_path / "h.csv", "-q", "--bootstrap", 0)
    assert run.code == 2 and "refusing to overwrite" in run.stderr and digest(tmp_path / "log.csv") == before


def test_outputs_write_into_devices_and_pipes_and_through_symlinks(tmp_path):
    """`--json /dev/null` in a root CI container once replaced the device with a plain file (the
    atomic rename went over it); a named pipe and a symlink were replaced the same way."""
    import threading

    small_log().to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "real.json").write_text("{}")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    os.mkfifo(tmp_path / "pipe.md")
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append((tmp_path / "pipe.md").read_bytes()))
    reader.start()
    run = run_main(
        "audit", tmp_path / "log.csv", "--by", "group", "-q", "--bootstrap", 0, "--permutations", 0,
        "--json", tmp_path / "link.json", "--markdown", tmp_path / "pipe.md", "--html", os.devnull,
    )  # fmt: skip
    reader.join(timeout=60)
    assert run.code == 0, run.stderr
    assert os.path.islink(tmp_path / "link.json") and "methods" in (tmp_path / "real.json").read_text()
    assert stat.S_ISFIFO(os.stat(tmp_path / "pipe.md").st_mode) and b"attribute" in received[0]
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


def test_a_failed_write_keeps_the_previous_report_whole(tmp_path):
    """With a 16 KiB file-size limit, the HTML report cannot be written: the previous good file
    stays as it was (before: a fragment of the limit's size replaced it)."""
    small_log(n=300).to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "report.html").write_text("previous good report\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairaudit.cli",
            "audit",
            "log.csv",
            "--by",
            "group",
            "--html",
            "report.html",
            "-q",
            "--bootstrap",
            "20",
            "--permutations",
            "0",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        preexec_fn=limit,
    )
    assert run.returncode == 2, run.stderr
    assert "report.html" in run.stderr and "Traceback" not in run.stderr
    assert (tmp_path / "report.html").read_text() == "previous good report\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind


HOSTILE = "evil\x1b[2J\x1b]8;;http://x.example\x07link\x1b]8;;\x07\x1b]0;title\x07\x9b31m"


def test_terminal_output_and_errors_carry_no_control_characters(tmp_path):
    frame = small_log(groups=(HOSTILE, "plain"))
    frame.to_csv(tmp_path / "log.csv", index=False)
    run = run_main("audit", tmp_path / "log.csv", "--by", "group", "--bootstrap", 0, "--permutations", 0)
    assert run.code == 0, run.stderr
    assert "evil" in run.stdout and not any(ch in run.stdout for ch in "\x1b\x07\x9b")
    bad = tmp_path / f"missing{HOSTILE}.csv"
    run = run_main("audit", bad)
    assert run.code == 2 and not any(ch in run.stderr for ch in "\x1b\x07\x9b")


def test_junit_xml_parses_when_names_hold_control_characters():
    report = fairaudit.audit(
        small_log(groups=("bad\x01\x0b\x1f name", "ok")), by=["group"], bootstrap=0, permutations=0
    ).to_dict()
    report["methods"] = {"attr\x00ibute": report["methods"]["attribute"]}
    gate = run_gate(report, parse_policy({"max-wer-gap-pct": 1, "on": "point"}, "p"))
    root = ET.fromstring(junit_xml(gate, report))  # raised "not well-formed" before
    assert root.find("testsuite").get("failures") == "1"


def test_assignments_csv_cells_never_start_a_formula(tmp_path):
    frame = small_log(groups=('=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)"), n=200)
    frame["speaker_id"] = "=" + frame["speaker_id"]
    frame.to_csv(tmp_path / "log.csv", index=False)
    run = run_main(
        "audit",
        tmp_path / "log.csv",
        "--by",
        "group",
        "--min-speakers",
        5,
        "--bootstrap",
        0,
        "--permutations",
        0,
        "--assignments",
        tmp_path / "a.csv",
        "-q",
    )
    assert run.code == 0, run.stderr
    with open(tmp_path / "a.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(
        not row[c].startswith(("=", "+", "-", "@")) for row in rows for c in ("speaker_id", "cohort_id", "cohort")
    )
    assert rows[0]["speaker_id"].startswith("'=")


@pytest.mark.parametrize("text", ["a\rb|c", "a\x0bb\x0cc", "R&D <b>", "ping @team", "see https://evil.example/x"])
def test_both_markdown_writers_share_one_escaper_that_neutralises(text):
    frame = small_log(groups=(text, "plain"))
    result = fairaudit.audit(frame, by=["group"], bootstrap=0, permutations=0, min_speakers=5)
    report = result.to_dict()
    audit_md = render_markdown(result)
    gate_md = gate_markdown(run_gate(report, parse_policy({"max-wer-gap-pct": 1, "on": "point"}, "p")), report)
    escaped = safe_text.markdown(text)
    for page in (audit_md, gate_md):
        assert escaped in page
        for line in page.splitlines():
            if line.startswith("|"):
                assert "\r" not in line and "\x0b" not in line and "\x0c" not in line
        assert "@team" not in page and "https://evil" not in page and "R&D" not in page and "<b>" not in page


# --- wrong numbers and crashes on ordinary input (exit 2 with file, line, column and value) ------------------


def write_csv(tmp_path, frame, name="log.csv"):
    frame.to_csv(tmp_path / name, index=False)
    return tmp_path / name


@pytest.mark.parametrize(
    "value, fragment",
    [
        ("1e20", "too large to count exactly"),
        ("9223372036854775807", "too large to count exactly"),
        ("0x10", "not a number"),
        ("1_000", "not a number"),
    ],
)
def test_counts_that_cannot_be_represented_or_are_not_decimal_are_rejected(tmp_path, value, fragment):
    frame = small_log().astype({"errors": object})
    frame.loc[3, "errors"] = value
    path = write_csv(tmp_path, frame)
    before = digest(path)
    run = run_main("validate", path)
    assert run.code == 2 and fragment in run.stderr and "line 5" in run.stderr and "'errors'" in run.stderr, run.stderr
    assert digest(path) == before


def test_per_speaker_sums_that_would_overflow_are_rejected(tmp_path):
    frame = small_log()
    frame["errors"] = 2**52
    frame["ref_words"] = 2**52
    run = run_main("validate", write_csv(tmp_path, frame))
    assert run.code == 2 and "add up to more than" in run.stderr


def test_a_wer_that_no_recogniser_produces_is_rejected(tmp_path):
    frame = small_log().drop(columns=["errors"]).assign(wer=0.1)
    frame.loc[7, "wer"] = 1e300
    run = run_main("validate", write_csv(tmp_path, frame))
    assert run.code == 2 and "wer" in run.stderr and "line 9" in run.stderr


@pytest.mark.parametrize(("scale", "noted"), [(100, True), (1, False)])
def test_a_wer_column_in_percent_is_noted(tmp_path, scale, noted):
    """wer = 25 on a 4-word utterance passes as 100 errors; the overall WER then exceeds 100%,
    which the log's notes point out (a fraction 0.25 gives no note)."""
    frame = small_log().drop(columns=["errors"]).assign(wer=0.25 * scale, ref_words=8)  # 2 errors each
    run = run_main("validate", write_csv(tmp_path, frame))
    assert run.code == 0
    assert ("is the wer column a percentage (25) instead of a fraction (0.25)?" in run.stdout + run.stderr) == noted


def test_parquet_uint64_counts_are_shown_as_they_are(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"speaker_id": ["a", "b"], "errors": pa.array([1, 2**63 + 5], pa.uint64()), "ref_words": [5, 5]}),
        tmp_path / "log.parquet",
    )
    run = run_main("validate", tmp_path / "log.parquet")
    assert run.code == 2 and str(2**63 + 5) in run.stderr and "-922" not in run.stderr


def test_embedding_values_beyond_float32_are_an_error_not_a_missing_embedding(tmp_path):
    frame = small_log()
    path = write_csv(tmp_path, frame)
    speakers = frame["speaker_id"].unique()
    emb = pd.DataFrame({"speaker_id": speakers, "emb_0": np.linspace(0.1, 1, len(speakers)), "emb_1": 1.0})
    emb.loc[4, "emb_0"] = 1e39
    emb.to_csv(tmp_path / "emb.csv", index=False)
    run = run_main("audit", path, "--embeddings", tmp_path / "emb.csv", "--method", "embedding-kmeans", "-q")
    assert run.code == 2 and "float32" in run.stderr and "line 6" in run.stderr


@pytest.mark.parametrize("kind", ["csv-blank", "parquet-text"])
def test_coordinates_stored_as_text_are_read_or_rejected_never_a_crash(tmp_path, kind):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = small_log()
    if kind == "csv-blank":
        frame = frame.assign(latitude=" ", longitude=" ")
        path = write_csv(tmp_path, frame)
    else:
        frame = frame.assign(latitude="30.5", longitude="-90.25")
        path = tmp_path / "log.parquet"
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    run = run_main("audit", path, "--by", "group", "-q", "--bootstrap", 0, "--permutations", 0)
    assert run.code in (0, 2) and "internal error" not in run.stderr, run.stderr


def test_parquet_null_speaker_and_nested_metadata(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 200
    base = {"speaker_id": [f"s{i % 40}" for i in range(n)], "errors": [1] * n, "ref_words": [5] * n}
    pq.write_table(pa.table({**base, "speaker_id": [None] + base["speaker_id"][1:]}), tmp_path / "null.parquet")
    run = run_main("validate", tmp_path / "null.parquet")
    assert run.code == 2 and "speaker_id is empty" in run.stderr and "row 1" in run.stderr
    nested = pa.table(
        {
            **base,
            "struct": pa.array([{"x": i % 2} for i in range(n)]),
            "list": pa.array([[k % 3] for k in range(n)]),
            "bytes": pa.array([b"ab"] * n),
        }
    )
    pq.write_table(nested, tmp_path / "nested.parquet")
    run = run_main(
        "audit",
        tmp_path / "nested.parquet",
        "--by",
        "struct",
        "--min-speakers",
        5,
        "-q",
        "--bootstrap",
        0,
        "--permutations",
        0,
        "--json",
        tmp_path / "n.json",
    )
    assert run.code == 0, run.stderr
    import json

    cohorts = {c["id"] for c in json.loads((tmp_path / "n.json").read_text())["methods"]["attribute"]["cohorts"]}
    assert cohorts == {'{"x": 0}', '{"x": 1}'}


def test_more_clusters_than_speakers_is_insufficient_data(tmp_path):
    frame = small_log(n=12)
    path = write_csv(tmp_path, frame)
    emb = pd.DataFrame({"speaker_id": frame["speaker_id"].unique(), "emb_0": np.linspace(0.1, 1, 12), "emb_1": 0.5})
    emb.to_csv(tmp_path / "emb.csv", index=False)
    for clusters in ("1000", "auto"):
        run = run_main(
            "audit",
            path,
            "--embeddings",
            tmp_path / "emb.csv",
            "--method",
            "embedding-kmeans",
            "--clusters",
            clusters,
            "--json",
            tmp_path / "k.json",
            "-q",
        )
        assert run.code == 0, run.stderr
        import json

        assert (
            json.loads((tmp_path / "k.json").read_text())["methods"]["embedding-kmeans"]["verdict"]
            == "insufficient data"
        )


def test_a_holdout_that_holds_out_nobody_is_a_usage_error(tmp_path):
    run = run_main("audit", write_csv(tmp_path, small_log()), "--by", "group", "--holdout", 0.001, "-q")
    assert run.code == 2 and "--holdout" in run.stderr


@pytest.mark.parametrize(("permutations", "alpha", "warned"), [(10, 0.05, True), (19, 0.05, True), (20, 0.05, False)])
def test_too_few_permutations_to_reach_alpha_are_said(permutations, alpha, warned):
    """With B permutations the smallest p-value is 1 / (B + 1): at B = 10 and alpha 0.05 even a huge
    gap can only be "no evidence", so the verdict and a note say why and what to use instead."""
    log = small_log(n=200).assign(errors=lambda f: np.where(f["group"] == "a", f["errors"] * 4, f["errors"]))
    result = fairaudit.audit(
        log, methods=["attribute"], by=["group"], bootstrap=0, permutations=permutations, alpha=alpha
    )
    method = result.to_dict()["methods"]["attribute"]
    said = f"smallest possible p-value is {1 / (permutations + 1):.3g}"
    assert (said in method["verdict_reason"]) == warned
    assert any(said in note and "use at least 20 permutations" in note for note in result.notes) == warned
    if warned:
        assert method["verdict"] == "no evidence" and method["p_value"] == pytest.approx(1 / (permutations + 1))
    else:
        assert method["verdict"] == "disparity"
    stored = fairaudit.audit(log, cohorts=result.to_dict(), bootstrap=0, permutations=permutations, alpha=alpha)
    assert any(said in note for note in stored.notes) == warned  # measuring stored cohorts says it too
    stored_method = stored.to_dict()["methods"]["attribute"]
    assert (said in stored_method["verdict_reason"]) == warned  # and so does its verdict


def test_many_permutations_run_in_bounded_blocks():
    """100,000 permutations of 300 speakers once needed a 1.1 GB matrix; blocks need a few MB and
    give the same rows as one matrix."""
    from fairaudit.stats.resampling import permutation_blocks, permutation_matrix

    pool = np.ones(300, bool)
    blocks = permutation_blocks(pool, 300, 100_000, np.random.default_rng(3))
    first = next(blocks)
    assert first.shape == (20, 300)
    assert (np.vstack([first, next(blocks)]) == permutation_matrix(pool, 300, 40, np.random.default_rng(3))).all()


def test_file_name_messages_say_what_is_wrong(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    run = run_main("validate", tmp_path / "results[2024].csv")
    assert run.code == 2 and "no such file" in run.stderr and "pattern of many files" not in run.stderr
    pq.write_table(pa.table({"speaker_id": ["a"]}), tmp_path / "actually.csv")
    run = run_main("validate", tmp_path / "actually.csv")
    assert run.code == 2 and "Parquet file" in run.stderr and "rename it to .parquet" in run.stderr


def test_version():
    run = run_main("--version")
    assert run.code == 0 and run.stdout.strip() == f"fairaudit {fairaudit.__version__}"


# --- privacy: nothing suppressed can be recovered from what is published (SPEC 6) ----------------------------


def random_groups_log(seed: int) -> pd.DataFrame:
    """Speakers in groups of random sizes, several under the reporting minimum of 10."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([2, 3, 5, 8, 12, 40, 60, 90], size=rng.integers(3, 8))
    groups = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    speakers = np.arange(len(groups))
    rows = np.repeat(speakers, 4)
    words = rng.integers(2, 12, size=len(rows))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in rows],
            "errors": rng.binomial(words, rng.uniform(0.05, 0.3, len(groups))[rows]),
            "ref_words": words,
            "group": groups[rows],
        }
    )


@pytest.mark.parametrize("seed", range(12))
def test_subtraction_from_published_totals_recovers_no_suppressed_cohort(seed):
    """Attacks on the JSON (the HTML, Markdown and terminal show a subset of it): (1) assigned
    speakers minus the reported cohorts' speakers, (2) the overall WER's errors and words (words
    from any reported cohort's word share) minus the reported cohorts', (3) the top cohort's pooled
    WER minus its reported cells. Each can only ever reveal the union of the suppressed cohorts,
    which must hold at least --min-report-speakers speakers (or be empty)."""
    frame = random_groups_log(seed)
    result = fairaudit.audit(
        frame,
        by=["group"],
        min_speakers=10,
        min_report_speakers=10,
        bootstrap=0,
        permutations=0,
        holdout=0.5 if seed % 2 else None,
        seed=seed,
    )
    true_sizes = frame.groupby("group")["speaker_id"].nunique()
    method = result.to_dict()["methods"]["attribute"]
    for figures in filter(None, [method, method["holdout"]]):
        visible = [c for c in figures["cohorts"] if not c["suppressed"]]
        hidden = [c for c in figures["cohorts"] if c["suppressed"]]
        recovered = figures["assigned_speakers"] - sum(c["speakers"] for c in visible)
        assert recovered == 0 or recovered >= 10, (seed, recovered)
        assert not hidden or recovered >= 10
        if hidden and visible and figures["overall_wer"] is not None:
            words_total = visible[0]["ref_words"] / (visible[0]["word_share_pct"] / 100)
            errors_left = figures["overall_wer"] * words_total - sum(c["errors"] for c in visible)
            words_left = words_total - sum(c["ref_words"] for c in visible)
            # what subtraction yields is the pooled WER of all suppressed speakers together, never one small group
            assert words_left > 0 and errors_left >= -1e-6
        # no suppressed group is named (an attribute cohort's id is its value)
        assert all(c["id"].startswith("suppressed-") for c in hidden)
        assert not {c["id"] for c in hidden} & set(true_sizes.index)
        # a single suppressed group's size never appears as a cohort figure
        if figures["top_wer"] is not None and len(figures["top_cohorts"]) > 1:
            assert all(c in [x["id"] for x in figures["cohorts"]] for c in figures["top_cohorts"])
        # (4) the bottom (and the top, the rest) minus its published cells: what is left of each
        # published union is its suppressed cells, which must hold the minimum or nobody
        if figures["bottom_share_pct"] is not None:
            bottom_speakers = round(figures["bottom_share_pct"] / 100 * figures["assigned_speakers"])
            size = {c["id"]: c["speakers"] for c in visible}
            for union, total in [
                (figures["bottom_cohorts"], bottom_speakers),
                (figures["top_cohorts"], figures["assigned_speakers"] - bottom_speakers),
            ]:
                left = total - sum(size.get(c, 0) for c in union)
                assert left == 0 or left >= 10, (seed, union, left)


def test_a_published_top_minus_its_published_cells_reveals_no_small_group():
    """Groups of 60, 60 and 5 speakers: suppressing the 5 and, as its complement, the worse 60
    (the bottom cohort) let the top (the other 60 and the 5) minus the published 60 give the 5
    speakers' exact errors and words. The complement must come from inside the top."""
    frame = accent_groups_log({"a": (60, 0.12), "b": (60, 0.06), "c": (5, 0.08)})
    method = fairaudit.audit(frame, by=["accent"], bootstrap=0, permutations=0).to_dict()["methods"]["attribute"]
    visible = {c["id"]: c for c in method["cohorts"] if not c["suppressed"]}
    assert method["bottom_cohorts"] == ["a"] and set(visible) == {"a"}
    words_total = visible["a"]["ref_words"] / (visible["a"]["word_share_pct"] / 100)
    top_words = words_total - visible["a"]["ref_words"]
    assert top_words == frame.loc[frame["accent"] != "a", "ref_words"].sum()  # the top is b and c together


def test_python_result_shows_verdicts_in_summary_repr_and_notebooks():
    result = fairaudit.audit(small_log(groups=("<b>x</b>", "y"), n=300), by=["group"], bootstrap=50, permutations=20)
    verdict = result.methods["attribute"].verdict
    assert f"attribute: {verdict}" in result.summary()
    assert len(repr(result)) < 300 and verdict in repr(result)
    html = result._repr_html_()
    assert "<table>" in html and verdict in html and "<b>x</b>" not in html


def test_gate_quiet_still_says_the_outcome(tmp_path):
    report = fairaudit.audit(small_log(), by=["group"], bootstrap=20, permutations=10).to_json()
    (tmp_path / "a.json").write_text(report)
    (tmp_path / "p.toml").write_text("[gate]\nmax-wer-gap-pct = 100000\n")
    run = run_main("gate", tmp_path / "a.json", "--policy", tmp_path / "p.toml", "-q")
    assert run.code == 0 and run.stdout.strip() == "gate: PASS (exit code 0)"


def test_differencing_rule_withholds_nested_groups_that_differ_by_a_handful():
    """Hand-made atoms (ZIP codes holding 200, 3, 57 and 240 speakers): a split whose side is
    another published side plus the 3-speaker ZIP is withheld; one differing by 57 is published."""
    from fairaudit.privacy import DIFFERENCING, SMALL_SIDE, differencing_withheld

    speakers = np.array([200, 3, 57, 240])
    split = lambda *a: [np.isin(np.arange(4), a), ~np.isin(np.arange(4), a)]  # noqa: E731
    reasons = differencing_withheld([split(0), split(0, 1), split(0, 2), split(1)], speakers, 10)
    assert reasons == [None, DIFFERENCING, None, SMALL_SIDE]
    # ZIPs without the attribute (no side): the two sides together differ from all speakers by 3
    assert differencing_withheld([[np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 1], bool)]], speakers, 10) == [
        DIFFERENCING
    ]
    assert differencing_withheld([split(0, 1)], speakers, 0) == [None]


def zip_cluster_log(seed: int) -> pd.DataFrame:
    """Speakers in 60 real ZIP codes holding 1-60 speakers each, so census splits of different
    attributes are often nested and differ by one small ZIP."""
    from fairaudit.geodata.census import builtin_demographics

    rng = np.random.default_rng(seed)
    table = builtin_demographics().dropna()
    zips = table.index.to_series().sample(60, random_state=seed).to_numpy()
    sizes = rng.choice([1, 2, 3, 4, 6, 9, 15, 30, 60], size=len(zips))
    zip_of_speaker = np.repeat(zips, sizes)
    rate = rng.uniform(0.05, 0.3, len(zip_of_speaker))
    rows = np.repeat(np.arange(len(zip_of_speaker)), 3)
    words = rng.integers(3, 15, len(rows))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in rows],
            "zip_code": zip_of_speaker[rows],
            "ref_words": words,
            "errors": rng.binomial(words, rate[rows]),
        }
    )


def published_split_sides(candidate: dict, values: pd.DataFrame) -> list[np.ndarray]:
    """The speaker sets of a published candidate, recomputed here from its rule and the census table."""
    from fairaudit.geodata.census import RACE_COLUMNS

    if candidate["kind"] == "threshold":
        value = values[candidate["attribute"]]
        return [(value <= candidate["value"]).to_numpy(), (value > candidate["value"]).to_numpy()]
    race = values[list(RACE_COLUMNS)]
    majority = race.idxmax(axis=1).map(RACE_COLUMNS)
    return [(majority == candidate["value"]).to_numpy(), (majority != candidate["value"]).to_numpy()]


@pytest.mark.parametrize("seed", range(6))
def test_no_two_published_census_splits_differ_by_a_handful_of_speakers(seed):
    """The attack: every published zip-demographic side, the union of each split's sides and all
    speakers; whenever one holds another (of any attributes), the difference is a group whose errors
    and words are published by subtraction. It must be empty or hold at least 10 speakers. Before
    the fix, sides of different attributes (median_age, income) differed by 1-9 speakers."""
    from fairaudit.geodata.census import builtin_demographics

    frame = zip_cluster_log(seed)
    report = fairaudit.audit(frame, methods=["zip-demographic"], bootstrap=0, permutations=0, min_speakers=10).to_dict()
    speaker_zips = frame.drop_duplicates("speaker_id")["zip_code"]
    values = builtin_demographics().loc[speaker_zips.to_numpy()].reset_index(drop=True)
    candidates = report["methods"]["zip-demographic"]["candidates"]
    groups = [np.ones(len(values), bool)]
    for candidate in candidates:
        if candidate.get("suppressed"):
            assert all(side["errors"] is None and side["speakers"] is None for side in candidate["cohorts"])
            assert candidate["suppressed_reason"]
            continue
        sides = published_split_sides(candidate, values)
        assert [int(side.sum()) for side in sides] == [side["speakers"] for side in candidate["cohorts"]]
        groups += [*sides, sides[0] | sides[1]]
    assert len(groups) > 10  # the attack had material
    matrix = np.array(groups, dtype=np.int64)
    both = matrix @ matrix.T
    size = matrix.sum(axis=1)
    nested = (both == size[:, None]) | (both == size[None, :])
    difference = np.abs(size[:, None] - size[None, :])
    exposed = nested & (difference > 0) & (difference < 10)
    assert not exposed.any(), sorted(set(difference[exposed].tolist()))
    assert any(c["suppressed_reason"] and "differs" in c["suppressed_reason"] for c in candidates)


def assert_no_small_differences(groups: list[np.ndarray], minimum: int = 10) -> None:
    """No published group (speaker mask) holds another plus 1 to minimum-1 more speakers."""
    matrix = np.array(groups, dtype=np.int64)
    both = matrix @ matrix.T
    size = matrix.sum(axis=1)
    nested = (both == size[:, None]) | (both == size[None, :])
    difference = np.abs(size[:, None] - size[None, :])
    exposed = nested & (difference > 0) & (difference < minimum)
    assert not exposed.any(), sorted(set(difference[exposed].tolist()))


@pytest.mark.parametrize("seed", range(8))
def test_two_methods_totals_never_expose_the_few_speakers_one_leaves_unassigned(seed):
    """--by grp assigns every speaker; --by dialect leaves the 1-9 speakers without a dialect
    unassigned. Each method's total is published (bottom and top WER with their word shares), so
    the first minus the second would be exactly those speakers' errors and words; they are left
    out of --by grp too. The attack takes every group whose figures the JSON gives exactly: each
    visible cohort and each method's assigned speakers."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(150, 400))
    speakers = pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in range(n)],
            "grp": rng.choice(["a", "b", "c"], n),
            "dialect": rng.choice(["x", "y", "z", "w"], n),
        }
    )
    missing = int(rng.integers(1, 10))
    speakers.loc[rng.choice(n, missing, replace=False), "dialect"] = None
    frame = speakers.loc[np.repeat(np.arange(n), 3)].reset_index(drop=True)
    frame["ref_words"] = rng.integers(3, 12, len(frame))
    frame["errors"] = rng.binomial(frame["ref_words"], 0.15)
    report = fairaudit.audit(
        frame, by=["grp", "dialect"], bootstrap=0, permutations=0, min_speakers=10, seed=seed
    ).to_dict()
    has_dialect = speakers["dialect"].notna().to_numpy()
    groups = []
    for column in ("grp", "dialect"):
        figures = report["methods"][f"attribute:{column}"]
        # a reader knows which speakers a method could place: those with a value in every column it left out
        for cohort in figures["cohorts"]:
            if not cohort["suppressed"]:
                mask = (speakers[column] == cohort["id"]).to_numpy()
                if column == "grp":
                    mask = mask & has_dialect  # the speakers without a dialect are left out of grp's cohorts too
                groups.append(mask)
                assert mask.sum() == cohort["speakers"]
        groups.append(has_dialect)
        assert figures["assigned_speakers"] == has_dialect.sum()
    assert_no_small_differences(groups)
    assert report["methods"]["attribute:grp"]["unassigned"] == {
        "left out: another method could not place them and there are fewer than --min-report-speakers": missing
    }
    # On held-out speakers (sets unknown to the reader): the two methods' totals are the same speakers.
    held = fairaudit.audit(
        frame, by=["grp", "dialect"], bootstrap=0, permutations=0, min_speakers=10, holdout=0.5, seed=seed
    ).to_dict()
    for part in ("holdout", None):
        sizes = [
            (held["methods"][f"attribute:{c}"][part] if part else held["methods"][f"attribute:{c}"])[
                "assigned_speakers"
            ]
            for c in ("grp", "dialect")
        ]
        assert sizes[0] == sizes[1]


def test_a_coarse_group_minus_its_published_subgroups_reveals_no_suppressed_subgroup():
    """--by grp --by grp,sex: group C minus (C & male) would equal the suppressed (C & female)."""
    rng = np.random.default_rng(5)
    rows = []
    for group, n_male, n_female in (("C", 40, 4), ("D", 50, 45), ("E", 30, 30)):
        for sex, n in (("male", n_male), ("female", n_female)):
            for i in range(n):
                words = rng.integers(3, 10, size=4)
                rows += [(f"{group}{sex}{i}", group, sex, int(rng.binomial(w, 0.1)), int(w)) for w in words]
    frame = pd.DataFrame(rows, columns=["speaker_id", "grp", "sex", "errors", "ref_words"])
    report = fairaudit.audit(frame, by=["grp", "grp,sex"], bootstrap=0, permutations=0, min_speakers=10).to_dict()
    coarse = {c["id"]: c for c in report["methods"]["attribute:grp"]["cohorts"]}
    fine = report["methods"]["attribute:grp,sex"]["cohorts"]
    for group in ("C", "D", "E"):
        published = [c for c in fine if c["id"].startswith(f"{group} & ")]
        if coarse[group]["suppressed"]:
            continue
        hidden = coarse[group]["speakers"] - sum(c["speakers"] for c in published)
        assert hidden == 0 or hidden >= 10, (group, hidden)
    assert not any(c["id"] == "C & male" for c in fine)  # withheld with its suppressed sibling


@pytest.mark.parametrize(
    ("by", "fragment"),
    [
        ("speaker_id", "--by speaker_id: that is an id"),
        ("grup", "needs column 'grup', which the log does not have (its metadata columns: 'group')"),
    ],
)
def test_a_wrong_by_column_says_what_the_log_offers(tmp_path, by, fragment):
    run = run_main("audit", write_csv(tmp_path, small_log()), "--by", by, "-q")
    assert run.code == 2 and fragment in run.stderr


def test_the_id_hint_is_only_for_the_attribute_method(tmp_path):
    """With --by speaker_id and a method that fails for another reason, that reason is what is said."""
    run = run_main("audit", write_csv(tmp_path, small_log()), "-m", "embedding-kmeans", "--by", "speaker_id", "-q")
    assert run.code == 2 and "embeddings" in run.stderr and "that is an id" not in run.stderr


def test_an_unknown_log_extension_lists_every_accepted_form(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("speaker_id,errors,ref_words\ns1,1,5\n")
    run = run_main("validate", path)
    assert run.code == 2 and ".parquet" in run.stderr and "NeMo manifest (.json, .jsonl)" in run.stderr
    assert "Kaldi data directory" in run.stderr and ".trn" in run.stderr


def test_suppressed_cohorts_are_listed_in_an_order_that_reveals_neither_their_wer_nor_their_value():
    """Five small groups (suppressed) whose WER order is not their alphabetical order: every output
    lists them as suppressed-1..5 in that numbered order, after the reported cohorts, and the top
    cohort's list puts them after the reported ids (not where their values would sort)."""
    rng = np.random.default_rng(1)
    rates = {"alpha": 0.10, "delta": 0.12, "mike": 0.08, "zulu": 0.09}
    small = {"bravo": 0.30, "charlie": 0.05, "echo": 0.25, "foxtrot": 0.15, "golf": 0.40}
    rows = [
        (f"{group}{i}", group, int(rng.binomial(200, rate)), 200)
        for group, rate in {**rates, **small}.items()
        for i in range(40 if group in rates else 5)
    ]
    frame = pd.DataFrame(rows, columns=["speaker_id", "accent", "errors", "ref_words"])
    result = fairaudit.audit(frame, by=["accent"], bootstrap=0, permutations=0)
    method = result.to_dict()["methods"]["attribute"]
    numbered = [f"suppressed-{n}" for n in range(1, 6)]
    assert [c["id"] for c in method["cohorts"]][-5:] == numbered
    assert method["top_cohorts"][-5:] == numbered and not any(
        c.startswith("suppressed-") for c in method["top_cohorts"][:-5]
    )
    terminal = result_terminal_text(result)
    assert [terminal.index(n) for n in numbered] == sorted(terminal.index(n) for n in numbered)
    html = result.to_html()
    assert [html.index(n) for n in numbered] == sorted(html.index(n) for n in numbered)


def result_terminal_text(result) -> str:
    """What `fairaudit audit` prints for this result, as plain text."""
    from rich.console import Console

    from fairaudit.render.terminal import print_audit

    console = Console(record=True, width=200, color_system=None)
    print_audit(result, console)
    return console.export_text()


def test_dollar_signs_in_cohort_names_are_drawn_as_text_not_parsed_as_formulas(tmp_path):
    """matplotlib reads $...$ as mathtext: a group named "$\\frac{1}{$" made the HTML report exit 3."""
    frame = small_log(groups=("$\\frac{1}{$", "$x^2$"), n=200)
    frame.to_csv(tmp_path / "log.csv", index=False)
    html = tmp_path / "r.html"
    run = run_main("audit", tmp_path / "log.csv", "--by", "group", "-q", "--html", html, "--bootstrap", 0)
    assert run.code == 0, run.stderr
    assert "$\\frac{1}{$" in (tmp_path / "r.html").read_text()


def test_held_out_figures_never_describe_a_suppressed_cohort(tmp_path):
    """The held-out top cohort's description listed every cell's, naming a 5-speaker group that
    every other part of the report suppressed ("rest: accent = a; accent = b; accent = c")."""
    frame = accent_groups_log({"aa": (60, 0.12), "bb": (60, 0.06), "secretgroup": (5, 0.08)})
    frame.to_csv(tmp_path / "log.csv", index=False)
    outputs = {"--json": tmp_path / "r.json", "--markdown": tmp_path / "r.md", "--html": tmp_path / "r.html"}
    run = run_main(
        "audit", tmp_path / "log.csv", "--by", "accent", "--holdout", 0.5, "--bootstrap", 0, "--permutations", 0,
        *[str(part) for flag, path in outputs.items() for part in (flag, path)],
    )  # fmt: skip
    assert run.code == 0, run.stderr
    for text in [run.stdout, *(path.read_text() for path in outputs.values())]:
        assert "secretgroup" not in text


def test_bidirectional_and_control_characters_never_reach_any_output(tmp_path):
    """A right-to-left override (U+202E) in a group name reorders how the report shows it, and raw
    ESC/BEL reached the HTML and `validate`'s terminal lines (column names, notes)."""
    spoof, ansi = "us\u202etxt.exe", "\x1b[31mred\x07"
    frame = small_log(groups=(spoof, "other"), n=200).rename(columns={"group": ansi})
    frame.to_csv(tmp_path / "log.csv", index=False)
    outputs = {"--json": tmp_path / "r.json", "--markdown": tmp_path / "r.md", "--html": tmp_path / "r.html"}
    run = run_main(
        "audit", tmp_path / "log.csv", "--by", ansi, "--bootstrap", 0,
        *[str(part) for flag, path in outputs.items() for part in (flag, path)],
    )  # fmt: skip
    assert run.code == 0, run.stderr
    shown = [run.stdout, (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()]
    validated = run_main("validate", tmp_path / "log.csv")
    assert validated.code == 0
    for text in [*shown, validated.stdout]:
        assert "\u202e" not in text and "\x1b" not in text and "\x07" not in text
    assert "txt.exe" in shown[2]  # the name is still there, only the override is gone


def test_validate_says_the_wer_is_undefined_without_reference_words(tmp_path):
    (tmp_path / "log.csv").write_text("speaker_id,errors,ref_words\ns1,1,0\ns2,0,0\n")
    run = run_main("validate", tmp_path / "log.csv")
    assert run.code == 0 and "nan" not in run.stdout and "undefined: the log has no reference words" in run.stdout


def test_swapped_latitude_and_longitude_are_noted():
    """US rows with the two columns swapped put speakers in Antarctica (latitude -75..-120 is
    rejected, -60..-90 is not): the audit said nothing and scanned the South Pole."""
    from fairaudit.synth.generator import synthesize

    log = synthesize(300, seed=1).log
    swapped = log.assign(latitude=log["longitude"].clip(-90, 90), longitude=log["latitude"])
    notes = fairaudit.audit(swapped, methods=["geo-tree"], bootstrap=0, permutations=0).notes
    assert any("are the latitude and longitude columns swapped" in note for note in notes)
    clean = fairaudit.audit(log, methods=["geo-tree"], bootstrap=0, permutations=0).notes
    assert not any("swapped" in note for note in clean)


def test_very_long_data_strings_are_shortened_on_the_terminal_and_in_markdown(tmp_path):
    """A 100,000-character group name took 86 s to print (rich lays out long cells in quadratic
    time) and made a 200 kB pull-request comment; the JSON keeps it whole."""
    long = "x" * 100_000
    small_log(groups=(long, "short"), n=200).to_csv(tmp_path / "log.csv", index=False)
    run = run_main(
        "audit", tmp_path / "log.csv", "--by", "group", "--bootstrap", 0, "--permutations", 0,
        "--markdown", tmp_path / "r.md", "--json", tmp_path / "r.json",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    for text in (run.stdout, (tmp_path / "r.md").read_text()):
        assert "more characters" in text and long not in text and len(text) < 20_000
    assert long in (tmp_path / "r.json").read_text()


def test_many_groups_with_few_permutations_say_the_per_group_p_values_cannot_be_significant():
    """25 groups and 200 permutations: the smallest BH-adjusted p of a lone differing group is
    25/201 = 0.124 > 0.05, so the p (BH) column shows nothing significant whatever the data."""
    groups = tuple(f"g{i:02d}" for i in range(25))
    log = small_log(groups=groups, n=1500)
    result = fairaudit.audit(log, by=["group"], bootstrap=0, permutations=200, min_speakers=20)
    assert any("25 / 201 = 0.124" in note and "use at least 500 permutations" in note for note in result.notes)
    enough = fairaudit.audit(log, by=["group"], bootstrap=0, permutations=600, min_speakers=20)
    assert not any("Benjamini-Hochberg" in note for note in enough.notes)


def test_groups_below_the_minimum_are_marked_ineligible_in_the_terminal_and_html():
    """A 13-speaker group sat at rank 2 with no marker: only the JSON said it could not be chosen."""
    log = small_log(groups=("big", "other"), n=200)
    small = small_log(groups=("tiny",), n=13, seed=3).assign(
        speaker_id=lambda f: "t" + f["speaker_id"], utterance_id=lambda f: "t" + f["utterance_id"]
    )
    result = fairaudit.audit(pd.concat([log, small]), by=["group"], bootstrap=0, permutations=0)
    terminal = result_terminal_text(result)
    assert "ineligible" in terminal.split("tiny", 1)[1][:80]  # the role column of its row
    assert '<span class="role ineligible">ineligible</span>' in result.to_html()


def test_a_reporting_minimum_below_the_default_is_noted():
    log = small_log()
    lowered = fairaudit.audit(log, by=["group"], bootstrap=0, permutations=0, min_report_speakers=1).notes
    assert any("--min-report-speakers 1: cohorts of 1 speaker(s) or more are published" in n for n in lowered)
    default = fairaudit.audit(log, by=["group"], bootstrap=0, permutations=0).notes
    assert not any("--min-report-speakers" in n for n in default)


def test_json_to_dev_stdout_redirected_to_a_file_keeps_the_terminal_output_too(tmp_path):
    """`--json /dev/stdout > out.txt` renamed a new file over out.txt (the shell's own output was lost)."""
    small_log().to_csv(tmp_path / "log.csv", index=False)
    with open(tmp_path / "out.txt", "w") as out:
        run = subprocess.run(
            [sys.executable, "-m", "fairaudit.cli", "audit", str(tmp_path / "log.csv"), "--by", "group",
             "--bootstrap", "0", "--permutations", "0", "--json", "/dev/stdout"],
            stdout=out, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    assert run.returncode == 0, run.stderr
    text = (tmp_path / "out.txt").read_text()
    assert text.startswith("{") and '"fairaudit_version"' in text and "verdict:" in text


def test_nested_by_specs_never_let_the_bottom_and_a_coarse_group_reveal_a_small_group():
    """--by accent and --by accent,sex with A&F 40, A&M 5, B&F 60, B&M 60 speakers: the fine method's
    bottom cohort (A&F, suppressed as A&M's complement) still published its WER and word share, and A
    (published by the coarse method) minus it gave A&M's exact errors and words."""
    frame = pd.concat(
        [
            accent_groups_log({"A": (40, 0.2)}, seed=1).assign(sex="F"),
            accent_groups_log({"A": (5, 0.1)}, seed=2).assign(sex="M", speaker_id=lambda f: "m" + f["speaker_id"]),
            accent_groups_log({"B": (60, 0.08)}, seed=3).assign(sex="F"),
            accent_groups_log({"B": (60, 0.08)}, seed=4).assign(sex="M", speaker_id=lambda f: "m" + f["speaker_id"]),
        ]
    )
    methods = fairaudit.audit(frame, by=["accent", "accent,sex"], bootstrap=0, permutations=50).to_dict()["methods"]
    coarse, fine = methods["attribute:accent"], methods["attribute:accent,sex"]
    a = next(c for c in coarse["cohorts"] if c["id"] == "A")
    assert a["speakers"] == 45  # the coarse group is published
    small = frame[(frame["accent"] == "A") & (frame["sex"] == "M")]
    if fine["bottom_wer"] is not None and fine["bottom_word_share_pct"] is not None:
        total_words = frame["ref_words"].sum()
        bottom_words = fine["bottom_word_share_pct"] / 100 * total_words
        left_words = a["ref_words"] - bottom_words
        assert abs(left_words - small["ref_words"].sum()) > 0.5  # A minus the bottom is not A&M
    assert "withheld" in fine["verdict_reason"] or fine["bottom_cohorts"] != ["suppressed-1"]


def test_speakers_left_out_for_another_methods_sake_are_noted():
    """--by accent and --by gender: 4 speakers without a gender were also left out of the accent
    method (privacy), which changed its figures with only an unassigned-reason to say why."""
    frame = accent_groups_log({"a": (60, 0.12), "b": (60, 0.06)}).assign(gender="f")
    frame.loc[frame.index[:4], "gender"] = None
    result = fairaudit.audit(frame, by=["accent", "gender"], bootstrap=0, permutations=0)
    assert any(
        note.startswith("attribute:accent: 4 speaker(s) left out because another method") for note in result.notes
    ), result.notes
