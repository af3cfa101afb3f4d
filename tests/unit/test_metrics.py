"""Hand-computed WER gap and bottom-cohort share on tiny logs (SPEC 5)."""

import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.stats.metrics import pooled_wer, select_bottom_top, wer_gap_pct
from fairaudit.stats.resampling import benjamini_hochberg


def tiny_log() -> pd.DataFrame:
    """Three groups of speakers with WERs 15%, 10% and 5% (pooled), per-utterance means differ."""
    rows = [
        # group A: 6 errors / 40 words = 0.15 ; speaker a1 has a short, all-wrong utterance
        ("a1", "A", 1, 1),
        ("a1", "A", 1, 9),
        ("a2", "A", 4, 30),
        # group B: 3 / 30 = 0.10
        ("b1", "B", 1, 10),
        ("b2", "B", 2, 20),
        # group C: 1 / 20 = 0.05
        ("c1", "C", 0, 10),
        ("c2", "C", 1, 5),
        ("c3", "C", 0, 5),
    ]
    frame = pd.DataFrame(rows, columns=["speaker_id", "group", "errors", "ref_words"])
    frame["utterance_id"] = [f"u{i}" for i in range(len(frame))]
    return frame


def run(frame, **options):
    defaults = dict(by=["group"], min_speakers=1, min_report_speakers=0, bootstrap=0, permutations=0)
    defaults.update(options)
    return fairaudit.audit(frame, methods=["attribute"], **defaults).methods["attribute"]


def test_cohort_wer_is_pooled_not_mean_of_utterances():
    result = run(tiny_log())
    wer = dict(zip(result.cohorts["id"], result.cohorts["wer"]))
    assert wer == pytest.approx({"A": 6 / 40, "B": 3 / 30, "C": 1 / 20})
    # The mean of per-utterance WERs of A would be (1 + 1/9 + 4/30) / 3 = 0.415, not 0.15.
    assert wer["A"] != pytest.approx((1 + 1 / 9 + 4 / 30) / 3)


def test_gap_and_share_with_top_best():
    result = run(tiny_log(), bottom="worst", top="best")
    fig = result.discovery
    assert fig.bottom == ["A"] and fig.top == ["C"]
    assert fig.wer_gap_pct == pytest.approx(100 * (0.15 - 0.05) / 0.05)  # 200%
    assert fig.bottom_share_pct == pytest.approx(100 * 2 / 7)
    assert fig.bottom_utterance_share_pct == pytest.approx(100 * 3 / 8)
    assert fig.bottom_word_share_pct == pytest.approx(100 * 40 / 90)
    ranks = dict(zip(result.cohorts["id"], result.cohorts["rank"]))
    assert ranks == {"A": 1, "B": 2, "C": 3}


def test_gap_with_top_rest_pools_everyone_else():
    fig = run(tiny_log(), top="rest").discovery
    rest = (3 + 1) / (30 + 20)
    assert fig.top == ["B", "C"]
    assert fig.wer_gap_pct == pytest.approx(100 * (0.15 - rest) / rest)


def test_bottom_share_unites_worst_cohorts_closest_to_the_target_share():
    # A holds 2/7 = 28.6% of speakers, A+B 4/7 = 57.1%. A 50% target is closer to A+B.
    fig = run(tiny_log(), bottom_share=0.5, top="best").discovery
    assert fig.bottom == ["A", "B"] and fig.top == ["C"]
    bottom_wer = (6 + 3) / (40 + 30)
    assert fig.wer_gap_pct == pytest.approx(100 * (bottom_wer - 0.05) / 0.05)
    assert fig.bottom_share_pct == pytest.approx(100 * 4 / 7)
    # A 35% target is closer to A alone (28.6%) than to A+B (57.1%): no overshoot to 57%.
    assert run(tiny_log(), bottom_share=0.35).discovery.bottom == ["A"]
    # A target below A's own share still keeps A (the bottom cohort is never empty).
    assert run(tiny_log(), bottom_share=0.05).discovery.bottom == ["A"]


