"""Each discovery method and the speaker table on small hand-made data with known answers."""

import numpy as np
import pandas as pd
import pytest

import fairaudit
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.io.readers import log_from_frame
from fairaudit.methods import GeoTree


def speakers_from(frame, **kwargs):
    return build_speaker_table(log_from_frame(frame, **kwargs))


def test_speaker_table_aggregates_hand_computed():
    frame = pd.DataFrame(
        {
            "speaker_id": ["a", "a", "a", "b", "b"],
            "errors": [1, 2, 0, 5, 1],
            "ref_words": [4, 4, 2, 10, 10],
            "latitude": [40.0, 40.2, 40.1, 30.0, 35.0],  # b's points are ~550 km apart: a conflict
            "longitude": [-75.0, -75.0, -75.3, -90.0, -90.0],
            "zip_code": ["02134", "02134", "10001", "60601", "60601"],
            "accent": ["us", "us", "uk", "indian", "indian"],
            "emb_0": [1.0, 0.0, 0.0, 2.0, 4.0],
            "emb_1": [0.0, 1.0, 0.0, 0.0, 0.0],
        }
    )
    frame.loc[2, ["emb_0", "emb_1"]] = [1.0, 1.0]
    table = speakers_from(frame)
    a, b = table.frame.loc["a"], table.frame.loc["b"]
    assert (a["errors"], a["ref_words"], a["utterances"]) == (3, 10, 3)
    assert (b["errors"], b["ref_words"], b["utterances"]) == (6, 20, 2)
    assert a["latitude"] == pytest.approx(40.1) and a["longitude"] == pytest.approx(-75.0)
    assert b["latitude"] == pytest.approx(32.5)
    assert a["zip_code"] == "02134" and a["accent"] == "us"
    assert table.conflicts["zip_code"] == 1  # a has two ZIPs
    assert table.conflicts["coordinates_over_50km"] == 1  # b
    # mean of a's vectors (1,0), (0,1), (1,1) = (2/3, 2/3), L2-normalised = (0.7071, 0.7071)
    assert table.embeddings[0] == pytest.approx([2**-0.5, 2**-0.5])
    assert table.embeddings[1] == pytest.approx([1.0, 0.0])


def two_region_log(n_per_side=60, seed=0):
    """West of -100 longitude: WER 20%; east: WER 10%; every speaker 100 words."""
    rng = np.random.default_rng(seed)
    lon = np.r_[rng.uniform(-120, -101, n_per_side), rng.uniform(-99, -75, n_per_side)]
    lat = rng.uniform(30, 45, 2 * n_per_side)
    errors = np.r_[np.full(n_per_side, 20), np.full(n_per_side, 10)]
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i}" for i in range(2 * n_per_side)],
            "errors": errors,
            "ref_words": 100,
            "latitude": lat,
            "longitude": lon,
        }
    )


def test_geo_tree_finds_the_longitude_boundary_and_assigns_new_speakers():
    table = speakers_from(two_region_log())
    tree = GeoTree(max_regions=4, min_speakers=10).fit(table)
    partition = tree.partition_
    assert partition.n_cohorts == 2  # the noise-level threshold stops after the one real split
    west = partition.labels[table.frame["longitude"].to_numpy() < -100]
    assert len(set(west)) == 1
    description = partition.descriptions[west[0]]
    assert description.startswith("lon <= ")
    threshold = float(description.split("<=")[1])
    assert -101 < threshold < -99
    new = speakers_from(
        pd.DataFrame(
            {
                "speaker_id": ["x", "y", "z"],
                "errors": 0,
                "ref_words": 1,
                "latitude": [35.0, 35.0, np.nan],
                "longitude": [-110.0, -80.0, np.nan],
            }
        )
    )
    labels = tree.assign(new).labels
    assert labels[0] == west[0] and labels[1] != west[0] and labels[2] == -1


