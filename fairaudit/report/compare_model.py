"""The comparison report's JSON contract (SPEC 9) as pydantic models.

``data_schemas/compare_report.schema.json`` (``fairaudit schema compare_report``) is generated from
:class:`CompareReport`; a test pins the committed file to the model. WERs are fractions; changes
are in percentage points of WER (new - baseline); intervals are 95% speaker-bootstrap intervals,
paired when the two logs share utterances; suppressed cohorts carry no figures.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fairaudit.report.model import METHOD_NAME_PATTERN

Interval = tuple[float | None, float | None]


def _doc(text: str, **bounds: Any) -> Any:
    return Field(..., description=text, **bounds)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class UnmatchedUtterances(_Open):
    baseline: int = _doc("Baseline utterances with no counterpart in the new log.", ge=0)
    new: int = _doc("New utterances with no counterpart in the baseline log.", ge=0)


class CompareInput(_Open):
    path: str | None = _doc("The log's path as given.")
    sha256: str | None = _doc("SHA-256 of the log file's bytes.")
    utterances: int = _doc("Utterances read.", ge=0)


class Summary(_Open):
    """Spread of the cohorts' WERs for one system."""

    mean_wer: float | None = _doc("Mean of the reported cohorts' pooled WERs (fraction).")
    max_wer: float | None = _doc("Highest reported cohort WER (fraction).")
    spread: float | None = _doc("Highest minus lowest reported cohort WER (fraction).")


class CompareCohort(_Open):
    id: str = _doc("Cohort id (the definitions both systems are measured on).")
    description: str = _doc("Who is in the cohort, in words.")
    speakers: int | None = _doc("Speakers in the cohort.", ge=0)
    wer_before: float | None = _doc("Baseline pooled WER (fraction).")
    wer_after: float | None = _doc("New pooled WER (fraction).")
    change_points: float | None = _doc("100 x (new WER - baseline WER), in WER percentage points.")
    change_ci: Interval = _doc("95% speaker-bootstrap interval of change_points; [null, null] when not computed.")
    probability_improved: float | None = _doc(
        "Share of bootstrap replicates in which the new system's WER is lower.", ge=0, le=1
    )
    verdict: Literal["worse", "better", "no evidence", "suppressed"] = _doc(
        "worse / better: the interval excludes 0; no evidence: it does not; suppressed: too few speakers to report."
    )
    suppressed: bool = _doc("Fewer speakers than min_report_speakers: figures withheld (null) for privacy.")


class CompareMethod(_Open):
    name: str = _doc("The method whose cohorts are compared.")
    cohorts: list[CompareCohort] = _doc("Every cohort, before and after.")
    bottom: list[str] = _doc("Cohort ids of the bottom cohort (as chosen on the baseline).")
    top: list[str] = _doc("Cohort ids of the top cohort (as chosen on the baseline).")
    gap_before_pct: float | None = _doc("Baseline WER gap (%) between bottom and top.")
    gap_after_pct: float | None = _doc("New WER gap (%) between the same bottom and top cohorts.")
    gap_change_points: float | None = _doc("gap_after_pct - gap_before_pct, in gap percentage points.")
    gap_change_ci: Interval = _doc("95% speaker-bootstrap interval of gap_change_points.")
    gap_verdict: Literal["worse", "better", "no evidence"] = _doc(
        "worse / better: the gap's change interval excludes 0; no evidence: it does not."
    )
    summary_before: Summary = _doc("Cohort WER spread, baseline.")
    summary_after: Summary = _doc("Cohort WER spread, new.")


class CompareReport(_Open):
    model_config = ConfigDict(
        extra="allow",
        title="fairaudit comparison report",
        json_schema_extra={
            "description": "The JSON written by `fairaudit compare --json`: two systems measured on the same cohorts "
            "(SPEC 9). WERs are fractions (0.123); changes are in percentage points of WER (new - baseline); "
            "intervals are 95% speaker-bootstrap intervals, paired when the logs share utterances. Suppressed "
            "cohorts carry no figures."
        },
    )

    fairaudit_version: str = _doc("The fairaudit version that wrote the report.")
    paired: bool = _doc("Whether the intervals are paired (the two logs share utterance ids).")
    pairing: str = _doc("How the two logs were matched, in words.")
    matched_utterances: int = _doc("Utterances present in both logs.", ge=0)
    unmatched_utterances: UnmatchedUtterances = _doc("Utterances present in only one log.")
    cohorts_from: str = _doc(
        "Where the cohort definitions came from: the --cohorts audit JSON, or discovered on the baseline log."
    )
    baseline: CompareInput = _doc("The baseline system's log.")
    new: CompareInput = _doc("The new system's log.")
    parameters: dict[str, Any] = _doc("The options used.")
    methods: dict[str, CompareMethod] = Field(
        ...,
        description="Results by method name.",
        json_schema_extra={"propertyNames": {"pattern": METHOD_NAME_PATTERN}},
    )
