"""Audit results: what the measurement produces and every renderer reads (Fairlearn-style clarity).

:class:`MethodResult` holds one method's cohorts and headline figures; :class:`AuditResult` holds
all methods plus provenance. ``to_dict()`` is the JSON report whose field names are a contract
(SPEC 6): the gate, the HTML report and users' scripts read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fairaudit.model.figures import Figures
from fairaudit.model.numbers import finite_or_none
from fairaudit.model.partition import Partition
from fairaudit.stats.anatomy import ANATOMY_FIELDS


@dataclass
class MethodResult:
    """One discovery method's outcome: partition, figures, verdict and method-specific details."""

    name: str
    partition: Partition
    discovery: Figures
    verdict: str
    verdict_reason: str
    holdout: Figures | None = None
    top_mode: str = "best"
    min_report_speakers: int = 10
    #: Portable cohort definitions (``CohortMethod.definition()``), for ``audit --cohorts`` and compare.
    definition: dict | None = None
    #: "discovered" (found on this log) or "stored" (measured on definitions from an audit JSON).
    cohort_source: str = "discovered"
    #: "speaker" (each speaker in one cohort) or "utterance" (a cohort is utterances with a value;
    #: a speaker can be in several): ``--by`` on a column that varies within speakers.
    cohort_level: str = "speaker"

    @property
    def cohorts(self) -> pd.DataFrame:
        return self.discovery.cohorts

    def bottom_label(self, figures: Figures | None = None) -> str:
        figures = figures or self.discovery
        return _join(public_id_list(figures, figures.bottom))

    def top_label(self, figures: Figures | None = None) -> str:
        figures = figures or self.discovery
        if self.top_mode == "rest" and len(figures.top) > 1:
            return "rest"
        return _join(public_id_list(figures, figures.top))

    def describe(self, ids: list[str], figures: Figures | None = None) -> str:
        """Human-readable description of a union of cohorts of ``figures`` (the discovery's by
        default); a cohort suppressed in them is never described (its public id says "suppressed")."""
        figures = figures or self.discovery
        if self.top_mode == "rest" and len(ids) > 1 and list(ids) == list(figures.top):
            return "all other utterances" if self.cohort_level == "utterance" else "all other speakers"
        lookup = dict(zip(self.partition.cohort_ids, self.partition.descriptions))
        hidden = suppressed_ids(figures)
        shown = [lookup.get(i, i) for i in ids if str(i) not in hidden]
        return "; ".join(shown + ([SUPPRESSED_DESCRIPTION] if len(shown) < len(ids) else [])) or "none"

    def _suppressed_ids(self) -> set[str]:
        """Cohorts under the reporting minimum in the discovery or the hold-out figures."""
        ids = set()
        for figures in (self.discovery, self.holdout):
            if figures is not None:
                ids |= suppressed_ids(figures)
        return ids

    def to_dict(self) -> dict:
        data = _figures_dict(self.discovery, self)
        data = {"verdict": self.verdict, "verdict_reason": self.verdict_reason, **data}
        data["unassigned"] = dict(self.partition.unassigned_reasons)
        data["holdout"] = None if self.holdout is None else _figures_dict(self.holdout, self)
        details = _withhold_suppressed_cells(_jsonable(self.partition.details), self._suppressed_ids())
        details = _withhold_cluster_views(details, self.partition.cohort_ids, self._suppressed_ids())
        if "candidates" in details:  # a method that ranks candidate splits (zip-demographic) lists them
            data["candidates"] = [_withhold_candidate(dict(c)) for c in details.pop("candidates")]
            data["chosen"] = details.pop("chosen", None)
        data["details"] = details
        data["cohort_source"] = self.cohort_source
        data["cohort_level"] = self.cohort_level
        data["definition"] = (
            None
            if self.definition is None
            else dict(
                _withhold_suppressed_cells(_jsonable(self.definition), self._suppressed_ids()),
                method=self.name.split(":")[0],
            )
        )
        return data


