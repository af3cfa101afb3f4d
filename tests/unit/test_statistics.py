"""Honest statistics (SPEC 5): the speaker bootstrap is real, hold-out is honest, p-values work."""

import numpy as np
import pandas as pd
import pytest

import fairaudit


def grouped_log(
    n_speakers: int, *, groups: int = 4, effect: float = 0.0, seed: int = 0, utts: int = 10
) -> pd.DataFrame:
    """Speakers in `groups` groups; group g0 has WER x (1 + effect); speaker random effects."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, groups, n_speakers)
    rate = 0.1 * np.exp(rng.normal(0, 0.3, n_speakers)) * np.where(group == 0, 1 + effect, 1.0)
    speaker = np.repeat(np.arange(n_speakers), utts)
    words = rng.integers(1, 8, len(speaker))
    errors = rng.binomial(words, np.clip(rate[speaker], 0, 1))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i:05d}" for i in speaker],
            "group": [f"g{g}" for g in group[speaker]],
            "errors": errors,
            "ref_words": words,
        }
    )


def attribute(frame, **options):
    defaults = dict(by=["group"], bootstrap=400, permutations=100, seed=1)
    defaults.update(options)
    return fairaudit.audit(frame, methods=["attribute"], **defaults).methods["attribute"]


def width(ci):
    return ci[1] - ci[0]


def test_intervals_shrink_as_speakers_grow():
    small = attribute(grouped_log(200, effect=0.3)).discovery
    large = attribute(grouped_log(3200, effect=0.3)).discovery
    assert width(large.wer_gap_ci) < width(small.wer_gap_ci) / 2
    small_g0 = small.cohorts.set_index("id").loc["g0"]
    large_g0 = large.cohorts.set_index("id").loc["g0"]
    assert large_g0.wer_ci_high - large_g0.wer_ci_low < (small_g0.wer_ci_high - small_g0.wer_ci_low) / 2


def test_one_heavy_speaker_gives_a_wider_interval_than_many_light_ones():
    """Same totals (errors, words) in both cohorts; only the spread over speakers differs."""
    rng = np.random.default_rng(3)
    rows = []
    # cohort "light": 40 speakers x 25 words each, per-speaker WER varies around 0.2
    light_errors = rng.binomial(25, rng.uniform(0.05, 0.35, 40))
    for i, e in enumerate(light_errors):
        rows.append((f"l{i}", "light", int(e), 25))
    total_errors = int(light_errors.sum())
    # cohort "heavy": one speaker with 960 words and most of the errors, 39 speakers with 1 word
    heavy_errors = total_errors - 5
    rows.append(("h0", "heavy", heavy_errors, 961))
    for i in range(39):
        rows.append((f"h{i + 1}", "heavy", 1 if i < 5 else 0, 1))
    frame = pd.DataFrame(rows, columns=["speaker_id", "group", "errors", "ref_words"])
    cohorts = attribute(frame, min_speakers=10, bootstrap=1000).cohorts.set_index("id")
    assert cohorts.loc["light", "errors"] == cohorts.loc["heavy", "errors"]
    assert cohorts.loc["light", "ref_words"] == cohorts.loc["heavy", "ref_words"]
    heavy = cohorts.loc["heavy", "wer_ci_high"] - cohorts.loc["heavy", "wer_ci_low"]
    light = cohorts.loc["light", "wer_ci_high"] - cohorts.loc["light", "wer_ci_low"]
    assert heavy > 1.5 * light


def geo_null_log(n_speakers: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(25, 49, n_speakers), rng.uniform(-124, -67, n_speakers)
    rate = 0.1 * np.exp(rng.normal(0, 0.3, n_speakers))
    speaker = np.repeat(np.arange(n_speakers), 10)
    words = rng.integers(1, 8, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i:05d}" for i in speaker],
            "errors": rng.binomial(words, rate[speaker]),
            "ref_words": words,
            "latitude": lat[speaker],
            "longitude": lon[speaker],
        }
    )


def test_holdout_gap_near_zero_on_null_while_discovery_gap_is_inflated():
    result = fairaudit.audit(
        geo_null_log(2000, 5),
        methods=["geo-tree"],
        holdout=0.5,
        bootstrap=200,
        permutations=50,
        seed=2,
        min_gain=0,
        tree_neighbours=1,  # the plain tree on each speaker's own WER: the search that overfits most
        bottom="worst",
        top="best",
    )
    geo = result.methods["geo-tree"]
    assert geo.discovery.wer_gap_pct > 40  # the search always finds a "worst" region on noise
    held = geo.holdout
    assert held.wer_gap_ci[0] < 0 < held.wer_gap_ci[1] or abs(held.wer_gap_pct) < 15
    assert abs(held.wer_gap_pct) < geo.discovery.wer_gap_pct / 2
    assert geo.verdict == "no evidence"


def test_planted_disparity_gets_a_small_search_aware_p_value():
    result = attribute(grouped_log(2000, effect=0.3, seed=4), permutations=200, bootstrap=100)
    assert result.discovery.bottom == ["g0"]
    assert result.discovery.p_value < 0.01
    assert result.verdict == "disparity"
    g0 = result.cohorts.set_index("id").loc["g0"]
    assert g0.p_value_bh < 0.01


def test_null_log_gets_no_evidence_and_a_large_p_value():
    result = attribute(grouped_log(2000, effect=0.0, seed=8), permutations=200, bootstrap=100)
    assert result.discovery.p_value > 0.05
    assert result.verdict == "no evidence"


def test_geo_tree_permutation_refits_the_tree():
    """On noise the geo tree's discovered gap is large, yet the search-aware p-value is not small."""
    result = fairaudit.audit(
        geo_null_log(1000, 11),
        methods=["geo-tree"],
        bootstrap=0,
        permutations=40,
        seed=0,
        min_gain=0,
        bottom="worst",
        top="best",
    )
    geo = result.methods["geo-tree"]
    assert geo.discovery.wer_gap_pct > 30
    assert geo.discovery.p_value > 0.05


