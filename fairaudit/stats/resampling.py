"""Honest statistics (SPEC 5): speaker-level bootstrap, permutation p-values, Benjamini-Hochberg.

All resampling is over speakers, never utterances, and vectorised: a replicate is a row of a
speaker-weight or speaker-permutation matrix, and cohort totals for many replicates come from one
matrix product. Work is done in blocks of replicates to bound memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from fairaudit.model.numbers import finite_or_none
from fairaudit.stats.metrics import Selection, pooled_wer, wer_gap_pct

BLOCK = 100  # replicates per block (fewer when speakers are many): bounds memory at BLOCK x n_speakers
#: Most speaker counts held at once (8 bytes each), so a million speakers take 20 replicates per block.
MAX_BLOCK_ENTRIES = 20_000_000


def bootstrap_counts(n: int, replicates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Blocks of multinomial speaker counts (how often each speaker is drawn), float64 (b, n).

    Each replicate's counts are one ``bincount`` of its n draws: counting row by row keeps the
    target array in cache (4x faster at a million speakers than one bincount over the block), and
    the draws, and so the counts, do not depend on the block size.
    """
    block = max(1, min(BLOCK, MAX_BLOCK_ENTRIES // max(n, 1)))
    for start in range(0, replicates, block):
        size = min(block, replicates - start)
        draws = rng.integers(0, n, size=(size, n), dtype=np.int64 if size * n >= 2**31 else np.int32)
        counts = np.empty((size, n), dtype=np.float64)
        for row in range(size):
            counts[row] = np.bincount(draws[row], minlength=n)
        yield counts


def bootstrap_partitions(
    designs: list[tuple[np.ndarray, Selection]],
    errors: np.ndarray,
    ref_words: np.ndarray,
    replicates: int,
    rng: np.random.Generator,
    progress: Callable[[int], None] | None = None,
    clusters: np.ndarray | None = None,
) -> list[dict[str, np.ndarray]]:
    """Bootstrap replicates of every cohort WER, the gap and the bottom-cohort share, for several
    partitions of the same speakers at once. With ``clusters`` (an utterance-level table: rows are
    a speaker's utterances with one value) whole speakers are drawn and each row follows its speaker.

    Each design is a partition's (n_speakers, n_cohorts) membership matrix and its fixed
    bottom/top selection. All partitions share the same resampled speakers, so the speaker draws
    are made once and each block of replicates costs one matrix product for every method together.
    Returns, per design, ``wer`` (R, K), ``gap_pct`` (R,), ``share_pct`` (R,) and ``bottom_wer`` (R,):
    the pooled WER of the bottom cohort, which may unite several cells.
    """
    errors = np.asarray(errors, dtype=np.float64)[:, None]
    ref_words = np.asarray(ref_words, dtype=np.float64)[:, None]
    columns, offsets = [], [0]
    for indicator, selection in designs:
        # per cohort its errors and words; for the share only the drawn speakers in the bottom
        # cohort and in any cohort (two columns instead of one per cohort: the product is most of the cost)
        in_bottom = indicator[:, selection.bottom[0]].sum(axis=1, keepdims=True)
        columns += [indicator * errors, indicator * ref_words, in_bottom, indicator.sum(axis=1, keepdims=True)]
        offsets.append(offsets[-1] + 2 * indicator.shape[1] + 2)
    design = np.hstack(columns) if columns else np.zeros((len(errors), 0))
    rows: list[dict[str, list]] = [{"wer": [], "gap_pct": [], "share_pct": [], "bottom_wer": []} for _ in designs]
    speaker_of = None if clusters is None else np.unique(clusters, return_inverse=True)[1]
    n_draw = len(errors) if speaker_of is None else int(speaker_of.max()) + 1 if len(speaker_of) else 0
    if designs and len(errors):
        for counts in bootstrap_counts(n_draw, replicates, rng):
            if speaker_of is not None:
                counts = counts[:, speaker_of]
            sums = counts @ design
            for index, (indicator, selection) in enumerate(designs):
                k = indicator.shape[1]
                block = sums[:, offsets[index] : offsets[index + 1]]
                cohort_errors, cohort_words = block[:, :k], block[:, k : 2 * k]
                bottom_speakers, assigned_speakers = block[:, 2 * k], block[:, 2 * k + 1]
                bottom, top = selection.bottom[0], selection.top[0]
                out = rows[index]
                out["wer"].append(pooled_wer(cohort_errors, cohort_words))
                bottom_wer = pooled_wer(cohort_errors[:, bottom].sum(axis=1), cohort_words[:, bottom].sum(axis=1))
                out["bottom_wer"].append(bottom_wer)
                out["gap_pct"].append(
                    wer_gap_pct(
                        bottom_wer, pooled_wer(cohort_errors[:, top].sum(axis=1), cohort_words[:, top].sum(axis=1))
                    )
                )
                with np.errstate(invalid="ignore", divide="ignore"):
                    out["share_pct"].append(100.0 * bottom_speakers / assigned_speakers)
            if progress is not None:
                progress(len(counts))
    return [
        {
            "wer": np.concatenate(out["wer"]) if out["wer"] else np.empty((0, indicator.shape[1])),
            "gap_pct": np.concatenate(out["gap_pct"]) if out["gap_pct"] else np.empty(0),
            "share_pct": np.concatenate(out["share_pct"]) if out["share_pct"] else np.empty(0),
            "bottom_wer": np.concatenate(out["bottom_wer"]) if out["bottom_wer"] else np.empty(0),
        }
        for out, (indicator, _) in zip(rows, designs)
    ]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> list:
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
        return [finite_or_none(bounds[0]), finite_or_none(bounds[1])]
    return [[finite_or_none(lo), finite_or_none(hi)] for lo, hi in zip(bounds[0], bounds[1])]


def bca_interval(
    samples: np.ndarray,
    estimate: np.ndarray | float,
    acceleration: np.ndarray | float,
    level: float = 0.95,
    degrees_of_freedom: np.ndarray | float = np.inf,
) -> list:
    """Bias-corrected and accelerated (BCa) bootstrap interval(s) over the first axis (Efron 1987).

    Percentile intervals of a ratio such as a pooled WER sit low (the bootstrap distribution is
    skewed and its median is not the estimate), so the true value falls above them more often
    than below. BCa moves the percentiles by the bias correction z0 (how far the replicates'
    median is from ``estimate``) and the ``acceleration`` (skewness of the jackknife influence
    values, :func:`jackknife_acceleration`). NaN replicates are ignored; None when undefined.

    With finite ``degrees_of_freedom`` the normal quantiles are replaced by Student-t quantiles
    (after Hesterberg's 2015 "expanded" interval, with effective degrees of freedom in place of
    n - 1): the bootstrap, like a normal interval, treats the spread it sees as known, and with
    few effective speakers it is not
    (:func:`cohort_wer_degrees_of_freedom`). The bounds stay within the replicates' range.
    """
    from scipy.special import ndtr, ndtri, stdtrit  # normal cdf and inverse, Student-t inverse (no scipy.stats import)

    samples = np.asarray(samples, dtype=np.float64)
    one = samples.ndim == 1
    samples2 = samples[:, None] if one else samples
    k = samples2.shape[1]
    estimate = np.broadcast_to(np.asarray(estimate, dtype=np.float64), (k,))
    acceleration = np.broadcast_to(np.asarray(acceleration, dtype=np.float64), (k,))
    freedom = np.broadcast_to(np.asarray(degrees_of_freedom, dtype=np.float64), (k,))
    out: list[list[float | None]] = []
    tail = (1 - level) / 2
    for column in range(k):
        values = samples2[:, column]
        values = values[np.isfinite(values)]
        theta, a = estimate[column], acceleration[column]
        if len(values) < 2 or not np.isfinite(theta):
            out.append([None, None])
            continue
        below = (np.count_nonzero(values < theta) + 0.5 * np.count_nonzero(values == theta)) / len(values)
        z0 = ndtri(np.clip(below, 1 / (len(values) + 1), len(values) / (len(values) + 1)))
        a = a if np.isfinite(a) else 0.0
        df = freedom[column]
        quantile = float(stdtrit(df, 1 - tail)) if np.isfinite(df) and df > 0 else float(ndtri(1 - tail))
        bounds = []
        for z in (-quantile, quantile):
            shifted = z0 + (z0 + z) / (1 - a * (z0 + z))
            bounds.append(float(np.quantile(values, ndtr(shifted))))
        out.append([finite_or_none(bounds[0]), finite_or_none(bounds[1])])
    return out[0] if one else out


def jackknife_acceleration(affected: np.ndarray, n_total: int, estimate: float) -> float:
    """BCa acceleration a = sum d^3 / (6 (sum d^2)^1.5) of leave-one-speaker-out values.

    ``affected`` holds the statistic with each speaker left out, for the speakers whose removal
    changes it; the other ``n_total - len(affected)`` speakers leave it at ``estimate`` and are
    counted analytically, so a cohort's acceleration costs O(its speakers), not O(all speakers).
    """
    values = np.asarray(affected, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not np.isfinite(estimate) or n_total < 2:
        return 0.0
    rest = n_total - len(values)
    mean = (values.sum() + rest * estimate) / n_total
    d, d_rest = mean - values, mean - estimate
    s2 = (d**2).sum() + rest * d_rest**2
    s3 = (d**3).sum() + rest * d_rest**3
    return float(s3 / (6 * s2**1.5)) if s2 > 0 else 0.0


def cohort_wer_accelerations(
    labels: np.ndarray, errors: np.ndarray, ref_words: np.ndarray, n_cohorts: int
) -> np.ndarray:
    """Jackknife acceleration of every cohort's pooled WER (leave one speaker out)."""
    labels = np.asarray(labels)
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(ref_words, dtype=np.float64)
    assigned = labels >= 0
    e_c = np.bincount(labels[assigned], weights=errors[assigned], minlength=n_cohorts)
    w_c = np.bincount(labels[assigned], weights=words[assigned], minlength=n_cohorts)
    out = np.zeros(n_cohorts)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_cohorts + 1))
    for c in range(n_cohorts):
        members = order[bounds[c] : bounds[c + 1]]
        if w_c[c] <= 0:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            loo = (e_c[c] - errors[members]) / (w_c[c] - words[members])
        out[c] = jackknife_acceleration(loo, len(labels), e_c[c] / w_c[c])
    return out


def cohort_wer_degrees_of_freedom(
    labels: np.ndarray, errors: np.ndarray, ref_words: np.ndarray, n_cohorts: int
) -> np.ndarray:
    """Effective degrees of freedom of each cohort WER's spread: Satterthwaite's
    2 (sum r^2)^2 / (sum r^4 - (sum r^2)^2 / n) over the speakers' residuals r_i = e_i - WER w_i.

    It is about n for normal residuals (capped at n - 1) and much less when words per speaker are
    heavy-tailed and a few speakers carry most of the spread; ``bca_interval`` widens by the
    Student-t quantile on it. Infinite (no widening) for a cohort with no spread or one speaker.
    """
    labels = np.asarray(labels)
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(ref_words, dtype=np.float64)
    assigned = labels >= 0
    label, e, w = labels[assigned], errors[assigned], words[assigned]
    wer = pooled_wer(
        np.bincount(label, weights=e, minlength=n_cohorts), np.bincount(label, weights=w, minlength=n_cohorts)
    )
    residual = e - np.nan_to_num(wer)[label] * w
    n = np.bincount(label, minlength=n_cohorts).astype(np.float64)
    second = np.bincount(label, weights=residual**2, minlength=n_cohorts)
    fourth = np.bincount(label, weights=residual**4, minlength=n_cohorts)
    return _satterthwaite(n, second, fourth)


def _satterthwaite(n: np.ndarray, second: np.ndarray, fourth: np.ndarray) -> np.ndarray:
    """2 (sum r^2)^2 / (sum r^4 - (sum r^2)^2 / n) from n residuals' sums of squares and fourth
    powers, never more than n - 1 nor less than 1; infinite only when there is no spread.

    The cap matters for small cohorts: residuals around the pooled WER sum to zero, so with few
    speakers the fourth-moment term is underestimated (two speakers' residuals are r and -r, and
    the formula divides by zero).
    """
    n, second, fourth = (np.asarray(x, dtype=np.float64) for x in (n, second, fourth))
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = fourth - second * second / n
        df = np.where(excess > 0, 2 * second * second / excess, np.inf)
        capped = np.maximum(np.minimum(df, n - 1), 1.0)
    return np.where((n >= 2) & (second > 0), capped, np.inf)


def _rows_in(labels: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Rows whose cohort is one of ``cells`` (a cohort mask); unassigned rows never are."""
    assigned = labels >= 0
    return assigned & np.asarray(cells, dtype=bool)[np.where(assigned, labels, 0)]


def selection_degrees_of_freedom(
    labels: np.ndarray,
    errors: np.ndarray,
    ref_words: np.ndarray,
    bottom: np.ndarray,
    top: np.ndarray,
    clusters: np.ndarray | None = None,
) -> float:
    """Effective degrees of freedom of the WER gap of a fixed bottom/top selection (cohort masks):
    Welch-Satterthwaite's combination of the two sides' relative variances, each side's degrees of
    freedom as in :func:`cohort_wer_degrees_of_freedom` (residuals summed per speaker when the
    table has several rows per speaker, ``clusters``). A side with no spread adds nothing; infinite
    when neither side has spread or a side has no errors. A speaker with rows on both sides
    (utterance level) is treated as two independent ones, so there the figure is approximate
    (the bootstrap itself keeps the speaker whole)."""
    labels = np.asarray(labels)
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(ref_words, dtype=np.float64)
    variances, freedoms = [], []
    for cells in (bottom, top):
        rows = _rows_in(labels, cells)
        e, w = errors[rows], words[rows]
        total_e, total_w = e.sum(), w.sum()
        if total_e <= 0 or total_w <= 0:
            return float("inf")
        residual = e - total_e / total_w * w
        if clusters is not None:
            residual = np.bincount(
                np.unique(np.asarray(clusters)[rows], return_inverse=True)[1].ravel(), weights=residual
            )
        df = float(_satterthwaite(np.float64(len(residual)), (residual**2).sum(), (residual**4).sum()))
        variances.append(float((residual**2).sum()) / total_e**2)  # (se / WER)^2
        freedoms.append(df)
    spread = sum(v * v / f for v, f in zip(variances, freedoms) if np.isfinite(f))
    return float(sum(variances) ** 2 / spread) if spread > 0 else float("inf")


def selection_accelerations(
    labels: np.ndarray, errors: np.ndarray, ref_words: np.ndarray, bottom: np.ndarray, top: np.ndarray
) -> tuple[float, float]:
    """Jackknife accelerations of the WER gap (%) and the bottom-cohort share (%) of a fixed
    bottom/top selection (cohort masks), leaving one speaker out at a time."""
    labels = np.asarray(labels)
    errors = np.asarray(errors, dtype=np.float64)
    words = np.asarray(ref_words, dtype=np.float64)
    assigned = labels >= 0
    in_bottom, in_top = _rows_in(labels, bottom), _rows_in(labels, top)
    e_b, w_b = errors[in_bottom].sum(), words[in_bottom].sum()
    e_t, w_t = errors[in_top].sum(), words[in_top].sum()
    if w_b <= 0 or w_t <= 0 or e_t <= 0:
        return 0.0, 0.0
    gap = 100 * ((e_b / w_b) / (e_t / w_t) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap_b = 100 * (((e_b - errors[in_bottom]) / (w_b - words[in_bottom])) / (e_t / w_t) - 1)
        gap_t = 100 * ((e_b / w_b) / ((e_t - errors[in_top]) / (w_t - words[in_top])) - 1)
    gap_a = jackknife_acceleration(np.concatenate([gap_b, gap_t]), len(labels), gap)
    n_a, n_b = int(assigned.sum()), int(in_bottom.sum())
    share = 100 * n_b / n_a
    share_loo = np.concatenate(
        [np.full(n_b, 100 * (n_b - 1) / max(n_a - 1, 1)), np.full(n_a - n_b, 100 * n_b / max(n_a - 1, 1))]
    )
    return gap_a, jackknife_acceleration(share_loo, len(labels), share)


def permutation_blocks(
    pool: np.ndarray, n: int, permutations: int, rng: np.random.Generator, block: int = 20
) -> Iterator[np.ndarray]:
    """:func:`permutation_matrix` in blocks of ``block`` rows, so that memory stays at
    block x n however many permutations are asked for (the rows are the same as one matrix's)."""
    for start in range(0, permutations, block):
        yield permutation_matrix(pool, n, min(block, permutations - start), rng)


def permutation_matrix(pool: np.ndarray, n: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """(P, n) speaker positions: identity outside ``pool``, a fresh shuffle of ``pool`` per row."""
    base = np.tile(np.arange(n, dtype=np.int64), (permutations, 1))
    pool = np.flatnonzero(pool)
    if len(pool) == n and permutations > 0:  # every speaker is shuffled: in place, no extra copy
        rng.permuted(base, axis=1, out=base)
    elif len(pool) > 1 and permutations > 0:
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
    from scipy.stats import false_discovery_control  # scipy.stats costs 0.4 s to import: only when needed

    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        adjusted[finite] = false_discovery_control(p[finite], method="bh")
    return adjusted


def utterance_level_null(
    clusters: np.ndarray,
    errors: np.ndarray,
    words: np.ndarray,
    replicates: int,
    rng: np.random.Generator,
    block: int = 50,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Null outcomes of an utterance-level table (rows = a speaker's utterances with one value), in
    blocks of (errors, words), each (b, rows).

    Whole speakers are shuffled, as in the speaker-level test: speaker i takes the totals (errors,
    words) of speaker pi(i) and spreads them over i's own rows in proportion to i's words there,
    the errors by a multinomial draw (a chain of binomials). So neither which speakers use a value
    nor how a speaker's errors fall between values matters under the null: the test detects both a
    value whose speakers do worse and a value that is worse within speakers (SPEC 5)."""
    errors = np.asarray(errors, dtype=np.int64)
    words = np.asarray(words, dtype=np.float64)
    speaker_of = np.unique(clusters, return_inverse=True)[1]
    n_speakers = int(speaker_of.max()) + 1 if len(speaker_of) else 0
    total_errors = np.bincount(speaker_of, weights=errors, minlength=n_speakers).astype(np.int64)
    total_words = np.bincount(speaker_of, weights=words, minlength=n_speakers)
    rows_of = np.bincount(speaker_of, minlength=n_speakers)
    with np.errstate(invalid="ignore", divide="ignore"):
        # a speaker's share of words on each row (rows of a speaker with no words: equal shares)
        share = np.where(total_words[speaker_of] > 0, words / total_words[speaker_of], 1.0 / rows_of[speaker_of])
    order = np.lexsort((np.arange(len(speaker_of)), speaker_of))
    first = np.searchsorted(speaker_of[order], np.arange(n_speakers))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order)) - first[speaker_of[order]]
    for start in range(0, replicates, block):
        size = min(block, replicates - start)
        donor = rng.permuted(np.tile(np.arange(n_speakers), (size, 1)), axis=1)  # speaker i takes pi(i)'s totals
        left_errors = total_errors[donor]
        left_share = np.ones((size, n_speakers))
        drawn = np.zeros((size, len(errors)), dtype=np.int64)
        for k in range(int(rows_of.max()) if len(rows_of) else 0):
            rows = np.flatnonzero(rank == k)
            speakers = speaker_of[rows]
            last = rows_of[speakers] == k + 1
            with np.errstate(invalid="ignore", divide="ignore"):
                p = np.where(last, 1.0, share[rows] / left_share[:, speakers])
            take = rng.binomial(left_errors[:, speakers], np.clip(np.nan_to_num(p), 0.0, 1.0))
            drawn[:, rows] = take
            left_errors[:, speakers] -= take
            left_share[:, speakers] -= share[rows]
        yield drawn, total_words[donor][:, speaker_of] * share
