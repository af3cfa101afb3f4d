"""Hand-computed WER gap and bottom-cohort share on tiny logs (SPEC 5)."""

import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.metrics import pooled_wer, select_bottom_top, wer_gap_pct
from fairaudit.stats import benjamini_hochberg


def tiny_log() -> pd.DataFrame:
    """Three groups of speakers with WERs 15%, 10% and 5% (pooled), per-utterance means differ."""
    rows = [
        # group A: 6 errors / 40 words = 0.15 ; speaker a1 has a short, all-wrong utterance
        ("a1", "A", 1, 1), ("a1", "A", 1, 9), ("a2", "A", 4, 30),
        # group B: 3 / 30 = 0.10
        ("b1", "B", 1, 10), ("b2", "B", 2, 20),
        # group C: 1 / 20 = 0.05
        ("c1", "C", 0, 10), ("c2", "C", 1, 5), ("c3", "C", 0, 5),
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
    result = run(tiny_log())
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
    fig = run(tiny_log(), bottom_share=0.5).discovery
    assert fig.bottom == ["A", "B"] and fig.top == ["C"]
    bottom_wer = (6 + 3) / (40 + 30)
    assert fig.wer_gap_pct == pytest.approx(100 * (bottom_wer - 0.05) / 0.05)
    assert fig.bottom_share_pct == pytest.approx(100 * 4 / 7)
    # A 35% target is closer to A alone (28.6%) than to A+B (57.1%): no overshoot to 57%.
    assert run(tiny_log(), bottom_share=0.35).discovery.bottom == ["A"]
    # A target below A's own share still keeps A (the bottom cohort is never empty).
    assert run(tiny_log(), bottom_share=0.05).discovery.bottom == ["A"]


def test_bottom_share_always_leaves_a_top_cohort():
    fig = run(tiny_log(), bottom_share=0.99).discovery
    assert fig.top == ["C"] and set(fig.bottom) == {"A", "B"}


def test_binary_partition_top_modes_agree():
    frame = tiny_log()
    frame = frame[frame["group"] != "B"]
    best, rest = run(frame).discovery, run(frame, top="rest").discovery
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
    wer = np.array([[0.3, 0.1, 0.2], [0.1, 0.3, 0.2]])
    selection = select_bottom_top(wer, np.array([10, 10, 10]), np.array([True, True, True]))
    assert selection.bottom.tolist() == [[True, False, False], [False, True, False]]
    assert selection.top.tolist() == [[False, True, False], [True, False, False]]


def test_benjamini_hochberg_matches_hand_computation():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.20])
    # sorted: 0.01, 0.03, 0.04, 0.20 (m = 4): 0.04, 0.06, 0.0533 -> monotone 0.04, 0.0533, 0.0533, 0.20
    adjusted = benjamini_hochberg(p)
    assert adjusted[0] == pytest.approx(0.04)
    assert adjusted[2] == pytest.approx(0.04 * 4 / 3)
    assert adjusted[1] == pytest.approx(0.04 * 4 / 3)
    assert adjusted[4] == pytest.approx(0.20)
    assert np.isnan(adjusted[3])
