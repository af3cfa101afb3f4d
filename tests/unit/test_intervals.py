"""Cohort WER intervals (SPEC 5): expanded BCa, checked against quantities computed here by brute force."""

import numpy as np
from scipy import stats

from fairaudit.stats.resampling import (
    bca_interval,
    bootstrap_counts,
    cohort_wer_accelerations,
    cohort_wer_degrees_of_freedom,
    selection_degrees_of_freedom,
)


def cohort(seed: int, n: int = 40, heavy: bool = True):
    """One cohort of speakers: words heavy-tailed (lognormal utterance counts) or alike, errors
    overdispersed around a true WER of 0.13 (gamma speaker rates with mean 1)."""
    rng = np.random.default_rng(seed)
    words = 1 + np.floor(rng.lognormal(3.0, 1.0, n)) if heavy else np.full(n, 20.0)
    rates = 0.13 * rng.gamma(4.0, 0.25, n)
    errors = rng.binomial(words.astype(int), np.clip(rates, 0, 1)).astype(float)
    return errors, words


def test_degrees_of_freedom_are_satterthwaites_of_the_residuals():
    errors, words = cohort(0, n=60)
    labels = np.repeat([0, 1, -1], 20)  # two cohorts and some unassigned speakers
    got = cohort_wer_degrees_of_freedom(labels, errors, words, 2)
    for c in range(2):
        e, w = errors[labels == c], words[labels == c]
        r = e - e.sum() / w.sum() * w
        variance = np.mean(r**2)
        fourth = np.mean(r**4)
        expected = 2 * len(r) * variance**2 / (fourth - variance**2)  # 2 n sigma^4 / (mu4 - sigma^4)
        assert np.isclose(got[c], min(expected, len(r) - 1), rtol=1e-10)


def test_small_cohorts_never_get_more_degrees_of_freedom_than_speakers_minus_one():
    """Residuals around the pooled WER sum to zero, so with few speakers the formula runs high
    (two speakers: r and -r, a zero denominator); the cap keeps small cohorts widened."""
    rng = np.random.default_rng(5)
    for n in (2, 3, 5, 10):
        for _ in range(50):
            words = rng.integers(5, 50, n).astype(float)
            errors = rng.binomial(words.astype(int), 0.2).astype(float)
            df = cohort_wer_degrees_of_freedom(np.zeros(n, dtype=int), errors, words, 1)[0]
            if np.isfinite(df):
                assert 1 <= df <= n - 1
            else:  # only when every speaker has the cohort's WER
                assert np.allclose(errors, errors.sum() / words.sum() * words)
    two = cohort_wer_degrees_of_freedom(np.zeros(2, dtype=int), np.array([1.0, 5.0]), np.array([10.0, 10.0]), 1)[0]
    assert two == 1.0


def test_normal_residuals_give_about_n_and_one_dominant_speaker_gives_few():
    rng = np.random.default_rng(1)
    words = np.full(4000, 100.0)
    errors = 10 + rng.normal(0, 3, 4000)  # residuals close to normal
    df = cohort_wer_degrees_of_freedom(np.zeros(4000, dtype=int), errors, words, 1)[0]
    assert 0.85 * 4000 < df < 1.15 * 4000
    errors = np.array([200.0] + [1.0] * 5 + [0.0] * 34)
    words = np.array([600.0] + [60.0] * 39)
    df = cohort_wer_degrees_of_freedom(np.zeros(40, dtype=int), errors, words, 1)[0]
    assert df < 5
    assert np.isinf(cohort_wer_degrees_of_freedom(np.zeros(5, dtype=int), np.zeros(5), np.ones(5), 1)[0])


def test_infinite_degrees_of_freedom_is_plain_bca_and_few_widen_within_the_replicates():
    rng = np.random.default_rng(2)
    samples = 0.1 + 0.01 * rng.standard_normal((2000, 1)) ** 3
    plain = bca_interval(samples, np.array([0.1]), 0.02)
    assert bca_interval(samples, np.array([0.1]), 0.02, degrees_of_freedom=np.inf) == plain
    wide = bca_interval(samples, np.array([0.1]), 0.02, degrees_of_freedom=3.0)
    assert wide[0][0] < plain[0][0] and wide[0][1] > plain[0][1]
    assert samples.min() <= wide[0][0] and wide[0][1] <= samples.max()
    # with no bias and no acceleration the bounds are the replicates' quantiles at the t tail
    symmetric = rng.standard_normal(20001)
    symmetric -= np.median(symmetric)
    low, high = bca_interval(symmetric, 0.0, 0.0, degrees_of_freedom=10.0)
    tail = stats.norm.cdf(stats.t.ppf(0.025, 10))
    assert np.isclose(low, np.quantile(symmetric, tail)) and np.isclose(high, np.quantile(symmetric, 1 - tail))


