"""geo-tree (Trinh et al. 2022): recursive binary partitioning of latitude/longitude into regions.

Each split maximises (W_L x W_R / (W_L + W_R)) x (WER_L - WER_R)^2 with W = reference words: a
weighted regression tree on speaker WER with weight = words, whose leaf value is the pooled WER.
Leaves are the cohorts ("regions"). The tree itself lives in ``region_tree`` (splits on a public
0.05-degree grid, so region bounds are round numbers that reveal no speaker's location).

The WER the tree splits on is each grid site's pooled with its nearest sites up to ``neighbours``
speakers, a precision-weighted mean (``site_pooling``; never more than ``min_speakers``). A
single speaker's WER is mostly noise, so on raw WER a 5% region's first cuts gain no more than
noise does and the tree stops short of it; pooled, its edges stand out (geo-tree's recovery of
planted regions, mean F1 on unseen seeds: 0.52 -> 0.62 at 2,000 speakers, 0.86 -> 0.91 at 5,000;
benchmarks/README.md). Region WERs, the bottom cohort and
every figure still use each speaker's own errors and words. Pooling blurs a sharp boundary into a
ramp that the tree would cut into strips of equal WER, so after pruning two sibling regions whose
own WERs differ by less than about 1.4 standard errors are one region again (``MERGE_PRICE``).
``neighbours=1`` is the plain tree.

Regions that do not beat noise are pruned: the tree is grown to ``max_regions`` leaves and then
cut back by minimal cost-complexity pruning (Breiman et al. 1984), so a subtree stays only when its
splits reduce the weighted squared error by more than ``min_gain`` per extra region.
``min_gain="auto"`` is what the best first split typically gains on shuffled outcomes (the median
over a few shuffles). Pruning judges whole subtrees, so a region that takes two or three splits to
cut out survives even when its first split alone gains little. The bottom cohort is the union of
the worst regions (SPEC 5).
"""

from __future__ import annotations

import numpy as np

from fairaudit.methods.base import CohortMethod, definition_cells
from fairaudit.methods.region_tree import (
    GRID_STEP_DEGREES,
    GridPoints,
    SiteSums,
    cell_bound,
    grid_cells,
    grow_tree_on_sites,
    root_split_gain,
    site_sums,
    speaker_terms,
)
from fairaudit.methods.registry import register
from fairaudit.methods.site_pooling import NeighbourPooling, precision_terms
from fairaudit.model.log import LATITUDE, LONGITUDE
from fairaudit.model.partition import UNASSIGNED, Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.stats.metrics import negative_binomial_alpha, speaker_dispersion
from fairaudit.stats.selection import SelectionRule

AXES = (LATITUDE, LONGITUDE)
AXIS_LABEL = {LATITUDE: "lat", LONGITUDE: "lon"}


