"""The comparison report's JSON contract (SPEC 9) as pydantic models.

``data_schemas/compare_report.schema.json`` (``fairaudit schema compare_report``) is generated from
:class:`CompareReport`; a test pins the committed file to the model. WERs are fractions; changes
are in percentage points of WER (new - baseline); intervals are 95% speaker-bootstrap intervals,
paired when the two logs share utterances; suppressed cohorts carry no figures.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from fairaudit.report.model import METHOD_NAME_PATTERN, Interval, OpenModel, required


class UnmatchedUtterances(OpenModel):
    baseline: int = required("Baseline utterances with no counterpart in the new log.", ge=0)
    new: int = required("New utterances with no counterpart in the baseline log.", ge=0)


class CompareInput(OpenModel):
    path: str | None = required("The log's path as given.")
    sha256: str | None = required("SHA-256 of the log file's bytes.")
    utterances: int = required("Utterances read.", ge=0)


class Summary(OpenModel):
    """Spread of the cohorts' WERs for one system."""

    mean_wer: float | None = required("Mean of the reported cohorts' pooled WERs (fraction).")
    max_wer: float | None = required("Highest reported cohort WER (fraction).")
    spread: float | None = required("Highest minus lowest reported cohort WER (fraction).")


class CompareCohort(OpenModel):
    id: str = required("Cohort id (the definitions both systems are measured on).")
    description: str = required("Who is in the cohort, in words.")
    speakers: int | None = required("Speakers in the cohort.", ge=0)
    wer_before: float | None = required("Baseline pooled WER (fraction).")
    wer_after: float | None = required("New pooled WER (fraction).")
    change_points: float | None = required("100 x (new WER - baseline WER), in WER percentage points.")
    change_ci: Interval = required("95% speaker-bootstrap interval of change_points; [null, null] when not computed.")
    probability_improved: float | None = required(
        "Share of bootstrap replicates in which the new system's WER is lower, ties counting half "
        "(0.5 for identical outputs).",
        ge=0,
        le=1,
    )
    verdict: Literal["worse", "better", "no evidence", "suppressed"] = required(
        "worse / better: the interval excludes 0; no evidence: it does not; suppressed: too few speakers to report."
    )
    suppressed: bool = required("Fewer speakers than min_report_speakers: figures withheld (null) for privacy.")


class CompareMethod(OpenModel):
    name: str = required("The method whose cohorts are compared.")
    cohorts: list[CompareCohort] = required("Every cohort, before and after.")
    bottom: list[str] = required(
        "Cohort ids of the bottom cohort, as chosen where the cohorts came from (cohorts_from)."
    )
    top: list[str] = required("Cohort ids of the top cohort, as chosen where the cohorts came from (cohorts_from).")
    gap_before_pct: float | None = required("Baseline WER gap (%) between bottom and top.")
    gap_after_pct: float | None = required("New WER gap (%) between the same bottom and top cohorts.")
    gap_change_points: float | None = required("gap_after_pct - gap_before_pct, in gap percentage points.")
    gap_change_ci: Interval = required("95% speaker-bootstrap interval of gap_change_points.")
    gap_verdict: Literal["worse", "better", "no evidence"] = required(
        "worse / better: the gap's change interval excludes 0; no evidence: it does not."
    )
    summary_before: Summary = required("Cohort WER spread, baseline.")
    summary_after: Summary = required("Cohort WER spread, new.")


class CompareReport(OpenModel):
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

    fairaudit_version: str = required("The fairaudit version that wrote the report.")
    paired: bool = required("Whether the intervals are paired (the two logs share utterance ids).")
    pairing: str = required("How the two logs were matched, in words.")
    matched_utterances: int = required("Utterances present in both logs.", ge=0)
    unmatched_utterances: UnmatchedUtterances = required("Utterances present in only one log.")
    cohorts_from: str = required(
        "Where the cohort definitions came from: the --cohorts audit JSON, or discovered on the baseline log."
    )
    baseline: CompareInput = required("The baseline system's log.")
    new: CompareInput = required("The new system's log.")
    parameters: dict[str, Any] = required("The options used.")
    methods: dict[str, CompareMethod] = Field(
        ...,
        description="Results by method name.",
        json_schema_extra={"propertyNames": {"pattern": METHOD_NAME_PATTERN}},
    )
