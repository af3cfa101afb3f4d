"""End-to-end tests of the ``fairaudit`` command line (SPEC 2, 6, 7).

Exit codes and "no traceback" are checked through the real console entry point
``fairaudit.cli:main``: in a child process (``python -m fairaudit.cli`` and the installed
``fairaudit`` script) for a sample of cases, and in-process (``main()`` with ``sys.argv`` set,
catching its ``SystemExit``) for the long tables, because each child process pays ~1.5 s of
imports. Expected values are computed here from the input files, never copied from the output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import Run, run_main  # noqa: F401  (shared in-process CLI runner)

REPO = Path(__file__).resolve().parents[2]
FAST = ["--bootstrap", "100", "--permutations", "20"]
OFF = ["--bootstrap", "0", "--permutations", "0"]
METHODS = ["geo-tree", "geo-scan", "zip-demographic", "embedding-kmeans", "attribute"]  # report order


def run_process(*args: object, cwd: Path | None = None, env: dict | None = None, script: bool = False) -> Run:
    """Run the CLI in a child process: ``python -m fairaudit.cli`` or the installed ``fairaudit`` script."""
    installed = Path(sys.executable).parent / "fairaudit"
    command = [str(installed)] if script and installed.exists() else [sys.executable, "-m", "fairaudit.cli"]
    full_env = {**os.environ, "COLUMNS": "80", **(env or {})}
    full_env.pop("FAIRAUDIT_DEBUG", None)
    done = subprocess.run(
        command + [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )
    return Run(done.returncode, done.stdout, done.stderr)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def flat(text: str) -> str:
    """Terminal text with rich's line wrapping undone (every run of whitespace -> one space)."""
    return " ".join(text.split())


# --- 1. bad input: exit 2, one line naming file/line/column/value, input unchanged ------------------

HEADER = "speaker_id,utterance_id,errors,ref_words"
GOOD_LOG = f"{HEADER}\na,u1,1,5\nb,u2,0,3\na,u3,2,4\n"