def test_zip_demographic_with_user_table_recovers_income_split(tmp_path):
    zips = [f"{i:05d}" for i in range(1001, 1041)]  # 40 ZIPs, leading zeros
    income = np.linspace(20_000, 120_000, 40)
    demographics = pd.DataFrame({"zip_code": zips, "median_household_income": income})
    path = tmp_path / "demo.csv"
    demographics.to_csv(path, index=False)
    rows = []
    for index, z in enumerate(zips):
        for k in range(5):
            poor = income[index] <= 50_000
            rows.append((f"s{index}_{k}", z, 15 if poor else 8, 100))
    rows.append(("lost", "99999", 1, 10))  # a ZIP the table does not have
    frame = pd.DataFrame(rows, columns=["speaker_id", "zip_code", "errors", "ref_words"])
    result = fairaudit.audit(
        frame, methods=["zip-demographic"], demographics=str(path), min_speakers=20, bootstrap=0, permutations=50
    )
    zd = result.methods["zip-demographic"]
    bottom = zd.discovery.bottom[0]
    assert bottom.startswith("median_household_income<=")
    # ZIPs with income <= 50,000: 20,000 + k * 2,564.1 <= 50,000 -> k <= 11 -> 12 ZIPs x 5 speakers
    cohorts = zd.cohorts.set_index("id")
    assert cohorts.loc[bottom, "speakers"] == 60
    assert cohorts.loc[bottom, "wer"] == pytest.approx(0.15)
    assert zd.partition.unassigned_reasons == {"ZIP code not in the census table": 1}
    candidates = result.to_dict()["methods"]["zip-demographic"]["candidates"]
    assert candidates[0]["rank"] == 1 and candidates[0]["cohorts"][0]["id"] == bottom
    assert len(candidates) >= 5
    assert zd.verdict == "disparity"


def test_zip_demographic_builtin_table_majority_split():
    """Built-in ACS table: speakers in Hispanic-majority ZIPs (e.g. 78501, McAllen TX) vs others."""
    from fairaudit.geodata.census import builtin_demographics

    table = builtin_demographics()
    assert table.loc["78501", "pct_hispanic"] > 50  # percent, not a fraction
    hispanic = table.index[(table["pct_hispanic"] > 80)][:40].tolist()
    other = table.index[(table["pct_white"] > 90)][:40].tolist()
    rows = [(f"h{i}", z, 20, 100) for i, z in enumerate(hispanic)] + [
        (f"o{i}", z, 10, 100) for i, z in enumerate(other)
    ]
    frame = pd.DataFrame(rows, columns=["speaker_id", "zip_code", "errors", "ref_words"])
    result = fairaudit.audit(frame, methods=["zip-demographic"], min_speakers=30, bootstrap=0, permutations=0)
    zd = result.methods["zip-demographic"]
    # With only these two kinds of ZIP, "majority Hispanic" and "majority not white" are the same split.
    assert zd.discovery.bottom[0] in {"majority-hispanic", "majority-not-white"}
    assert zd.cohorts.set_index("id").loc[zd.discovery.bottom[0], "speakers"] == 40
    assert zd.discovery.wer_gap_pct == pytest.approx(100.0)


def test_embedding_kmeans_profiles_name_the_cluster_members():
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:3] * 5
    rows, vectors = [], []
    for cluster, accent in enumerate(["indian", "us", "uk"]):
        for k in range(40):
            rows.append((f"{accent}{k}", accent, 20 if accent == "indian" else 10, 100))
            vectors.append(centres[cluster] + rng.normal(0, 0.3, 4))
    frame = pd.DataFrame(rows, columns=["speaker_id", "accent", "errors", "ref_words"])
    emb = pd.DataFrame(np.array(vectors), columns=[f"emb_{i}" for i in range(4)])
    emb.insert(0, "speaker_id", frame["speaker_id"])
    result = fairaudit.audit(
        frame, methods=["embedding-kmeans"], embeddings=emb, clusters=3, bootstrap=0, permutations=0
    )
    km = result.methods["embedding-kmeans"]
    bottom = km.cohorts.set_index("id").loc[km.discovery.bottom[0]]
    assert bottom["description"].startswith("accent=indian 100%")
    assert bottom["speakers"] == 40 and bottom["wer"] == pytest.approx(0.2)


def test_attribute_intersections_and_missing_values():
    frame = pd.DataFrame(
        {
            "speaker_id": ["a", "b", "c", "d", "e"],
            "accent": ["in", "in", "us", "us", None],
            "gender": ["f", "m", "f", "f", "m"],
            "errors": [1, 2, 3, 4, 5],
            "ref_words": [10, 10, 10, 10, 10],
        }
    )
    result = fairaudit.audit(
        frame, by=["accent,gender"], min_speakers=1, min_report_speakers=0, bootstrap=0, permutations=0
    )
    attr = result.methods["attribute"]
    cohorts = attr.cohorts.set_index("id")
    assert set(cohorts.index) == {"in & f", "in & m", "us & f"}
    assert cohorts.loc["us & f", "speakers"] == 2 and cohorts.loc["us & f", "wer"] == pytest.approx(0.35)
    assert cohorts.loc["us & f", "description"] == "accent = us, gender = f"
    assert attr.partition.unassigned_reasons == {"missing accent or gender": 1}


