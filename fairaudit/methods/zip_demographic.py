"""zip-demographic (Dheram et al. 2022): binary splits of speakers' ZIP codes by census demographics.

Candidates: majority race/ethnicity = g vs. not g (for each g that is some ZIP's majority), and
each continuous attribute above vs. at-or-below a threshold on a quantile grid of the speakers'
values (every 5% quantile). The reported partition is the eligible candidate with the largest
size-weighted gain W_A W_B / (W_A + W_B) (WER_A - WER_B)^2 (SPEC 4.1 and 4.3; W = reference
words), not the largest raw gap, which favours tiny noisy sides. SPEC 5's bottom cohort holds at
most ``max_bottom_share`` of the speakers (an under-served cohort is a minority), so a split whose
worse side is larger is chosen only when no split satisfies that. All candidates are kept, ranked
(choosable ones first), in ``partition_.details["candidates"]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from fairaudit.geodata.census import (
    BUILTIN_SOURCE,
    CONTINUOUS_COLUMNS,
    RACE_COLUMNS,
    builtin_demographics,
    demographic_columns,
    format_value,
    table_version,
)
from fairaudit.methods.base import CohortMethod, definition_cells
from fairaudit.methods.registry import register
from fairaudit.model.log import ZIP_CODE
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.privacy import SMALL_SIDE, differencing_withheld
from fairaudit.stats.metrics import pooled_wer, wer_gap_pct
from fairaudit.stats.selection import SelectionRule

#: Threshold grid: every 5% quantile of the speakers' values, so a cut off any decile is found,
#: and every 1% in the two tails, where a small under-served group (2-5% of speakers) would
#: otherwise be diluted into a 5% side.
DEFAULT_QUANTILES = tuple(
    np.round(
        np.concatenate([np.arange(0.01, 0.05, 0.01), np.arange(0.05, 0.951, 0.05), np.arange(0.96, 0.995, 0.01)]), 2
    )
)


@dataclass
class Candidate:
    """One binary split: side A (label 0) vs. side B (label 1)."""

    attribute: str
    kind: str  # "majority" or "threshold"
    value: object  # the majority group or the threshold
    ids: tuple[str, str]
    descriptions: tuple[str, str]


@register
class ZipDemographic(CohortMethod):
    """The census split of ZIP codes with the largest size-weighted WER difference (gain)."""

    name = "zip-demographic"
    title = "zip-demographic: census splits of ZIP codes"
    display_order = 20
    requires = (ZIP_CODE,)

    def __init__(
        self,
        min_speakers: int = 30,
        demographics: pd.DataFrame | None = None,
        source: str | None = None,
        quantiles: tuple[float, ...] = DEFAULT_QUANTILES,
        min_report_speakers: int = 10,
        max_bottom_share: float = 0.5,
    ) -> None:
        self.min_speakers = min_speakers
        self.max_bottom_share = max_bottom_share
        self.min_report_speakers = min_report_speakers
        self.demographics = demographics
        self.source = source
        self.quantiles = quantiles

    @classmethod
    def from_options(cls, opts) -> list[ZipDemographic]:
        """Candidates are limited to splits both of whose sides may be reported and selected
        (the same minimum the selection and the permutation test use)."""
        from fairaudit.io.demographics import load_demographics_option

        demographics, source = load_demographics_option(opts.demographics)
        return [
            cls(
                min_speakers=max(opts.min_speakers, opts.min_report_speakers),
                demographics=demographics,
                source=source,
                min_report_speakers=opts.min_report_speakers,
                # SPEC 5's share limit belongs to --bottom auto; other modes take the worse side whatever its size
                max_bottom_share=opts.max_bottom_share if opts.bottom == "auto" else 1.0,
            )
        ]

    def _table(self) -> pd.DataFrame:
        return builtin_demographics() if self.demographics is None else self.demographics

    def fit(self, speakers: SpeakerTable) -> ZipDemographic:
        table = self._table()
        attributes, reasons = _speaker_attributes(speakers, table)
        self.candidates_ = _candidates(attributes, table, self.quantiles)
        sides = _candidate_sides(attributes, self.candidates_)  # (n, C) in {-1, 0, 1}
        rule = SelectionRule(min_speakers=self.min_speakers)
        #: The share limit as fitted; the permutation test re-ranks with this, not a later set_params.
        self.max_bottom_share_ = float(self.max_bottom_share)
        stats = _candidate_stats(CandidateSides(sides), speakers.errors[None, :], speakers.ref_words[None, :], rule)
        choosable = _choosable_gains(stats, self.max_bottom_share_)[0]
        order = _rank_candidates(stats["gain"][0], stats["eligible"], choosable)
        self.ranking_ = [
            {
                "rank": rank + 1,
                "attribute": self.candidates_[c].attribute,
                "kind": self.candidates_[c].kind,
                "value": _json_value(self.candidates_[c].value),
                "cohorts": [
                    {
                        "id": self.candidates_[c].ids[side],
                        "description": self.candidates_[c].descriptions[side],
                        "speakers": int(stats["speakers"][c, side]),
                        "ref_words": int(stats["words"][0, c, side]),
                        "errors": int(stats["errors"][0, c, side]),
                        "wer": _float(stats["wer"][0, c, side]),
                    }
                    for side in (0, 1)
                ],
                "wer_gap_pct": _float(stats["gap"][0, c]),
                "gain": _float(stats["gain"][0, c]),
                "eligible": bool(stats["eligible"][c]),
            }
            for rank, c in enumerate(order)
        ]
        eligible_order = [c for c in order if stats["eligible"][c]]
        self.chosen_ = eligible_order[0] if eligible_order else (order[0] if len(order) else None)
        self._withhold_differences(sides, order)
        self._reasons = reasons
        self.partition_ = self.assign(speakers)
        return self

    def _withhold_differences(self, sides: np.ndarray, order: list[int]) -> None:
        """Mark the listed candidates whose figures would expose a few speakers (SPEC 6).

        Every candidate's sides are unions of ZIP codes, so two candidates of any attributes can
        be nested (``median_age <= 30`` inside ``income <= 40,000``); publishing both would give
        the difference's errors and words. The chosen split is published anyway, as the method's
        cohorts (whose own suppression rules apply), so the others are checked against it, in rank
        order.
        """
        patterns, counts, _ = _distinct_rows(sides)  # atoms: speakers alike on every split
        chosen: list[np.ndarray] = []
        reasons: dict[int, str | None] = {}
        if self.chosen_ is not None:
            chosen = [patterns[:, self.chosen_] == side for side in (0, 1)]
            sizes = [int(counts[side].sum()) for side in chosen]
            small = any(0 < size < self.min_report_speakers for size in sizes)
            # a small side is suppressed in the cohort table (with its complement): not listed either
            reasons[self.chosen_] = SMALL_SIDE if small else None
            chosen = [] if small else [*chosen, chosen[0] | chosen[1]]
        others = [c for c in order if c != self.chosen_]
        items = [[patterns[:, c] == 0, patterns[:, c] == 1] for c in others]
        reasons.update(zip(others, differencing_withheld(items, counts, self.min_report_speakers, chosen)))
        for entry, c in zip(self.ranking_, order):
            entry["withheld_reason"] = reasons[c]

    def _assign(self, speakers: SpeakerTable) -> Partition:
        table = self._table()
        attributes, reasons = _speaker_attributes(speakers, table)
        details = {"candidates": getattr(self, "ranking_", []), "source": self.source or BUILTIN_SOURCE}
        if self.chosen_ is None:
            labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
            reasons = np.where(reasons == "", "no usable census attribute", reasons)
            return Partition(self.name, labels, [], [], _count(reasons), details)
        candidate = self.candidates_[self.chosen_]
        labels = _candidate_sides(attributes, [candidate])[:, 0].astype(np.int64)
        reasons = np.where(
            (labels == UNASSIGNED) & (reasons == ""), f"no census value for {candidate.attribute}", reasons
        )
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=list(candidate.ids),
            descriptions=list(candidate.descriptions),
            unassigned_reasons=_count(reasons),
            details=dict(details, chosen=self.candidates_[self.chosen_].ids),
        )

    def definition(self) -> dict:
        """The chosen census rule and the table version it refers to (a mismatch is an error)."""
        cells, candidate = [], None
        if self.chosen_ is not None:
            chosen = self.candidates_[self.chosen_]
            candidate = {"attribute": chosen.attribute, "kind": chosen.kind, "value": _json_value(chosen.value)}
            cells = [{"id": cid, "description": text} for cid, text in zip(chosen.ids, chosen.descriptions)]
        return {
            "rule": "side A (first cell): the ZIP's value is at or below the threshold, or its majority "
            "race/ethnicity is the group; side B: above it, or another majority",
            "census_table": table_version(self._table(), self.demographics is None),
            "source": self.source or BUILTIN_SOURCE,
            "candidate": candidate,
            "cells": cells,
        }

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> ZipDemographic:
        context = context or {}
        method = cls(demographics=context.get("demographics"), source=context.get("source"))
        cells = definition_cells(definition)
        stored = definition.get("census_table")
        current = table_version(method._table(), method.demographics is None)
        if stored != current:
            raise ValueError(
                f"the cohorts were defined on census table '{stored}', but this run has '{current}': "
                "give the same --demographics file (or none, for the built-in table)"
            )
        spec = definition.get("candidate")
        method.candidates_, method.chosen_, method.ranking_ = [], None, []
        method.max_bottom_share_ = float(method.max_bottom_share)
        if spec is not None:
            if not isinstance(spec, dict) or spec.get("kind") not in ("majority", "threshold") or len(cells) != 2:
                raise ValueError(
                    "a zip-demographic definition needs a 'candidate' (attribute, kind, value) and two cells"
                )
            if spec["kind"] == "threshold":
                columns = set(method._table().columns)
                if spec.get("attribute") not in columns:
                    raise ValueError(f"the census attribute {spec.get('attribute')!r} is not in the census table")
                value = spec.get("value")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                    raise ValueError(f"the threshold {value!r} of {spec['attribute']!r} is not a finite number")
            elif not isinstance(spec.get("value"), str):
                raise ValueError(f"the majority group {spec.get('value')!r} is not a name")
            method.candidates_ = [
                Candidate(
                    attribute=str(spec["attribute"]),
                    kind=spec["kind"],
                    value=spec["value"],
                    ids=(cells[0]["id"], cells[1]["id"]),
                    descriptions=(str(cells[0].get("description")), str(cells[1].get("description"))),
                )
            ]
            method.chosen_ = 0
        return method

    def _null_sides(self, speakers: SpeakerTable) -> CandidateSides:
        """The candidates' sides for these speakers, computed once for all permutation blocks
        (they depend on ZIP codes only, never on the shuffled outcomes)."""
        cached = getattr(self, "_null_sides_cache", None)
        if cached is None or cached[0] is not speakers:
            attributes, _ = _speaker_attributes(speakers, self._table())
            cached = (speakers, CandidateSides(_candidate_sides(attributes, self.candidates_)))
            self._null_sides_cache = cached
        return cached[1]

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """Candidates do not depend on outcomes: re-rank all of them on each shuffle at once."""
        sides = self._null_sides(speakers)
        errors = speakers.errors[permutations]
        words = speakers.ref_words[permutations]
        null = np.zeros(len(permutations))
        for start in range(0, len(permutations), 50):  # bounded memory: 50 shuffles at a time
            block = slice(start, start + 50)
            stats = _candidate_stats(sides, errors[block], words[block], rule)
            if not stats["gain"].shape[1]:
                continue
            # The statistic of the best split: its size-weighted gain (SelectionRule.statistic for
            # two cells: the worse side against the other, no extra cells to price).
            best = _choosable_gains(stats, self.max_bottom_share_, fall_back=rule.majority_bottom).max(axis=1)
            null[block] = np.where(np.isfinite(best), best, 0.0)
        return null


def _speaker_attributes(speakers: SpeakerTable, table: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Census attributes per speaker (NaN rows when unmatched) and a reason per unmatched speaker."""
    frame = speakers.frame
    n = len(frame)
    if ZIP_CODE not in frame.columns:
        return pd.DataFrame(index=range(n), columns=table.columns, dtype="float64"), np.full(
            n, "no ZIP code", dtype=object
        )
    zips = pd.Series(frame[ZIP_CODE].to_numpy(), dtype="string").str.slice(0, 5)
    position = table.index.get_indexer(zips.fillna(""))
    attributes = table.iloc[np.clip(position, 0, None)].reset_index(drop=True)
    attributes.loc[position < 0] = np.nan
    reasons = np.full(n, "", dtype=object)
    reasons[(position < 0)] = "ZIP code not in the census table"
    reasons[zips.isna().to_numpy()] = "no ZIP code"
    return attributes, reasons


