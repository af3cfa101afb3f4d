"""The README's example output is what the Quickstart prints today (regenerated, never hand-edited)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from typer.testing import CliRunner

from fairaudit.cli import app

ROOT = Path(__file__).resolve().parents[2]


def quickstart_arguments() -> list[str]:
    """The audit arguments of the README's first Quickstart command."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = re.search(r"^pip install \. && fairaudit (audit .+)$", readme, re.M).group(1)
    return command.split()


def example_lines() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"Example headlines of the Quickstart.*?```\n(.+?)```", readme, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_example_output_is_the_quickstart_output(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "argv", ["fairaudit"])
    result = CliRunner().invoke(app, quickstart_arguments(), env={"COLUMNS": "140"})
    assert result.exit_code == 0, result.output
    printed = result.output.splitlines()
    lines = example_lines()
    assert len(lines) >= 2
    for line in lines:
        assert line in printed, f"README example line not in the Quickstart output (regenerate it): {line[:120]}"