def test_bottom_share_always_leaves_a_top_cohort():
    fig = run(tiny_log(), bottom_share=0.99, top="best").discovery
    assert fig.top == ["C"] and set(fig.bottom) == {"A", "B"}


def test_binary_partition_top_modes_agree():
    frame = tiny_log()
    frame = frame[frame["group"] != "B"]
    best, rest = run(frame, top="best").discovery, run(frame, top="rest").discovery
    assert best.top == rest.top == ["C"]
    assert best.wer_gap_pct == pytest.approx(rest.wer_gap_pct)


def test_min_speakers_excludes_small_cohorts_from_selection():
    result = run(tiny_log(), min_speakers=3)
    # Only C has 3 speakers: fewer than two eligible cohorts -> insufficient data.
    assert result.verdict == "insufficient data"
    assert result.discovery.wer_gap_pct is None


def test_gap_undefined_when_top_wer_is_zero():
    assert np.isnan(wer_gap_pct(0.1, 0.0))
    assert np.isnan(pooled_wer(3, 0))


def test_selection_is_vectorised_over_replicates():
    errors = np.array([[30, 10, 20], [10, 30, 20]])
    words = np.full((2, 3), 100)
    selection = select_bottom_top(
        errors, words, np.array([10, 10, 10]), np.array([True, True, True]), bottom="worst", top="best"
    )
    assert selection.bottom.tolist() == [[True, False, False], [False, True, False]]
    assert selection.top.tolist() == [[False, True, False], [True, False, False]]


# --- the two-stage selection (SPEC 5 --bottom auto) on hand-made cells with known answers ---------

SIX_CELLS_ERRORS = np.array([[30, 25, 10, 10, 10, 10]])  # WERs 0.30, 0.25, then four at 0.10
SIX_CELLS_WORDS = np.full((1, 6), 100)
SIX_CELLS_SPEAKERS = np.full(6, 10)


def hand_gain(bottom: list[int]) -> float:
    """W_B W_R / (W_B + W_R) (WER_B - WER_R)^2, computed here from the raw cell totals."""
    e, w = SIX_CELLS_ERRORS[0], SIX_CELLS_WORDS[0]
    rest = [i for i in range(6) if i not in bottom]
    wb, wr = w[bottom].sum(), w[rest].sum()
    return wb * wr / (wb + wr) * (e[bottom].sum() / wb - e[rest].sum() / wr) ** 2


def test_auto_bottom_is_the_union_of_worst_cells_with_the_largest_gain():
    # By hand: {A} 2.41, {A, B} 4.08, {A, B, C} 2.04 -> the two high cells together.
    assert hand_gain([0, 1]) > max(hand_gain([0]), hand_gain([0, 1, 2]))
    selection = select_bottom_top(SIX_CELLS_ERRORS, SIX_CELLS_WORDS, SIX_CELLS_SPEAKERS, np.ones(6, bool))
    assert selection.bottom[0].tolist() == [True, True, False, False, False, False]
    assert selection.top[0].tolist() == [False, False, True, True, True, True]  # --top rest (default)


def test_auto_bottom_respects_max_bottom_share_and_ignores_order_of_cells():
    # 20% of 60 speakers = 12: only the single worst cell fits.
    selection = select_bottom_top(
        SIX_CELLS_ERRORS, SIX_CELLS_WORDS, SIX_CELLS_SPEAKERS, np.ones(6, bool), max_bottom_share=0.2
    )
    assert selection.bottom[0].tolist() == [True, False, False, False, False, False]
    shuffled = [3, 1, 5, 0, 2, 4]
    selection = select_bottom_top(
        SIX_CELLS_ERRORS[:, shuffled], SIX_CELLS_WORDS[:, shuffled], SIX_CELLS_SPEAKERS, np.ones(6, bool)
    )
    assert sorted(np.asarray(shuffled)[selection.bottom[0]].tolist()) == [0, 1]