def _candidates(attributes: pd.DataFrame, table: pd.DataFrame, quantiles: tuple[float, ...]) -> list[Candidate]:
    """Every candidate binary split the speakers' census attributes allow."""
    race, continuous = demographic_columns(table)
    candidates: list[Candidate] = []
    if race:
        majority = _majority(attributes, race)
        for column in race:
            group = RACE_COLUMNS[column]
            if (majority == column).any():
                candidates.append(
                    Candidate(
                        attribute="majority race/ethnicity",
                        kind="majority",
                        value=group,
                        ids=(f"majority-{_slug(group)}", f"majority-not-{_slug(group)}"),
                        descriptions=(f"ZIP majority is {group}", f"ZIP majority is not {group}"),
                    )
                )
    for column in continuous:
        values = attributes[column].dropna().to_numpy()
        if len(values) == 0:
            continue
        thresholds = np.unique(np.quantile(values, quantiles))
        label = CONTINUOUS_COLUMNS[column][0]
        for threshold in thresholds:
            shown = format_value(column, threshold)
            candidates.append(
                Candidate(
                    attribute=column,
                    kind="threshold",
                    value=float(threshold),
                    ids=(f"{column}<={threshold:g}", f"{column}>{threshold:g}"),
                    descriptions=(f"ZIP {label} <= {shown}", f"ZIP {label} > {shown}"),
                )
            )
    return candidates


