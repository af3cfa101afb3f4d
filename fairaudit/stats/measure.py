"""Measure one partition on one set of speakers: cohort table, selection, intervals, p-values.

This is the statistics half of an audit: methods produce partitions, this turns a partition into
:class:`~fairaudit.report.result.Figures`. Nothing here renders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.model.figures import Figures
from fairaudit.model.numbers import finite_or_none
from fairaudit.model.partition import Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.options import AuditOptions
from fairaudit.privacy import suppressed_cells
from fairaudit.stats.adjust import adjusted_rate_ratios
from fairaudit.stats.anatomy import cohort_anatomy
from fairaudit.stats.metrics import Selection, cohort_sums, masked_wer, pooled_wer, rank_order, wer_gap_pct
from fairaudit.stats.power import detectable_gap_pct, selection_power, speakers_needed
from fairaudit.stats.resampling import (
    bca_interval,
    benjamini_hochberg,
    cohort_wer_accelerations,
    cohort_wer_degrees_of_freedom,
    permutation_blocks,
    permutation_p_value,
    selection_accelerations,
    selection_degrees_of_freedom,
    utterance_level_null,
)
from fairaudit.stats.selection import SelectionRule


def discover_selection(partition: Partition, speakers: SpeakerTable, rule: SelectionRule) -> Selection:
    """Bottom and top cohorts chosen on the data the partition was found on."""
    sums = cohort_sums(partition, speakers.errors, speakers.ref_words, speakers.utterances)
    return rule.select(sums.errors[None, :], sums.ref_words[None, :], sums.speakers)


def selection_from_ids(
    partition: Partition, bottom: list[str], top: list[str], top_mode: str, speakers_per_cohort: np.ndarray
) -> Selection:
    """The discovery's bottom/top cohorts, by id, on another set of speakers (the hold-out)."""
    ids = np.asarray(partition.cohort_ids, dtype=object)
    bottom_mask = np.isin(ids, bottom)
    if top_mode == "rest":
        top_mask = ~bottom_mask & (speakers_per_cohort > 0)
    else:
        top_mask = np.isin(ids, top)
    return Selection(bottom=bottom_mask[None, :], top=top_mask[None, :])