@register
class GeoTree(CohortMethod):
    """Regions of latitude/longitude with maximally different pooled WER."""

    name = "geo-tree"
    title = "geo-tree: regions of latitude and longitude"
    display_order = 10
    requires = (LATITUDE, LONGITUDE)
    #: Stored definitions only: speakers of withheld regions form one extra cell (see from_definition).
    withheld_together_: bool = False
    withheld_cells_: int = 0

    def __init__(
        self,
        max_regions: int = 16,
        min_speakers: int = 30,
        seed: int = 0,
        min_gain: float | str = "auto",
        neighbours: int = 30,
    ) -> None:
        self.max_regions = max_regions
        self.min_speakers = min_speakers
        self.seed = seed
        self.min_gain = min_gain
        self.neighbours = neighbours

    @classmethod
    def from_options(cls, opts) -> list[GeoTree]:
        return [
            cls(
                max_regions=opts.max_regions,
                min_speakers=opts.min_speakers,
                seed=opts.seed,
                min_gain=opts.min_gain,
                neighbours=opts.tree_neighbours,
            )
        ]

    def fit(self, speakers: SpeakerTable) -> GeoTree:
        coords, located = _coordinates(speakers)
        words = speakers.ref_words[located].astype(np.float64)
        errors = speakers.errors[located].astype(np.float64)
        self.tree_ = None
        self.merge_gain_ = 0.0
        self.min_gain_ = 0.0
        self.rate_ = float("nan")
        self.overdispersion_ = 0.0
        #: Speakers in each split target's neighbourhood: ``neighbours``, but never more than the
        #: smallest region (``min_speakers``), so that pooling cannot blur a region the tree may cut.
        self.pooled_speakers_ = 1
        #: (most leaves, least speakers per leaf) the tree was grown with; the permutation test
        #: regrows with these, not with parameters changed after fit.
        self.grow_limits_ = (int(self.max_regions), int(self.min_speakers))
        self.regions_: list[dict] = []
        if located.sum() >= 2 * self.min_speakers and words.sum() > 0 and self.max_regions >= 2:
            self.pooled_speakers_ = max(1, min(int(self.neighbours), int(self.min_speakers)))
            points, pooling = self._geometry(coords[located])
            self.rate_ = float(errors.sum() / words.sum())
            self.overdispersion_ = negative_binomial_alpha(errors, words, self.rate_, self.seed)
            self.min_gain_ = (
                self._noise_split_gain(points, pooling, errors, words)
                if self.min_gain == "auto"
                else float(self.min_gain)
            )
            pooled_and_pruned = pooling.matrix is not None and self.min_gain_ > 0
            self.merge_gain_ = MERGE_PRICE * speaker_dispersion(errors, words) if pooled_and_pruned else 0.0
            raw = site_sums(points, *speaker_terms(errors, words))
            self.tree_ = self._grow(points, self._target(points, pooling, raw, errors, words), raw)
            self.regions_ = _leaf_bounds(self.tree_)
        elif located.any():
            self.regions_ = [{f"{axis}_{end}": None for axis in AXES for end in ("min", "max")}]
        self.regions_ = [dict(region, id=f"region-{i + 1}") for i, region in enumerate(self.regions_)]
        self.partition_ = self.assign(speakers)
        return self

    def _assign(self, speakers: SpeakerTable) -> Partition:
        """Put each located speaker in the region whose bounds contain it (the tree's own rule:
        compared on the grid, lower bounds exclusive, upper inclusive)."""
        coords, located = _coordinates(speakers)
        labels = np.full(len(speakers), UNASSIGNED, dtype=np.int64)
        labels[located] = region_labels(coords[located], self.regions_)
        in_withheld = located & (labels == UNASSIGNED)
        together = getattr(self, "withheld_together_", False)
        if together:
            labels[in_withheld] = len(self.regions_)
        unassigned = int((~located).sum())
        reasons = {"no coordinates": unassigned} if unassigned else {}
        if in_withheld.any() and not together:
            reasons["in a region withheld from the stored definitions (suppressed)"] = int(in_withheld.sum())
        return Partition(
            method=self.name,
            labels=labels,
            cohort_ids=[region["id"] for region in self.regions_] + ([WITHHELD_REGIONS] if together else []),
            descriptions=[describe_region(region) for region in self.regions_]
            + ([WITHHELD_DESCRIPTION] if together else []),
            unassigned_reasons=reasons,
            details={"regions": [dict(region) for region in self.regions_]},
        )

    def definition(self) -> dict:
        """The regions' bounds: enough to put any new speaker in the same region."""
        return {
            "rule": f"a speaker is in the region whose bounds contain its median coordinates; bounds are lines of a "
            f"{GRID_STEP_DEGREES} degree grid and a coordinate x lies in grid cell ceil(x / {GRID_STEP_DEGREES}) - 1; "
            "lower bounds exclusive, upper bounds inclusive, null = unbounded",
            "cells": [
                {
                    "id": r["id"],
                    "description": describe_region(r),
                    **{f"{axis}_{end}": r[f"{axis}_{end}"] for axis in AXES for end in ("min", "max")},
                }
                for r in self.regions_
            ],
            # definitions read from a report that withheld regions keep saying so (their speakers form
            # the "withheld regions" cell again when these definitions are reused)
            **({"withheld_cells": self.withheld_cells_} if getattr(self, "withheld_cells_", 0) else {}),
        }

    @classmethod
    def from_definition(cls, definition: dict, context: dict | None = None) -> GeoTree:
        method = cls()
        method.tree_ = None
        method.min_gain_ = float("nan")
        method.regions_ = [
            {
                "id": str(cell["id"]),
                **{f"{axis}_{end}": _bound(cell, f"{axis}_{end}") for axis in AXES for end in ("min", "max")},
            }
            for cell in definition_cells(definition)
        ]
        withheld = definition.get("withheld_cells")
        #: The stored audit withheld small regions, whose speakers were in its "rest": together they
        #: are one extra cell (part of the rest, as in that audit), not unassigned.
        method.withheld_together_ = isinstance(withheld, int) and withheld > 0
        method.withheld_cells_ = int(withheld) if method.withheld_together_ and withheld else 0
        return method

    def _target(
        self, points: GridPoints, pooling: NeighbourPooling, raw: SiteSums, errors: np.ndarray, words: np.ndarray
    ) -> SiteSums:
        """The tree's split target for these located speakers' outcomes (``raw``: their site sums)."""
        if pooling.matrix is None:
            return raw
        weights, weighted = precision_terms(errors, words, self.rate_, self.overdispersion_)
        return pooling.pool(raw, points.per_site(weights), points.per_site(weighted))

    def _noise_split_gain(
        self, points: GridPoints, pooling: NeighbourPooling, errors: np.ndarray, words: np.ndarray
    ) -> float:
        """Median weighted impurity decrease of the best first split on shuffled speaker outcomes.

        Outcomes (a speaker's errors and words together) are shuffled across locations and pooled
        as the tree's target is, so the result measures how much a split gains from noise alone at
        this sample size.
        """
        rng = np.random.default_rng([self.seed, 0x6E0])
        gains = np.zeros(NOISE_SHUFFLES)
        for row in range(NOISE_SHUFFLES):
            order = rng.permutation(len(words))
            shuffled_errors, shuffled_words = errors[order], words[order]
            raw = site_sums(points, *speaker_terms(shuffled_errors, shuffled_words))
            target = self._target(points, pooling, raw, shuffled_errors, shuffled_words)
            gains[row] = root_split_gain(points, target, self.grow_limits_[1])
        return float(np.median(gains))

    def _geometry(self, coords: np.ndarray) -> tuple[GridPoints, NeighbourPooling]:
        """The grid sites of these coordinates and their neighbourhoods (outcome-free; cached, so
        the permutation test reuses what ``fit`` built for the same speakers)."""
        key = (self.pooled_speakers_, coords.shape)
        cached = getattr(self, "_geometry_cache", None)
        if cached is not None and cached[0] == key and np.array_equal(cached[1], coords):
            return cached[2], cached[3]
        points = GridPoints(coords)
        pooling = NeighbourPooling(points, key[0])
        self._geometry_cache = (key, coords, points, pooling)
        return points, pooling

    def _grow(self, points: GridPoints, target: SiteSums, raw: SiteSums | None = None):
        """The weighted regression tree on the sites' pooled WER (weight = reference words), grown
        best-first to ``max_regions`` leaves, then pruned at cost-complexity ``min_gain_`` per leaf."""
        max_leaves, min_leaf = self.grow_limits_
        return grow_tree_on_sites(
            points,
            target,
            max_leaves=max_leaves,
            min_samples_leaf=min_leaf,
            ccp_alpha=self.min_gain_,
            alike=(raw, self.merge_gain_) if raw is not None and self.merge_gain_ > 0 else None,
        )

    def null_gaps(self, speakers: SpeakerTable, permutations: np.ndarray, rule: SelectionRule) -> np.ndarray:
        """Regrow the tree on each shuffle of the outcomes, keeping the split threshold calibrated
        on the real data. The coordinates do not move: the grid sites are found once, and each
        shuffle costs three per-site sums of the shuffled speaker terms, then a tree over the sites."""
        coords, located = _coordinates(speakers)
        if self.tree_ is None or not located.any():
            return np.full(len(permutations), np.nan)
        points, pooling = self._geometry(coords[located])
        speaker_index = np.flatnonzero(located)
        # Terms that move with the speakers' outcomes, in speaker order (read sequentially below):
        # the tree's three, then the two of the pooled target.
        errors, words = speakers.errors.astype(np.float64), speakers.ref_words.astype(np.float64)
        terms = [term[speaker_index] for term in speaker_terms(errors, words)]
        terms += [term[speaker_index] for term in precision_terms(errors, words, self.rate_, self.overdispersion_)]
        site_of_outcome = np.empty(len(speakers), dtype=np.int64)
        if len(permutations) and not located[permutations[0, located]].all():  # rows are permutations
            raise ValueError("geo-tree's permutations must shuffle outcomes among the located speakers")
        gaps = np.empty(len(permutations))
        for row in range(len(permutations)):
            # Position p takes the outcome of speaker permutations[row, p]: send each outcome to the
            # site of the position it lands on (one scatter instead of gathering every term).
            site_of_outcome[permutations[row, located]] = points.site_of
            sites = site_of_outcome[speaker_index]
            per_site = [np.bincount(sites, weights=term, minlength=points.n_sites) for term in terms]
            sums = SiteSums(*per_site[:3])
            tree = self._grow(points, pooling.pool(sums, *per_site[3:]), sums)
            labels = tree.site_labels()
            k = labels.max() + 1
            cohort_errors = np.bincount(labels, weights=sums.errors, minlength=k)[None, :]
            cohort_words = np.bincount(labels, weights=sums.words, minlength=k)[None, :]
            cohort_speakers = np.bincount(labels, weights=points.site_speakers, minlength=k)
            gaps[row] = rule.statistic(cohort_errors, cohort_words, cohort_speakers)[0]
        return gaps