def _majority(attributes: pd.DataFrame, race: list[str]) -> np.ndarray:
    """Per speaker, the race share column with the largest value (empty string when unknown)."""
    shares = attributes[race].to_numpy(dtype=np.float64)
    known = ~np.isnan(shares).all(axis=1)
    best = np.argmax(np.where(np.isnan(shares), -np.inf, shares), axis=1)
    return np.where(known, np.asarray(race, dtype=object)[best], "")


def _candidate_sides(attributes: pd.DataFrame, candidates: list[Candidate]) -> np.ndarray:
    """(n_speakers, n_candidates) matrix: 0 = side A, 1 = side B, -1 = no value."""
    n = len(attributes)
    sides = np.full((n, len(candidates)), UNASSIGNED, dtype=np.int8)
    race = [c for c in RACE_COLUMNS if c in attributes.columns]
    majority = _majority(attributes, race) if race else np.full(n, "", dtype=object)
    group_to_column = {v: k for k, v in RACE_COLUMNS.items()}
    for j, candidate in enumerate(candidates):
        if candidate.kind == "majority":
            known = majority != ""
            sides[known, j] = (majority[known] != group_to_column[str(candidate.value)]).astype(np.int8)
        else:
            values = attributes[candidate.attribute].to_numpy(dtype=np.float64)
            known = ~np.isnan(values)
            sides[known, j] = (values[known] > candidate.value).astype(np.int8)
    return sides


