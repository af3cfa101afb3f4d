"""`fairaudit gate` on the command line: exit codes, audit JSON vs. log, JUnit and Markdown files."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from builders import grouped_log

AUDIT = ["--by", "group", "--seed", "0"]


def fairaudit(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fairaudit.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate")
    grouped_log(n_speakers=800, effect=0.5).to_csv(root / "log.csv", index=False)
    grouped_log(n_speakers=800, effect=0.5, scale={"g1": 1.5}).to_csv(root / "worse.csv", index=False)
    (root / "fairaudit.toml").write_text("bootstrap = 200\npermutations = 50\n")
    run = fairaudit("audit", "log.csv", *AUDIT, "--json", "baseline.json", "--quiet", cwd=root)
    assert run.returncode == 0, run.stderr
    return root


def policy(root, text):
    path = root / "policy.toml"
    path.write_text(text)
    return path


def test_exit_0_on_pass_and_warn_1_on_fail(workspace):
    report = json.loads((workspace / "baseline.json").read_text())
    low = report["methods"]["attribute"]["wer_gap_ci"][0]
    passing = policy(workspace, f"[gate]\nmax-wer-gap-pct = {{ fail = {low + 50:.1f} }}\n")
    assert fairaudit("gate", "baseline.json", "--policy", passing, cwd=workspace).returncode == 0
    warning = policy(workspace, f"[gate]\nmax-wer-gap-pct = {{ warn = {low - 5:.1f}, fail = {low + 50:.1f} }}\n")
    run = fairaudit("gate", "baseline.json", "--policy", warning, cwd=workspace)
    assert run.returncode == 0 and "WARN" in run.stdout
    failing = policy(workspace, f"[gate]\nmax-wer-gap-pct = {{ fail = {low - 5:.1f} }}\n")
    run = fairaudit("gate", "baseline.json", "--policy", failing, cwd=workspace)
    assert run.returncode == 1 and "FAIL" in run.stdout


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("[gate]\nmax-gap = 3\n", "unknown gate policy key 'max-gap'"),
        ("[gate]\non = 'median'\n", "on must be one of"),
        ("[gate\n", "not valid TOML"),
        ("[gate]\nmethod = 5\nmax-wer-gap-pct = 40\n", "method must be a table"),
    ],
)
def test_exit_2_on_bad_policy_naming_the_file(workspace, text, fragment):
    run = fairaudit("gate", "baseline.json", "--policy", policy(workspace, text), cwd=workspace)
    assert run.returncode == 2
    assert fragment in run.stderr and "policy.toml" in run.stderr and "Traceback" not in run.stderr


def test_exit_2_on_a_broken_audit_report(workspace):
    report = json.loads((workspace / "baseline.json").read_text())
    del report["methods"]["attribute"]["verdict"]
    (workspace / "broken.json").write_text(json.dumps(report))
    run = fairaudit(
        "gate", "broken.json", "--policy", policy(workspace, "[gate]\nmax-wer-gap-pct = 40\n"), cwd=workspace
    )
    assert run.returncode == 2 and "not a valid fairaudit audit report" in run.stderr and "verdict" in run.stderr


def test_gate_on_audit_json_equals_gate_on_its_log(workspace):
    rules = policy(workspace, "[gate]\nmax-wer-gap-pct = { warn = 10, fail = 1000 }\nmax-bottom-wer = 0.5\n")
    from_log = fairaudit(
        "gate", "log.csv", *AUDIT, "--policy", rules, "--junit", "log.xml", "--markdown", "log.md", cwd=workspace
    )
    from_json = fairaudit(
        "gate", "baseline.json", "--policy", rules, "--junit", "json.xml", "--markdown", "json.md", cwd=workspace
    )
    assert from_log.returncode == from_json.returncode == 0, from_log.stderr + from_json.stderr
    assert (workspace / "log.xml").read_text() == (workspace / "json.xml").read_text()
    assert (workspace / "log.md").read_text() == (workspace / "json.md").read_text()


def test_baseline_regression_fails_a_model_worse_on_one_cohort(workspace):
    rules = policy(workspace, "[gate]\nmax-cohort-wer-increase-points = { warn = 1, fail = 2 }\n")
    run = fairaudit(
        "gate",
        "worse.csv",
        *AUDIT,
        "--policy",
        rules,
        "--baseline",
        "baseline.json",
        "--junit",
        "worse.xml",
        cwd=workspace,
    )
    assert run.returncode == 1, run.stdout + run.stderr
    suite = ET.parse(workspace / "worse.xml").getroot().find("testsuite")
    case = suite.find("testcase")
    assert case.get("name") == "max-cohort-wer-increase-points [attribute]"
    assert "g1" in case.find("failure").get("message")
    same = fairaudit("gate", "log.csv", *AUDIT, "--policy", rules, "--baseline", "baseline.json", cwd=workspace)
    assert same.returncode == 0, same.stdout


def test_gate_refuses_to_overwrite_its_inputs(workspace):
    rules = policy(workspace, "[gate]\nmax-wer-gap-pct = 40\n")
    run = fairaudit("gate", "baseline.json", "--policy", rules, "--junit", "baseline.json", cwd=workspace)
    assert run.returncode == 2 and "refusing to overwrite" in run.stderr


def test_gate_without_rules_is_a_usage_error(workspace):
    run = fairaudit("gate", "baseline.json", cwd=workspace)
    assert run.returncode == 2 and "no rules" in run.stderr


def test_policy_file_audit_keys_apply_like_the_working_directory_config(workspace, tmp_path):
    """A --policy file in fairaudit.toml form sets the audit options of the gated log, as the same
    file would in the working directory (here a hold-out, which the gate then judges on)."""
    rules = policy(workspace, "holdout = 0.5\n[gate]\nmax-wer-gap-pct = 1000\n")
    run = fairaudit("gate", "log.csv", *AUDIT, "--policy", rules, "--json", tmp_path / "gated.json", cwd=workspace)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "gated.json").read_text())
    assert report["parameters"]["holdout"] == 0.5 and report["parameters"]["bootstrap"] == 200  # both files apply


@pytest.mark.parametrize("content", ["NaN", "Infinity"])
def test_reports_with_nan_or_infinite_figures_are_rejected(workspace, content):
    text = (workspace / "baseline.json").read_text()
    report = json.loads(text)
    gap = report["methods"]["attribute"]["wer_gap_pct"]
    (workspace / "nan.json").write_text(
        text.replace(f'"wer_gap_pct": {json.dumps(gap)}', f'"wer_gap_pct": {content}', 1)
    )
    run = fairaudit("gate", "nan.json", "--policy", policy(workspace, "[gate]\nmax-wer-gap-pct = 40\n"), cwd=workspace)
    assert run.returncode == 2 and content in run.stderr and "Traceback" not in run.stderr


def test_missing_or_directory_policy_is_a_clear_error(workspace):
    for path in ("no-such-policy.toml", "."):
        run = fairaudit("gate", "baseline.json", "--policy", path, cwd=workspace)
        assert run.returncode == 2 and "policy" in run.stderr and "Traceback" not in run.stderr


def test_a_model_gated_against_its_own_held_out_audit_changes_by_zero(workspace):
    """A baseline audited with --holdout reports held-out figures; the gate must re-measure the new
    log on the same held-out speakers. On all speakers the half that chose the cohorts shows their
    gaps inflated, so a model compared with its own release audit would "regress"."""
    run = fairaudit("audit", "log.csv", *AUDIT, "--holdout", "0.5", "--json", "held.json", "--quiet", cwd=workspace)
    assert run.returncode == 0, run.stderr
    rules = policy(
        workspace,
        'holdout = 0.5\n[gate]\non = "point"\nmax-gap-increase-points = { warn = 0.001, fail = 0.002 }\n'
        "max-cohort-wer-increase-points = { warn = 0.001, fail = 0.002 }\n",
    )
    same = fairaudit(
        "gate", "log.csv", *AUDIT, "--policy", rules, "--baseline", "held.json", "--markdown", "same.md", cwd=workspace
    )
    assert same.returncode == 0, same.stdout + same.stderr
    comment = (workspace / "same.md").read_text()
    assert "change +0.0 gap points" in comment and "+0.00 WER points" in comment
    assert comment.count("| pass |") == 2 and "| warn |" not in comment and "| fail |" not in comment


def test_the_held_out_speakers_follow_their_ids_not_their_positions():
    import numpy as np

    from fairaudit.pipeline.audit import split_speakers

    ids = np.array([f"speaker-{i:04d}" for i in range(1000)])
    held = set(ids[split_speakers(ids, 0.3, 7)[1]])
    assert len(held) == 300
    shuffled = np.random.default_rng(0).permutation(ids)
    assert set(shuffled[split_speakers(shuffled, 0.3, 7)[1]]) == held  # order of the log does not matter
    fewer = ids[20:]  # a log without 20 of the speakers holds out mostly the same ones
    assert len(set(fewer[split_speakers(fewer, 0.3, 7)[1]]) - held) <= 10
    assert len(set(ids[split_speakers(ids, 0.3, 8)[1]]) & held) < 150  # another seed, another split


def test_the_gate_html_report_shows_the_outcome_and_every_rule_first(workspace, tmp_path):
    """`gate --html` wrote the audit report only: a CI artifact that did not say why the build failed."""
    report = json.loads((workspace / "baseline.json").read_text())
    low = report["methods"]["attribute"]["wer_gap_ci"][0]
    failing = policy(workspace, f"[gate]\nmax-wer-gap-pct = {{ fail = {low - 5:.1f} }}\n")
    run = fairaudit("gate", "log.csv", *AUDIT, "--policy", failing, "--html", tmp_path / "gate.html", cwd=workspace)
    assert run.returncode == 1, run.stderr
    html = (tmp_path / "gate.html").read_text()
    assert 'CI gate: <span class="gate-fail">FAIL</span>' in html
    assert html.index('id="gate"') < html.index('id="summary"') and "max-wer-gap-pct" in html