def measure(
    partition: Partition,
    speakers: SpeakerTable,
    selection: Selection,
    rule: SelectionRule,
    *,
    boot: dict | None,
    alpha: float = 0.05,
    target_gap_pct: float | None = None,
    adjust: list[str] | None = None,
    rng: np.random.Generator,
    min_report_speakers: int,
    p_value: float | None,
    cohort_p_values: bool = False,
    permutations: int = 0,
) -> Figures:
    """Point estimates, speaker-bootstrap intervals and (optionally) per-cohort p-values.

    ``boot`` holds the bootstrap replicates drawn for this partition by
    :func:`~fairaudit.stats.resampling.bootstrap_partitions` (one draw shared by every method); None
    (or no replicates, ``--bootstrap 0``) leaves the intervals empty.
    """
    sums = cohort_sums(partition, speakers.errors, speakers.ref_words, speakers.utterances)
    wer = sums.wer
    bottom, top = selection.bottom[0], selection.top[0]
    assigned = partition.assigned
    # An utterance-level table has a row per speaker and value: cohorts count distinct speakers,
    # and a speaker with utterances in several cohorts counts in each (shares need not add to 100%).
    row_speaker = speakers.clusters if speakers.clusters is not None else np.arange(len(speakers))
    total_speakers = max(len(np.unique(row_speaker[assigned])), 1)
    total_utts = max(int(sums.utterances.sum()), 1)
    total_words = max(int(sums.ref_words.sum()), 1)
    have_selection = bool(bottom.any() and top.any())

    # The chosen cohorts' own figures are published: a bottom or top union under the reporting
    # minimum (possible on held-out speakers) withholds them all (SPEC 6).
    def distinct(cells: np.ndarray) -> int:
        """Distinct speakers in a set of cohorts (a speaker can be in several at utterance level)."""
        rows = (partition.labels >= 0) & np.asarray(cells, dtype=bool)[np.maximum(partition.labels, 0)]
        return len(np.unique(row_speaker[rows]))

    if have_selection and min(distinct(bottom), distinct(top)) < min_report_speakers:
        have_selection = False

    if boot is not None and len(boot["gap_pct"]) == 0:
        boot = None
    if boot is not None:
        accel = (
            cohort_wer_accelerations(partition.labels, speakers.errors, speakers.ref_words, partition.n_cohorts)
            if speakers.clusters is None
            else np.zeros(partition.n_cohorts)  # the leave-one-speaker-out jackknife needs whole speakers
        )
        freedom = cohort_wer_degrees_of_freedom(
            partition.labels, speakers.errors, speakers.ref_words, partition.n_cohorts
        )
        wer_ci = bca_interval(boot["wer"], wer, accel, degrees_of_freedom=freedom)
    else:
        wer_ci = [[None, None]] * partition.n_cohorts

    order = rank_order(wer)
    rank = np.empty(partition.n_cohorts, dtype=np.int64)
    rank[order] = np.arange(1, partition.n_cohorts + 1)
    eligible = rule.eligible(sums.speakers, sums.ref_words)
    suppressed = suppressed_cells(
        sums.speakers,
        min_report_speakers,
        bottom | top,
        distinct if speakers.clusters is not None else None,
        published_unions=[bottom, top, ~(bottom | top)] if have_selection else None,
    )
    cohorts = pd.DataFrame(
        {
            "id": partition.cohort_ids,
            "description": partition.descriptions,
            "rank": rank,
            "speakers": sums.speakers,
            "utterances": sums.utterances,
            "ref_words": sums.ref_words,
            "errors": sums.errors,
            "wer": wer,
            "wer_ci_low": [ci[0] for ci in wer_ci],
            "wer_ci_high": [ci[1] for ci in wer_ci],
            "speaker_share_pct": 100.0 * sums.speakers / total_speakers,
            "utterance_share_pct": 100.0 * sums.utterances / total_utts,
            "word_share_pct": 100.0 * sums.ref_words / total_words,
            "eligible": eligible,
            "suppressed": suppressed,
            "detectable_gap_pct": detectable_gap_pct(
                partition, speakers.errors, speakers.ref_words, alpha, speakers.clusters
            ),
            "speakers_needed": (
                speakers_needed(
                    partition, speakers.errors, speakers.ref_words, alpha, target_gap_pct, speakers.clusters
                )
                if target_gap_pct
                else np.full(partition.n_cohorts, np.nan)
            ),
            **cohort_anatomy(partition, speakers).to_dict("series"),
        }
    )
    if cohort_p_values:
        raw = cohort_vs_rest_p_values(partition, speakers, permutations, rng)
        cohorts["p_value"] = raw
        cohorts["p_value_bh"] = benjamini_hochberg(raw)
    cohorts = cohorts.sort_values("rank", kind="stable").reset_index(drop=True)

    ids = np.asarray(partition.cohort_ids, dtype=object)
    undefined = np.array(np.nan)  # a 0-d array, like masked_wer's result
    bottom_wer = masked_wer(sums.errors, sums.ref_words, bottom) if have_selection else undefined
    top_wer = masked_wer(sums.errors, sums.ref_words, top) if have_selection else undefined
    gap = float(wer_gap_pct(bottom_wer, top_wer)) if have_selection else None
    share = None
    if have_selection:  # speakers with any row in the bottom cohort (one row each at speaker level)
        in_bottom_rows = (partition.labels >= 0) & bottom[np.maximum(partition.labels, 0)]
        share = 100.0 * len(np.unique(row_speaker[in_bottom_rows])) / total_speakers
    gap_ci: list = [None, None]
    share_ci: list = [None, None]
    bottom_wer_ci: list = [None, None]
    power_gap, power_needed = float("nan"), float("nan")
    if have_selection:
        labels = partition.labels
        in_bottom = (labels >= 0) & bottom[np.maximum(labels, 0)]
        in_top = (labels >= 0) & top[np.maximum(labels, 0)]
        power_gap, power_needed = selection_power(
            in_bottom, in_top, speakers.errors, speakers.ref_words, alpha, target_gap_pct, speakers.clusters
        )
    adjusted = None
    if adjust and have_selection and speakers.clusters is not None:
        adjusted = {
            "covariates": list(adjust),
            "speakers": 0,
            "left_out": 0,
            "error": "adjusting utterance-level cohorts is not supported yet (use --by-level speaker to adjust)",
        }
    elif adjust and have_selection:
        adjusted = adjusted_rate_ratios(speakers, in_bottom, in_top, adjust)
    if boot is not None and have_selection:
        # Student-t quantiles on the gap's effective degrees of freedom, as for cohort WERs
        gap_freedom = selection_degrees_of_freedom(
            partition.labels, speakers.errors, speakers.ref_words, bottom, top, speakers.clusters
        )
        gap_value = gap if gap is not None else np.nan
        if speakers.clusters is not None:  # the leave-one-speaker-out jackknife needs whole speakers
            gap_ci = bca_interval(boot["gap_pct"], gap_value, 0.0, degrees_of_freedom=gap_freedom)
        else:
            gap_a, share_a = selection_accelerations(partition.labels, speakers.errors, speakers.ref_words, bottom, top)
            gap_ci = bca_interval(boot["gap_pct"], gap_value, gap_a, degrees_of_freedom=gap_freedom)
            share_ci = bca_interval(boot["share_pct"], share if share is not None else np.nan, share_a)
        bottom_wer_ci = _bottom_wer_interval(boot["bottom_wer"], float(bottom_wer), in_bottom, speakers)
    return Figures(
        cohorts=cohorts,
        bottom=[str(i) for i in ids[bottom]],
        top=[str(i) for i in ids[top]],
        wer_gap_pct=gap,
        wer_gap_ci=gap_ci,
        bottom_share_pct=share,
        bottom_share_ci=share_ci,
        bottom_wer_ci=bottom_wer_ci,
        bottom_utterance_share_pct=100.0 * sums.utterances[bottom].sum() / total_utts if have_selection else None,
        bottom_word_share_pct=100.0 * sums.ref_words[bottom].sum() / total_words if have_selection else None,
        bottom_wer=float(bottom_wer) if have_selection else None,
        top_wer=float(top_wer) if have_selection else None,
        p_value=p_value,
        speakers=speakers.n_speakers,
        assigned_speakers=total_speakers if assigned.any() else 0,
        overall_wer=finite_or_none(pooled_wer(sums.errors.sum(), sums.ref_words.sum())),
        reported_wer=finite_or_none(pooled_wer(sums.errors[~suppressed].sum(), sums.ref_words[~suppressed].sum())),
        detectable_gap_pct=finite_or_none(power_gap),
        speakers_needed=finite_or_none(power_needed),
        adjusted=adjusted,
    )