@dataclass
class AuditResult:
    """Everything one audit found, ready for any renderer."""

    version: str
    seed: int
    parameters: dict
    input: dict
    methods: dict[str, MethodResult]
    notes: list[str] = field(default_factory=list)
    speaker_conflicts: dict[str, int] = field(default_factory=dict)
    assignments_frame: pd.DataFrame | None = None

    def to_dict(self) -> dict:
        """The JSON audit report (SPEC 6), valid against data_schemas/audit_report.schema.json."""
        return {
            "fairaudit_version": self.version,
            "seed": self.seed,
            "parameters": _jsonable(self.parameters),
            "input": _jsonable(self.input),
            "notes": list(self.notes),
            "speaker_conflicts": dict(self.speaker_conflicts),
            "methods": {name: result.to_dict() for name, result in self.methods.items()},
        }

    def to_json(self, indent: int | None = 2) -> str:
        """The JSON report as text; identical input and seed give identical text."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"

    def to_frame(self) -> pd.DataFrame:
        """All methods' cohorts in one long table (one row per method and cohort), for your own
        analysis: it includes the suppressed cohorts with their real ids and figures, which the
        reports (JSON, HTML, Markdown, terminal) withhold; publish those, not this table."""
        frames = []
        for name, result in self.methods.items():
            cohorts = result.discovery.cohorts.copy()
            cohorts.insert(0, "method", name)
            cohorts["bottom"] = cohorts["id"].isin(result.discovery.bottom)
            cohorts["top"] = cohorts["id"].isin(result.discovery.top)
            frames.append(cohorts)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def assignments(self) -> pd.DataFrame:
        """Speaker -> cohort per method: columns method, speaker_id, cohort_id, cohort, bottom."""
        if self.assignments_frame is None:
            return pd.DataFrame(columns=["method", "speaker_id", "cohort_id", "cohort", "bottom"])
        return self.assignments_frame

    def summary(self) -> str:
        """Per method the verdict (with its reason) and the headline, as plain text."""
        from fairaudit.render.terminal import headline

        return "\n".join(
            f"{name}: {result.verdict} ({result.verdict_reason}); {headline(result)}"
            for name, result in self.methods.items()
        )

    def __repr__(self) -> str:
        verdicts = ", ".join(f"{name}: {result.verdict}" for name, result in self.methods.items())
        return (
            f"AuditResult({self.input.get('speakers', 0):,} speakers, {self.input.get('utterances', 0):,} utterances; "
            f"{verdicts}; .summary(), .to_frame(), .to_json(), .to_html())"
        )

    def _repr_html_(self) -> str:
        """A compact verdict table for notebooks (every data string escaped)."""
        from html import escape

        from fairaudit.render import format as fmt

        rows = []
        for name, result in self.methods.items():
            figures = result.discovery
            rows.append(
                f"<tr><td>{escape(name)}</td><td><b>{escape(result.verdict)}</b></td>"
                f"<td>{escape(fmt.pct(figures.wer_gap_pct))} {escape(fmt.interval(*figures.wer_gap_ci))}</td>"
                f"<td>{escape(fmt.pct(figures.bottom_share_pct))}</td>"
                f"<td>{escape(result.describe(figures.bottom) if figures.bottom else '')}</td></tr>"
            )
        return (
            "<table><thead><tr><th>method</th><th>verdict</th><th>WER gap [95% CI]</th><th>bottom-cohort share</th>"
            "<th>bottom cohort</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
        )

    def to_html(self) -> str:
        """The self-contained HTML report."""
        from fairaudit.render.html import render_html

        return render_html(self)


#: Public ids of suppressed cohorts are this prefix and a number.
SUPPRESSED_PREFIX = "suppressed-"


def suppressed_ids(figures: Figures) -> set[str]:
    """The (real) ids of the cohorts suppressed in these figures."""
    rows = figures.cohorts
    return set(rows.loc[rows["suppressed"].astype(bool), "id"].astype(str))


def public_ids(figures: Figures) -> dict[str, str]:
    """Suppressed cohorts' ids replaced by "suppressed-1", "suppressed-2", ...: an attribute
    cohort's id is its value (a ZIP code, a name), which must not be published either."""
    hidden = suppressed_ids(figures)
    return {
        **{str(i): str(i) for i in figures.cohorts["id"]},
        **{cid: f"{SUPPRESSED_PREFIX}{n}" for n, cid in enumerate(sorted(hidden), 1)},
    }


