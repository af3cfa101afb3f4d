"""geo-scan (spatial scan statistic, SPEC 4.2) on synthetic speakers with planted circles.

Speakers live around real US metro areas (plus a rural background); a planted cohort is every
speaker within a given distance of a metro centre, whose error rate is multiplied by 1 + effect.
Expected answers come from the planting, never from the code under test.
"""

import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.geodata.distance import haversine_km
from fairaudit.methods.geo_scan import ELLIPSE_BEARINGS_DEG, ELLIPSE_ELONGATION, RADII_KM, GeoScan
from fairaudit.model.partition import UNASSIGNED
from fairaudit.stats.resampling import permutation_matrix, permutation_p_value
from fairaudit.stats.selection import SelectionRule, fixed_partition_statistic

#: (latitude, longitude, relative population) of US metro areas.
METROS = {
    "new_york": (40.71, -74.01, 12),
    "los_angeles": (34.05, -118.24, 9),
    "chicago": (41.88, -87.63, 6),
    "dallas": (32.78, -96.80, 5),
    "houston": (29.76, -95.37, 5),
    "washington": (38.91, -77.04, 4),
    "miami": (25.76, -80.19, 4),
    "philadelphia": (39.95, -75.17, 4),
    "atlanta": (33.75, -84.39, 4),
    "boston": (42.36, -71.06, 3),
    "phoenix": (33.45, -112.07, 3),
    "san_francisco": (37.77, -122.42, 3),
    "seattle": (47.61, -122.33, 3),
    "minneapolis": (44.98, -93.27, 2),
    "denver": (39.74, -104.99, 2),
    "st_louis": (38.63, -90.20, 2),
    "portland": (45.52, -122.68, 2),
    "kansas_city": (39.10, -94.58, 1),
}
BASE_WER = 0.08


def places(n, seed):
    """Speaker coordinates: 80% around a metro (sd ~40 km), 20% spread over the lower 48; 1% missing."""
    rng = np.random.default_rng(seed)
    table = np.array(list(METROS.values()))
    metro = rng.choice(len(table), size=n, p=table[:, 2] / table[:, 2].sum())
    lat = table[metro, 0] + rng.normal(scale=40 / 111, size=n)
    lon = table[metro, 1] + rng.normal(scale=40 / 85, size=n)
    rural = rng.random(n) < 0.2
    lat[rural] = rng.uniform(30, 48, rural.sum())
    lon[rural] = rng.uniform(-122, -75, rural.sum())
    missing = rng.random(n) < 0.01
    lat[missing] = lon[missing] = np.nan
    return lat, lon


def within(lat, lon, metro, radius_km):
    """Speakers within ``radius_km`` of a metro centre (False without coordinates)."""
    centre_lat, centre_lon, _ = METROS[metro]
    return np.nan_to_num(haversine_km(lat, lon, centre_lat, centre_lon), nan=np.inf) <= radius_km


def make_log(n=2000, seed=0, planted=(), radius_km=150, effect=0.5):
    """One utterance row per speaker; speaker WER = base x lognormal(sd 0.3) x (1 + effect) if planted."""
    rng = np.random.default_rng([seed, 1])
    lat, lon = places(n, seed)
    words = 1 + np.floor(rng.lognormal(np.log(50), 0.8, size=n)).astype(np.int64)
    truth = np.zeros(n, dtype=bool)
    for metro in planted:
        truth |= within(lat, lon, metro, radius_km)
    rate = BASE_WER * np.exp(0.3 * rng.normal(size=n) - 0.045) * np.where(truth, 1 + effect, 1.0)
    errors = rng.binomial(words, np.clip(rate, 0, 1))
    frame = pd.DataFrame(
        {
            "speaker_id": [f"spk{i:05d}" for i in range(n)],
            "utterance_id": [f"spk{i:05d}-0" for i in range(n)],
            "errors": errors,
            "ref_words": words,
            "latitude": lat,
            "longitude": lon,
        }
    )
    return frame, truth


def speakers_of(frame):
    return build_speaker_table(load_log(frame))


def f1(predicted, truth):
    hits = np.sum(predicted & truth)
    return 2 * hits / (predicted.sum() + truth.sum())


def observed_gap(method, speakers, rule):
    errors = speakers.errors[None, :].astype(float)
    words = speakers.ref_words[None, :].astype(float)
    return fixed_partition_statistic(method.partition_, errors, words, rule)[0]