def test_geo_tree_auto_min_gain_does_not_split_noise():
    """With the default noise-calibrated split threshold, noise yields few regions and no disparity.

    Judged over several null logs (the count of regions on one log is itself noisy): unpruned
    trees always grow all 16 leaves, pruned ones keep a few on average."""
    counts, verdicts = [], []
    for seed in range(10, 18):
        log = geo_null_log(2000, seed)
        auto = fairaudit.audit(log, methods=["geo-tree"], bootstrap=0, permutations=50, seed=0).methods["geo-tree"]
        verdicts.append(auto.verdict)
        plain = fairaudit.audit(log, methods=["geo-tree"], bootstrap=0, permutations=0, seed=0, min_gain=0).methods[
            "geo-tree"
        ]
        assert plain.partition.n_cohorts == 16
        counts.append(auto.partition.n_cohorts)
    assert np.mean(counts) <= 5 and max(counts) < 16
    # A 5% test: 3 or more "disparity" verdicts out of 8 null logs would happen with probability 0.6%.
    assert verdicts.count("disparity") <= 2 and verdicts.count("no evidence") >= 6


def test_seed_makes_every_figure_reproducible_and_changes_with_it():
    frame = grouped_log(500, effect=0.2, seed=6)
    first = fairaudit.audit(frame, by=["group"], seed=7, bootstrap=200, permutations=50).to_json()
    second = fairaudit.audit(frame, by=["group"], seed=7, bootstrap=200, permutations=50).to_json()
    other = fairaudit.audit(frame, by=["group"], seed=8, bootstrap=200, permutations=50).to_json()
    assert first == second
    assert first != other


def test_a_united_bottom_cohort_gets_the_interval_of_the_same_speakers_named_as_one_cohort():
    """The bottom cohort g0 + g1 (two cells) must get the interval a cohort holding exactly those
    speakers gets through the per-cohort path: same speakers, same bootstrap draws."""
    rng = np.random.default_rng(11)
    n = 900
    group = np.array(["g0", "g1", "g2"])[np.arange(n) % 3]
    speaker = np.repeat(np.arange(n), 6)
    words = rng.integers(2, 9, len(speaker))
    rate = np.where(np.isin(group[speaker], ["g0", "g1"]), 0.16, 0.1) * rng.gamma(4, 0.25, n)[speaker]
    log = pd.DataFrame(
        {
            "speaker_id": [f"s{i:04d}" for i in speaker],
            "group": group[speaker],
            "merged": np.where(group[speaker] == "g2", "g2", "g0+g1"),
            "errors": rng.binomial(words, np.clip(rate, 0, 1)),
            "ref_words": words,
        }
    )
    options = dict(methods=["attribute"], bootstrap=400, permutations=0, seed=3, bottom_share=0.6)
    united = fairaudit.audit(log, by=["group"], **options).to_dict()["methods"]["attribute"]
    assert sorted(united["bottom_cohorts"]) == ["g0", "g1"]
    named = fairaudit.audit(log, by=["merged"], **options).to_dict()["methods"]["attribute"]
    cohort = next(c for c in named["cohorts"] if c["id"] == "g0+g1")
    assert united["bottom_wer"] == pytest.approx(cohort["wer"])
    assert united["bottom_wer_ci"] == pytest.approx(cohort["wer_ci"], rel=1e-12)
    assert named["bottom_cohorts"] == ["g0+g1"]
    assert named["bottom_wer_ci"] == pytest.approx(cohort["wer_ci"], rel=1e-12)  # one cell: its own interval


def test_the_bottom_interval_of_an_utterance_level_union_counts_each_speaker_once():
    """In an utterance-level table a speaker has one row per value; when the bottom cohort unites
    two values, splitting each speaker's bottom errors over two rows must not change the interval
    (the degrees of freedom are the speakers', not the rows')."""
    from types import SimpleNamespace

    from fairaudit.stats.measure import _bottom_wer_interval

    rng = np.random.default_rng(5)
    n = 60
    words = rng.integers(20, 200, n).astype(float)
    errors = rng.binomial(words.astype(int), 0.1 * rng.gamma(2, 0.5, n)).astype(float)
    replicates = rng.normal(errors.sum() / words.sum(), 0.01, 500)
    whole = SimpleNamespace(errors=errors, ref_words=words, clusters=np.arange(n))
    first_words = np.floor(words / 3)
    first_errors = np.minimum(errors, np.floor(errors / 2))
    split = SimpleNamespace(
        errors=np.concatenate([first_errors, errors - first_errors]),
        ref_words=np.concatenate([first_words, words - first_words]),
        clusters=np.concatenate([np.arange(n), np.arange(n)]),
    )
    estimate = errors.sum() / words.sum()
    one_row = _bottom_wer_interval(replicates, estimate, np.ones(n, bool), whole)
    two_rows = _bottom_wer_interval(replicates, estimate, np.ones(2 * n, bool), split)
    assert two_rows == pytest.approx(one_row)
