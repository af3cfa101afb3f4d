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
from typing import ClassVar

import numpy as np

from fairaudit.metrics import TopMode, pooled_wer, select_bottom_top
from fairaudit.partition import Partition
from fairaudit.speakers import SpeakerTable


@dataclass(frozen=True)
class SelectionRule:
    """How bottom and top cohorts are chosen from a partition (SPEC 5)."""

    min_speakers: int = 30
    bottom_share: float | None = None
    top: TopMode = "best"

    def eligible(self, speakers_per_cohort: np.ndarray, words_per_cohort: np.ndarray | None = None) -> np.ndarray:
        """Cohorts large enough to be chosen as bottom or top."""
        ok = np.asarray(speakers_per_cohort) >= self.min_speakers
        if words_per_cohort is not None:
            ok &= np.asarray(words_per_cohort) > 0
        return ok

    def gaps(self, errors: np.ndarray, ref_words: np.ndarray, speakers: np.ndarray) -> np.ndarray:
        """Gap (%) per replicate for cohort totals of shape (R, K) with speaker counts (K,)."""
        wer = pooled_wer(errors, ref_words)
        selection = select_bottom_top(
            wer, speakers, self.eligible(speakers), bottom_share=self.bottom_share, top=self.top
        )
        return selection.gap_pct(errors, ref_words)


class CohortMethod(ABC):
    """A cohort-discovery method: speaker table in, partition out."""

    name: ClassVar[str]
    #: Speaker-table columns the method needs; "embeddings" means the embedding matrix.
    requires: ClassVar[tuple[str, ...]] = ()

    partition_: Partition

    @abstractmethod
    def fit(self, speakers: SpeakerTable) -> "CohortMethod":
        """Learn cohort rules from ``speakers`` and set ``partition_`` (a partition of them)."""

    @abstractmethod
    def assign(self, speakers: SpeakerTable) -> Partition:
        """Apply the learned rules to ``speakers``; cohorts keep the ids learned in ``fit``."""

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """Discovered gap (%) for each row of ``permutations`` (shuffled speaker positions).

        The default refits a copy of the method on each shuffled table: exact but slow. Methods
        whose cohorts do not depend on the outcomes override it with a vectorised re-ranking.
        """
        errors, words = speakers.errors, speakers.ref_words
        gaps = np.empty(len(permutations))
        for row, order in enumerate(permutations):
            shuffled = speakers.with_outcomes(errors[order], words[order])
            method = copy.deepcopy(self).fit(shuffled)
            gaps[row] = fixed_partition_gaps(method.partition_, errors[order][None, :], words[order][None, :], rule)[0]
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


def fixed_partition_gaps(partition: Partition, errors: np.ndarray, words: np.ndarray, rule: SelectionRule) -> np.ndarray:
    """Gap (%) per replicate for a fixed partition and replicated per-speaker outcomes (R, n)."""
    indicator = partition.indicator()
    cohort_errors = np.asarray(errors, dtype=np.float64) @ indicator
    cohort_words = np.asarray(words, dtype=np.float64) @ indicator
    speakers = indicator.sum(axis=0)
    return rule.gaps(cohort_errors, cohort_words, speakers)
