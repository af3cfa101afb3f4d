"""Cohort metrics (SPEC section 5): pooled WER, ranking, bottom/top selection, WER gap and share.

Everything is written over a leading "replicate" axis so that the same code computes the point
estimate (one replicate), the bootstrap (speaker-weight replicates) and the permutation null
(shuffled outcomes) without Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from fairaudit.partition import Partition

TopMode = Literal["best", "rest"]


@dataclass
class CohortSums:
    """Per-cohort totals: arrays of shape (n_cohorts,)."""

    errors: np.ndarray
    ref_words: np.ndarray
    utterances: np.ndarray
    speakers: np.ndarray

    @property
    def wer(self) -> np.ndarray:
        return pooled_wer(self.errors, self.ref_words)


def cohort_sums(partition: Partition, errors: np.ndarray, ref_words: np.ndarray, utterances: np.ndarray) -> CohortSums:
    """Sum errors, reference words, utterances and speakers per cohort."""
    labels = partition.labels
    keep = labels >= 0
    k = partition.n_cohorts
    lab = labels[keep]

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(lab, weights=np.asarray(values, dtype=np.float64)[keep], minlength=k).round().astype(np.int64)

    return CohortSums(
        errors=total(errors),
        ref_words=total(ref_words),
        utterances=total(utterances),
        speakers=np.bincount(lab, minlength=k).astype(np.int64),
    )


def pooled_wer(errors: np.ndarray, ref_words: np.ndarray) -> np.ndarray:
    """Pooled WER = sum of errors / sum of reference words; NaN where there are no words."""
    errors = np.asarray(errors, dtype=np.float64)
    ref_words = np.asarray(ref_words, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ref_words > 0, errors / np.where(ref_words > 0, ref_words, 1.0), np.nan)


def wer_gap_pct(bottom_wer: np.ndarray, top_wer: np.ndarray) -> np.ndarray:
    """WER gap (%) = 100 x (WER(B) - WER(T)) / WER(T); NaN when WER(T) is 0 or undefined."""
    bottom_wer = np.asarray(bottom_wer, dtype=np.float64)
    top_wer = np.asarray(top_wer, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top_wer > 0, 100.0 * (bottom_wer - top_wer) / np.where(top_wer > 0, top_wer, 1.0), np.nan)


def rank_order(wer: np.ndarray) -> np.ndarray:
    """Cohort indices from worst (highest WER) to best; undefined WER last; ties by index."""
    key = np.where(np.isnan(wer), -np.inf, wer)
    return np.lexsort((np.arange(len(wer)), -key))


@dataclass
class Selection:
    """Boolean cohort masks of shape (n_replicates, n_cohorts) for the bottom and top cohorts."""

    bottom: np.ndarray
    top: np.ndarray

    def gap_pct(self, errors: np.ndarray, ref_words: np.ndarray) -> np.ndarray:
        """WER gap (%) per replicate from per-replicate cohort totals of shape (R, K)."""
        return wer_gap_pct(masked_wer(errors, ref_words, self.bottom), masked_wer(errors, ref_words, self.top))


def masked_wer(errors: np.ndarray, ref_words: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Pooled WER of the union of the cohorts in ``mask``, per replicate."""
    return pooled_wer((errors * mask).sum(axis=-1), (ref_words * mask).sum(axis=-1))


def select_bottom_top(
    wer: np.ndarray,
    speakers: np.ndarray,
    eligible: np.ndarray,
    *,
    bottom_share: float | None = None,
    top: TopMode = "best",
) -> Selection:
    """Choose bottom and top cohorts per replicate (SPEC 5).

    ``wer`` is (R, K); ``speakers`` (K,) speaker counts; ``eligible`` (K,) marks cohorts that meet
    the size minimum and may be chosen. Bottom: the worst eligible cohort, or with
    ``bottom_share`` the union of the worst eligible cohorts whose share of assigned speakers is
    closest to it (at least one cohort, and always leaving at least one eligible cohort out). Top: the best eligible cohort outside the
    bottom (``"best"``) or every assigned speaker outside it (``"rest"``). Replicates with fewer
    than two eligible cohorts get empty masks.
    """
    wer = np.atleast_2d(np.asarray(wer, dtype=np.float64))
    n_rep, k = wer.shape
    eligible = np.asarray(eligible, dtype=bool) & ~np.isnan(wer)
    n_eligible = eligible.sum(axis=1)
    # Worst first among eligible; ineligible cohorts sort to the end.
    key = np.where(eligible, wer, -np.inf)
    order = np.argsort(-key, axis=1, kind="stable")
    rank_of_position = np.empty_like(order)
    np.put_along_axis(rank_of_position, order, np.arange(k)[None, :].repeat(n_rep, axis=0), axis=1)

    if bottom_share is None:
        n_bottom = np.ones(n_rep, dtype=np.int64)
    else:
        total = float(speakers.sum())
        share_sorted = np.take_along_axis(np.broadcast_to(speakers, (n_rep, k)), order, axis=1) / max(total, 1.0)
        cumulative = np.cumsum(share_sorted, axis=1)
        # The number of worst cohorts whose speaker share is closest to the target (ties: fewer),
        # so that a coarse partition never turns a 10% request into 60% of speakers.
        n_bottom = np.argmin(np.abs(cumulative - bottom_share) + 1e-12 * np.arange(k), axis=1) + 1
    n_bottom = np.minimum(n_bottom, np.maximum(n_eligible - 1, 0))
    bottom = (rank_of_position < n_bottom[:, None]) & eligible

    if top == "rest":
        top_mask = ~bottom & (speakers > 0)[None, :]
    else:
        # Best eligible cohort = last eligible in worst-first order.
        best_rank = n_eligible - 1
        top_mask = (rank_of_position == best_rank[:, None]) & eligible & ~bottom
    valid = (n_eligible >= 2)[:, None]
    return Selection(bottom=bottom & valid, top=top_mask & valid)
