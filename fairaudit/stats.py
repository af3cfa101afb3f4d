"""Honest statistics (SPEC 5): speaker-level bootstrap, permutation p-values, Benjamini-Hochberg.

All resampling is over speakers, never utterances, and vectorised: a replicate is a row of a
speaker-weight or speaker-permutation matrix, and cohort totals for many replicates come from one
matrix product. Work is done in blocks of replicates to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from fairaudit.metrics import Selection, pooled_wer, wer_gap_pct

BLOCK = 100  # replicates per block: bounds memory at BLOCK x n_speakers


def bootstrap_counts(n: int, replicates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of multinomial speaker counts (how often each speaker is drawn), shape (b, n)."""
    for start in range(0, replicates, BLOCK):
        size = min(BLOCK, replicates - start)
        draws = rng.integers(0, n, size=(size, n))
        flat = (draws + (np.arange(size) * n)[:, None]).ravel()
        yield np.bincount(flat, minlength=size * n).reshape(size, n).astype(np.float32)


def bootstrap_cohorts(
    indicator: np.ndarray,
    errors: np.ndarray,
    ref_words: np.ndarray,
    selection: Selection,
    replicates: int,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of every cohort WER, the gap and the bottom-cohort share.

    ``indicator`` is the (n_speakers, n_cohorts) membership matrix, ``selection`` the fixed
    bottom/top masks (1, K) found on the data. Returns arrays with one row per replicate:
    ``wer`` (R, K), ``gap_pct`` (R,), ``share_pct`` (R,).
    """
    n, k = indicator.shape
    weighted_errors = indicator * np.asarray(errors, dtype=np.float64)[:, None]
    weighted_words = indicator * np.asarray(ref_words, dtype=np.float64)[:, None]
    membership = indicator
    bottom, top = selection.bottom[0], selection.top[0]
    wer_rows, gap_rows, share_rows = [], [], []
    for counts in bootstrap_counts(n, replicates, rng):
        cohort_errors = counts.astype(np.float64) @ weighted_errors
        cohort_words = counts.astype(np.float64) @ weighted_words
        cohort_speakers = counts.astype(np.float64) @ membership
        wer_rows.append(pooled_wer(cohort_errors, cohort_words))
        gap_rows.append(
            wer_gap_pct(
                pooled_wer(cohort_errors[:, bottom].sum(axis=1), cohort_words[:, bottom].sum(axis=1)),
                pooled_wer(cohort_errors[:, top].sum(axis=1), cohort_words[:, top].sum(axis=1)),
            )
        )
        assigned = cohort_speakers.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            share_rows.append(100.0 * cohort_speakers[:, bottom].sum(axis=1) / assigned)
        if progress is not None:
            progress(len(counts))
    return {
        "wer": np.concatenate(wer_rows) if wer_rows else np.empty((0, k)),
        "gap_pct": np.concatenate(gap_rows) if gap_rows else np.empty(0),
        "share_pct": np.concatenate(share_rows) if share_rows else np.empty(0),
    }


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list[list[float | None]] | list[float | None]:
    """Percentile interval(s) over the first axis, ignoring NaN replicates; None when undefined."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        return [None, None] if samples.ndim == 1 else [[None, None]] * samples.shape[1]
    tail = 100 * (1 - level) / 2
    finite = np.where(np.isfinite(samples), samples, np.nan)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            bounds = np.nanpercentile(finite, [tail, 100 - tail], axis=0)
    bounds = np.where(np.isfinite(bounds), bounds, np.nan)
    if samples.ndim == 1:
        return [_num(bounds[0]), _num(bounds[1])]
    return [[_num(lo), _num(hi)] for lo, hi in zip(bounds[0], bounds[1])]


def permutation_matrix(pool: np.ndarray, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """(P, n) speaker positions: identity outside ``pool``, a fresh shuffle of ``pool`` per row."""
    base = np.tile(np.arange(n, dtype=np.int64), (permutations, 1))
    pool = np.flatnonzero(pool)
    if len(pool) > 1 and permutations > 0:
        base[:, pool] = rng.permuted(np.tile(pool, (permutations, 1)), axis=1)
    return base


def permutation_p_value(observed: float, null: np.ndarray) -> float | None:
    """One-sided p-value (1 + #null >= observed) / (1 + P); None when there is nothing to test."""
    if observed is None or not np.isfinite(observed) or len(null) == 0:
        return None
    exceed = np.count_nonzero(np.nan_to_num(null, nan=-np.inf) >= observed - 1e-12)
    return float((1 + exceed) / (1 + len(null)))


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN entries are left out and stay NaN)."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = len(finite)
    if m == 0:
        return adjusted
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * m / np.arange(1, m + 1)
    adjusted[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return adjusted


def _num(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
