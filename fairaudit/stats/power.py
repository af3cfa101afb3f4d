"""Power and data-collection targets per cohort (SPEC 10): what gap the data could have found.

For cohort c against the rest R of the assigned speakers, the pooled WER ratio WER_c / WER_R is
estimated with the speaker-clustered (sandwich) variance that the speaker bootstrap also
reflects: under no gap (one pooled rate p), var(log WER_c) ~= sum_i (e_i - p w_i)^2 / (p W_c)^2
over c's speakers, and likewise for R. The smallest relative gap a two-sided test at level alpha
detects with 80% power is exp((z_{1-alpha/2} + z_{0.8}) x sqrt(v_c + v_R)) - 1. That is for a
cohort named in advance; a cohort found by searching needs more (the permutation test pays for
the search). v_c shrinks as 1/n_c with more speakers like c's, which gives the speakers needed
for a target gap.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from fairaudit.model.partition import Partition

POWER = 0.8


def _variances(
    labels: np.ndarray, k: int, errors: np.ndarray, words: np.ndarray, clusters: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per cohort (labels 0..k-1, -1 = left out): var(log WER) of the cohort and of the rest of the
    labelled rows, under no gap. With ``clusters`` (utterance-level rows: a speaker's utterances with
    one value) residuals are summed per speaker, and the covariance of a speaker's rows inside and
    outside the cohort is folded into the rest's term (so v_c + v_r is var(log ratio))."""
    keep = labels >= 0
    e = np.asarray(errors, dtype=np.float64)[keep]
    w = np.asarray(words, dtype=np.float64)[keep]
    lab = labels[keep]
    p = e.sum() / w.sum() if w.sum() > 0 else np.nan
    w_c = np.bincount(lab, weights=w, minlength=k)
    w_r = w.sum() - w_c
    residual = e - p * w
    if clusters is None:
        s_c = np.bincount(lab, weights=residual**2, minlength=k)
        s_r, cross = (residual**2).sum() - s_c, np.zeros(k)
    else:
        speaker = np.unique(np.asarray(clusters)[keep], return_inverse=True)[1]
        inside = np.zeros((int(speaker.max()) + 1 if len(speaker) else 0, k))
        np.add.at(inside, (speaker, lab), residual)
        outside = inside.sum(axis=1, keepdims=True) - inside
        s_c, s_r, cross = (inside**2).sum(axis=0), (outside**2).sum(axis=0), (inside * outside).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        v_c = np.where(w_c > 0, s_c / (p * w_c) ** 2, np.nan)
        v_r = np.where(w_r > 0, (s_r / (p * w_r) ** 2) - 2 * cross / (p * p * w_c * w_r), np.nan)
    return v_c, v_r


def _z(alpha: float) -> float:
    return NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(POWER)


def _gap(v_c: np.ndarray, v_r: np.ndarray, alpha: float) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return 100.0 * np.expm1(_z(alpha) * np.sqrt(v_c + v_r))


def _needed(v_c: np.ndarray, v_r: np.ndarray, n_c: np.ndarray, alpha: float, target_gap_pct: float) -> np.ndarray:
    allowed = (math.log1p(target_gap_pct / 100.0) / _z(alpha)) ** 2  # the variance a detectable gap allows
    with np.errstate(invalid="ignore", divide="ignore"):
        room = allowed - v_r
        total = np.where(room > 0, n_c * v_c / room, np.nan)
        return np.where(np.isfinite(total), np.maximum(np.ceil(total - n_c), 0.0), np.nan)


def detectable_gap_pct(
    partition: Partition, errors: np.ndarray, words: np.ndarray, alpha: float, clusters: np.ndarray | None = None
) -> np.ndarray:
    """Per cohort: the smallest relative WER gap (%) against the rest detectable at ``alpha`` with 80% power."""
    return _gap(*_variances(partition.labels, partition.n_cohorts, errors, words, clusters), alpha)


def speakers_needed(
    partition: Partition,
    errors: np.ndarray,
    words: np.ndarray,
    alpha: float,
    target_gap_pct: float,
    clusters: np.ndarray | None = None,
) -> np.ndarray:
    """Per cohort: how many more speakers like its own it needs for a gap of ``target_gap_pct`` to be
    detectable (0 when it already is; NaN when the rest's own noise alone prevents it)."""
    v_c, v_r = _variances(partition.labels, partition.n_cohorts, errors, words, clusters)
    n_c = partition.speaker_counts().astype(np.float64)
    return _needed(v_c, v_r, n_c, alpha, target_gap_pct)


def selection_power(
    in_bottom: np.ndarray,
    in_top: np.ndarray,
    errors: np.ndarray,
    words: np.ndarray,
    alpha: float,
    target_gap_pct: float | None,
    clusters: np.ndarray | None = None,
) -> tuple[float, float]:
    """For the chosen bottom cohort against the top cohort (speaker masks): the detectable gap (%)
    and, with a target gap, the extra bottom-cohort speakers needed (NaN without one)."""
    labels = np.where(in_bottom, 0, np.where(in_top, 1, -1))
    v_c, v_r = _variances(labels, 2, errors, words, clusters)
    gap = float(_gap(v_c, v_r, alpha)[0])
    if not target_gap_pct:
        return gap, float("nan")
    needed = _needed(v_c, v_r, np.array([float(in_bottom.sum()), float(in_top.sum())]), alpha, target_gap_pct)
    return gap, float(needed[0])
