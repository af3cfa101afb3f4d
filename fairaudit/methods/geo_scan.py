"""geo-scan: circular and elliptic windows of elevated WER, found with a spatial scan statistic (SPEC 4.2).

Kulldorff's spatial scan statistic (Kulldorff 1997, "A spatial scan statistic", Communications in
Statistics - Theory and Methods 26:1481-1496; the method of the SaTScan software) looks at every
circle ("window") around a set of candidate centres, from small to large, scores how much higher
the error rate is inside than outside, and reports the best window; a Monte Carlo permutation
test of the maximum judges it. Secondary windows that share no speaker with a better one are
reported too, as SaTScan does.

Windows. Candidate centres are the centres of the 0.25-degree grid cells that hold located
speakers (at most ``max_centres``, the most populated); radii come from the fixed list
``RADII_KM``. A speaker is inside a circular window when the great-circle distance from the
window's centre to the centre of the speaker's 0.1-degree grid cell is at most the radius.
Regions are not all round (a coastal band, a state, a block of states), so, as SaTScan's elliptic
scan (Kulldorff et al. 2006, "An elliptic spatial scan statistic", Statistics in Medicine
25:3929-3943) does, the WIDE_CENTRES most populated centres also get ellipses of elongation
ELLIPSE_ELONGATION (long axis / short axis) with the long axis at each of ELLIPSE_BEARINGS_DEG,
of the same radii (an ellipse of radius r has the area of the circle of radius r; the rule is in
``fairaudit.geodata.windows``): a reduced set, not SaTScan's 45 shapes. Windows of radius above
WIDE_RADIUS_KM are also only drawn around these centres: a window that large is nearly the same
around neighbouring centres, and large windows hold most of the scan's work, so 100,000 speakers
still scan in seconds. ``assign`` applies exactly this rule to any speaker table, so the published
definition (grid centre, listed radius, listed elongation and bearing) is all that is needed to
place a new speaker, and no speaker's location can be read from it. A window must hold at least
``min_speakers`` speakers and at most ``max_window_share`` of the located speakers.

Score. Speakers are overdispersed: one or two speakers with many words and a bad microphone
must not look like a region. Each speaker gets a bounded-influence score. Under a
negative-binomial model with mean mu = r x words (r the pooled rate of the located speakers) and
variance mu + alpha mu^2 (alpha estimated once, as a median of moment estimates over random
groups of speakers, so that an extreme speaker cannot inflate it), the score is
psi(t) x mu / sd: t = (errors - mu) / sd is the Pearson residual, psi clips it to
[-HUBER_K, HUBER_K] (Huber 1964), and mu / sd = sqrt(mu / (1 + alpha mu)) is the efficient-score
weight of a multiplicative rate effect, which saturates at 1 / sqrt(alpha), so a speaker with
many words counts little more than an ordinary one. A window's statistic is the sum of its
speakers' scores standardised by its exact mean and variance when outcomes are shuffled,
z = (U_in - n_in mean(u)) / sqrt(var(u) n_in (n - n_in) / (n - 1)) (higher WER inside is
positive). Without clipping and with alpha = 0 the sum is errors_in - r x words_in, the
efficient score of Kulldorff's Poisson likelihood ratio (2 LLR ~ z^2 near the null); this is its
robust version, standardised as Kulldorff et al. (2009, "A scan statistic for continuous data
based on the normal probability model", Int. J. Health Geographics 8:58) do for continuous data.
On synthetic logs the Poisson form puts a single speaker with 3,000 words at WER 0.9 into the
best window every time, ahead of a real metro-area cohort; this score never does.

Windows kept. The window with the largest z is often a fragment of the elevated region: hundreds
of overlapping windows compete and the winner is the one noise favours most. The first window is
therefore the one with the highest expected F1 against the region under the windows' posterior
(Neill, Moore & Cooper 2006, "A Bayesian spatial scan statistic": weights exp(z^2 / 2), see
``_expected_f1``). Secondary windows are then added greedily in z order when they share no
speaker with the windows kept so far, keep the kept windows within ``max_window_share`` of the
speakers, and score above a noise threshold: by default (``min_score="auto"``) the 95th
percentile of the best window's score over NOISE_SHUFFLES seeded shuffles of the outcomes, i.e. a
secondary window must itself look significant. One large window can swallow two separate
clusters and the land between them, so collections of several smaller windows are also tried
(``_choose_windows``) and win only when their posterior is higher. The first window is always a
cell; whether it is significant is the permutation test's job (``null_gaps`` re-runs all of this).

Speed. Speakers are binned to the L occupied 0.1-degree cells. Once per table, every (centre,
cell) pair gets the index of the smallest radius containing it, stored as a sparse "ring" matrix
(centre x radius rows, cell columns). For a block of shuffled outcomes, per-cell score sums come
from one ``np.bincount``, ring sums from one sparse product, and window sums from a cumulative sum
over each centre's radii; the posterior choice costs one sparse product each way. No Python loop
runs per speaker or per window.

Cells of the partition: "window-1" (the chosen first window), "window-2", ... (the other windows
kept, by z) and "outside-windows" (every
located speaker in no window); speakers without coordinates are unassigned ("no coordinates").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fairaudit.geodata.distance import EARTH_RADIUS_KM, unit_vectors
from fairaudit.geodata.windows import (
    AXIS_NAMES,
    pairwise_dot,
    projected_km,
    semi_axes_km,
    squared_window_radius_km2,
)
from fairaudit.methods.base import CohortMethod, definition_cells
from fairaudit.methods.registry import register
from fairaudit.model.log import LATITUDE, LONGITUDE
from fairaudit.model.numbers import finite_or_none
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.stats.metrics import negative_binomial_alpha
from fairaudit.stats.selection import SelectionRule

if TYPE_CHECKING:
    from scipy.sparse import csc_matrix

    from fairaudit.pipeline.audit import AuditOptions

#: Public grid whose cell centres are the candidate window centres (degrees).
CENTRE_GRID_DEG = 0.25
#: Grid to which speakers' coordinates are snapped before measuring distances (degrees).
LOCATION_GRID_DEG = 0.1
#: Window radii (km), smallest first.
RADII_KM = (25, 50, 75, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000)
#: Default cap on the number of candidate centres (the most populated grid cells are kept).
MAX_CENTRES = 1000
#: How many of the most populated centres are "wide": they alone get elliptic windows and windows
#: of radius above WIDE_RADIUS_KM. A large window is nearly the same around neighbouring centres,
#: so fewer centres do (it also keeps the scan fast: large windows hold most of its work).
WIDE_CENTRES = 150
WIDE_RADIUS_KM = 500
#: Elliptic windows: long axis / short axis and the long axis's compass bearings (degrees).
ELLIPSE_ELONGATION = 3.0
ELLIPSE_BEARINGS_DEG = (0.0, 45.0, 90.0, 135.0)
#: Window shapes (elongation, bearing of the long axis): the circle first, then the ellipses.
WINDOW_SHAPES = ((1.0, 0.0),) + tuple((ELLIPSE_ELONGATION, bearing) for bearing in ELLIPSE_BEARINGS_DEG)
#: Clipping point of the Pearson residuals (Huber's psi) in the speaker scores.
HUBER_K = 3.0
#: Shuffles of the outcomes used to calibrate the secondary-window threshold, and its quantile.
NOISE_SHUFFLES = 50
NOISE_QUANTILE = 0.95
#: Outcome replicates scanned at once (bounds memory at BLOCK x speakers).
BLOCK = 16
#: Centres whose distances are computed at once (bounds memory at CHUNK x cells).
CHUNK = 32
#: Cells whose rings are indexed at once (bounds memory at CELL_CHUNK x centres).
CELL_CHUNK = 2048

OUTSIDE_ID = "outside-windows"
#: The membership rule of a window, as published with every definition.
MEMBERSHIP = (
    "A circle holds the places within its radius (great-circle distance) of its centre. An ellipse of radius r, "
    "elongation e and long-axis bearing b holds a place at great-circle distance d and compass bearing a from "
    "its centre when (d cos(a - b))^2 / e + (d sin(a - b))^2 x e <= r^2 (semi-axes r sqrt(e) and r / sqrt(e))."
)


@register
class GeoScan(CohortMethod):
    """Circular windows of elevated pooled WER (Kulldorff's spatial scan statistic)."""

    name = "geo-scan"
    title = "geo-scan: circular and elliptic windows of elevated WER (spatial scan statistic)"
    display_order = 15
    runs_by_default = True
    requires = (LATITUDE, LONGITUDE)
    absorbs_withheld_cells = True  # a speaker in a withheld window counts as outside the windows

    def __init__(
        self,
        min_speakers: int = 30,
        max_window_share: float = 0.5,
        max_windows: int = 5,
        seed: int = 0,
        min_score: float | str = "auto",
        max_centres: int = MAX_CENTRES,
    ) -> None:
        self.min_speakers = min_speakers
        self.max_window_share = max_window_share
        self.max_windows = max_windows
        self.seed = seed
        self.min_score = min_score
        self.max_centres = max_centres

    @classmethod
    def from_options(cls, opts: AuditOptions) -> list[GeoScan]:
        """One scan with the audit's minimum cell size, window share and seed."""
        share = getattr(opts, "max_window_share", 0.5)
        return [cls(min_speakers=opts.min_speakers, max_window_share=share, seed=opts.seed)]

    # --- fitting ---------------------------------------------------------------------------

    def fit(self, speakers: SpeakerTable) -> GeoScan:
        """Scan every candidate window, keep the best and the significant disjoint others."""
        self._check_params()
        #: The scan's limits as fitted; the permutation test re-runs the scan with these, not
        #: with parameters changed after fit.
        self.limits_ = _Limits(
            int(self.min_speakers), float(self.max_window_share), int(self.max_centres), int(self.max_windows)
        )
        scan = self._scan_for(speakers)
        errors, words = _located_outcomes(speakers, scan.located)
        has_words = bool(words.sum() > 0)
        self.located_at_fit_ = bool(scan.located.any())
        self.rate_ = float(errors.sum() / words.sum()) if has_words else float("nan")
        self.overdispersion_ = negative_binomial_alpha(errors, words, self.rate_, self.seed) if has_words else 0.0
        self.min_score_ = float("nan")
        self.candidate_windows_ = scan.n_windows
        self.windows_: list[dict] = []
        if scan.n_windows and has_words:
            scores = _speaker_scores(errors, words, self.rate_, self.overdispersion_)
            self.min_score_ = self._noise_threshold(scan, scores)
            z = _window_statistics(scan, scores[None, :])
            kept = _choose_windows(
                scan,
                z[:, 0],
                _expected_f1(scan, z)[:, 0],
                self.min_score_,
                self.limits_.max_windows,
                self._speaker_cap(scan),
            )
            self.windows_ = [_window_record(scan, w, float(z[w, 0]), rank) for rank, w in enumerate(kept)]
        self.partition_ = self.assign(speakers)
        return self

    def _check_params(self) -> None:
        """Reject parameters outside their ranges (checked at fit time, scikit-learn style)."""
        if not (isinstance(self.min_speakers, (int, np.integer)) and self.min_speakers >= 1):
            raise ValueError("min_speakers must be a whole number of at least 1")
        if not 0 < self.max_window_share <= 1:
            raise ValueError("max_window_share must be a fraction in (0, 1]")
        if not (isinstance(self.max_windows, (int, np.integer)) and self.max_windows >= 1):
            raise ValueError("max_windows must be a whole number of at least 1")
        if not (self.min_score == "auto" or isinstance(self.min_score, (int, float))):
            raise ValueError("min_score must be 'auto' or a number")
        if not (isinstance(self.max_centres, (int, np.integer)) and self.max_centres >= 1):
            raise ValueError("max_centres must be a whole number of at least 1")

    def _speaker_cap(self, scan: _Scan) -> float:
        """Most located speakers that all windows together may hold."""
        return self.limits_.max_window_share * scan.n_located

    def _noise_threshold(self, scan: _Scan, scores: np.ndarray) -> float:
        """Score a secondary window must beat: a high quantile of the best score on shuffles
        of the located speakers' outcomes (their scores move with them). The shuffles start from
        the scores in sorted order, so the threshold depends only on the outcomes, not on which
        speaker has which: the permutation test, which keeps it as fitted, is then exact."""
        if self.min_score != "auto":
            return float(self.min_score)
        rng = np.random.default_rng([self.seed, 0x5CA7])
        best = np.concatenate(
            [
                _window_statistics(scan, rng.permuted(np.tile(np.sort(scores), (rows, 1)), axis=1)).max(axis=0)
                for rows in _block_sizes(NOISE_SHUFFLES)
            ]
        )
        return float(np.quantile(best, NOISE_QUANTILE))

    def _scan_for(self, speakers: SpeakerTable) -> _Scan:
        """The outcome-free scan geometry of ``speakers`` under the fitted limits (cached:
        null_gaps reuses fit's)."""
        lat, lon, located = _coordinates(speakers)
        cached = getattr(self, "_scan_cache", None)
        key = self.limits_
        if cached is not None and cached[0] == key and cached[1].same_places(lat, lon):
            return cached[1]
        scan = _build_scan(lat, lon, located, key.min_speakers, key.max_window_share, key.max_centres)
        self._scan_cache = (key, scan)
        return scan

    # --- applying ----------------------------------------------------------------------------

    def _assign(self, speakers: SpeakerTable) -> Partition:
        """Put each located speaker in the best-ranked window containing it, else outside."""
        lat, lon, located = _coordinates(speakers)
        labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
        has_cells = bool(self.windows_) or self.located_at_fit_
        if has_cells and located.any():
            cell_lat, cell_lon, inverse = _grid_cells(lat[located], lon[located], LOCATION_GRID_DEG)
            points = unit_vectors(cell_lat, cell_lon)
            cell_label = np.full(len(cell_lat), len(self.windows_), dtype=np.int64)
            for rank in range(len(self.windows_) - 1, -1, -1):  # best-ranked last, so it wins
                cell_label[_window_mask(self.windows_[rank], points)] = rank
            labels[located] = cell_label[inverse]
        ids = [w["id"] for w in self.windows_] + ([OUTSIDE_ID] if has_cells else [])
        descriptions = [describe_window(w) for w in self.windows_]
        descriptions += ["located speakers in no window"] if has_cells else []
        unassigned = int((~located).sum())
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=ids,
            descriptions=descriptions,
            unassigned_reasons={"no coordinates": unassigned} if unassigned else {},
            details={"windows": [dict(w) for w in self.windows_], "scan": self._scan_details()},
        )

    def definition(self) -> dict:
        """The windows (grid centre, listed radius) and the membership rule."""
        cells = [
            {
                "id": w["id"],
                "description": describe_window(w),
                "centre_lat": w["centre_lat"],
                "centre_lon": w["centre_lon"],
                "radius_km": w["radius_km"],
                "elongation": w["elongation"],
                "bearing_deg": w["bearing_deg"],
            }
            for w in self.windows_
        ]
        cells.append({"id": OUTSIDE_ID, "description": "located speakers in no window"})
        return {
            "rule": f"a speaker is in the first window (in this order) that contains the centre of the speaker's "
            f"{LOCATION_GRID_DEG}-degree grid cell; else outside. {MEMBERSHIP}",
            "location_grid_deg": LOCATION_GRID_DEG,
            "cells": cells,
        }

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> GeoScan:
        cells = definition_cells(definition)
        if definition.get("location_grid_deg") != LOCATION_GRID_DEG:
            raise ValueError(
                f"the windows were defined on a {definition.get('location_grid_deg')}-degree location grid; "
                f"this version uses {LOCATION_GRID_DEG}"
            )
        method = cls()
        windows = [c for c in cells if c["id"] != OUTSIDE_ID]
        for cell in windows:
            if not all(isinstance(cell.get(k), (int, float)) for k in ("centre_lat", "centre_lon", "radius_km")):
                raise ValueError(f"window {cell['id']} needs numeric centre_lat, centre_lon and radius_km")
            # Definitions written before elliptic windows have neither key: they are circles.
            elongation, bearing = cell.get("elongation", 1.0), cell.get("bearing_deg", 0.0)
            if not (_finite_number(elongation) and elongation >= 1 and _finite_number(bearing)):
                raise ValueError(f"window {cell['id']} needs an elongation of at least 1 and a numeric bearing_deg")
        method.windows_ = [
            {
                "id": c["id"],
                "centre_lat": float(c["centre_lat"]),
                "centre_lon": float(c["centre_lon"]),
                "radius_km": float(c["radius_km"]),
                "elongation": float(c.get("elongation", 1.0)),
                "bearing_deg": float(c.get("bearing_deg", 0.0)),
                "score": None,
            }
            for c in windows
        ]
        method.located_at_fit_ = True
        method.limits_ = _Limits(method.min_speakers, method.max_window_share, method.max_centres, method.max_windows)
        method.candidate_windows_ = 0
        method.min_score_ = float("nan")
        method.overdispersion_ = float("nan")
        return method

    def _scan_details(self) -> dict:
        """The scan's settings for the report: what a reader needs to re-apply the windows."""
        return {
            "centre_grid_deg": CENTRE_GRID_DEG,
            "location_grid_deg": LOCATION_GRID_DEG,
            "radii_km": [float(r) for r in RADII_KM],
            "ellipses": {"elongation": ELLIPSE_ELONGATION, "bearings_deg": list(ELLIPSE_BEARINGS_DEG)},
            "wide_centres": {
                "count": min(WIDE_CENTRES, self.limits_.max_centres),
                "radius_above_km": float(WIDE_RADIUS_KM),
            },
            "membership": f"the centre of the speaker's {LOCATION_GRID_DEG}-degree grid cell is inside the window. "
            + MEMBERSHIP,
            "candidate_windows": int(self.candidate_windows_),
            "min_score": finite_or_none(self.min_score_),
            "overdispersion": finite_or_none(self.overdispersion_),
        }

    # --- permutation test ----------------------------------------------------------------

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """Gap (%) found by the whole discovery (scan, window choice, cell selection) on each
        shuffled outcome set; overdispersion and secondary threshold stay as fitted."""
        permutations = np.atleast_2d(np.asarray(permutations, dtype=np.int64))
        scan = self._scan_for(speakers)
        gaps = np.full(len(permutations), np.nan)
        if not self.windows_ or not scan.n_windows:
            return gaps
        errors, words = speakers.errors, speakers.ref_words
        scores = _speaker_scores(errors, words, self.rate_, self.overdispersion_)
        positions = np.flatnonzero(scan.located)
        cap = self._speaker_cap(scan)
        # Rows are permutations: if row 0 draws only located speakers, every row shuffles them among themselves.
        within = len(permutations) > 0 and bool(scan.located[permutations[0, positions]].all())
        terms = [np.asarray(values, dtype=np.float64)[positions] for values in (scores, errors, words)]
        for start in range(0, len(permutations), BLOCK):
            order = permutations[start : start + BLOCK][:, positions]
            if within:
                z, cell_errors, cell_words = _shuffled_within(scan, order, terms)
            else:
                block_errors, block_words = errors[order], words[order]
                block_scores = _rescore_rows(block_errors, block_words, scores[order], self.rate_, self.overdispersion_)
                z = _window_statistics(scan, block_scores)
                cell_errors, cell_words = scan.cell_sums(block_errors), scan.cell_sums(block_words)
            expected_f1 = _expected_f1(scan, z)
            for row in range(len(order)):
                kept = _choose_windows(
                    scan, z[:, row], expected_f1[:, row], self.min_score_, self.limits_.max_windows, cap
                )
                gaps[start + row] = _cells_gap(scan, kept, cell_errors[:, row], cell_words[:, row], rule)
        return gaps