def test_auto_bottom_skips_ineligible_cells_and_stays_a_minority():
    # The worst cell is too small to be chosen (ineligible): it stays in the rest.
    eligible = np.array([False, True, True, True, True, True])
    selection = select_bottom_top(SIX_CELLS_ERRORS, SIX_CELLS_WORDS, SIX_CELLS_SPEAKERS, eligible)
    assert not selection.bottom[0][0] and selection.top[0][0]
    assert selection.bottom[0][1]
    # Every cell equally bad: no union beats another, the bottom is one cell and a minority.
    flat = select_bottom_top(np.full((1, 4), 10), np.full((1, 4), 100), np.full(4, 10), np.ones(4, bool))
    assert flat.bottom[0].sum() == 1


def test_auto_bottom_through_the_audit_unites_the_two_bad_groups():
    rows = []
    for group, wer, n in [
        ("A", 0.30, 10),
        ("B", 0.25, 10),
        ("C", 0.10, 10),
        ("D", 0.10, 10),
        ("E", 0.10, 10),
        ("F", 0.10, 10),
    ]:
        rows += [(f"{group}{i}", group, round(wer * 100), 100) for i in range(n)]
    frame = pd.DataFrame(rows, columns=["speaker_id", "group", "errors", "ref_words"])
    fig = run(frame).discovery
    assert sorted(fig.bottom) == ["A", "B"]
    assert fig.wer_gap_pct == pytest.approx(100 * (55 / 200 - 40 / 400) / (40 / 400))
    assert fig.bottom_share_pct == pytest.approx(100 * 20 / 60)


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.20])
    # sorted: 0.01, 0.03, 0.04, 0.20 (m = 4): 0.04, 0.06, 0.0533 -> monotone 0.04, 0.0533, 0.0533, 0.20
    adjusted = benjamini_hochberg(p)
    assert adjusted[0] == pytest.approx(0.04)
    assert adjusted[2] == pytest.approx(0.04 * 4 / 3)
    assert adjusted[1] == pytest.approx(0.04 * 4 / 3)
    assert adjusted[4] == pytest.approx(0.20)
    assert np.isnan(adjusted[3])


@pytest.mark.parametrize("utterances", [8, 60, 200])
def test_random_cell_gain_is_the_mean_gain_of_cells_drawn_at_random(utterances):
    """The bottom-cohort selection prices a cell at what a random cell adds to the size-weighted
    gain; check it against the mean gain of 3,000 random cells of simulated overdispersed speakers
    with heavy-tailed word counts (fewer and more words per speaker than the generator's 20).
    The tolerance allows for the robust alpha's low bias (about 10%) and its noise; the speaker
    dispersion, which ignores the spread of word counts, is 2x too low at 60-200 utterances."""
    from fairaudit.stats.metrics import random_cell_gain

    rng = np.random.default_rng(utterances)
    n = 4000
    words = 3.5 * (1 + np.floor(rng.lognormal(np.log(utterances) - 0.5, 1.0, n)))
    speaker_rate = 0.08 * np.exp(0.3 * rng.normal(size=n) - 0.045)
    errors = rng.poisson(speaker_rate * words).astype(float)
    total_errors, total_words = errors.sum(), words.sum()
    gains = []
    for _ in range(3000):
        cell = rng.random(n) < rng.uniform(0.01, 0.1)
        w_c, e_c = words[cell].sum(), errors[cell].sum()
        w_r, e_r = total_words - w_c, total_errors - e_c
        gains.append(w_c * w_r / total_words * (e_c / w_c - e_r / w_r) ** 2)
    price = random_cell_gain(errors, words, seed=0)
    assert price == pytest.approx(np.mean(gains), rel=0.25)
    swap = rng.permutation(n)  # the permutation test moves outcomes between speakers
    assert random_cell_gain(errors[swap], words[swap], seed=0) == price


