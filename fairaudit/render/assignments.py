"""``--assignments FILE``: speaker -> cohort per method as CSV (the only output with speaker ids)."""

from __future__ import annotations

from pathlib import Path

from fairaudit.io.outputs import write_atomically
from fairaudit.render.safe_text import csv_cell
from fairaudit.report.result import AuditResult

COLUMNS = ["method", "speaker_id", "cohort_id", "cohort", "bottom"]


def write_assignments(result: AuditResult, path: str | Path) -> None:
    """Write exactly the columns method, speaker_id, cohort_id, cohort, bottom (true/false)."""
    frame = result.assignments()[COLUMNS].copy()
    frame["bottom"] = frame["bottom"].map({True: "true", False: "false"})
    for column in ("method", "speaker_id", "cohort_id", "cohort"):
        frame[column] = frame[column].astype(str).map(csv_cell)  # no cell a spreadsheet runs as a formula
    write_atomically(path, frame.to_csv(index=False, lineterminator="\n"))