def measure_with_options(
    partition: Partition,
    speakers: SpeakerTable,
    selection: Selection,
    rule: SelectionRule,
    opts: AuditOptions,
    *,
    rng: np.random.Generator,
    boot: dict | None,
    p_value: float | None,
    cohort_p_values: bool,
) -> Figures:
    """:func:`measure` with the audit options that shape every measurement (alpha, --target-gap,
    --adjust, --min-report-speakers, --permutations), so each caller passes only what differs."""
    return measure(
        partition,
        speakers,
        selection,
        rule,
        boot=boot,
        alpha=opts.alpha,
        target_gap_pct=opts.target_gap,
        adjust=opts.adjust,
        rng=rng,
        min_report_speakers=opts.min_report_speakers,
        p_value=p_value,
        cohort_p_values=cohort_p_values,
        permutations=opts.permutations,
    )


def fixed_selection_p_value(
    partition: Partition,
    speakers: SpeakerTable,
    selection: Selection,
    observed_gap: float | None,
    permutations: int,
    rng: np.random.Generator,
) -> float | None:
    """p-value of a gap between cohorts fixed in advance (the hold-out test: no search to correct)."""
    if observed_gap is None or permutations <= 0:
        return None
    indicator = partition.indicator()
    e, w = speakers.errors.astype(np.float64), speakers.ref_words.astype(np.float64)
    if speakers.clusters is not None:  # utterance-level: whole speakers shuffled, spread over their rows
        blocks = utterance_level_null(speakers.clusters, speakers.errors, speakers.ref_words, permutations, rng)
        null = np.concatenate([selection.gap_pct(drawn @ indicator, words @ indicator) for drawn, words in blocks])
        return permutation_p_value(observed_gap, null)
    null = np.concatenate(
        [
            selection.gap_pct(e[order] @ indicator, w[order] @ indicator)
            for order in permutation_blocks(partition.assigned, len(speakers), permutations, rng)
        ]
    )
    return permutation_p_value(observed_gap, null)