def published_order(figures: Figures) -> list[dict]:
    """The cohort rows in the order every output lists them: reported cohorts by rank, then the
    suppressed ones by their public number (suppressed-1, -2, ...), never by WER, whose order
    would reveal how they rank."""
    public = public_ids(figures)
    return sorted(
        figures.cohorts.to_dict("records"),
        key=lambda r: (True, _suppressed_number(public[str(r["id"])])) if r["suppressed"] else (False, r["rank"]),
    )


def public_id_list(figures: Figures, ids: list[str]) -> list[str]:
    """Cohort ids as published (bottom or top lists): reported ones first, in their order, then the
    suppressed ones by public number, so no suppressed id sits where its real value would sort."""
    public = public_ids(figures)
    hidden = suppressed_ids(figures)
    shown = [public[str(i)] for i in ids if str(i) not in hidden]
    return shown + sorted((public[str(i)] for i in ids if str(i) in hidden), key=_suppressed_number)


def _suppressed_number(public_id: str) -> int:
    return int(public_id[len(SUPPRESSED_PREFIX) :])


def _figures_dict(figures: Figures, method: MethodResult) -> dict:
    public = public_ids(figures)
    cohorts = []
    # Reported cohorts are ranked 1..m among themselves and suppressed ones listed last without a
    # rank, by public number: their position in the ranking would reveal their WER.
    rows = published_order(figures)
    for visible_rank, row in enumerate(rows, start=1):
        suppressed = bool(row["suppressed"])
        entry = {
            "id": public[str(row["id"])],
            # A region's or window's description is its geometry: withheld with its figures.
            "description": SUPPRESSED_DESCRIPTION if suppressed else row["description"],
            "rank": None if suppressed else visible_rank,
            "suppressed": suppressed,
            "eligible": None if suppressed else bool(row["eligible"]),  # it would bound the withheld size
        }
        for key in ("speakers", "utterances", "ref_words", "errors"):
            entry[key] = None if suppressed else int(row[key])
        for key in ("wer", "speaker_share_pct", "utterance_share_pct", "word_share_pct"):
            entry[key] = None if suppressed else finite_or_none(row[key])
        entry["wer_ci"] = (
            [None, None] if suppressed else [finite_or_none(row["wer_ci_low"]), finite_or_none(row["wer_ci_high"])]
        )
        for key in ANATOMY_FIELDS + ("detectable_gap_pct",):
            entry[key] = None if suppressed else finite_or_none(row.get(key))
        needed = None if suppressed else finite_or_none(row.get("speakers_needed"))
        entry["speakers_needed"] = None if needed is None else int(needed)
        if "p_value" in row:
            entry["p_value"] = None if suppressed else finite_or_none(row["p_value"])
            entry["p_value_bh"] = None if suppressed else finite_or_none(row["p_value_bh"])
        cohorts.append(entry)
    return {
        "bottom": method.bottom_label(figures) or None,
        "top": method.top_label(figures) or None,
        "bottom_cohorts": public_id_list(figures, figures.bottom),
        "top_cohorts": public_id_list(figures, figures.top),
        "bottom_description": method.describe(figures.bottom, figures) if figures.bottom else None,
        "top_description": method.describe(figures.top, figures) if figures.top else None,
        "bottom_wer": finite_or_none(figures.bottom_wer),
        "bottom_wer_ci": [finite_or_none(v) for v in figures.bottom_wer_ci],
        "top_wer": finite_or_none(figures.top_wer),
        "wer_gap_pct": finite_or_none(figures.wer_gap_pct),
        "wer_gap_ci": [finite_or_none(v) for v in figures.wer_gap_ci],
        "bottom_share_pct": finite_or_none(figures.bottom_share_pct),
        "bottom_share_ci": [finite_or_none(v) for v in figures.bottom_share_ci],
        "bottom_utterance_share_pct": finite_or_none(figures.bottom_utterance_share_pct),
        "bottom_word_share_pct": finite_or_none(figures.bottom_word_share_pct),
        "p_value": finite_or_none(figures.p_value),
        "overall_wer": finite_or_none(figures.overall_wer),
        "reported_wer": finite_or_none(figures.reported_wer),
        "speakers": int(figures.speakers),
        "assigned_speakers": int(figures.assigned_speakers),
        "detectable_gap_pct": finite_or_none(figures.detectable_gap_pct),
        "speakers_needed": None if figures.speakers_needed is None else int(figures.speakers_needed),
        "adjusted": figures.adjusted,
        "cohorts": cohorts,
    }