def test_several_by_specs_become_separate_attribute_methods():
    frame = pd.DataFrame(
        {"speaker_id": list("abcd"), "accent": list("xxyy"), "gender": list("fmfm"), "errors": 1, "ref_words": 10}
    )
    result = fairaudit.audit(frame, by=["accent", "gender"], min_speakers=1, bootstrap=0, permutations=0)
    assert set(result.methods) == {"attribute:accent", "attribute:gender"}


def test_speaker_mode_ties_break_to_the_smallest_value_for_text_metadata():
    """Two utterances each of 'tv' and 'phone': the tie goes to 'phone' (alphabetical), whatever
    order the values first appear in."""
    frame = pd.DataFrame(
        {"speaker_id": ["a"] * 4, "device": ["tv", "tv", "phone", "phone"], "errors": 1, "ref_words": 5}
    )
    assert speakers_from(frame).frame.loc["a", "device"] == "phone"


def test_input_errors_survive_pickling():
    import pickle

    from fairaudit.errors import InputError

    error = pickle.loads(pickle.dumps(InputError("bad", file="log.csv", line=7, column="errors", value="-3")))
    assert (error.file, error.line, error.column, error.value) == ("log.csv", 7, "errors", "-3")
    assert str(error) == "file log.csv, line 7, column 'errors', value '-3': bad"


def test_kmeans_started_from_a_sample_finds_separated_clusters_and_repeats_itself(monkeypatch):
    import fairaudit.methods.embedding_kmeans as embedding_kmeans

    monkeypatch.setattr(embedding_kmeans, "INIT_SAMPLE", 400)  # 3,000 vectors: the sampled start
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(5, 16)) * 10
    truth = rng.integers(0, 5, 3000)
    vectors = (centres[truth] + rng.normal(size=(3000, 16))).astype(np.float32)
    first = embedding_kmeans.fit_kmeans(vectors, 5, seed=3)
    again = embedding_kmeans.fit_kmeans(vectors, 5, seed=3)
    assert np.array_equal(first.labels_, again.labels_)
    # every true cluster maps to exactly one found cluster and back (a relabelling)
    pairs = set(zip(truth.tolist(), first.labels_.tolist()))
    assert len(pairs) == 5 and len({t for t, _ in pairs}) == 5 and len({f for _, f in pairs}) == 5


def test_cluster_projection_agrees_with_an_svd_and_does_not_depend_on_thread_counts():
    """The 2-D view of the clusters: the first two principal components of the vectors (checked
    against numpy's SVD of the centred float64 matrix, signs aligned), each cluster's mean and
    covariance in that plane, published to 6 significant digits and so the same whether BLAS and
    LAPACK run 1 or 2 threads (at 256 dimensions their last digits differ)."""
    from threadpoolctl import threadpool_limits

    from fairaudit.methods.embedding_kmeans import PROJECTION_BLOCK, project_clusters

    rng = np.random.default_rng(5)
    n, dim = PROJECTION_BLOCK + 3_000, 256  # more than one block
    labels = rng.integers(0, 4, n)
    vectors = (rng.normal(size=(n, dim)) * np.linspace(3, 0.5, dim) + labels[:, None] * 0.7).astype(np.float32)
    views = []
    for threads in (1, 2):
        with threadpool_limits(threads):
            views.append(project_clusters(vectors, labels, 5))
    assert views[0] == views[1]
    view = views[0]

    centred = vectors.astype(np.float64) - vectors.astype(np.float64).mean(axis=0)
    _, singular, rows = np.linalg.svd(centred, full_matrices=False)
    axes = rows[:2].T * np.sign(rows[:2].T[np.abs(rows[:2].T).argmax(axis=0), [0, 1]])
    points = centred @ axes
    assert view["explained_variance_pct"] == pytest.approx(100 * singular[:2] ** 2 / (singular**2).sum(), rel=1e-5)
    for k in range(4):
        members = points[labels == k]
        assert view["centres"][k] == pytest.approx(members.mean(axis=0), rel=1e-5, abs=1e-9)
        assert np.allclose(view["covariances"][k], np.cov(members, rowvar=False), rtol=1e-5, atol=1e-9)
    assert view["centres"][4] is None and view["covariances"][4] is None  # an empty cluster


