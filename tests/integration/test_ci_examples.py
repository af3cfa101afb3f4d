"""The shipped CI examples work: the example policy is valid and the workflow's gate command runs."""

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from fairaudit.gate.policy import load_policy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_policy_is_valid_and_has_every_rule():
    policy = load_policy(EXAMPLES / "ci" / "fairaudit.toml")
    assert set(policy.rules) == {
        "max-wer-gap-pct",
        "max-bottom-wer",
        "max-gap-increase-points",
        "max-cohort-wer-increase-points",
    }
    assert policy.on == "lower" and policy.insufficient_data == "warn" and policy.not_evaluated == "fail"
    assert policy.for_method("geo-tree").rules["max-wer-gap-pct"].fail == 80.0


def workflow_commands(workflow: str) -> list[str]:
    """The fairaudit commands of a shipped CI workflow, whitespace normalised."""
    text = (EXAMPLES / "ci" / workflow).read_text()
    found = re.findall(r"^\s*(fairaudit (?:audit|gate) [^\n]*(?:\n\s+--[^\n]*)*)", text, re.M)
    return [" ".join(c.split()) for c in found]


def test_the_gitlab_job_runs_the_github_workflows_commands():
    """Both shipped workflows run the same two commands, so running one set (below) tests both."""
    assert workflow_commands("gitlab-ci.yml") == workflow_commands("github-actions.yml")


def test_workflow_gate_command_runs_and_writes_its_artifacts(tmp_path):
    commands = workflow_commands("github-actions.yml")
    assert [c.split()[1] for c in commands] == ["audit", "gate"]  # the release audit, then the gate
    ci = tmp_path / "examples" / "ci"
    shutil.copytree(EXAMPLES / "synthetic", tmp_path / "examples" / "synthetic")
    ci.mkdir()
    shutil.copy(EXAMPLES / "ci" / "fairaudit.toml", ci)
    for command in commands:
        args = command.split()[1:]
        run = subprocess.run(
            [sys.executable, "-m", "fairaudit.cli", *args, "--quiet"], cwd=ci, capture_output=True, text=True
        )
        assert run.returncode in (0, 1), run.stderr  # a verdict, not bad input
    assert run.returncode == 0, run.stdout  # the same log as its own baseline: no regression, and nothing not evaluated
    suite = ET.parse(ci / "fairness-junit.xml").getroot().find("testsuite")
    assert int(suite.get("tests")) == 20  # 4 rules x 5 methods
    assert (ci / "fairness-report.html").read_text().startswith("<!DOCTYPE html>")
    assert "fairaudit gate" in (ci / "fairness-comment.md").read_text()
