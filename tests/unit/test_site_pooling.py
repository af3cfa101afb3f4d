"""geo-tree's pooled split target: neighbourhoods checked against brute-force great-circle
distances, and the tree's regions on logs with a known boundary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairaudit.geodata.distance import haversine_km
from fairaudit.methods.geo_tree import GeoTree
from fairaudit.methods.region_tree import GRID_STEP_DEGREES, GridPoints, grid_cells, site_sums, speaker_terms
from fairaudit.methods.site_pooling import NeighbourPooling, precision_terms
from tests.unit.test_methods import speakers_from


def _sites(points: GridPoints, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each site's cell centre (lat, lon), computed from the speakers' own grid cells."""
    cells = grid_cells(coords)
    centres = np.zeros((points.n_sites, 2))
    centres[points.site_of] = (cells + 0.5) * GRID_STEP_DEGREES
    return centres[:, 0], centres[:, 1]


@pytest.mark.parametrize("k", [2, 7, 25])
def test_each_neighbourhood_is_the_nearest_sites_holding_k_speakers(k):
    rng = np.random.default_rng(k)
    # Clumps of speakers (several per grid cell) plus scattered ones, across the US.
    clumps = rng.uniform([30, -110], [45, -80], size=(15, 2))
    coords = np.vstack(
        [clumps[rng.integers(0, 15, 300)] + rng.normal(0, 0.03, (300, 2)), rng.uniform([30, -110], [45, -80], (80, 2))]
    )
    points = GridPoints(coords)
    pooling = NeighbourPooling(points, k)
    lat, lon = _sites(points, coords)
    matrix = pooling.matrix.toarray()
    for site in range(points.n_sites):
        members = np.flatnonzero(matrix[site])
        assert matrix[site, site] == 1
        distance = haversine_km(lat[site], lon[site], lat, lon)
        farthest = distance[members].max()
        # Every site strictly nearer than the farthest member is a member (nothing skipped) ...
        assert set(np.flatnonzero(distance < farthest - 1e-6)) <= set(members)
        # ... the members hold at least k speakers, and without one farthest member they hold fewer.
        held = points.site_speakers[members].sum()
        assert held >= k
        outermost = members[np.isclose(distance[members], farthest, atol=1e-6)]
        assert held - points.site_speakers[outermost].max() < k  # ties at that distance: any order


@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_pooled_target_is_each_neighbourhoods_precision_weighted_wer_and_keeps_own_words(alpha):
    rng = np.random.default_rng(3)
    coords = rng.uniform([30, -110], [45, -80], (200, 2))
    words = np.exp(rng.normal(5, 1, 200)).round() + 1  # heavy-tailed words per speaker
    errors = rng.binomial(words.astype(int), 0.1).astype(float)
    points = GridPoints(coords)
    raw = site_sums(points, *speaker_terms(errors, words))
    pooling = NeighbourPooling(points, 10)
    weights, weighted = precision_terms(errors, words, 0.1, alpha)
    pooled = pooling.pool(raw, points.per_site(weights), points.per_site(weighted))
    # Computed here per speaker: weight w / (1 + alpha r w), the neighbourhood's weighted mean WER.
    site = points.site_of
    members = pooling.matrix.toarray().astype(bool)
    c = words / (1 + alpha * 0.1 * words)
    expected_rate = np.array([(c * errors / words)[m[site]].sum() / c[m[site]].sum() for m in members])
    if alpha == 0:  # no overdispersion: the neighbourhood's pooled WER
        pooled_wer = np.array([errors[m[site]].sum() / words[m[site]].sum() for m in members])
        np.testing.assert_allclose(expected_rate, pooled_wer)
    np.testing.assert_allclose(pooled.words, raw.words)
    np.testing.assert_allclose(pooled.errors / pooled.words, expected_rate)
    np.testing.assert_allclose(pooled.squares, expected_rate**2 * raw.words)
    one = NeighbourPooling(points, 1)
    assert one.pool(raw, points.per_site(weights), points.per_site(weighted)) is raw  # each site's own totals


def _boundary_log(n: int, effect: float, seed: int) -> pd.DataFrame:
    """Speakers spread evenly over the US; west of -100 longitude the WER is (1 + effect) x 10%."""
    rng = np.random.default_rng(seed)
    lon, lat = rng.uniform(-120, -75, n), rng.uniform(30, 45, n)
    words = rng.integers(50, 300, n)
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in range(n)],
            "errors": rng.binomial(words, np.where(lon < -100, 0.1 * (1 + effect), 0.1)),
            "ref_words": words,
            "latitude": lat,
            "longitude": lon,
        }
    )


@pytest.mark.parametrize(("n", "seed"), [(2000, 0), (2000, 1), (10000, 2)])
def test_a_sharp_boundary_is_one_split_not_a_ramp_of_strips(n, seed):
    """Pooling blurs the step at -100 into a ramp a few neighbourhoods wide; the tree cuts the ramp
    into strips, and strips whose own WERs do not differ are joined again (MERGE_PRICE)."""
    table = speakers_from(_boundary_log(n, effect=1.0, seed=seed))
    partition = GeoTree().fit(table).partition_
    west = table.frame["longitude"].to_numpy() < -100
    wer = [
        table.errors[partition.labels == c].sum() / table.ref_words[partition.labels == c].sum()
        for c in range(partition.n_cohorts)
    ]
    # Every region is on one side of the boundary, up to the width of one grid step on either side.
    for cohort in range(partition.n_cohorts):
        lon = table.frame["longitude"].to_numpy()[partition.labels == cohort]
        assert lon.max() <= -99.5 or lon.min() >= -100.5, partition.descriptions[cohort]
    # Neighbouring strips with the same WER are not left as separate regions: at most one stray
    # strip of intermediate WER on each side of the boundary.
    assert partition.n_cohorts <= 3, partition.descriptions
    bottom = int(np.argmax(wer))
    assert np.mean(partition.labels[west] == bottom) > 0.9


@pytest.mark.parametrize("changed", [{"neighbours": 1}, {"max_regions": 3}, {"min_speakers": 150}])
def test_the_permutation_test_regrows_the_fitted_tree_even_after_set_params(changed):
    """null_gaps re-runs the fitted procedure: changing a parameter after fit must not mix settings
    (on this log each change alone gives a different tree and statistic)."""
    from fairaudit.stats.selection import SelectionRule, fixed_partition_statistic
    from fairaudit.synth.generator import synthesize

    table = speakers_from(synthesize(1500, effect=0.3, plant=["box"], seed=1).log)
    method = GeoTree(min_gain=0.0).fit(table)  # unpruned: max_regions and min_speakers shape the tree
    rule = SelectionRule(min_speakers=30)
    observed = fixed_partition_statistic(method.partition_, table.errors[None, :], table.ref_words[None, :], rule)[0]
    method.set_params(**changed)
    identity = np.arange(len(table))[None, :]
    assert method.null_gaps(table, identity, rule)[0] == pytest.approx(observed, rel=1e-9)