def _finite_number(value: object) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


@dataclass(frozen=True)
class _Limits:
    """The parameters that shape the scan, as fitted."""

    min_speakers: int
    max_window_share: float
    max_centres: int
    max_windows: int


def _shuffled_within(
    scan: _Scan, order: np.ndarray, terms: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window statistics z (W, B) and per-cell errors and words for rows of ``order`` that shuffle outcomes
    among the located speakers only. The pooled rate, and so every speaker's score, the scores'
    mean and variance, are then those of the fit; each outcome is sent to the cell of the position
    it lands on (one scatter per row) and summed per cell from the speakers' own order. ``terms``:
    the located speakers' scores, errors and words."""
    positions = np.flatnonzero(scan.located)
    cell_of_outcome = np.empty(len(scan.located), dtype=np.int64)
    sums = np.empty((3, scan.n_cells, len(order)))
    for row, drawn in enumerate(order):
        cell_of_outcome[drawn] = scan.cell
        cells = cell_of_outcome[positions]
        for index, term in enumerate(terms):
            sums[index, :, row] = np.bincount(cells, weights=term, minlength=scan.n_cells)
    rows = len(order)
    mean = np.full(rows, terms[0].mean())
    variance = np.full(rows, terms[0].var())
    z = _window_statistics_from_cells(scan, sums[0], mean, variance, len(positions))
    return z, sums[1], sums[2]


# --- geometry ----------------------------------------------------------------------------------


@dataclass
class _Scan:
    """Everything about the candidate windows of one speaker table that outcomes do not change."""

    lat: np.ndarray  # (n,) coordinates as given (NaN where missing), to recognise the table
    lon: np.ndarray
    located: np.ndarray  # (n,) speakers with coordinates
    cell: np.ndarray  # (n_located,) index of each located speaker's location cell
    n_cells: int
    centres: np.ndarray  # (C, 2) latitude, longitude of the candidate centres (one per centre and shape)
    centre_shape: np.ndarray  # (C,) index into WINDOW_SHAPES of each centre's windows
    ring: np.ndarray  # (C, L) int8: index of the smallest radius containing the cell (len(RADII_KM): none)
    rings: csc_matrix  # (C x K, L) 0/1: cell l lies in ring k of centre c (radii a centre uses)
    window_centre: np.ndarray  # (W,) candidate windows: centre index
    window_radius: np.ndarray  # (W,) radius index
    window_speakers: np.ndarray  # (W,) speakers inside

    @property
    def n_located(self) -> int:
        """Speakers with coordinates (the population every window is a part of)."""
        return int(self.located.sum())

    @property
    def n_windows(self) -> int:
        """Candidate windows (each holds min_speakers to max_window_share of the speakers)."""
        return len(self.window_centre)

    def same_places(self, lat: np.ndarray, lon: np.ndarray) -> bool:
        """Whether ``lat``/``lon`` are the coordinates this scan was built for."""
        return np.array_equal(lat, self.lat, equal_nan=True) and np.array_equal(lon, self.lon, equal_nan=True)

    def cell_sums(self, values: np.ndarray) -> np.ndarray:
        """(L, B) per-cell sums of per-speaker values of shape (B, n_located)."""
        rows = len(values)
        flat = (self.cell[None, :] + self.n_cells * np.arange(rows)[:, None]).ravel()
        sums = np.bincount(flat, weights=np.asarray(values, dtype=np.float64).ravel(), minlength=self.n_cells * rows)
        return sums.reshape(rows, self.n_cells).T

    def window_sums(self, cell_values: np.ndarray) -> np.ndarray:
        """(W, B) sums over every candidate window of per-cell values of shape (L, B)."""
        k = len(RADII_KM)
        rings = self.rings @ np.ascontiguousarray(cell_values, dtype=np.float32)
        discs = np.cumsum(rings.reshape(len(self.centres), k, -1), axis=1).reshape(len(self.centres) * k, -1)
        return discs[self.window_centre * k + self.window_radius].astype(np.float64)

    def members(self, window: int) -> np.ndarray:
        """Boolean mask over location cells: the cells inside candidate window ``window``."""
        return self.ring[self.window_centre[window]] <= self.window_radius[window]

    def nearest_ring(self, window: int) -> np.ndarray:
        """(C,) per centre, the smallest radius index reaching any cell of ``window``."""
        return self.ring[:, self.members(window)].min(axis=1)


def _build_scan(
    lat: np.ndarray, lon: np.ndarray, located: np.ndarray, min_speakers: int, max_share: float, max_centres: int
) -> _Scan:
    """Grid the located speakers, pick centres, and index every window's cells."""
    k = len(RADII_KM)
    cell_lat, cell_lon, cell = _grid_cells(lat[located], lon[located], LOCATION_GRID_DEG)
    centres, centre_shape, wide = _centres(lat[located], lon[located], max_centres)
    ring = _ring_index(centres, centre_shape, cell_lat, cell_lon)
    per_cell = np.bincount(cell, minlength=len(cell_lat)).astype(np.float64)
    disc_speakers = np.cumsum(_ring_totals(ring, per_cell)[:, :k], axis=1).round().astype(np.int64)
    n_radii = (disc_speakers <= max_share * len(cell)).sum(axis=1)  # radii each centre uses
    n_radii = np.where(wide, n_radii, np.minimum(n_radii, sum(r <= WIDE_RADIUS_KM for r in RADII_KM)))
    grows = np.diff(disc_speakers, axis=1, prepend=0) > 0  # a radius adding nobody repeats a window
    candidate = (disc_speakers >= min_speakers) & (np.arange(k)[None, :] < n_radii[:, None]) & grows
    window_centre, window_radius = np.nonzero(candidate)
    rings = _ring_matrix(ring, n_radii)
    return _Scan(
        lat=lat,
        lon=lon,
        located=located,
        cell=cell,
        n_cells=len(cell_lat),
        centres=centres,
        centre_shape=centre_shape,
        ring=ring,
        rings=rings,
        window_centre=window_centre,
        window_radius=window_radius,
        window_speakers=disc_speakers[window_centre, window_radius],
    )


def _ring_totals(ring: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(C, K + 1) per centre, the sum of ``weights`` (L,) over the cells of each ring."""
    k1 = len(RADII_KM) + 1
    totals = np.empty((len(ring), k1))
    for start in range(0, len(ring), CHUNK):
        rows = ring[start : start + CHUNK].astype(np.intp)
        flat = (rows + k1 * np.arange(len(rows))[:, None]).ravel()
        weight = np.broadcast_to(weights, rows.shape).ravel()
        totals[start : start + len(rows)] = np.bincount(flat, weights=weight, minlength=len(rows) * k1).reshape(-1, k1)
    return totals


def _ring_matrix(ring: np.ndarray, n_radii: np.ndarray) -> csc_matrix:
    """(C x K, L) sparse 0/1 matrix: row c x K + k marks the cells in ring k of centre c, for the
    radii centre c uses. Built column by column (a cell's rows come out sorted), and stored so:
    its products with per-cell values, and its transpose's with per-ring values, are the fastest
    scipy offers."""
    from scipy.sparse import csc_matrix  # imported here: scipy slows every CLI start

    k = len(RADII_KM)
    pieces, per_cell = [], []
    offsets = np.arange(len(ring), dtype=np.int64) * k
    for start in range(0, ring.shape[1], CELL_CHUNK):
        block = ring[:, start : start + CELL_CHUNK].T  # (cells, C)
        inside = block < n_radii[None, :]
        cell, centre = np.nonzero(inside)  # sorted by cell, then centre
        pieces.append((offsets[centre] + block[cell, centre]).astype(np.int32))
        per_cell.append(inside.sum(axis=1))
    indices = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    indptr = np.r_[0, np.cumsum(np.concatenate(per_cell) if per_cell else [])].astype(np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    return csc_matrix((data, indices, indptr), shape=(len(ring) * k, ring.shape[1]))


def _coordinates(speakers: SpeakerTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latitude, longitude (NaN where missing) and the mask of located speakers."""
    frame = speakers.frame
    if LATITUDE not in frame.columns or LONGITUDE not in frame.columns:
        nan = np.full(len(frame), np.nan)
        return nan, nan.copy(), np.zeros(len(frame), dtype=bool)
    lat = frame[LATITUDE].to_numpy(dtype=np.float64)
    lon = frame[LONGITUDE].to_numpy(dtype=np.float64)
    return lat, lon, ~(np.isnan(lat) | np.isnan(lon))


def _grid_cells(lat: np.ndarray, lon: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres of the occupied ``step``-degree grid cells (sorted) and each point's cell index."""
    index = np.stack([np.floor(lat / step), np.floor(lon / step)], axis=1).astype(np.int64)
    cells, inverse = np.unique(index, axis=0, return_inverse=True)
    return (cells[:, 0] + 0.5) * step, (cells[:, 1] + 0.5) * step, inverse.reshape(-1)


def _centres(lat: np.ndarray, lon: np.ndarray, max_centres: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, 2) window centres, (C,) their shapes and (C,) whether they are wide: circles around the
    public-grid cells holding the most speakers (at most ``max_centres``; ties: south-west first),
    then each elliptic shape around the WIDE_CENTRES most populated of them (the wide ones)."""
    cell_lat, cell_lon, inverse = _grid_cells(lat, lon, CENTRE_GRID_DEG)
    counts = np.bincount(inverse, minlength=len(cell_lat))
    ranked = np.argsort(-counts, kind="stable")
    keep = np.sort(ranked[:max_centres])
    elliptic = np.sort(ranked[: min(WIDE_CENTRES, max_centres)])
    sites = [keep] + [elliptic] * (len(WINDOW_SHAPES) - 1)
    chosen = np.concatenate(sites)
    shapes = np.repeat(np.arange(len(WINDOW_SHAPES)), [len(s) for s in sites])
    wide = np.isin(chosen, elliptic)
    return np.stack([cell_lat[chosen], cell_lon[chosen]], axis=1), shapes, wide


def _outside_counts(
    centre_lat: np.ndarray,
    centre_lon: np.ndarray,
    shapes: list[tuple[float, float]],
    radii_km: np.ndarray,
    points: np.ndarray,
) -> list[np.ndarray]:
    """Per shape (elongation, bearing), the (C, L) int8 number of the ``radii_km`` (ascending) whose
    window around each centre leaves out each place (3, L): the ring index. A circle compares
    cosines (exact); an ellipse its squared radius in the projection around the centre (computed
    once for all shapes). The one membership rule of fit and assign."""
    counts = []
    projected = None
    for elongation, bearing in shapes:
        if elongation == 1.0:
            closeness = pairwise_dot(unit_vectors(centre_lat, centre_lon), points)
            outside = [closeness < limit for limit in _cos_radius(radii_km)]
        else:
            projected = projected or projected_km(centre_lat, centre_lon, points)
            squared = squared_window_radius_km2(*projected, elongation, bearing)
            outside = [squared > radius * radius for radius in np.asarray(radii_km, dtype=np.float64)]
        total = np.zeros((len(centre_lat), points.shape[1]), dtype=np.int8)
        for mask in outside:
            total += mask
        counts.append(total)
    return counts


def _window_mask(window: dict, points: np.ndarray) -> np.ndarray:
    """(L,) places (3, L) inside a published window, by the rule the scan used."""
    lat, lon = np.array([window["centre_lat"]]), np.array([window["centre_lon"]])
    shape = (window["elongation"], window["bearing_deg"])
    (outside,) = _outside_counts(lat, lon, [shape], np.array([window["radius_km"]], dtype=np.float64), points)
    return outside[0] == 0


def _cos_radius(radius_km: np.ndarray) -> np.ndarray:
    """Cosine of the central angle of a great-circle distance: inside iff closeness >= it."""
    return np.cos(np.asarray(radius_km, dtype=np.float64) / EARTH_RADIUS_KM)


def _ring_index(centres: np.ndarray, shapes: np.ndarray, cell_lat: np.ndarray, cell_lon: np.ndarray) -> np.ndarray:
    """(C, L) int8: per centre and cell, the index of the smallest radius that contains the cell
    (len(RADII_KM) when none does). The elliptic shapes around one site share its projection."""
    points = unit_vectors(cell_lat, cell_lon)
    radii = np.array(RADII_KM, dtype=np.float64)
    ring = np.zeros((len(centres), len(cell_lat)), dtype=np.int8)
    for shape_group in ([0], list(range(1, len(WINDOW_SHAPES)))):
        rows = np.flatnonzero(np.isin(shapes, shape_group))
        if not len(rows):
            continue
        sites, site_of = np.unique(centres[rows], axis=0, return_inverse=True)
        site_of = site_of.reshape(-1)
        for start in range(0, len(sites), CHUNK):
            chunk = sites[start : start + CHUNK]
            counts = _outside_counts(chunk[:, 0], chunk[:, 1], [WINDOW_SHAPES[i] for i in shape_group], radii, points)
            for shape, outside in zip(shape_group, counts):
                these = (shapes[rows] == shape) & (site_of >= start) & (site_of < start + len(chunk))
                ring[rows[these]] = outside[site_of[these] - start]
    return ring


# --- scores and selection ------------------------------------------------------------------


def _block_sizes(total: int) -> list[int]:
    """Sizes of the blocks of at most BLOCK replicates that make up ``total``."""
    return [min(BLOCK, total - start) for start in range(0, total, BLOCK)]


def _located_outcomes(speakers: SpeakerTable, located: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Errors and reference words of the located speakers."""
    return speakers.errors[located], speakers.ref_words[located]


def _speaker_scores(errors: np.ndarray, words: np.ndarray, rate: float | np.ndarray, alpha: float) -> np.ndarray:
    """Bounded-influence efficient scores psi(Pearson residual) x mu / sd, one per speaker."""
    errors = np.asarray(errors, dtype=np.float64)
    mu = rate * np.asarray(words, dtype=np.float64)
    sd = np.sqrt(mu + alpha * mu * mu)
    positive = sd > 0
    safe = np.where(positive, sd, 1.0)
    residual = np.where(positive, (errors - mu) / safe, 0.0)
    return np.clip(residual, -HUBER_K, HUBER_K) * np.where(positive, mu / safe, 0.0)


def _rescore_rows(errors: np.ndarray, words: np.ndarray, scores: np.ndarray, rate: float, alpha: float) -> np.ndarray:
    """Scores of shuffled outcome rows (B, n_located): ``scores`` (gathered with the fitted rate)
    where a row's pooled rate is the fitted one, else recomputed with the row's own pooled rate
    (shuffles that exchange outcomes with speakers without coordinates)."""
    total_words = words.sum(axis=1)
    rates = np.divide(errors.sum(axis=1), total_words, out=np.zeros(len(words)), where=total_words > 0)
    stale = rates != rate
    if stale.any():
        scores[stale] = _speaker_scores(errors[stale], words[stale], rates[stale, None], alpha)
    return scores


def _window_statistics(scan: _Scan, scores: np.ndarray) -> np.ndarray:
    """Window statistics z (W, B) for B rows of speaker scores (B, n_located).

    z = (U_in - n_in mean(u)) / sqrt(var(u) n_in (n - n_in) / (n - 1)): the sum of the scores
    inside, standardised by its exact mean and variance when outcomes are shuffled.
    """
    return _window_statistics_from_cells(
        scan, scan.cell_sums(scores), scores.mean(axis=1), scores.var(axis=1), scores.shape[1]
    )


def _window_statistics_from_cells(
    scan: _Scan, cell_scores: np.ndarray, mean: np.ndarray, variance: np.ndarray, n: int
) -> np.ndarray:
    """z (W, B) from per-cell score sums (L, B) and each row's score mean and variance."""
    inside = scan.window_sums(cell_scores)
    size = scan.window_speakers.astype(np.float64)[:, None]
    return _standardise(inside - size * mean[None, :], size, variance[None, :], n)


def _standardise(
    excess: np.ndarray | float, size: np.ndarray | float, variance: np.ndarray | float, n: int
) -> np.ndarray:
    """z of score sums over ``size`` of ``n`` speakers drawn without replacement (0 if no spread)."""
    spread = np.sqrt(variance * size * (n - size) / max(n - 1, 1))
    return np.divide(excess, spread, out=np.zeros(np.broadcast(excess, spread).shape), where=spread > 0)


def _expected_f1(scan: _Scan, z: np.ndarray) -> np.ndarray:
    """(W, B) per row of window statistics z (W, B), each window's expected F1 against the
    speakers of the elevated region, under the windows' posterior.

    The largest z is often a fragment of the region (a few hundred overlapping windows compete,
    and the winner is the one noise favours most), so, as Neill, Moore & Cooper's Bayesian scan
    statistic (2006, "A Bayesian spatial scan statistic", NIPS 18) does, each window with z > 0 gets
    a posterior weight proportional to its likelihood ratio exp(z^2 / 2) (uniform prior). A cell's
    posterior probability of lying in the region is the total weight of the windows holding it;
    a window's expected F1 is 2 E[TP] / (size + E[region size]). Rows without a positive z get z
    itself (so the largest z is chosen). One sparse product each way per row block.
    """
    k = len(RADII_KM)
    log_weight = np.where(z > 0, z * z / 2, -np.inf)
    top = log_weight.max(axis=0)
    f1 = np.array(z, dtype=np.float64)
    rows = np.flatnonzero(np.isfinite(top))
    if not len(rows):
        return f1
    weight = np.exp(log_weight[:, rows] - top[rows])
    per_ring = np.zeros((len(scan.centres) * k, len(rows)))
    per_ring[scan.window_centre * k + scan.window_radius] = weight
    # A cell in ring j of a centre lies in every window of that centre with radius index >= j.
    per_ring = np.cumsum(per_ring.reshape(len(scan.centres), k, -1)[:, ::-1], axis=1)[:, ::-1]
    cell_weight = scan.rings.T @ np.ascontiguousarray(per_ring.reshape(len(scan.centres) * k, -1), dtype=np.float32)
    expected = np.asarray(cell_weight, dtype=np.float64) / _column_sums(weight)
    expected *= np.bincount(scan.cell, minlength=scan.n_cells)[:, None]
    hits = scan.window_sums(expected)
    f1[:, rows] = 2 * hits / (scan.window_speakers[:, None] + _column_sums(expected)[None, :])
    return f1


def _column_sums(values: np.ndarray) -> np.ndarray:
    """Sum of each column, added in the same order whatever the number of columns (so the fit's
    one column and a block of shuffles round alike, and ties are broken alike)."""
    return np.ascontiguousarray(values.T).sum(axis=1)


def _choose_windows(
    scan: _Scan, z: np.ndarray, expected_f1: np.ndarray, threshold: float, max_windows: int, cap: float
) -> list[int]:
    """The window with the highest expected F1 and its secondary windows, unless a collection of
    several smaller windows explains the data better.

    One large window can swallow two separate clusters and the land between them, so, as
    SaTScan's Gini-optimised cluster collection (Han et al. 2016, Int. J. Health Geographics
    15:27) does, collections are also selected with the largest window halved step by step (the
    first window the allowed one with the highest expected F1). Such a collection of k >= 2
    windows replaces the first choice when its log posterior, z^2 / 2 over the union's speakers
    less ln(W) for each window beyond the first (a uniform prior over collections of k of the W
    candidate windows), is higher. A single smaller window never does: that is a fragment, which
    the posterior choice has already weighed.
    """
    n, sizes = scan.n_located, scan.window_speakers.astype(np.float64)
    spread = np.sqrt(sizes * (n - sizes))  # z x spread is the excess score, up to one common factor
    price = np.log(max(scan.n_windows, 2))

    def log_posterior(kept: list[int]) -> float:
        total = sizes[kept].sum()
        union = float((z[kept] * spread[kept]).sum() / max(np.sqrt(total * (n - total)), 1e-12))
        return max(union, 0.0) ** 2 / 2 - price * (len(kept) - 1)

    first = _select_windows(scan, z, int(np.argmax(expected_f1)), threshold, max_windows, cap)
    best, best_score, previous, limit = first, log_posterior(first), first, cap / 2
    while max_windows > 1 and limit >= sizes.min():
        allowed = sizes <= limit
        start = int(np.flatnonzero(allowed)[np.argmax(expected_f1[allowed])])
        kept = _select_windows(scan, np.where(allowed, z, -np.inf), start, threshold, max_windows, cap)
        if kept != previous and len(kept) > 1:
            score = log_posterior(kept)
            if score > best_score:
                best, best_score = kept, score
        previous = kept
        limit /= 2
    return best


def _select_windows(scan: _Scan, z: np.ndarray, best: int, threshold: float, max_windows: int, cap: float) -> list[int]:
    """The chosen window ``best``, then greedily the best-scoring windows above ``threshold`` that
    share no speaker with those kept and keep the total within ``cap`` speakers."""
    kept, total = [best], int(scan.window_speakers[best])
    candidates = np.flatnonzero(z > threshold)
    candidates = candidates[candidates != best]
    if max_windows < 2 or not len(candidates):
        return kept
    candidates = candidates[np.lexsort((candidates, -z[candidates]))]
    reach = scan.nearest_ring(best)
    while len(kept) < max_windows:
        free = (reach[scan.window_centre[candidates]] > scan.window_radius[candidates]) & (
            total + scan.window_speakers[candidates] <= cap
        )
        candidates = candidates[free]
        if not len(candidates):
            break
        chosen = int(candidates[0])
        kept.append(chosen)
        total += int(scan.window_speakers[chosen])
        reach = np.minimum(reach, scan.nearest_ring(chosen))
        candidates = candidates[1:]
    return kept


def _cells_gap(
    scan: _Scan, kept: list[int], cell_errors: np.ndarray, cell_words: np.ndarray, rule: SelectionRule
) -> float:
    """Gap (%) the selection rule finds among the kept windows and the outside cell."""
    masks = [scan.members(w) for w in kept]
    errors = np.array([cell_errors[m].sum() for m in masks] + [0.0])
    words = np.array([cell_words[m].sum() for m in masks] + [0.0])
    sizes = np.append(scan.window_speakers[kept], 0)
    errors[-1] = cell_errors.sum() - errors[:-1].sum()
    words[-1] = cell_words.sum() - words[:-1].sum()
    sizes[-1] = scan.n_located - sizes[:-1].sum()
    return float(rule.statistic(errors[None, :], words[None, :], sizes)[0])


# --- reporting -----------------------------------------------------------------------------


def _window_record(scan: _Scan, window: int, score: float, rank: int) -> dict:
    """The published definition of a kept window (grid centre, listed radius, score)."""
    centre = scan.window_centre[window]
    lat, lon = scan.centres[centre]
    elongation, bearing = WINDOW_SHAPES[scan.centre_shape[centre]]
    return {
        "id": f"window-{rank + 1}",
        "centre_lat": float(lat),
        "centre_lon": float(lon),
        "radius_km": float(RADII_KM[scan.window_radius[window]]),
        "elongation": float(elongation),
        "bearing_deg": float(bearing),
        "score": float(score),
    }


def describe_window(window: dict) -> str:
    """Readable definition such as "within 150 km of 33.625 N, 84.375 W" (the exact grid centre)
    or, for an ellipse, "in the ellipse of radius 300 km and elongation 3 around 33.625 N,
    84.375 W (semi-axes 520 km east-west, 173 km across)"."""
    lat, lon = window["centre_lat"], window["centre_lon"]
    centre = f"{_degrees(lat)} {'N' if lat >= 0 else 'S'}, {_degrees(lon)} {'E' if lon >= 0 else 'W'}"
    elongation = window.get("elongation", 1.0)
    if elongation == 1.0:
        return f"within {window['radius_km']:g} km of {centre}"
    along, across = semi_axes_km(window["radius_km"], elongation)
    bearing = window["bearing_deg"] % 180.0
    axis = AXIS_NAMES.get(bearing, f"at bearing {bearing:g} degrees")
    return (
        f"in the ellipse of radius {window['radius_km']:g} km and elongation {elongation:g} around {centre} "
        f"(semi-axes {along:.0f} km {axis}, {across:.0f} km across)"
    )


def _degrees(value: float) -> str:
    """Absolute value with two decimals, or three when the grid centre needs them (33.625)."""
    value = abs(value)
    return f"{value:.2f}" if round(value, 2) == value else f"{value:.3f}"