def _parquet_mixed_dimension(path: Path) -> None:
    pq.write_table(pa.table({"speaker_id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0]]}), path)


# id, log text (str/bytes), embeddings (name, text or writer) or None, expected (line, column, value), message words
BAD_INPUTS = [
    (
        "missing-speaker-column",
        "client_id,errors,ref_words\na,0,1\n",
        None,
        (None, "speaker_id", None),
        ["--column speaker_id="],
    ),
    (
        "missing-error-columns",
        "speaker_id,errors,accent\na,0,us\n",
        None,
        (None, "ref_words", None),
        ["wer + ref_words", "reference + hypothesis"],
    ),
    (
        "forms-disagree",
        "speaker_id,errors,ref_words,reference,hypothesis\na,1,3,the cat sat,the cat sat down\nb,1,3,a b c,a b c\n",
        None,
        (3, "errors", "1"),
        ["disagree", "gives 0 errors"],
    ),
    (
        "sdi-disagrees-with-errors",
        "speaker_id,errors,substitutions,deletions,insertions,ref_words\na,2,1,1,0,5\nb,2,1,0,0,5\n",
        None,
        (3, "errors", "2"),
        ["substitutions=1"],
    ),
    ("non-numeric-count", f"{HEADER}\na,u1,1,5\nb,u2,x,3\n", None, (3, "errors", "x"), ["not a number"]),
    ("negative-count", f"{HEADER}\na,u1,1,5\nb,u2,0,3\nc,u3,-3,4\n", None, (4, "errors", "-3"), ["negative"]),
    ("nan-count", f"{HEADER}\na,u1,1,5\nb,u2,nan,3\n", None, (3, "errors", "nan"), ["missing"]),
    ("negative-ref-words", f"{HEADER}\na,u1,1,5\nb,u2,0,-1\n", None, (3, "ref_words", "-1"), ["negative"]),
    ("fractional-count", f"{HEADER}\na,u1,1.5,5\n", None, (2, "errors", "1.5"), ["whole number"]),
    (
        "latitude-out-of-range",
        f"{HEADER},latitude,longitude\na,u1,0,1,10,10\nb,u2,0,1,91,0\n",
        None,
        (3, "latitude", "91"),
        ["-90", "90"],
    ),
    (
        "longitude-out-of-range",
        f"{HEADER},latitude,longitude\na,u1,0,1,10,10\nb,u2,0,1,10,-180.5\n",
        None,
        (3, "longitude", "-180.5"),
        ["180"],
    ),
    (
        "zip-with-letter",
        f"{HEADER},zip_code\na,u1,0,1,02134\nb,u2,0,1,1234a\n",
        None,
        (3, "zip_code", "1234a"),
        ["ZIP"],
    ),
    (
        "zip-six-digits",
        f"{HEADER},zip_code\na,u1,0,1,02134\nb,u2,0,1,123456\n",
        None,
        (3, "zip_code", "123456"),
        ["ZIP"],
    ),
    (
        "zip-plus-three",
        f"{HEADER},zip_code\na,u1,0,1,02134\nb,u2,0,1,12345-678\n",
        None,
        (3, "zip_code", "12345-678"),
        ["ZIP"],
    ),
    (
        "duplicate-utterance-ids",
        f"{HEADER}\na,u1,0,1\nb,u2,0,1\nc,u1,0,1\n",
        None,
        (4, "utterance_id", "u1"),
        ["line 2"],
    ),
    ("empty-file", b"", None, (None, None, None), ["empty"]),
    ("header-only", f"{HEADER}\n", None, (None, None, None), ["no data rows"]),
    (
        "undecodable-bytes",
        (f"{HEADER}\na,u1,0,1\nb\xe9,u2,0,1\n").encode("latin-1"),
        None,
        (3, "speaker_id", None),
        ["UTF-8", "value b'\\xe9'"],
    ),
    (
        "ragged-row-long",
        f"{HEADER}\na,u1,0,1\nb,u2,0,1,9\nc,u3,0,1\n",
        None,
        (3, None, "b,u2,0,1,9"),
        ["5 field(s)", "header has 4"],
    ),
    ("ragged-row-short", f"{HEADER}\na,u1,0,1\nb,u2,0\n", None, (3, None, "b,u2,0"), ["3 field(s)"]),
    ("inline-embedding-nan", "speaker_id,errors,ref_words,emb_0,emb_1\na,0,1,1.0,nan\n", None, (2, "emb_1", "nan"), []),
    (
        "inline-embedding-all-zero",
        "speaker_id,errors,ref_words,emb_0,emb_1\na,0,1,1.0,0.5\nb,0,1,0,0.0\n",
        None,
        (3, "emb_0", "0"),
        ["zero"],
    ),
    (
        "embeddings-mixed-dimension-csv",
        GOOD_LOG,
        ("emb.csv", "speaker_id,emb_0,emb_1\na,1,2\nb,3,\n"),
        (3, "emb_1", ""),
        [],
    ),
    (
        "embeddings-mixed-dimension-parquet",
        GOOD_LOG,
        ("emb.parquet", _parquet_mixed_dimension),
        (2, "embedding", None),
        ["dimension", "value 1"],
    ),
    ("embeddings-nan", GOOD_LOG, ("emb.csv", "speaker_id,emb_0,emb_1\na,1,2\nb,nan,1\n"), (3, "emb_0", "nan"), []),
    (
        "embeddings-inf",
        GOOD_LOG,
        ("emb.csv", "speaker_id,emb_0,emb_1\na,1,2\nb,inf,1\n"),
        (3, "emb_0", "inf"),
        ["infinite"],
    ),
    (
        "embeddings-all-zero",
        GOOD_LOG,
        ("emb.csv", "speaker_id,emb_0,emb_1\na,1,2\nb,0,0\n"),
        (3, "emb_0", "0"),
        ["zero"],
    ),
    (
        "embeddings-duplicate-ids",
        GOOD_LOG,
        ("emb.csv", "speaker_id,emb_0\na,1\nb,1\na,2\n"),
        (4, "speaker_id", "a"),
        [],
    ),
]


def _write_case(tmp_path: Path, text, embeddings) -> tuple[Path, Path | None]:
    log_path = tmp_path / "log.csv"
    log_path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    emb_path = None
    if embeddings is not None:
        name, content = embeddings
        emb_path = tmp_path / name
        if callable(content):
            content(emb_path)
        else:
            emb_path.write_text(content, encoding="utf-8")
    return log_path, emb_path


def assert_one_line_error(run: Run, *must_contain: str) -> str:
    """Exit 2, stderr exactly one line starting 'error:', no traceback, nothing on stdout."""
    assert run.code == 2, (run.code, run.stderr)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in must_contain:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@pytest.mark.parametrize("command", ["audit", "validate"])
@pytest.mark.parametrize("case, text, embeddings, where, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_exits_2_with_one_located_line(tmp_path, command, case, text, embeddings, where, words):
    log_path, emb_path = _write_case(tmp_path, text, embeddings)
    inputs = [p for p in (log_path, emb_path) if p is not None]
    before = {p: sha256(p) for p in inputs}
    args = [command, log_path]
    if emb_path is not None:
        args += ["--embeddings", emb_path]
    if command == "audit":
        args += ["--by", "speaker_id", "--json", tmp_path / "out.json", "--assignments", tmp_path / "out.csv", *OFF]
    run = run_main(*args)
    line, column, value = where
    bad_file = emb_path if emb_path is not None else log_path
    message = assert_one_line_error(run, f"file {bad_file}", *words)
    location = message.split(": ")[1]  # "file F, line L, column 'C', value 'V'"
    if line is not None:
        assert f"line {line}" in location.split(", ")
    else:
        assert "line" not in location
    if column is not None:
        assert f"column {column!r}" in message
    if value is not None:
        assert f"value {value!r}" in message
    assert {p: sha256(p) for p in inputs} == before  # inputs byte-identical
    assert not (tmp_path / "out.json").exists() and not (tmp_path / "out.csv").exists()


def test_bad_input_in_a_child_process(tmp_path):
    """The process-level contract through ``python -m fairaudit.cli``: exit 2, one line, no traceback."""
    log_path = tmp_path / "log.csv"
    log_path.write_text(f"{HEADER}\na,u1,1,5\nb,u2,nan,3\n", encoding="utf-8")
    before = sha256(log_path)
    run = run_process("audit", log_path, "--by", "speaker_id")
    assert_one_line_error(run, f"file {log_path}", "line 3", "column 'errors'", "value 'nan'")
    assert sha256(log_path) == before


def test_missing_log_file(tmp_path):
    assert_one_line_error(run_main("audit", tmp_path / "nope.csv"), "nope.csv")


# --- 1b. usage errors ----------------------------------------------------------------------------

USAGE_ERRORS = [
    ("unknown-method", ["--method", "nope"], ["'nope'", "geo-tree"]),
    ("bottom-share-2", ["--bottom-share", "2"], ["--bottom-share"]),
    ("bottom-share-0", ["--bottom-share", "0"], ["--bottom-share"]),
    ("top-worst", ["--top", "worst"], ["--top"]),
    ("holdout-1", ["--holdout", "1"], ["--holdout"]),
    ("negative-bootstrap", ["--bootstrap", "-1"], ["--bootstrap"]),
    ("negative-seed", ["--seed", "-1"], ["--seed"]),
    ("unknown-normalisation", ["--normalize", "loud"], ["'loud'"]),
    ("missing-embeddings-file", ["--embeddings", "{dir}/nope.parquet"], ["nope.parquet"]),
    ("missing-demographics-file", ["--demographics", "{dir}/nope.csv"], ["nope.csv"]),
    ("by-missing-column", ["--by", "no_such_column"], ["no_such_column"]),
    ("by-intersection-missing-column", ["--by", "accent,no_such_column"], ["no_such_column"]),
    ("column-without-equals", ["--column", "speaker_id"], ["canonical=actual", "'speaker_id'"]),
    ("column-to-absent-column", ["--column", "speaker_id=client_id"], ["client_id"]),
    ("attribute-without-by", ["--method", "attribute"], ["--by"]),
    ("method-without-its-columns", ["--method", "geo-tree"], ["geo-tree", "latitude"]),
    ("method-without-embeddings", ["--method", "embedding-kmeans"], ["embedding-kmeans"]),
    ("json-onto-input", ["--json", "{log}"], ["refusing to overwrite"]),
    ("json-onto-input-other-spelling", ["--json", "{dir}/./sub/../log.csv"], ["refusing to overwrite"]),
    ("assignments-onto-input", ["--assignments", "{log}"], ["refusing to overwrite"]),
    ("json-in-missing-directory", ["--json", "{dir}/no/such/dir/out.json"], ["does not exist"]),
    ("json-and-assignments-same-file", ["--json", "{dir}/out", "--assignments", "{dir}/out"], ["same file"]),
]


@pytest.fixture()
def small_log(tmp_path) -> Path:
    """A tiny valid log with an accent column and no coordinates, ZIPs or embeddings."""
    (tmp_path / "sub").mkdir()
    rows = [f"s{k},u{k},{k % 3},{5 + k % 4},{['us', 'in', 'uk'][k % 3]}" for k in range(60)]
    path = tmp_path / "log.csv"
    path.write_text(f"{HEADER},accent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("case, extra, words", USAGE_ERRORS, ids=[c[0] for c in USAGE_ERRORS])
def test_usage_errors_exit_2(small_log, case, extra, words):
    before = sha256(small_log)
    args = [a.format(log=small_log, dir=small_log.parent) for a in extra]
    if "--method" not in extra and "--by" not in extra:
        args += ["--by", "accent"]
    run = run_main("audit", small_log, *OFF, *args)  # the case's options come last and win
    assert_one_line_error(run, *words)
    assert sha256(small_log) == before
    assert not (small_log.parent / "out").exists()


@pytest.mark.parametrize(
    "args", [["--min-speakers", "abc"], ["--no-such-option"], []], ids=["bad-int", "unknown-option", "no-log"]
)
def test_click_usage_errors_exit_2(small_log, args):
    """Errors found by the option parser itself: exit 2 with click's message, never 'internal error'."""
    run = run_main("audit", *([small_log] if args else []), *args)
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert "Error:" in run.stderr


def test_usage_errors_in_a_child_process(small_log):
    run = run_process("audit", small_log, "--top", "worst")
    assert_one_line_error(run, "--top")
    run = run_process("audit", small_log, "--min-speakers", "abc")
    assert run.code == 2 and "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert "--min-speakers" in run.stderr


def test_closed_stdout_keeps_the_files_and_exit_0(small_log, tmp_path):
    """`fairaudit audit LOG --json F | head`: the report is still written; no traceback, not exit 1."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fairaudit.cli",
            "audit",
            str(small_log),
            "--by",
            "accent",
            *OFF,
            "--min-speakers",
            "5",
            "--json",
            str(tmp_path / "r.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # the reader goes away before anything is printed
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0, stderr
    assert "Traceback" not in stderr and "error" not in stderr
    assert json.loads((tmp_path / "r.json").read_text())["methods"]["attribute"]["cohorts"]


def test_no_arguments_prints_help_and_exits_2():
    run = run_process(script=True)
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr
    assert "audit" in run.stdout + run.stderr and "synth" in run.stdout + run.stderr


def test_help_exits_0():
    run = run_main("audit", "--help")
    assert run.code == 0 and "--bottom-share" in run.stdout and run.stderr == ""


@pytest.mark.parametrize(
    "command, usage",
    [
        ("audit", "LOG"),
        ("validate", "LOG"),
        ("score", "LOG"),
        ("compare", "BASELINE_LOG NEW_LOG"),
        ("gate", "LOG_OR_AUDIT_JSON"),
    ],
)
def test_help_names_arguments_plainly_and_types_every_log_a_path(command, usage):
    """Usage reads `LOG`, not typer's `{LOG}`; every log argument is `<path>` (audit's was `<str>`)."""
    run = run_main(command, "--help")
    assert run.code == 0, run.stderr
    assert f" {command} [OPTIONS] {usage}\n" in run.stdout
    assert "{" not in run.stdout.splitlines()[0]
    for name in usage.split():
        assert f"{name} <path>" in run.stdout


# --- 2. too few speakers -> "insufficient data", exit 0 --------------------------------------------


def test_too_few_speakers_gives_insufficient_data(tmp_path):
    assert run_main("synth", "-o", tmp_path / "small.csv", "--speakers", 20, "--seed", 1).code == 0
    frame = pd.read_csv(tmp_path / "small.csv", dtype={"speaker_id": str})
    assert frame.speaker_id.nunique() == 20
    run = run_main(
        "audit",
        tmp_path / "small.csv",
        "--embeddings",
        tmp_path / "small.embeddings.parquet",
        "--by",
        "accent",
        "--json",
        tmp_path / "out.json",
        *FAST,
    )
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert sorted(report["methods"]) == sorted(METHODS)
    for name, method in report["methods"].items():
        assert method["verdict"] == "insufficient data", name
        assert method["wer_gap_pct"] is None and method["bottom"] is None and method["p_value"] is None
        assert "insufficient data" in flat(run.stdout)


def test_min_speakers_above_the_cohort_sizes_gives_insufficient_data(log, frame, tmp_path):
    biggest = frame.groupby("accent").speaker_id.nunique().max()
    run = run_main(
        "audit", log, "--by", "accent", "--min-speakers", biggest + 1, "--json", tmp_path / "out.json", *OFF, "-q"
    )
    assert run.code == 0, run.stderr
    method = json.loads((tmp_path / "out.json").read_text())["methods"]["attribute"]
    assert method["verdict"] == "insufficient data"
    assert all(not c["eligible"] for c in method["cohorts"])


# --- 5. --assignments ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def assignments_run(log, emb, tmp_path_factory):
    out = tmp_path_factory.mktemp("assign")
    run = run_main(
        "audit",
        log,
        "--embeddings",
        emb,
        "--by",
        "accent",
        "--json",
        out / "a.json",
        "--assignments",
        out / "a.csv",
        *FAST,
        "-q",
    )
    assert run.code == 0, run.stderr
    return json.loads((out / "a.json").read_text()), out / "a.csv"


def test_assignments_csv(assignments_run, frame):
    report, path = assignments_run
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "method,speaker_id,cohort_id,cohort,bottom"
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert list(table.columns) == ["method", "speaker_id", "cohort_id", "cohort", "bottom"]
    assert set(table.bottom) == {"true", "false"}
    assert set(table.method) == set(report["methods"]) == set(METHODS)
    all_speakers = set(frame.speaker_id)
    for name, method in report["methods"].items():
        rows = table[table.method == name]
        assert rows.speaker_id.is_unique and set(rows.speaker_id) == all_speakers, name
        marked = set(rows.loc[rows.bottom == "true", "speaker_id"])
        in_bottom = set(rows.loc[rows.cohort_id.isin(method["bottom_cohorts"]), "speaker_id"])
        assert marked and marked == in_bottom, name
        bottom_size = sum(c["speakers"] for c in method["cohorts"] if c["id"] in method["bottom_cohorts"])
        assert len(marked) == bottom_size, name
        # every cohort's speaker count in the JSON is the number of rows assigned to it
        counts = rows.cohort_id.value_counts()
        for cohort in method["cohorts"]:
            assert counts.get(cohort["id"], 0) == cohort["speakers"], (name, cohort["id"])
        unassigned = rows[~rows.cohort_id.isin([c["id"] for c in method["cohorts"]])]
        assert len(unassigned) == sum(method["unassigned"].values()), name
        assert (unassigned.bottom == "false").all()


def test_assignments_attribute_cohort_is_the_speakers_accent(assignments_run, frame):
    _, path = assignments_run
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    report, _ = assignments_run
    rows = table[table.method == "attribute"].set_index("speaker_id")
    accent = frame.groupby("speaker_id").accent.first()
    assert frame.groupby("speaker_id").accent.nunique().max() == 1
    placed = rows.cohort_id.reindex(accent.index)
    # speakers another method could not place are left out when there are fewer than 10 (SPEC 6)
    left_out = placed == ""
    assert left_out.sum() == sum(report["methods"]["attribute"]["unassigned"].values()) < 10
    assert (placed[~left_out] == accent[~left_out]).all()


def test_assignments_geo_tree_unassigned_are_speakers_without_coordinates(assignments_run, frame):
    report, path = assignments_run
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    rows = table[table.method == "geo-tree"]
    no_coords = set(frame.loc[frame.latitude.isna() | frame.longitude.isna(), "speaker_id"]) - set(
        frame.loc[frame.latitude.notna() & frame.longitude.notna(), "speaker_id"]
    )
    assert set(rows.loc[rows.cohort_id == "", "speaker_id"]) == no_coords
    assert sum(report["methods"]["geo-tree"]["unassigned"].values()) == len(no_coords)


def test_assignments_with_holdout_cover_every_speaker(log, frame, tmp_path):
    run = run_main(
        "audit",
        log,
        "--by",
        "accent",
        "--holdout",
        0.5,
        "--json",
        tmp_path / "h.json",
        "--assignments",
        tmp_path / "h.csv",
        *OFF,
        "-q",
    )
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "h.json").read_text())
    table = pd.read_csv(tmp_path / "h.csv", dtype=str, keep_default_na=False)
    for name, method in report["methods"].items():
        rows = table[table.method == name]
        assert rows.speaker_id.is_unique and set(rows.speaker_id) == set(frame.speaker_id)
        marked = set(rows.loc[rows.bottom == "true", "speaker_id"])
        assert marked == set(rows.loc[rows.cohort_id.isin(method["bottom_cohorts"]), "speaker_id"])


# --- 6. validate, score, schema, synth -----------------------------------------------------------


def test_validate_prints_a_summary(log, frame):
    run = run_main("validate", log)
    assert run.code == 0, run.stderr
    text = flat(run.stdout)
    assert "valid" in text
    assert f"{len(frame):,} utterances" in text
    assert f"{frame.speaker_id.nunique():,} speakers" in text
    assert f"{100 * frame.errors.sum() / frame.ref_words.sum():.2f}%" in text
    for column in ("gender", "accent", "device"):
        assert column in text


SCORE_ROWS = [
    # reference, hypothesis, S, D, I, ref_words (default normalisation, counted by hand)
    ("The cat sat.", "the cat sat down", 0, 0, 1, 3),
    ("a b c", "a x c", 1, 0, 0, 3),
    ("Hello, world!", "", 0, 2, 0, 2),
    ("", "uh huh", 0, 0, 2, 0),
    ("one two three four", "one three four", 0, 1, 0, 4),
    ("Don't stop", "dont stop", 0, 0, 0, 2),
    ("x y z", "z y x", 2, 0, 0, 3),
]


def _text_log(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "speaker_id": [f"s{k % 3}" for k in range(len(SCORE_ROWS))],
            "utterance_id": [f"u{k}" for k in range(len(SCORE_ROWS))],
            "reference": [r[0] for r in SCORE_ROWS],
            "hypothesis": [r[1] for r in SCORE_ROWS],
        }
    )
    path = tmp_path / "text.csv"
    frame.to_csv(path, index=False)
    return path


def test_score_writes_hand_checked_counts(tmp_path):
    source = _text_log(tmp_path)
    before = sha256(source)
    run = run_main("score", source, "-o", tmp_path / "scored.csv")
    assert run.code == 0, run.stderr
    scored = pd.read_csv(tmp_path / "scored.csv", keep_default_na=False, dtype={"reference": str, "hypothesis": str})
    assert scored.substitutions.tolist() == [r[2] for r in SCORE_ROWS]
    assert scored.deletions.tolist() == [r[3] for r in SCORE_ROWS]
    assert scored.insertions.tolist() == [r[4] for r in SCORE_ROWS]
    assert scored.ref_words.tolist() == [r[5] for r in SCORE_ROWS]
    assert scored.errors.tolist() == [r[2] + r[3] + r[4] for r in SCORE_ROWS]
    assert scored.reference.tolist() == [r[0] for r in SCORE_ROWS]  # text kept verbatim
    assert scored.utterance_id.tolist() == [f"u{k}" for k in range(len(SCORE_ROWS))]
    assert sha256(source) == before
    # the scored log is itself a valid log whose totals are the hand counts
    run = run_main("validate", tmp_path / "scored.csv")
    assert run.code == 0, run.stderr
    total_errors = sum(r[2] + r[3] + r[4] for r in SCORE_ROWS)
    assert f"{total_errors:,} errors / {sum(r[5] for r in SCORE_ROWS):,} reference words" in flat(run.stdout)


def test_score_normalize_none_counts_case_and_punctuation(tmp_path):
    source = _text_log(tmp_path)
    assert run_main("score", source, "-o", tmp_path / "raw.csv", "--normalize", "none").code == 0
    scored = pd.read_csv(tmp_path / "raw.csv")
    # "The cat sat." vs "the cat sat down": The/the and sat./sat differ -> 2 S + 1 I
    assert (scored.substitutions[0], scored.insertions[0]) == (2, 1)
    # "Don't stop" vs "dont stop": one substitution
    assert (scored.substitutions[5], scored.errors[5]) == (1, 1)


def test_score_refuses_to_overwrite_its_input(tmp_path):
    source = _text_log(tmp_path)
    before = sha256(source)
    assert_one_line_error(run_main("score", source, "-o", source), "refusing to overwrite")
    assert sha256(source) == before


def test_schema_prints_the_file():
    run = run_main("schema", "audit_report")
    assert run.code == 0, run.stderr
    printed = json.loads(run.stdout)
    assert printed == json.loads((REPO / "data_schemas" / "audit_report.schema.json").read_text(encoding="utf-8"))
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(printed)


def test_unknown_schema_exits_2_through_the_installed_script():
    run = run_process("schema", "nope", script=True)
    assert_one_line_error(run, "'nope'", "audit_report")


def test_synth_same_seed_writes_identical_bytes(synth_600, tmp_path):
    """Same seed, a different process and hash seed: byte-identical log, embeddings and truth."""
    run = run_process("synth", "-o", tmp_path / "log.csv", "--speakers", 600, "--seed", 1, env={"PYTHONHASHSEED": "2"})
    assert run.code == 0, run.stderr
    for name in ("log.csv", "log.embeddings.parquet", "log.truth.json"):
        assert (tmp_path / name).read_bytes() == (synth_600 / name).read_bytes(), name
    assert run_main("synth", "-o", tmp_path / "other.csv", "--speakers", 600, "--seed", 2).code == 0
    assert (tmp_path / "other.csv").read_bytes() != (synth_600 / "log.csv").read_bytes()


# --- 7. configuration files ----------------------------------------------------------------------

CONFIG_AUDIT = ["--by", "accent", "--method", "attribute", *OFF, "-q"]


def _min_speakers(path: Path) -> int:
    return json.loads(path.read_text(encoding="utf-8"))["parameters"]["min_speakers"]


def test_fairaudit_toml_in_the_working_directory(log, tmp_path):
    (tmp_path / "fairaudit.toml").write_text("min-speakers = 50\n", encoding="utf-8")
    run = run_process("audit", log, *CONFIG_AUDIT, "--json", "out.json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    assert _min_speakers(tmp_path / "out.json") == 50


def test_command_line_wins_over_the_config(log, tmp_path, monkeypatch):
    (tmp_path / "fairaudit.toml").write_text("min-speakers = 50\nseed = 7\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_main("audit", log, *CONFIG_AUDIT, "--json", "out.json", "--min-speakers", 40).code == 0
    report = json.loads((tmp_path / "out.json").read_text())
    assert report["parameters"]["min_speakers"] == 40
    assert report["seed"] == 7 and report["parameters"]["seed"] == 7  # the rest of the file still applies


def test_pyproject_tool_fairaudit(log, tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.fairaudit]\nmin-speakers = 50\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert run_main("audit", log, *CONFIG_AUDIT, "--json", "out.json").code == 0
    assert _min_speakers(tmp_path / "out.json") == 50
    assert run_main("audit", log, *CONFIG_AUDIT, "--json", "out.json", "--min-speakers", 40).code == 0
    assert _min_speakers(tmp_path / "out.json") == 40


def test_audit_table_overrides_top_level(log, tmp_path, monkeypatch):
    (tmp_path / "fairaudit.toml").write_text("min-speakers = 50\n[audit]\nmin_speakers = 45\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run_main("audit", log, *CONFIG_AUDIT, "--json", "out.json").code == 0
    assert _min_speakers(tmp_path / "out.json") == 45


def test_config_column_renames_apply(tmp_path, monkeypatch):
    (tmp_path / "log.csv").write_text(
        "client,errs,words,accent\n" + "\n".join(f"c{k},{k % 2},4,{'us' if k % 2 else 'in'}" for k in range(40)) + "\n",
        encoding="utf-8",
    )
    (tmp_path / "fairaudit.toml").write_text(
        '[columns]\nspeaker_id = "client"\nerrors = "errs"\nref_words = "words"\n', encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    run = run_main("audit", "log.csv", "--by", "accent", *OFF, "--min-speakers", 5, "--json", "out.json", "-q")
    assert run.code == 0, run.stderr
    cohorts = {c["id"]: c for c in json.loads((tmp_path / "out.json").read_text())["methods"]["attribute"]["cohorts"]}
    assert (cohorts["us"]["errors"], cohorts["us"]["ref_words"], cohorts["in"]["errors"]) == (20, 80, 0)


@pytest.mark.parametrize(
    "name, text, words",
    [
        ("fairaudit.toml", "min-speekers = 50\n", ["min-speekers", "unknown"]),
        ("fairaudit.toml", "[audti]\nseed = 1\n", ["audti", "unknown"]),
        ("fairaudit.toml", 'min-speakers = "fifty"\n', ["min-speakers", "whole number"]),
        ("fairaudit.toml", "min-speakers = [\n", ["TOML"]),
        ("pyproject.toml", "[tool.fairaudit]\nbogus = 1\n", ["bogus", "unknown"]),
    ],
    ids=["unknown-key", "unknown-table", "wrong-type", "bad-toml", "pyproject-unknown-key"],
)
def test_bad_config_exits_2_naming_the_file(log, tmp_path, monkeypatch, name, text, words):
    (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(run_main("audit", log, *CONFIG_AUDIT), f"file {tmp_path / name}", *words)


def test_unknown_config_key_in_a_child_process(log, tmp_path):
    (tmp_path / "fairaudit.toml").write_text("min-speakers = 50\nfrobnicate = true\n", encoding="utf-8")
    run = run_process("audit", log, *CONFIG_AUDIT, cwd=tmp_path)
    assert_one_line_error(run, "fairaudit.toml", "frobnicate")


# --- 8. terminal output --------------------------------------------------------------------------

HEADLINE = re.compile(r"WER gap (-?[\d.]+)%( \[[^\]]*\])? between (.+?) and (.+?); bottom-cohort share ([\d.]+)%")


def test_terminal_headline_and_verdict_per_method(log, emb, tmp_path):
    run = run_main("audit", log, "--embeddings", emb, "--by", "accent", *FAST, "--json", tmp_path / "r.json")
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    text = flat(run.stdout)
    positions = [text.index(f"─ {name} ─") for name in METHODS]  # the section rules (notes may name methods)
    assert positions == sorted(positions)
    sections = [text[start:end] for start, end in zip(positions, positions[1:] + [len(text)])]
    # piped output: every headline is one whole line (not wrapped to the 80-column default)
    headlines = [line for line in run.stdout.splitlines() if line.startswith("WER gap ")]
    assert len(headlines) == len(METHODS) and all(HEADLINE.match(line) for line in headlines), headlines
    for name, section in zip(METHODS, sections):
        method = report["methods"][name]
        match = HEADLINE.search(section)
        assert match, (name, section[-600:])
        assert match.group(1) == f"{method['wer_gap_pct']:.1f}"
        assert match.group(5) == f"{method['bottom_share_pct']:.1f}"
        assert method["bottom"] in match.group(3) and method["top"] in match.group(4)
        assert f"verdict: {method['verdict']}" in section


def test_terminal_holdout_labels(log, tmp_path):
    run = run_main("audit", log, "--by", "accent", "--holdout", 0.5, *FAST, "--json", tmp_path / "h.json")
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "h.json").read_text())
    n = len(report["methods"])
    assert n == 4  # geo-tree, geo-scan, zip-demographic, attribute (no embeddings given)
    lines = run.stdout.splitlines()
    assert sum(line.strip() == "discovery" for line in lines) == n  # table titles
    assert sum(line.startswith("held-out") and "re-measured" in line for line in lines) == n
    for label, key in (("discovery: ", None), ("held-out: ", "holdout")):
        headlines = [line.removeprefix(label) for line in lines if line.startswith(label)]
        assert len(headlines) == n and all(HEADLINE.match(h) for h in headlines), headlines
        for headline, method in zip(headlines, report["methods"].values()):
            figures = method if key is None else method[key]
            assert HEADLINE.match(headline).group(1) == f"{figures['wer_gap_pct']:.1f}"
    assert sum(line.startswith("verdict: ") for line in lines) == n


def test_repeated_by_is_one_attribute_audit(small_log, tmp_path):
    run = run_main(
        "audit",
        small_log,
        "--by",
        "accent",
        "--by",
        "accent",
        "--min-speakers",
        5,
        *OFF,
        "-q",
        "--json",
        tmp_path / "o.json",
    )
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "o.json").read_text())
    assert list(report["methods"]) == ["attribute"] and report["parameters"]["by"] == ["accent"]


def test_quiet_prints_no_tables(log, tmp_path):
    run = run_main("audit", log, "--by", "accent", *OFF, "-q", "--json", tmp_path / "q.json")
    assert run.code == 0 and run.stdout == "" and (tmp_path / "q.json").exists()


# --- user strings are never read as rich markup ----------------------------------------------------


def _markup_path(tmp_path: Path, small: bool = False) -> Path:
    directory = tmp_path / "runs[/red]" / "[bold]x"
    directory.mkdir(parents=True)
    path = directory / "log:smile:.csv"
    rows = [f"s{k},u{k},{k % 3},{5 + k % 4},{['us', 'in'][k % 2]}" for k in range(60)]
    path.write_text(f"{HEADER},accent\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_validate_prints_paths_verbatim(tmp_path):
    path = _markup_path(tmp_path)
    run = run_main("validate", path)
    assert run.code == 0, run.stderr
    assert run.stdout.startswith(f"{path}: valid.")


def test_errors_print_paths_verbatim(tmp_path):
    path = _markup_path(tmp_path)
    path.write_text(f"{HEADER}\na,u1,x,1\n", encoding="utf-8")
    assert_one_line_error(run_main("audit", path, "--by", "accent"), f"file {path}, line 2")


def test_quiet_audit_of_a_path_with_brackets(tmp_path):
    path = _markup_path(tmp_path)
    run = run_main("audit", path, "--by", "accent", "--min-speakers", 5, *OFF, "-q", "--json", tmp_path / "o.json")
    assert run.code == 0, run.stderr
    assert json.loads((tmp_path / "o.json").read_text())["input"]["path"] == str(path)


def test_audit_tables_for_a_path_with_brackets(tmp_path):
    path = _markup_path(tmp_path)
    run = run_main("audit", path, "--by", "accent", "--min-speakers", 5, *OFF)
    assert run.code == 0, run.stderr
    assert str(path) in run.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX only")
def test_ctrl_c_during_the_analysis_exits_130_at_once_without_a_traceback(tmp_path):
    """SIGINT while methods are fitted or tested (on worker threads): exit code 130 within a few
    seconds, no traceback, and no report file left behind."""
    import signal
    import time

    log = REPO / "examples" / "synthetic" / "eval_log.csv.gz"
    embeddings = REPO / "examples" / "synthetic" / "eval_log.embeddings.parquet"
    report = tmp_path / "r.json"
    command = [sys.executable, "-m", "fairaudit.cli", "audit", str(log), "--embeddings", str(embeddings)]
    child = subprocess.Popen(
        [*command, "--permutations", "50000", "--quiet", "--json", str(report)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # a shell that ignores SIGINT (nohup, a background job) would pass that on to the child
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        time.sleep(4)  # past the imports and the read: the permutation tests take minutes
        assert child.poll() is None, child.communicate()[1].decode()
        child.send_signal(signal.SIGINT)
        start = time.perf_counter()
        _, stderr = child.communicate(timeout=30)
        elapsed = time.perf_counter() - start
    finally:
        if child.poll() is None:  # never leave a process computing 50,000 permutations behind
            child.kill()
            child.communicate()
    assert child.returncode == 130 and elapsed < 5, (child.returncode, stderr.decode())
    assert b"Traceback" not in stderr and not report.exists()
