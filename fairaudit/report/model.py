"""The audit report's JSON contract (SPEC 6) as pydantic models: every field, its unit and meaning once.

``data_schemas/audit_report.schema.json`` (``fairaudit schema audit_report``) is generated from
:class:`AuditReport` (see :func:`fairaudit.report.schema.model_schema`), and a test pins the
committed file to the model. The gate reads a baseline through this schema, and users' scripts
read the same field names. WERs are fractions (0.123); fields ending in ``_pct`` are percentages;
a figure that was not computed (or is withheld for privacy) is null, never missing.

Reports are written from :meth:`fairaudit.report.result.AuditResult.to_dict`; tests validate
every pinned report against these models. Extra keys are allowed (a newer report stays readable
by an older schema), but every key fairaudit writes is declared here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

METHOD_NAME_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*(:.+)?$"

Interval = tuple[float | None, float | None]
INTERVAL_HELP = (
    "95% interval [low, high] from the speaker-level bootstrap (BCa: bias-corrected and accelerated; cohort WER "
    "and WER gap intervals use Student-t quantiles on their effective degrees of freedom); "
    "[null, null] when not computed."
)


def required(text: str, **bounds: Any) -> Any:
    """A required field (null allowed when its type says so) with a description."""
    return Field(..., description=text, **bounds)


def _optional(text: str, **bounds: Any) -> Any:
    """A field that only some reports carry (absent = not applicable)."""
    return Field(None, description=text, **bounds)


class OpenModel(BaseModel):
    """A report object: extra keys allowed, so a newer report stays readable by an older schema."""

    model_config = ConfigDict(extra="allow")


class InputSummary(OpenModel):
    """The audited log: where it came from, its fingerprint and size."""

    path: str | None = required("The log's path as given (null for a DataFrame passed to the API).")
    sha256: str | None = required(
        "SHA-256 of the log file's bytes (null for a DataFrame), to tie the report to its input.",
        pattern=r"^[0-9a-f]{64}$",
    )
    utterances: int = required("Utterances read (rows of the log).", ge=0)
    speakers: int = required("Distinct speakers.", ge=0)
    error_form: str = required(
        "How errors were given: 'errors' (an errors column), 'sdi' (substitutions, deletions and "
        "insertions), 'wer' (a per-utterance WER times reference words) or 'text' (scored from text)."
    )
    text_normalization: str | None = _optional(
        "The --normalize used when the counts were scored from reference and hypothesis text "
        "(default, jiwer or none); null for logs with counts."
    )


class Cohort(OpenModel):
    """One cohort's figures; every figure is null when the cohort is suppressed (SPEC 6)."""

    id: str = required("Stable cohort id within the method (e.g. region-3, cluster-2, majority-hispanic, indian).")
    description: str = required("Human-readable description of who is in the cohort.")
    rank: int | None = required(
        "1 = highest WER; null for suppressed cohorts (their position would reveal their WER).", ge=1
    )
    speakers: int | None = required("Speakers in the cohort.", ge=0)
    utterances: int | None = required("Utterances of the cohort's speakers.", ge=0)
    ref_words: int | None = required("Reference words, summed over the cohort's utterances.", ge=0)
    errors: int | None = required("Word errors (substitutions + deletions + insertions), summed.", ge=0)
    wer: float | None = required("Pooled WER as a fraction: sum of errors / sum of reference words.", ge=0)
    wer_ci: Interval = required(INTERVAL_HELP)
    speaker_share_pct: float | None = required("100 x the cohort's speakers / all assigned speakers.", ge=0, le=100)
    utterance_share_pct: float | None = required(
        "100 x the cohort's utterances / all assigned utterances.", ge=0, le=100
    )
    word_share_pct: float | None = required("100 x the cohort's reference words / all assigned words.", ge=0, le=100)
    eligible: bool | None = required(
        "Large enough (min speakers) to be chosen as bottom or top; null for a suppressed cohort (it would tell "
        "its size apart)."
    )
    suppressed: bool = required("Fewer speakers than min_report_speakers: figures withheld (null) for privacy.")
    p_value: float | None = _optional(
        "attribute only: permutation p-value of this cohort's WER against all other speakers.", ge=0, le=1
    )
    p_value_bh: float | None = _optional("attribute only: Benjamini-Hochberg adjusted p_value.", ge=0, le=1)
    substitution_rate: float | None = required(
        "Substitutions per reference word, pooled over the cohort (the log's S/D/I columns or its scored "
        "text); null when the log has no error anatomy or the cohort is suppressed.",
        ge=0,
    )
    deletion_rate: float | None = required(
        "Deletions per reference word, pooled; substitution + deletion + insertion rate = WER.", ge=0
    )
    insertion_rate: float | None = required("Insertions per reference word, pooled.", ge=0)
    empty_hypothesis_pct: float | None = required(
        "Share (%) of the cohort's utterances with reference words whose hypothesis has no words.", ge=0, le=100
    )
    mean_utterance_wer: float | None = required(
        "The mean of per-utterance WERs (errors / reference words of each utterance with reference words), for "
        "comparison with published work only: it is not the cohort's WER (pooled).",
        ge=0,
    )
    detectable_gap_pct: float | None = required(
        "The smallest relative WER gap (%) of this cohort against the rest of the assigned speakers that a "
        "two-sided test at --alpha detects with 80% power, for a cohort named in advance (speaker-clustered "
        "variance).",
        ge=0,
    )
    speakers_needed: int | None = required(
        "With --target-gap: how many more speakers like its own this cohort needs for that gap to be detectable "
        "(0 = already detectable); null without --target-gap, when the rest of the speakers alone are too few, "
        "or when suppressed.",
        ge=0,
    )