def _distinct_rows(sides: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows of a small-integer matrix, how often each occurs, and each row's distinct row.

    Rows are hashed to one 64-bit number (wrapping random weights; a collision needs two of at
    most a few thousand distinct rows to agree on 64 random bits) and the hashes sorted: 40 times
    faster than ``np.unique(axis=0)``'s row sort on 100,000 x 141.
    """
    weights = np.random.default_rng(0).integers(1, 2**62, size=sides.shape[1], dtype=np.int64)
    with np.errstate(over="ignore"):
        keys = (sides.astype(np.int64) + 2) @ weights
    _, first, inverse, counts = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
    return sides[first], counts, inverse.ravel()


class CandidateSides:
    """The candidates' side indicators for groups of speakers alike on every split (the speakers of
    one ZIP code share all their sides): a sum over speakers is one sparse grouping, then a small
    (groups x candidates) product, instead of a product with an (n_speakers x candidates) matrix."""

    def __init__(self, sides: np.ndarray) -> None:
        patterns, counts, group = _distinct_rows(sides)
        n_groups = len(patterns)
        self.side_a = (patterns == 0).astype(np.float64)  # (G, C)
        self.side_b = (patterns == 1).astype(np.float64)
        self.speakers = np.stack([counts @ self.side_a, counts @ self.side_b], axis=-1)  # (C, 2)
        self._grouping = csr_matrix(
            (np.ones(len(group)), (group, np.arange(len(group)))), shape=(n_groups, len(group))
        )  # (G, n)

    def group_sums(self, values: np.ndarray) -> np.ndarray:
        """(R, n) per-speaker values -> (R, G) sums per group."""
        return np.asarray((self._grouping @ np.asarray(values, dtype=np.float64).T).T)


def _candidate_stats(sides: CandidateSides, errors: np.ndarray, words: np.ndarray, rule: SelectionRule) -> dict:
    """Per replicate and candidate: side totals, WERs, gap (worse vs. better side), eligibility."""
    errors, words = sides.group_sums(errors), sides.group_sums(words)  # (R, G)
    err = np.stack([errors @ sides.side_a, errors @ sides.side_b], axis=-1)  # (R, C, 2)
    wrd = np.stack([words @ sides.side_a, words @ sides.side_b], axis=-1)
    spk = sides.speakers
    wer = pooled_wer(err, wrd)
    gap = wer_gap_pct(
        np.nanmax(np.where(np.isnan(wer), -np.inf, wer), axis=-1),
        np.nanmin(np.where(np.isnan(wer), np.inf, wer), axis=-1),
    )
    eligible = (spk >= rule.min_speakers).all(axis=-1)
    total = wrd.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = wrd[..., 0] * wrd[..., 1] / total * (wer[..., 0] - wer[..., 1]) ** 2
    return {"errors": err, "words": wrd, "speakers": spk, "wer": wer, "gap": gap, "gain": gain, "eligible": eligible}


def _choosable_gains(stats: dict, max_bottom_share: float, fall_back: bool = True) -> np.ndarray:
    """(R, C) the size-weighted gain of each candidate that may be chosen on each replicate, -inf
    for the others: both sides eligible and the worse side within ``max_bottom_share`` of the
    split's speakers; when no candidate of a replicate meets the share limit, every eligible one
    (``fall_back``; without it none, as the selection rule then has no bottom cohort)."""
    eligible = stats["eligible"][None, :] & np.isfinite(stats["gain"])
    speakers = stats["speakers"].astype(np.float64)  # (C, 2)
    side_a_worse = stats["wer"][..., 0] >= stats["wer"][..., 1]  # (R, C)
    worse = np.where(side_a_worse, speakers[:, 0], speakers[:, 1])
    total = speakers.sum(axis=1)
    within = worse <= max_bottom_share * np.where(total > 0, total, 1.0)
    allowed = eligible & within
    usable = np.where(allowed.any(axis=1, keepdims=True), allowed, eligible if fall_back else False)
    return np.where(usable, stats["gain"], -np.inf)


def _rank_candidates(gain: np.ndarray, eligible: np.ndarray, choosable: np.ndarray) -> list[int]:
    """Candidates by size-weighted gain, largest first: choosable ones (see ``_choosable_gains``)
    first, then the other eligible ones, then ineligible ones, undefined last."""
    key = np.where(np.isnan(gain), -np.inf, gain)
    return list(np.lexsort((np.arange(len(gain)), -key, ~eligible, ~np.isfinite(choosable))))


def _count(reasons: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(reasons[reasons != ""].astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts)}


def _slug(text: str) -> str:
    return text.lower().replace(" ", "-")


def _float(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _json_value(value: object) -> object:
    return float(value) if isinstance(value, (float, np.floating)) else value
