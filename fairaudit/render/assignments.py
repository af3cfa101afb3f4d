"""``--assignments FILE``: speaker -> cohort per method as CSV (the only output with speaker ids)."""

from __future__ import annotations

from pathlib import Path

from fairaudit.result import AuditResult

COLUMNS = ["method", "speaker_id", "cohort_id", "cohort", "bottom"]


def write_assignments(result: AuditResult, path: str | Path) -> None:
    """Write exactly the columns method, speaker_id, cohort_id, cohort, bottom (true/false)."""
    frame = result.assignments()[COLUMNS].copy()
    frame["bottom"] = frame["bottom"].map({True: "true", False: "false"})
    frame.to_csv(path, index=False, lineterminator="\n")