def test_expanded_interval_covers_small_heavy_tailed_cohorts_more_often_than_plain_bca():
    """A small calibration check: 300 cohorts of 40 speakers with heavy-tailed words, 200 replicates each."""
    hits = {"expanded": 0, "plain": 0}
    labels = np.zeros(40, dtype=int)
    for seed in range(300):
        errors, words = cohort(1000 + seed)
        counts = np.vstack(list(bootstrap_counts(40, 200, np.random.default_rng(seed))))
        replicates = counts @ errors / (counts @ words)
        estimate = errors.sum() / words.sum()
        accel = cohort_wer_accelerations(labels, errors, words, 1)[0]
        df = cohort_wer_degrees_of_freedom(labels, errors, words, 1)[0]
        for kind, freedom in (("expanded", df), ("plain", np.inf)):
            low, high = bca_interval(replicates, estimate, accel, degrees_of_freedom=freedom)
            hits[kind] += low <= 0.13 <= high
    assert hits["expanded"] > hits["plain"]
    assert hits["expanded"] >= 0.91 * 300, hits  # 277 here; plain BCa 272


def test_gap_degrees_of_freedom_are_welch_satterthwaites_of_the_two_sides():
    errors, words = cohort(3, n=90)
    labels = np.repeat([0, 1, 2], 30)
    bottom, top = np.array([True, False, False]), np.array([False, True, True])
    got = selection_degrees_of_freedom(labels, errors, words, bottom, top)
    variances, freedoms = [], []
    for side in (labels == 0, labels > 0):
        e, w = errors[side], words[side]
        r = e - e.sum() / w.sum() * w
        n = len(r)
        freedoms.append(2 * (r**2).sum() ** 2 / ((r**4).sum() - (r**2).sum() ** 2 / n))
        variances.append((r**2).sum() / w.sum() ** 2 / (e.sum() / w.sum()) ** 2)  # (se / WER)^2
    expected = sum(variances) ** 2 / sum(v * v / f for v, f in zip(variances, freedoms))
    assert np.isclose(got, expected, rtol=1e-10)
    assert min(freedoms) <= got <= sum(freedoms)


def test_a_small_noisy_bottom_side_keeps_the_gap_degrees_of_freedom_small():
    rng = np.random.default_rng(6)
    words = rng.integers(20, 60, 202).astype(float)
    errors = rng.binomial(words.astype(int), 0.1).astype(float)
    errors[:2] = [2.0, 20.0]  # two bottom speakers, far apart
    labels = np.r_[0, 0, np.ones(200, dtype=int)]
    df = selection_degrees_of_freedom(labels, errors, words, np.array([True, False]), np.array([False, True]))
    assert 1 <= df < 3


def test_gap_degrees_of_freedom_count_a_speakers_rows_once():
    """At utterance level a speaker has one row per value; the bottom side's residuals are summed per speaker."""
    errors, words = cohort(4, n=60)
    labels = np.repeat([0, 1], 30)
    bottom, top = np.array([True, False]), np.array([False, True])
    whole = selection_degrees_of_freedom(labels, errors, words, bottom, top)
    # the same speakers, each bottom speaker's outcome split over two rows of two bottom cells
    split_labels = np.concatenate([np.zeros(30, dtype=int), np.full(30, 2), np.ones(30, dtype=int)])
    split_errors = np.concatenate([errors[:30] / 2, errors[:30] / 2, errors[30:]])
    split_words = np.concatenate([words[:30] / 2, words[:30] / 2, words[30:]])
    clusters = np.concatenate([np.arange(30), np.arange(30), np.arange(30, 60)])
    cells = np.array([True, False, True])
    split = selection_degrees_of_freedom(split_labels, split_errors, split_words, cells, ~cells, clusters)
    assert np.isclose(split, whole, rtol=1e-10)
