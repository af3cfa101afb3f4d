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
    """Blocks of multinomial speaker counts (how often each speaker is drawn), float64 (b, n)."""
    for start in range(0, replicates, BLOCK):
        size = min(BLOCK, replicates - start)
        draws = rng.integers(0, n, size=(size, n), dtype=np.int64 if size * n >= 2**31 else np.int32)
        draws += (np.arange(size, dtype=draws.dtype) * n)[:, None]
        yield np.bincount(draws.ravel(), minlength=size * n).reshape(size, n).astype(np.float64)


def bootstrap_partitions(
    designs: list[tuple[np.ndarray, Selection]],
    errors: np.ndarray,
    ref_words: np.ndarray,
    replicates: int,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates of every cohort WER, the gap and the bottom-cohort share, for several
    partitions of the same speakers at once.

    Each design is a partition's (n_speakers, n_cohorts) membership matrix and its fixed
    bottom/top selection. All partitions share the same resampled speakers, so the speaker draws
    are made once and each block of replicates costs one matrix product for every method together.
    Returns, per design, ``wer`` (R, K), ``gap_pct`` (R,) and ``share_pct`` (R,).
    """
    errors = np.asarray(errors, dtype=np.float64)[:, None]
    ref_words = np.asarray(ref_words, dtype=np.float64)[:, None]
    columns, offsets = [], [0]
    for indicator, _ in designs:
        columns += [indicator * errors, indicator * ref_words, indicator]
        offsets.append(offsets[-1] + 3 * indicator.shape[1])
    design = np.hstack(columns) if columns else np.zeros((len(errors), 0))
    rows: list[dict[str, list]] = [{"wer": [], "gap_pct": [], "share_pct": []} for _ in designs]
    if designs and len(errors):
        for counts in bootstrap_counts(len(errors), replicates, rng):
            sums = counts @ design
            for index, (indicator, selection) in enumerate(designs):
                k = indicator.shape[1]
                block = sums[:, offsets[index]: offsets[index + 1]]
                cohort_errors, cohort_words, cohort_speakers = block[:, :k], block[:, k: 2 * k], block[:, 2 * k:]
                bottom, top = selection.bottom[0], selection.top[0]
                out = rows[index]
                out["wer"].append(pooled_wer(cohort_errors, cohort_words))
                out["gap_pct"].append(
                    wer_gap_pct(
                        pooled_wer(cohort_errors[:, bottom].sum(axis=1), cohort_words[:, bottom].sum(axis=1)),
                        pooled_wer(cohort_errors[:, top].sum(axis=1), cohort_words[:, top].sum(axis=1)),
                    )
                )
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["share_pct"].append(100.0 * cohort_speakers[:, bottom].sum(axis=1) / cohort_speakers.sum(axis=1))
            if progress is not None:
                progress(len(counts))
    return [
        {
            "wer": np.concatenate(out["wer"]) if out["wer"] else np.empty((0, indicator.shape[1])),
            "gap_pct": np.concatenate(out["gap_pct"]) if out["gap_pct"] else np.empty(0),
            "share_pct": np.concatenate(out["share_pct"]) if out["share_pct"] else np.empty(0),
        }
        for out, (indicator, _) in zip(rows, designs)
    ]


def bootstrap_cohorts(
    indicator: np.ndarray,
    errors: np.ndarray,
    ref_words: np.ndarray,
    selection: Selection,
    replicates: int,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None = None,
) -> dict[str, np.ndarray]:
    """Bootstrap replicates for one partition (see :func:`bootstrap_partitions`)."""
    return bootstrap_partitions([(indicator, selection)], errors, ref_words, replicates, rng, progress)[0]


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