NOISE_SHUFFLES = 20
#: On stored definitions with withheld regions: the one cell of every speaker in any of them.
WITHHELD_REGIONS = "withheld-regions"
WITHHELD_DESCRIPTION = "the regions withheld from the stored cohorts (fewer speakers than --min-report-speakers)"
#: Two sibling regions whose split gains less than MERGE_PRICE x the speaker dispersion on the
#: speakers' own outcomes are one region (their WERs differ by under about 1.4 standard errors):
#: a tree grown on the pooled target cuts the ramp across a real boundary into such strips.
MERGE_PRICE = 2.0


def region_labels(coords: np.ndarray, regions: list[dict]) -> np.ndarray:
    """Index of the region containing each point, UNASSIGNED when none does (a withheld region).

    Points and bounds are compared as grid cells (``region_tree.grid_cells``), the tree's own
    rule, so labels from the bounds equal the fitted tree's leaves exactly.
    """
    cells = grid_cells(coords)
    labels = np.full(len(cells), UNASSIGNED, dtype=np.int64)
    for index, region in enumerate(regions):
        inside = labels == UNASSIGNED
        for column, axis in enumerate(AXES):
            low, high = region.get(f"{axis}_min"), region.get(f"{axis}_max")
            if low is not None:
                inside &= cells[:, column] >= cell_bound(low)
            if high is not None:
                inside &= cells[:, column] < cell_bound(high)
        labels[inside] = index
    return labels


