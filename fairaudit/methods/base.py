"""The interface every cohort-discovery method shares (scikit-learn style).

``method.fit(speakers)`` learns cohort rules from a speaker table and sets ``partition_``;
``method.assign(speakers)`` applies the learned rules to any speaker table (e.g. held-out
speakers); ``method.null_gaps(...)`` re-runs the outcome-dependent part of the discovery on
shuffled outcomes for the permutation test. Methods never render and never compute intervals.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from fairaudit.stats.metrics import BottomMode, Selection, TopMode, cell_price, select_bottom_top
from fairaudit.model.partition import Partition
from fairaudit.model.speakers import SpeakerTable

if TYPE_CHECKING:
    from fairaudit.pipeline.audit import AuditOptions


@dataclass(frozen=True)
class SelectionRule:
    """How bottom and top cohorts are chosen from a partition (SPEC 5)."""

    min_speakers: int = 30
    bottom: BottomMode = "auto"
    bottom_share: float | None = None
    max_bottom_share: float = 0.5
    #: Gain one more cell must add to join the bottom cohort (``--bottom auto``); set per audit to
    #: CELL_PENALTY x the speaker dispersion (:func:`fairaudit.stats.metrics.speaker_dispersion`).
    cell_penalty: float = 0.0
    top: TopMode = "rest"

    def eligible(self, speakers_per_cohort: np.ndarray, words_per_cohort: np.ndarray | None = None) -> np.ndarray:
        """Cohorts large enough to be chosen as bottom or top."""
        ok = np.asarray(speakers_per_cohort) >= self.min_speakers
        if words_per_cohort is not None:
            ok &= np.asarray(words_per_cohort) > 0
        return ok

    def gaps(self, errors: np.ndarray, ref_words: np.ndarray, speakers: np.ndarray) -> np.ndarray:
        """Gap (%) per replicate for cohort totals of shape (R, K) with speaker counts (K,)."""
        return self.select(errors, ref_words, speakers).gap_pct(errors, ref_words)

    def statistic(self, errors: np.ndarray, ref_words: np.ndarray, speakers: np.ndarray) -> np.ndarray:
        """The permutation test's statistic per replicate: the size-weighted gain of the selected
        bottom cohort against every other assigned speaker, W_B W_R / (W_B + W_R) (WER_B - WER_R)^2,
        signed (negative when B is not worse), less ``cell_penalty`` per cell beyond the first.

        It is the criterion the selection maximises, so a large cohort with a moderate excess is
        judged on the same scale as a small extreme one (the raw gap favours the latter); 0 when
        no cohort can be chosen.
        """
        errors = np.atleast_2d(np.asarray(errors, dtype=np.float64))
        ref_words = np.atleast_2d(np.asarray(ref_words, dtype=np.float64))
        bottom = self.select(errors, ref_words, speakers).bottom
        e_b, w_b = (errors * bottom).sum(axis=1), (ref_words * bottom).sum(axis=1)
        e_r, w_r = errors.sum(axis=1) - e_b, ref_words.sum(axis=1) - w_b
        with np.errstate(invalid="ignore", divide="ignore"):
            difference = e_b / w_b - e_r / w_r
            gain = w_b * w_r / (w_b + w_r) * difference * np.abs(difference)
        n_eligible = (self.eligible(speakers)[None, :] & (ref_words > 0)).sum(axis=1)
        gain = gain - cell_price(self.cell_penalty, n_eligible) * np.maximum(bottom.sum(axis=1) - 1, 0)
        return np.where(bottom.any(axis=1) & np.isfinite(gain), gain, 0.0)

    def select(self, errors: np.ndarray, ref_words: np.ndarray, speakers: np.ndarray) -> Selection:
        """Bottom and top cohorts per replicate for cell totals (R, K) and speaker counts (K,)."""
        return select_bottom_top(
            errors, ref_words, speakers, self.eligible(speakers),
            bottom=self.bottom, bottom_share=self.bottom_share, max_bottom_share=self.max_bottom_share,
            cell_penalty=self.cell_penalty, top=self.top,
        )


class CohortMethod(ABC):
    """A cohort-discovery method: speaker table in, partition out."""

    name: ClassVar[str]
    #: One line for report headings: "<name>: what the cohorts are".
    title: ClassVar[str] = ""
    #: Position in reports (lower first).
    display_order: ClassVar[int] = 100
    #: Run without ``--method`` when the log has the required columns.
    runs_by_default: ClassVar[bool] = True
    #: Speaker-table columns the method needs; "embeddings" means the embedding matrix.
    requires: ClassVar[tuple[str, ...]] = ()

    partition_: Partition

    @classmethod
    def from_options(cls, opts: "AuditOptions") -> list["CohortMethod"]:
        """The method instance(s) an audit with these options runs (usually one)."""
        raise NotImplementedError

    def definition(self) -> dict:
        """The fitted cohorts as portable definitions (SPEC 6, 9): a JSON-serialisable dict with a
        ``cells`` list (each with ``id`` and ``description``) and whatever else :meth:`assign`
        needs, so that :meth:`from_definition` can put new speakers in the same cohorts."""
        raise NotImplementedError(f"{type(self).__name__} has no portable cohort definitions")

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> "CohortMethod":
        """A fitted method that assigns speakers to the stored cohorts (no discovery).

        ``context`` carries what a definition refers to but does not hold (e.g. the census
        table). Raises ValueError when the definition is malformed or cannot apply.
        """
        raise NotImplementedError(f"{cls.__name__} cannot be rebuilt from stored definitions")

    @abstractmethod
    def fit(self, speakers: SpeakerTable) -> "CohortMethod":
        """Learn cohort rules from ``speakers`` and set ``partition_`` (a partition of them)."""

    @abstractmethod
    def assign(self, speakers: SpeakerTable) -> Partition:
        """Apply the learned rules to ``speakers``; cohorts keep the ids learned in ``fit``."""

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """The discovery's test statistic (:meth:`SelectionRule.statistic`) for each row of
        ``permutations`` (shuffled speaker positions), both stages re-run.

        The default refits a copy of the method on each shuffled table: exact but slow. Methods
        whose cohorts do not depend on the outcomes override it with a vectorised re-ranking.
        """
        errors, words = speakers.errors, speakers.ref_words
        gaps = np.empty(len(permutations))
        for row, order in enumerate(permutations):
            shuffled = speakers.with_outcomes(errors[order], words[order])
            method = copy.deepcopy(self).fit(shuffled)
            gaps[row] = fixed_partition_statistic(method.partition_, errors[order][None, :], words[order][None, :], rule)[0]
        return gaps

    def check_requirements(self, speakers: SpeakerTable) -> list[str]:
        """Names of required inputs missing from ``speakers`` (empty when the method can run)."""
        missing = []
        for column in self.requires:
            if column == "embeddings":
                if speakers.embeddings is None or np.isnan(speakers.embeddings).all():
                    missing.append("speaker embeddings (emb_* columns or --embeddings FILE)")
            elif not speakers.has_column(column):
                missing.append(f"column {column!r}")
        return missing


def fixed_partition_statistic(partition: Partition, errors: np.ndarray, words: np.ndarray, rule: SelectionRule) -> np.ndarray:
    """The selection's test statistic (:meth:`SelectionRule.statistic`) per replicate, for a fixed
    partition and replicated per-speaker outcomes (R, n): the bottom cohort is re-chosen each time."""
    indicator = partition.indicator()
    cohort_errors = np.asarray(errors, dtype=np.float64) @ indicator
    cohort_words = np.asarray(words, dtype=np.float64) @ indicator
    speakers = indicator.sum(axis=0)
    return rule.statistic(cohort_errors, cohort_words, speakers)


def definition_cells(definition: dict) -> list[dict]:
    """The ``cells`` of a stored definition, checked: a list of objects with a string ``id``."""
    cells = definition.get("cells") if isinstance(definition, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) and isinstance(c.get("id"), str) for c in cells):
        raise ValueError("the definition needs 'cells': a list of objects with a string 'id'")
    if len({c["id"] for c in cells}) != len(cells):
        raise ValueError("cell ids in the definition are not unique")
    return cells