# The speaker table is sorted by speaker id, and the ids are zero-padded row numbers, so row i of
# the frame is speaker i of the table; the tests rely on it and check it once here.
def test_speaker_order_matches_the_frame():
    frame, _ = make_log(n=50)
    assert list(speakers_of(frame).speaker_ids) == list(frame["speaker_id"])


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_circle_is_the_first_window(seed):
    frame, truth = make_log(seed=seed, planted=["atlanta"])
    method = GeoScan().fit(speakers_of(frame))
    partition = method.partition_
    assert partition.cohort_ids[0] == "window-1" and partition.cohort_ids[-1] == "outside-windows"
    assert f1(partition.labels == 0, truth) >= 0.8


def test_two_disjoint_circles_are_separate_windows():
    frame, _ = make_log(seed=3, planted=["atlanta", "chicago"], effect=0.6)
    lat, lon = frame["latitude"].to_numpy(), frame["longitude"].to_numpy()
    partition = GeoScan().fit(speakers_of(frame)).partition_
    n_windows = len(partition.cohort_ids) - 1
    found = []
    for metro in ("atlanta", "chicago"):
        truth = within(lat, lon, metro, 150)
        scores = [f1(partition.labels == w, truth) for w in range(n_windows)]
        assert max(scores) >= 0.75, (metro, scores)
        found.append(int(np.argmax(scores)))
    assert found[0] != found[1]


def test_null_logs_are_not_significant_and_the_null_reruns_the_discovery():
    rule = SelectionRule(min_speakers=30)
    p_values = []
    for seed in (10, 11, 12):
        frame, _ = make_log(seed=seed)
        speakers = speakers_of(frame)
        method = GeoScan(seed=seed).fit(speakers)
        observed = observed_gap(method, speakers, rule)
        # Identity "shuffle": the null machinery must find exactly the observed discovery.
        identity = np.arange(len(speakers))[None, :]
        assert method.null_gaps(speakers, identity, rule)[0] == pytest.approx(observed, rel=1e-9)
        permutations = permutation_matrix(method.partition_.assigned, len(speakers), 99, np.random.default_rng(seed))
        null = method.null_gaps(speakers, permutations, rule)
        assert np.isfinite(null).all()
        p_values.append(permutation_p_value(observed, null))
    # The best window of a null log always has a sizeable gap; only re-running the scan on every
    # shuffle (not re-measuring the found cells) makes it unremarkable.
    assert min(p_values) > 0.05, p_values


def test_planted_cohort_is_significant():
    rule = SelectionRule(min_speakers=30)
    frame, _ = make_log(seed=4, planted=["chicago"])
    speakers = speakers_of(frame)
    method = GeoScan().fit(speakers)
    permutations = permutation_matrix(method.partition_.assigned, len(speakers), 99, np.random.default_rng(0))
    p = permutation_p_value(observed_gap(method, speakers, rule), method.null_gaps(speakers, permutations, rule))
    assert p <= 0.02


@pytest.mark.parametrize("bad_speakers", [1, 2])
def test_few_bad_speakers_with_many_words_do_not_make_the_best_window(bad_speakers):
    frame, truth = make_log(seed=5, planted=["chicago"])
    lat, lon = frame["latitude"].to_numpy(), frame["longitude"].to_numpy()
    # The speakers nearest Los Angeles get 3,000 words at WER 0.9 (over 2% of all words each).
    bad = np.argsort(np.nan_to_num(haversine_km(lat, lon, 34.05, -118.24), nan=np.inf))[:bad_speakers]
    frame.loc[bad, "ref_words"] = 3000
    frame.loc[bad, "errors"] = 2700
    labels = GeoScan().fit(speakers_of(frame)).partition_.labels
    assert not (labels[bad] == 0).any()
    assert f1(labels == 0, truth) >= 0.8


