"""attribute: disaggregation by given metadata columns (SPEC 4.4), like Fairlearn's MetricFrame.

``by=("accent",)`` groups speakers by accent; ``by=("accent", "gender")`` by their intersection.
Groups are fixed, so the permutation test re-ranks them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fairaudit.errors import UsageError
from fairaudit.methods.base import CohortMethod, definition_cells
from fairaudit.methods.registry import register
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.model.speakers import SpeakerTable

#: The cell that, on stored definitions with withheld groups, holds every speaker whose value is
#: not a published cohort: the withheld groups (and values new to this log), as in the audit's rest.
OTHER_VALUES = "other-values"
OTHER_DESCRIPTION = "a value withheld from the stored cohorts (fewer speakers than --min-report-speakers) or new"


@register
class AttributeGroups(CohortMethod):
    """Cohorts = the values (or value combinations) of metadata columns."""

    name = "attribute"
    title = "attribute: cohorts of given metadata"
    display_order = 40
    runs_by_default = False  # runs when --by names columns
    cells_depend_on_outcomes = False
    bottom_may_be_majority = True  # the groups are the user's: a worse majority is still reported
    #: Stored definitions only: how many groups the report withheld (their speakers: one extra cell).
    withheld_cells_: int = 0

    def __init__(self, by: Sequence[str] | str = (), min_speakers: int = 30) -> None:
        self.by = by  # stored as given (scikit-learn convention); parsed by ``columns``
        self.min_speakers = min_speakers

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns whose value combinations are the cohorts ("a,b" is the intersection of a and b)."""
        by = [part.strip() for part in self.by.split(",") if part.strip()] if isinstance(self.by, str) else self.by
        if not by:
            raise UsageError("the attribute method needs at least one column: use --by COLUMN")
        return tuple(by)

    @classmethod
    def from_options(cls, opts) -> list[AttributeGroups]:
        """One method per distinct --by spec (a repeated spec is one audit)."""
        return [cls(by=spec, min_speakers=opts.min_speakers) for spec in dict.fromkeys(opts.by or [])]

    @property
    def requires(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.columns

    def fit(self, speakers: SpeakerTable) -> AttributeGroups:
        keys, known = self._keys(speakers)
        self.groups_ = sorted(pd.unique(keys[known]).tolist())
        self.other_values_ = False
        self.partition_ = self.assign(speakers)
        return self

    def _assign(self, speakers: SpeakerTable) -> Partition:
        keys, known = self._keys(speakers)
        lookup = {key: index for index, key in enumerate(self.groups_)}
        labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
        labels[known] = pd.Series(keys[known]).map(lookup).fillna(UNASSIGNED).to_numpy(dtype=np.int64)
        missing = int((~known).sum())
        unseen = known & (labels == UNASSIGNED)
        other = getattr(self, "other_values_", False)
        other_id = _unused_id(OTHER_VALUES, self.groups_)
        if other:
            labels[unseen] = len(self.groups_)
        reasons = {}
        if missing:
            reasons[f"missing {' or '.join(self.columns)}"] = missing
        if unseen.any() and not other:
            reasons["value not seen in discovery"] = int(unseen.sum())
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=list(self.groups_) + ([other_id] if other else []),
            descriptions=[self._describe(key) for key in self.groups_] + ([OTHER_DESCRIPTION] if other else []),
            unassigned_reasons=reasons,
            details={"by": list(self.columns)},
        )

    def definition(self) -> dict:
        """The grouping columns and each cohort's value (joined with " & " for intersections)."""
        return {
            "rule": "a speaker is in the cohort whose value equals its most frequent value of the columns",
            "by": list(self.columns),
            "cells": [{"id": key, "description": self._describe(key), "value": key} for key in self.groups_],
            # definitions read from a report that withheld groups keep saying so (their speakers join
            # the "other values" cell again when these definitions are reused)
            **({"withheld_cells": self.withheld_cells_} if getattr(self, "withheld_cells_", 0) else {}),
        }

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> AttributeGroups:
        by = definition.get("by")
        if not isinstance(by, list) or not by or not all(isinstance(c, str) for c in by):
            raise ValueError("an attribute definition needs 'by': a list of column names")
        method = cls(by=by)
        method.groups_ = [str(cell.get("value", cell["id"])) for cell in definition_cells(definition)]
        withheld = definition.get("withheld_cells")
        #: The stored audit withheld small groups: their speakers were in its "rest", so a speaker
        #: whose value is not published joins one extra cell (part of the rest), not "unassigned".
        method.other_values_ = isinstance(withheld, int) and withheld > 0
        method.withheld_cells_ = int(withheld) if method.other_values_ and withheld else 0
        return method

    def _keys(self, speakers: SpeakerTable) -> tuple[np.ndarray, np.ndarray]:
        """One string key per speaker ("indian & female" for intersections) and a known-mask."""
        frame = speakers.frame
        groupable = set(speakers.metadata_columns) | {"zip_code"}
        missing_columns = [c for c in self.columns if c not in frame.columns or c not in groupable]
        if missing_columns:
            raise UsageError(
                f"--by names column(s) {', '.join(map(repr, missing_columns))} "
                "that are not metadata columns of the log; "
                f"metadata columns are: {', '.join(speakers.metadata_columns) or 'none'}"
            )
        parts = [frame[c].astype("string") for c in self.columns]
        known = np.logical_and.reduce([p.notna().to_numpy() for p in parts])
        key = parts[0].fillna("")
        for part in parts[1:]:
            key = key + " & " + part.fillna("")
        return key.to_numpy(dtype=object), known

    def _describe(self, key: str) -> str:
        values = key.split(" & ") if len(self.columns) > 1 else [key]
        return ", ".join(f"{column} = {value}" for column, value in zip(self.columns, values))


def _unused_id(wanted: str, taken: list[str]) -> str:
    """``wanted``, or it with "_" appended until no real group has that id."""
    names = set(taken)
    while wanted in names:
        wanted += "_"
    return wanted