def test_random_cell_gain_is_not_set_by_one_speaker_with_many_words():
    """One speaker with 9% of the words sits in few cells; charging every cell for that speaker (a
    ratio of totals, y + alpha y^2 sum(w^2) / sum(w)) prices a cell about 1.7x what cells of a
    sixteenth of the speakers add on average. The price must stay near that average, taken over
    40 draws of the outcomes (one draw is noisy: the heavy speaker's own error is one number)."""
    from fairaudit.stats.metrics import random_cell_gain

    rng = np.random.default_rng(1)
    n = 2000
    words = 3.5 * (1 + np.floor(rng.lognormal(np.log(20) - 0.5, 1.0, n)))
    words[0] = 0.09 / 0.91 * words[1:].sum()
    gains, prices = [], []
    for _ in range(40):
        errors = rng.poisson(0.08 * np.exp(0.3 * rng.normal(size=n) - 0.045) * words).astype(float)
        prices.append(random_cell_gain(errors, words, seed=0))
        total_errors, total_words = errors.sum(), words.sum()
        for _ in range(100):
            cell = np.zeros(n, bool)
            cell[rng.choice(n, n // 16, replace=False)] = True
            w_c, e_c = words[cell].sum(), errors[cell].sum()
            w_r, e_r = total_words - w_c, total_errors - e_c
            gains.append(w_c * w_r / total_words * (e_c / w_c - e_r / w_r) ** 2)
    assert np.mean(prices) == pytest.approx(np.mean(gains), rel=0.25)


def test_a_majority_worst_cell_is_the_bottom_only_for_groups_given_in_advance():
    """SPEC 5: B holds at most --max-bottom-share. When even the worst cell holds more, a method's
    cells have no bottom cohort (no minority stands out); a user's binary group keeps its worse side."""
    errors, words = np.array([[60.0, 10.0, 10.0]]), np.array([[600.0, 200.0, 200.0]])
    speakers = np.array([60, 20, 20])  # the worst cell (10% WER vs 5%) holds 60% of the speakers
    groups = select_bottom_top(errors, words, speakers, np.ones(3, bool))
    found = select_bottom_top(errors, words, speakers, np.ones(3, bool), majority_bottom=False)
    assert groups.bottom[0].tolist() == [True, False, False]
    assert not found.bottom[0].any()
    # a minority worst cell is chosen either way
    minority = select_bottom_top(errors, words, np.array([40, 30, 30]), np.ones(3, bool), majority_bottom=False)
    assert minority.bottom[0].tolist() == [True, False, False]


def test_a_discovery_method_whose_worst_region_is_a_majority_reports_no_bottom_cohort():
    """geo-tree cutting the speakers into a 60% worse half and a 40% better half: no bottom cohort,
    verdict "no evidence" saying why; the same data grouped with --by keeps the worse half."""
    rng = np.random.default_rng(5)
    n = 400
    west = np.arange(n) < 240  # 60% of speakers, WER 12% against 6%
    words = np.full(n, 400)
    errors = rng.binomial(words, np.where(west, 0.12, 0.06))
    frame = pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in range(n)],
            "ref_words": words,
            "errors": errors,
            "latitude": rng.uniform(33, 45, n),
            "longitude": np.where(west, rng.uniform(-120, -100, n), rng.uniform(-90, -75, n)),
            "side": np.where(west, "west", "east"),
        }
    )
    result = fairaudit.audit(frame, methods=["geo-tree", "attribute"], by=["side"], bootstrap=0, permutations=50)
    tree = result.methods["geo-tree"]
    assert tree.discovery.bottom == [] and tree.discovery.wer_gap_pct is None
    assert tree.verdict == "no evidence" and "no minority cohort stands out" in tree.verdict_reason
    assert "--max-bottom-share 0.5" in tree.verdict_reason
    by_side = result.methods["attribute"]
    assert by_side.discovery.bottom == ["west"] and by_side.verdict == "disparity"
