"""Trust (issue 11): outputs never replace inputs or leave fragments; data strings cannot inject
into the terminal, JUnit XML, CSV or Markdown. Each test is a defect of the previous release."""

from __future__ import annotations

import csv
import hashlib
import os
import resource
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

import fairaudit
from cli_runner import run_main
from fairaudit.gate import parse_policy, run_gate
from fairaudit.render import safe_text
from fairaudit.render.gate_report import gate_markdown, junit_xml
from fairaudit.render.markdown import render_markdown


def small_log(groups=("a", "b"), n=120, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    speakers = np.repeat(np.arange(n), 5)
    words = rng.integers(3, 10, size=len(speakers))
    group = np.asarray(groups, dtype=object)[speakers % len(groups)]
    return pd.DataFrame({"speaker_id": [f"s{i}" for i in speakers], "utterance_id": [f"u{i}" for i in range(len(speakers))],
                         "errors": rng.binomial(words, 0.1 + 0.1 * (group == groups[0])), "ref_words": words, "group": group})


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


def test_a_failed_write_keeps_the_previous_report_whole(tmp_path):
    """With a 16 KiB file-size limit, the HTML report cannot be written: the previous good file
    stays as it was (before: a fragment of the limit's size replaced it)."""
    small_log(n=300).to_csv(tmp_path / "log.csv", index=False)
    (tmp_path / "report.html").write_text("previous good report\n")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 * 1024, 16 * 1024))

    run = subprocess.run([sys.executable, "-m", "fairaudit.cli", "audit", "log.csv", "--by", "group", "--html", "report.html",
                          "-q", "--bootstrap", "20", "--permutations", "0"], cwd=tmp_path, capture_output=True, text=True,
                         preexec_fn=limit)
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
    report = fairaudit.audit(small_log(groups=("bad\x01\x0b\x1f name", "ok")), by=["group"], bootstrap=0, permutations=0).to_dict()
    report["methods"] = {"attr\x00ibute": report["methods"]["attribute"]}
    gate = run_gate(report, parse_policy({"max-wer-gap-pct": 1, "on": "point"}, "p"))
    root = ET.fromstring(junit_xml(gate, report))  # raised "not well-formed" before
    assert root.find("testsuite").get("failures") == "1"


def test_assignments_csv_cells_never_start_a_formula(tmp_path):
    frame = small_log(groups=("=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)"), n=200)
    frame["speaker_id"] = "=" + frame["speaker_id"]
    frame.to_csv(tmp_path / "log.csv", index=False)
    run = run_main("audit", tmp_path / "log.csv", "--by", "group", "--min-speakers", 5, "--bootstrap", 0,
                   "--permutations", 0, "--assignments", tmp_path / "a.csv", "-q")
    assert run.code == 0, run.stderr
    with open(tmp_path / "a.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(not row[c].startswith(("=", "+", "-", "@")) for row in rows for c in ("speaker_id", "cohort_id", "cohort"))
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