def test_kmeans_clusters_are_the_same_whatever_the_openmp_thread_count():
    """scikit-learn's k-means sums per thread: the fit runs on one OpenMP thread so that centres
    (published in the cohort definitions) are identical on machines with different core counts."""
    from threadpoolctl import threadpool_limits

    from fairaudit.methods.embedding_kmeans import fit_kmeans

    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(30_000, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    fits = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="openmp"):
            fits.append(fit_kmeans(vectors, 12, seed=4))
    assert np.array_equal(fits[0].cluster_centers_, fits[1].cluster_centers_)
    assert np.array_equal(fits[0].labels_, fits[1].labels_)


def test_zip_demographic_bottom_side_is_a_minority_unless_the_mode_says_otherwise(tmp_path):
    """SPEC 5: the bottom cohort holds at most --max-bottom-share of the speakers. Here the split
    with the largest gain (income above the 20% quantile, WER 0.13 against 0.08) has its worse side
    holding 80% of the speakers; the minority split (the oldest 20% of ZIPs, +0.03) must be chosen."""
    zips = [f"{i:05d}" for i in range(1001, 1041)]
    income = np.linspace(20_000, 120_000, 40)
    age = np.roll(np.linspace(30, 50, 40), 17)  # the oldest ZIPs are spread over the income range
    pd.DataFrame({"zip_code": zips, "median_household_income": income, "median_age": age}).to_csv(
        tmp_path / "demo.csv", index=False
    )
    old = age > np.quantile(age, 0.8)
    rows = [(f"s{i}_{k}", z, 800 + 500 * (i >= 8) + 300 * old[i], 10_000) for i, z in enumerate(zips) for k in range(5)]
    frame = pd.DataFrame(rows, columns=["speaker_id", "zip_code", "errors", "ref_words"])
    common = dict(methods=["zip-demographic"], demographics=str(tmp_path / "demo.csv"), min_speakers=20, bootstrap=0)
    auto = fairaudit.audit(frame, permutations=20, **common)
    worst = fairaudit.audit(frame, permutations=0, bottom="worst", **common)
    candidates = auto.to_dict()["methods"]["zip-demographic"]["candidates"]
    by_gain = max(candidates, key=lambda c: c["gain"] if c["eligible"] else -1)
    assert by_gain["attribute"] == "median_household_income"  # the largest gain: its worse side is 80%
    chosen = auto.methods["zip-demographic"]
    assert chosen.discovery.bottom[0].startswith("median_age>")
    assert chosen.cohorts.set_index("id").loc[chosen.discovery.bottom[0], "speakers"] == 5 * old.sum()
    assert candidates[0]["attribute"] == "median_age"  # choosable candidates are listed first
    bottom = worst.methods["zip-demographic"].discovery.bottom[0]
    assert bottom.startswith("median_household_income>")
    assert worst.methods["zip-demographic"].cohorts.set_index("id").loc[bottom, "speakers"] > 0.5 * len(frame)
    assert 0 < chosen.discovery.p_value <= 1  # the permutation test re-ranks every shuffle under the same limit


def test_zip_null_has_no_bottom_cohort_when_no_split_leaves_a_minority_worse_side():
    """The observed statistic is 0 when every split's worse side is a majority (no bottom cohort,
    SPEC 5); the permutation test must then give 0 too, not the best majority split's gain."""
    import numpy as np

    from fairaudit.methods.zip_demographic import _choosable_gains

    stats = {
        "eligible": np.array([True, True]),
        "gain": np.array([[4.0, 2.0]]),
        "speakers": np.array([[70, 30], [40, 60]]),
        "wer": np.array([[[0.2, 0.1], [0.1, 0.2]]]),  # both worse sides hold 70% and 60%
    }
    assert np.isfinite(_choosable_gains(stats, 0.5)).all()  # cells: the fitted split may still be either
    assert not np.isfinite(_choosable_gains(stats, 0.5, fall_back=False)).any()  # the null: no bottom