class Figures(OpenModel):
    """The headline figures of one measurement (discovery, or the hold-out re-measurement)."""

    bottom: str | None = required("Bottom cohort id (ids joined with ' + ' when the bottom cohort unites several).")
    top: str | None = required(
        "Top cohort id; 'rest' when --top rest makes the top every other assigned speaker and that is more than one "
        "cell."
    )
    bottom_cohorts: list[str] = required("Ids of the cells that make up the bottom cohort.")
    top_cohorts: list[str] = required("Ids of the cells that make up the top cohort.")
    bottom_description: str | None = required("Who is in the bottom cohort, in words.")
    top_description: str | None = required("Who is in the top cohort, in words.")
    bottom_wer: float | None = required("Pooled WER of the bottom cohort (fraction).", ge=0)
    bottom_wer_ci: Interval | None = _optional(
        INTERVAL_HELP + " Of the bottom cohort's pooled WER, whatever cells it unites (absent in reports written "
        "before fairaudit added it)."
    )
    top_wer: float | None = required("Pooled WER of the top cohort (fraction).", ge=0)
    wer_gap_pct: float | None = required("100 x (WER(bottom) - WER(top)) / WER(top).")
    wer_gap_ci: Interval = required(INTERVAL_HELP)
    bottom_share_pct: float | None = required("100 x speakers in bottom / all assigned speakers.", ge=0, le=100)
    bottom_share_ci: Interval = required(INTERVAL_HELP)
    bottom_utterance_share_pct: float | None = required(
        "100 x utterances in bottom / all assigned utterances.", ge=0, le=100
    )
    bottom_word_share_pct: float | None = required(
        "100 x reference words in bottom / all assigned words.", ge=0, le=100
    )
    p_value: float | None = required(
        "Permutation p-value of the bottom cohort's size-weighted gain: on discovery, search-aware (both discovery "
        "stages re-run on every shuffle); on held-out speakers (holdout) and on stored cohorts (audit --cohorts), "
        "for the fixed cells with the bottom cohort re-chosen on every shuffle. Null when not computed.",
        ge=0,
        le=1,
    )
    speakers: int = required("Speakers measured.", ge=0)
    assigned_speakers: int = required("Speakers in some cohort.", ge=0)
    cohorts: list[Cohort] = required("Every cohort of the method, worst first.")
    overall_wer: float | None = required("Pooled WER over every assigned speaker.", ge=0)
    reported_wer: float | None = required(
        "Pooled WER over the cohorts that are not suppressed (what reports may show).", ge=0
    )
    detectable_gap_pct: float | None = required(
        "The smallest bottom-vs-top WER gap (%) these speakers could detect at --alpha with 80% power (a fixed, "
        "pre-named comparison; the search-aware test needs more).",
        ge=0,
    )
    speakers_needed: int | None = required(
        "With --target-gap: extra bottom-cohort speakers needed for that gap to be detectable against the top cohort.",
        ge=0,
    )
    adjusted: dict[str, Any] | None = required(
        "With --adjust: the bottom-vs-top rate ratio of errors per reference word, raw and adjusted for the named "
        "speaker-level covariates (negative-binomial NB2 regression with log reference words as offset), with 95% "
        "intervals."
    )