SUPPRESSED_DESCRIPTION = (
    "suppressed: fewer speakers than --min-report-speakers, or withheld so that such a cohort cannot be "
    "recovered by subtraction"
)


def suppressed_note(minimum: int) -> str:
    """The words every report shows for a suppressed cohort (declared once: SPEC 6)."""
    return f"suppressed (fewer than {minimum} speakers, or withheld to protect a cohort that has fewer)"


def _withhold_cluster_views(details: dict, cohort_ids: list[str], suppressed: set[str]) -> dict:
    """embedding-kmeans extras without suppressed clusters: no metadata profile, no projection
    cells, no centre (SPEC 6)."""
    hidden = {index for index, cid in enumerate(cohort_ids) if cid in suppressed}
    if not hidden:
        return details
    out = dict(details)
    if isinstance(out.get("profiles"), list):
        out["profiles"] = [[] if index in hidden else profile for index, profile in enumerate(out["profiles"])]
    projection = out.get("projection")
    if isinstance(projection, dict):
        projection = dict(projection)
        projection["centres"] = [
            None if index in hidden else centre for index, centre in enumerate(projection.get("centres", []))
        ]
        projection["covariances"] = [
            None if index in hidden else cov for index, cov in enumerate(projection.get("covariances", []))
        ]
        out["projection"] = projection
    return out


def _withhold_suppressed_cells(details: dict, suppressed: set[str]) -> dict:
    """Method details without the entries (region bounds, scan windows) of suppressed cells; a
    definition also says how many of its cells were withheld (``withheld_cells``), so that a
    later audit on it can say its speakers were put among the published cells only."""
    out = {}
    for key, value in details.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v for v in value):
            kept = [v for v in value if str(v["id"]) not in suppressed]
            if key == "cells" and len(kept) < len(value):
                out["withheld_cells"] = int(details.get("withheld_cells") or 0) + len(value) - len(kept)
            value = kept
        if key != "withheld_cells" or "withheld_cells" not in out:
            out[key] = value
    return out


def _withhold_candidate(candidate: dict) -> dict:
    """A zip-demographic candidate as published: whole, or with every figure withheld when the
    method marked it (a side under --min-report-speakers, or differencing; ``fairaudit.privacy``)."""
    reason = candidate.pop("withheld_reason", None)
    if reason is None:
        return dict(candidate, suppressed=False, suppressed_reason=None)
    sides = [
        dict(side, speakers=None, ref_words=None, errors=None, wer=None, suppressed=True)
        for side in candidate["cohorts"]
    ]
    return dict(candidate, cohorts=sides, wer_gap_pct=None, gain=None, suppressed=True, suppressed_reason=reason)


def _join(ids: list[str]) -> str:
    return " + ".join(ids)


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples inside a structure to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value