def _bound(cell: dict, key: str) -> float | None:
    value = cell.get(key)
    if value is not None and not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number or null")
    return None if value is None else float(value)


def _coordinates(speakers: SpeakerTable) -> tuple[np.ndarray, np.ndarray]:
    frame = speakers.frame
    if LATITUDE not in frame.columns or LONGITUDE not in frame.columns:
        return np.zeros((len(frame), 2)), np.zeros(len(frame), dtype=bool)
    coords = frame[[LATITUDE, LONGITUDE]].to_numpy(dtype=np.float64)
    return coords, ~np.isnan(coords).any(axis=1)


def _leaf_bounds(structure) -> list[dict]:
    """Axis-aligned bounds of every leaf, in node order: lower bounds exclusive, upper inclusive."""
    bounds: dict[int, dict] = {0: {f"{axis}_{end}": None for axis in AXES for end in ("min", "max")}}
    leaves = []
    for node in range(structure.node_count):  # parents always precede children in sklearn trees
        box = bounds.pop(node)
        left, right = structure.children_left[node], structure.children_right[node]
        if left == -1:
            leaves.append(box)  # no tree node number: published, it would tell where withheld leaves sit
            continue
        axis = AXES[structure.feature[node]]
        threshold = float(structure.threshold[node])
        bounds[left] = dict(box, **{f"{axis}_max": threshold})
        bounds[right] = dict(box, **{f"{axis}_min": threshold})
    return leaves


def describe_region(region: dict) -> str:
    """Readable bounds such as "32.50 < lat <= 36.10, lon <= -97.00" (all speakers if unbounded)."""
    parts = []
    for axis in AXES:
        low, high = region.get(f"{axis}_min"), region.get(f"{axis}_max")
        label = AXIS_LABEL[axis]
        if low is not None and high is not None:
            parts.append(f"{low:.2f} < {label} <= {high:.2f}")
        elif low is not None:
            parts.append(f"{label} > {low:.2f}")
        elif high is not None:
            parts.append(f"{label} <= {high:.2f}")
    return ", ".join(parts) if parts else "all located speakers"