class Candidate(OpenModel):
    """zip-demographic: one candidate census split (its figures are null when withheld)."""

    rank: int | None = required("1 = largest size-weighted gain.")
    attribute: str = required("The census attribute split (e.g. median_income).")
    kind: Literal["threshold", "majority"] = required(
        "threshold: the attribute at or below value vs above it; majority: ZIPs where the named group is the "
        "majority vs the rest."
    )
    value: float | str | None = required("The threshold (in the attribute's unit) or the majority group's name.")
    cohorts: list[dict[str, Any]] = required(
        "The split's two sides: id, description, speakers, ref_words, errors and pooled wer (null when withheld)."
    )
    wer_gap_pct: float | None = required("The split's WER gap (%) between its worse and better side.")
    gain: float | None = required(
        "Size-weighted gain W_1 W_2 / (W_1 + W_2) (WER_1 - WER_2)^2 of the split (W = reference words), "
        "the ranking criterion."
    )
    eligible: bool = required("Both sides hold at least min speakers.")
    suppressed: bool = required("True when every figure of this split is withheld (SPEC 6).")
    suppressed_reason: str | None = required(
        "Why it is withheld: a side under --min-report-speakers, or it differs from another published group (of "
        "any census attribute) by fewer speakers than that."
    )


class DefinitionCell(OpenModel):
    """One cohort's definition: id and description, plus the method's own keys (bounds, centre and
    radius, centroid, value)."""

    id: str = required("The cohort id.")
    description: str = required("The cohort in words.")


class Definition(OpenModel):
    """What is needed to put any new speaker into the same cohorts (audit --cohorts); besides the
    keys below, each method records what its rule needs (grid step, census table, embedding
    normalisation, ...)."""

    method: str = required("The method that made the cohorts.")
    rule: str = required("How a speaker is assigned, in words.")
    cells: list[DefinitionCell] = required(
        "Each cohort's definition (method-specific keys besides id and description)."
    )
    level: Literal["utterance"] | None = _optional(
        "Present for utterance-level cohorts: each utterance is assigned by its own value (audit --cohorts and "
        "export refuse them for now)."
    )


class MethodReport(Figures):
    """One discovery method's result: verdict, figures, cohorts and how to re-find them."""

    verdict: Literal["disparity", "no evidence", "insufficient data"] = required(
        "disparity: the bottom cohort's excess is beyond what the search finds in shuffled data (p < --alpha); "
        "no evidence: it is not; insufficient data: too few speakers or cohorts to judge."
    )
    verdict_reason: str = required("The verdict in one sentence, with its figures.")
    unassigned: dict[str, int] = required("reason -> number of speakers in no cohort.")
    holdout: Figures | None = required("The same figures re-measured on held-out speakers (--holdout), else null.")
    candidates: list[Candidate] | None = _optional(
        "zip-demographic: every candidate split, ranked by size-weighted gain (SPEC 4.3)."
    )
    chosen: list[str] | None = _optional("zip-demographic: the cohort ids of the chosen split.")
    details: dict[str, Any] = required("Method-specific details (regions, windows, cluster profiles).")
    cohort_source: Literal["discovered", "stored"] = required(
        "discovered: the cohorts were found on this log; stored: measured on the definitions of an earlier audit "
        "(audit --cohorts)."
    )
    definition: Definition | None = required(
        "Portable cohort definitions: what is needed to put any new speaker into the same cohorts (audit "
        "--cohorts). Cells under --min-report-speakers are withheld, and withheld_cells (when present) counts them."
    )
    cohort_level: Literal["speaker", "utterance"] = required(
        "speaker: each speaker is in one cohort (a --by column constant within speakers takes the speaker's "
        "value); utterance: a cohort is the utterances with a value (a --by column that varies within speakers, "
        "--by-level), so a speaker with utterances of several values counts in each cohort, cohort speaker shares "
        "need not add to 100%, and the bottom-cohort share counts speakers with any utterance in the bottom cohort."
    )


class AuditReport(OpenModel):
    """fairaudit audit report"""

    model_config = ConfigDict(
        extra="allow",
        title="fairaudit audit report",
        json_schema_extra={
            "description": "The JSON written by `fairaudit audit --json`. WER values are fractions (0.123); fields "
            "ending in _pct are percentages. Fields not computed are null, never missing."
        },
    )

    fairaudit_version: str = required("The fairaudit version that wrote the report.")
    seed: int = required("The random seed of k-means, bootstrap, permutations and the hold-out split.")
    parameters: dict[str, Any] = required(
        "Every audit option as used (the keys of fairaudit.audit(**options); fairaudit audit --help explains them)."
    )
    input: InputSummary = required("The audited log.")
    methods: dict[str, MethodReport] = Field(
        ...,
        description="Results by method name: a registered method name (fairaudit audit --help lists them); "
        "attribute:<columns> when several --by specs are audited.",
        json_schema_extra={"propertyNames": {"pattern": METHOD_NAME_PATTERN}},
    )
    notes: list[str] = required("Warnings and repairs made while reading the log, in plain English.")
    speaker_conflicts: dict[str, int] = required(
        "column -> speakers whose metadata differ between their utterances (the first value is used)."
    )