def test_published_windows_reveal_no_speaker_location():
    frame, _ = make_log(seed=6, planted=["atlanta", "chicago"], effect=0.6)
    lat, lon = frame["latitude"].to_numpy(), frame["longitude"].to_numpy()
    partition = GeoScan().fit(speakers_of(frame)).partition_
    windows = partition.details["windows"]
    assert windows
    for window in windows:
        assert set(window) == {"id", "centre_lat", "centre_lon", "radius_km", "elongation", "bearing_deg", "score"}
        assert (window["elongation"], window["bearing_deg"]) in {(1.0, 0.0)} | {
            (ELLIPSE_ELONGATION, b) for b in ELLIPSE_BEARINGS_DEG
        }
        for key in ("centre_lat", "centre_lon"):  # centres of the public 0.25-degree grid
            steps = window[key] / 0.25 - 0.5
            assert steps == round(steps)
        assert window["radius_km"] in RADII_KM
    published = []

    def collect(value):
        if isinstance(value, dict):
            for item in value.values():
                collect(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                collect(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            published.append(float(value))

    collect(partition.details)
    for text in partition.descriptions:
        published += [float(x) for x in re.findall(r"\d+(?:\.\d+)?", text)]
    coordinates = set(np.abs(lat[~np.isnan(lat)])) | set(np.abs(lon[~np.isnan(lon)]))
    assert not any(abs(value) in coordinates for value in published)


def inside_window(window, lat, lon):
    """The documented rule, computed here from the haversine distance and the initial bearing:
    (d cos(a - b))^2 / e + (d sin(a - b))^2 x e <= r^2 (a circle when e = 1)."""
    distance = haversine_km(window["centre_lat"], window["centre_lon"], lat, lon)
    phi1, phi2 = np.radians(window["centre_lat"]), np.radians(lat)
    dlon = np.radians(lon - window["centre_lon"])
    azimuth = np.arctan2(
        np.sin(dlon) * np.cos(phi2), np.cos(phi1) * np.sin(phi2) - np.sin(phi1) * np.cos(phi2) * np.cos(dlon)
    )
    turn = azimuth - np.radians(window["bearing_deg"])
    e = window["elongation"]
    squared = (distance * np.cos(turn)) ** 2 / e + (distance * np.sin(turn)) ** 2 * e
    return np.nan_to_num(squared, nan=np.inf) <= window["radius_km"] ** 2


def test_windows_follow_the_documented_membership_rule():
    """Inside = the speaker's 0.1-degree cell centre is inside the circle or ellipse (the published rule)."""
    frame, _ = make_log(seed=6, planted=["atlanta", "chicago"], effect=0.6)
    speakers = speakers_of(frame)
    method = GeoScan(min_speakers=25).fit(speakers)
    partition = method.partition_
    lat, lon = frame["latitude"].to_numpy(), frame["longitude"].to_numpy()
    cell_lat = (np.floor(lat / 0.1) + 0.5) * 0.1
    cell_lon = (np.floor(lon / 0.1) + 0.5) * 0.1
    claimed = np.zeros(len(frame), dtype=bool)
    for rank, window in enumerate(partition.details["windows"]):
        inside = inside_window(window, cell_lat, cell_lon)
        assert np.array_equal(partition.labels == rank, inside)
        assert inside.sum() >= 25
        assert not (claimed & inside).any()  # windows share no speaker
        claimed |= inside
    located = ~np.isnan(lat)
    assert np.array_equal(partition.labels == partition.n_cohorts - 1, located & ~claimed)
    assert np.array_equal(partition.labels == UNASSIGNED, ~located)
    assert partition.unassigned_reasons == {"no coordinates": int((~located).sum())}
    # No window holds more than max_window_share of the located speakers, nor all windows together.
    assert claimed.sum() <= 0.5 * located.sum()


def test_assign_on_a_subset_reproduces_fit_and_fit_is_deterministic():
    frame, _ = make_log(seed=7, planted=["atlanta", "chicago"], effect=0.6)
    speakers = speakers_of(frame)
    method = GeoScan(seed=3).fit(speakers)
    subset = np.random.default_rng(0).choice(len(speakers), size=700, replace=False)
    held_out = method.assign(speakers.subset(subset))
    assert held_out.cohort_ids == method.partition_.cohort_ids
    assert held_out.descriptions == method.partition_.descriptions
    assert np.array_equal(held_out.labels, method.partition_.labels[subset])
    again = GeoScan(seed=3).fit(speakers_of(frame))
    assert np.array_equal(again.partition_.labels, method.partition_.labels)
    assert again.partition_.details == method.partition_.details


def test_descriptions_name_the_grid_centre_and_radius():
    frame, _ = make_log(seed=0, planted=["atlanta"])
    partition = GeoScan().fit(speakers_of(frame)).partition_
    window = partition.details["windows"][0]
    match = re.fullmatch(r"within (\d+) km of ([\d.]+) ([NS]), ([\d.]+) ([EW])", partition.descriptions[0])
    assert match, partition.descriptions[0]
    assert float(match.group(1)) == window["radius_km"]
    lat = float(match.group(2)) * (1 if match.group(3) == "N" else -1)
    lon = float(match.group(4)) * (1 if match.group(5) == "E" else -1)
    assert (lat, lon) == (window["centre_lat"], window["centre_lon"])
    assert math.isfinite(window["score"]) and window["score"] > 0


def test_too_few_located_speakers_give_a_single_cell_and_no_null():
    frame, _ = make_log(n=50, seed=8)
    speakers = speakers_of(frame)
    method = GeoScan().fit(speakers)  # 30 of ~50 speakers would exceed max_window_share
    assert method.partition_.cohort_ids == ["outside-windows"]
    assert method.partition_.details["windows"] == []
    rule = SelectionRule(min_speakers=30)
    assert np.isnan(method.null_gaps(speakers, np.arange(len(speakers))[None, :], rule)).all()


def test_from_options_passes_the_audit_settings():
    opts = SimpleNamespace(min_speakers=40, seed=7, max_window_share=0.3)
    (method,) = GeoScan.from_options(opts)
    assert (method.min_speakers, method.seed, method.max_window_share) == (40, 7, 0.3)
    (default,) = GeoScan.from_options(SimpleNamespace(min_speakers=30, seed=0))
    assert default.max_window_share == 0.5


@pytest.mark.parametrize("changed", [{"max_windows": 1}, {"min_speakers": 150}, {"max_window_share": 0.05}])
def test_the_permutation_test_reruns_the_fitted_scan_even_after_set_params(changed):
    """null_gaps re-runs the fitted discovery; parameters changed after fit must not leak into it
    (on this log each change alone gives different windows and a different statistic)."""
    rule = SelectionRule(min_speakers=30)
    frame, _ = make_log(seed=3, planted=["atlanta", "chicago"], effect=0.6)
    speakers = speakers_of(frame)
    method = GeoScan().fit(speakers)
    observed = observed_gap(method, speakers, rule)
    refit = GeoScan(**changed).fit(speakers)
    assert observed_gap(refit, speakers, rule) != pytest.approx(observed, rel=1e-6)
    method.set_params(**changed)
    identity = np.arange(len(speakers))[None, :]
    assert method.null_gaps(speakers, identity, rule)[0] == pytest.approx(observed, rel=1e-9)


def test_expected_f1_matches_a_dense_computation_of_the_window_posterior():
    """Posterior weight exp(z^2 / 2) per window with z > 0; a cell's probability of being in the
    region is the weight of the windows holding it; expected F1 = 2 E[TP] / (size + E[region])."""
    from fairaudit.methods.geo_scan import _expected_f1, _located_outcomes, _speaker_scores, _window_statistics

    frame, _ = make_log(n=800, seed=2, planted=["dallas"], effect=0.6)
    speakers = speakers_of(frame)
    method = GeoScan(min_speakers=20).fit(speakers)
    scan = method._scan_for(speakers)
    errors, words = _located_outcomes(speakers, scan.located)
    z = _window_statistics(scan, _speaker_scores(errors, words, method.rate_, method.overdispersion_)[None, :])[:, 0]
    members = np.array([scan.members(w) for w in range(scan.n_windows)], dtype=float)  # (W, cells)
    per_cell = np.bincount(scan.cell, minlength=scan.n_cells)
    assert np.array_equal(members @ per_cell, scan.window_speakers)
    weight = np.where(z > 0, np.exp(z * z / 2 - (z * z / 2).max()), 0.0)
    in_region = (weight @ members) / weight.sum() * per_cell
    expected = 2 * (members @ in_region) / (scan.window_speakers + in_region.sum())
    np.testing.assert_allclose(_expected_f1(scan, z[:, None])[:, 0], expected, rtol=1e-4, atol=1e-6)
    assert int(np.argmax(expected)) != int(np.argmax(z)) or weight.max() == weight.sum()  # not the same rule


def band_log(seed, n=3000):
    """Speakers spread evenly over the lower 48's box; a band 2,200 km east-west and 280 km
    north-south (latitude 36-38.5, longitude -110 to -85) has WER 0.12 against 0.08 elsewhere."""
    rng = np.random.default_rng(seed)
    lat, lon = rng.uniform(30, 48, n), rng.uniform(-122, -75, n)
    words = 1 + np.floor(rng.lognormal(np.log(50), 0.8, size=n)).astype(np.int64)
    truth = (lat >= 36) & (lat < 38.5) & (lon >= -110) & (lon < -85)
    frame = pd.DataFrame(
        {
            "speaker_id": [f"spk{i:05d}" for i in range(n)],
            "utterance_id": [f"spk{i:05d}-0" for i in range(n)],
            "errors": rng.binomial(words, np.where(truth, 0.12, 0.08)),
            "ref_words": words,
            "latitude": lat,
            "longitude": lon,
        }
    )
    return frame, truth


@pytest.mark.parametrize("seed", [0, 1])
def test_a_long_east_west_band_is_found_by_an_east_west_ellipse(seed, monkeypatch):
    frame, truth = band_log(seed)
    partition = GeoScan().fit(speakers_of(frame)).partition_
    window = partition.details["windows"][0]
    assert (window["elongation"], window["bearing_deg"]) == (ELLIPSE_ELONGATION, 90.0), window
    found = f1(partition.labels == 0, truth)
    assert found >= 0.6
    match = re.fullmatch(
        r"in the ellipse of radius (\d+) km and elongation 3 around ([\d.]+) N, ([\d.]+) W "
        r"\(semi-axes (\d+) km east-west, (\d+) km across\)",
        partition.descriptions[0],
    )
    assert match, partition.descriptions[0]
    radius = float(match.group(1))
    assert radius == window["radius_km"]
    assert (float(match.group(2)), -float(match.group(3))) == (window["centre_lat"], window["centre_lon"])
    assert (int(match.group(4)), int(match.group(5))) == (round(radius * 3**0.5), round(radius / 3**0.5))
    rebuilt = GeoScan.from_definition(GeoScan().fit(speakers_of(frame)).definition())
    assert np.array_equal(rebuilt.assign(speakers_of(frame)).labels, partition.labels)
    monkeypatch.setattr("fairaudit.methods.geo_scan.WINDOW_SHAPES", ((1.0, 0.0),))  # circles only
    circles = GeoScan().fit(speakers_of(frame)).partition_
    assert circles.details["windows"][0]["elongation"] == 1.0
    assert f1(circles.labels == 0, truth) < found - 0.2


def test_overdispersion_and_noise_threshold_ignore_which_speaker_has_which_outcome():
    """The permutation test keeps alpha and the secondary-window threshold as fitted; it is exact
    only if refitting on shuffled outcomes would give the same values."""
    from fairaudit.stats.metrics import negative_binomial_alpha

    frame, _ = make_log(seed=4, planted=["chicago"])
    located = frame["latitude"].notna().to_numpy()
    fitted = GeoScan(seed=1).fit(speakers_of(frame))
    changes = 0
    for shuffle in range(3):
        order = np.random.default_rng(shuffle).permutation(np.flatnonzero(located))
        shuffled = frame.copy()
        shuffled.loc[located, ["errors", "ref_words"]] = frame.loc[order, ["errors", "ref_words"]].to_numpy()
        refit = GeoScan(seed=1).fit(speakers_of(shuffled))
        assert refit.overdispersion_ == fitted.overdispersion_
        assert refit.min_score_ == fitted.min_score_
        changes += refit.windows_ != fitted.windows_
    assert changes == 3  # the shuffles do change the discovery itself
    errors, words = frame["errors"].to_numpy(), frame["ref_words"].to_numpy()
    swap = np.random.default_rng(0).permutation(len(frame))
    assert negative_binomial_alpha(errors[swap], words[swap], 0.08, 5) == negative_binomial_alpha(
        errors, words, 0.08, 5
    )


def test_the_identity_inside_a_block_of_shuffles_reproduces_the_fit():
    """Fit scores one outcome set, the null a block of 16; the choice must not depend on that."""
    rule = SelectionRule(min_speakers=30)
    for seed in (3, 13):
        frame, _ = make_log(seed=seed, planted=["atlanta", "chicago"], effect=0.6)
        speakers = speakers_of(frame)
        method = GeoScan(seed=seed).fit(speakers)
        block = permutation_matrix(method.partition_.assigned, len(speakers), 16, np.random.default_rng(seed))
        block[7] = np.arange(len(speakers))
        assert method.null_gaps(speakers, block, rule)[7] == pytest.approx(
            observed_gap(method, speakers, rule), rel=1e-12
        )