def cohort_vs_rest_p_values(
    partition: Partition, speakers: SpeakerTable, permutations: int, rng: np.random.Generator
) -> np.ndarray:
    """Two-sided permutation p-value of each cohort's WER against all other assigned speakers."""
    k = partition.n_cohorts
    if permutations <= 0 or k < 2:
        return np.full(k, np.nan)
    indicator = partition.indicator()

    def distance(errors: np.ndarray, words: np.ndarray) -> np.ndarray:
        total_e, total_w = errors.sum(axis=-1, keepdims=True), words.sum(axis=-1, keepdims=True)
        return np.abs(pooled_wer(errors, words) - pooled_wer(total_e - errors, total_w - words))

    observed = distance(
        speakers.errors.astype(np.float64) @ indicator, speakers.ref_words.astype(np.float64) @ indicator
    )
    e, w = speakers.errors.astype(np.float64), speakers.ref_words.astype(np.float64)
    exceed = np.zeros(k, dtype=np.int64)
    for order in permutation_blocks(partition.assigned, len(speakers), permutations, rng, block=200):
        null = distance(e[order] @ indicator, w[order] @ indicator)
        exceed += (np.nan_to_num(null, nan=-np.inf) >= observed[None, :] - 1e-12).sum(axis=0)
    p = (1 + exceed) / (1 + permutations)
    return np.where(np.isfinite(observed), p, np.nan)


def _bottom_wer_interval(replicates: np.ndarray, estimate: float, in_bottom: np.ndarray, speakers) -> list:
    """The bottom cohort's WER interval, computed as a single cohort's (expanded BCa: jackknife
    acceleration and effective degrees of freedom of its rows), whatever cells it unites."""
    if speakers.clusters is None:
        labels = np.where(in_bottom, 0, -1)
        freedom = cohort_wer_degrees_of_freedom(labels, speakers.errors, speakers.ref_words, 1)
        accel = cohort_wer_accelerations(labels, speakers.errors, speakers.ref_words, 1)
    else:  # rows are (speaker, value) pairs: a speaker with rows of two bottom values counts once
        _, speaker = np.unique(speakers.clusters[in_bottom], return_inverse=True)
        errors = np.bincount(speaker, weights=speakers.errors[in_bottom])
        words = np.bincount(speaker, weights=speakers.ref_words[in_bottom])
        freedom = cohort_wer_degrees_of_freedom(np.zeros(len(words), dtype=np.int64), errors, words, 1)
        accel = np.zeros(1)  # the leave-one-speaker-out jackknife needs whole speakers
    return bca_interval(replicates[:, None], np.array([estimate]), accel, degrees_of_freedom=freedom)[0]
