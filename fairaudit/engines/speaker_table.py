"""Aggregation of an utterance log into the speaker table (SPEC 3), shared by both engines.

Vectorised: no Python loop over speakers or utterances. The Dask engine runs it per partition.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.geodata.distance import haversine_km
from fairaudit.model.log import (
    ANATOMY,
    DELETIONS,
    ERRORS,
    INSERTIONS,
    LATITUDE,
    LONGITUDE,
    REF_WORDS,
    SPEAKER,
    UTTERANCE,
    ZIP_CODE,
    EmbeddingTable,
    UtteranceLog,
)
from fairaudit.model.speakers import EMPTY_HYPOTHESES, SCORED_UTTERANCES, UTTERANCE_WER_SUM, SpeakerTable

#: Coordinates of one speaker further apart than this are reported as a conflict (SPEC 3).
COORDINATE_CONFLICT_KM = 50.0


def build_speaker_table(log: UtteranceLog) -> SpeakerTable:
    """Aggregate an utterance log into one row per speaker (SPEC 3)."""
    utt = log.frame
    if log.speaker_codes is not None and len(log.speaker_codes) == len(utt):
        codes, speaker_ids = log.speaker_codes, log.speaker_ids  # encoded once at ingest
    else:
        codes, speaker_ids = pd.factorize(utt[SPEAKER], sort=True)
    assert speaker_ids is not None
    n = len(speaker_ids)
    frame = pd.DataFrame(index=pd.Index(speaker_ids, name=SPEAKER, dtype="string"))
    frame[ERRORS] = np.bincount(codes, weights=utt[ERRORS].to_numpy(np.float64), minlength=n).round().astype(np.int64)
    frame[REF_WORDS] = (
        np.bincount(codes, weights=utt[REF_WORDS].to_numpy(np.float64), minlength=n).round().astype(np.int64)
    )
    frame["utterances"] = np.bincount(codes, minlength=n).astype(np.int64)
    _add_utterance_level_sums(frame, utt, codes, n)
    conflicts: dict[str, int] = {}

    if LATITUDE in utt.columns and LONGITUDE in utt.columns:
        lat, lon, spread_conflicts = _median_coordinates(codes, n, utt[LATITUDE], utt[LONGITUDE])
        frame[LATITUDE] = lat
        frame[LONGITUDE] = lon
        conflicts["coordinates_over_50km"] = spread_conflicts
    if ZIP_CODE in utt.columns:
        frame[ZIP_CODE], conflicts["zip_code"] = _most_frequent(codes, n, utt[ZIP_CODE])
    metadata = [c for c in log.metadata_columns if c in utt.columns]
    for column in metadata:
        frame[column], conflicts[column] = _most_frequent(codes, n, utt[column])

    embeddings = None
    if log.embeddings is not None:
        embeddings = _speaker_embeddings(log.embeddings, codes, speaker_ids, utt)
    return SpeakerTable(frame=frame, metadata_columns=metadata, embeddings=embeddings, conflicts=conflicts)


def _median_coordinates(
    codes: np.ndarray, n: int, lat: pd.Series, lon: pd.Series
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-speaker median coordinates and the number of speakers whose points spread over 50 km.

    Most speakers have one location: their first located utterance gives it, and only the
    utterances of speakers whose coordinates vary go through the median (a group-by)."""
    lat_all, lon_all = lat.to_numpy(np.float64), lon.to_numpy(np.float64)
    located = ~np.isnan(lat_all) & ~np.isnan(lon_all)
    if located.all():  # the usual log: every row located, nothing to gather
        rows, row_codes, row_lat, row_lon = np.arange(len(codes)), codes, lat_all, lon_all
    else:
        rows = np.flatnonzero(located)
        row_codes, row_lat, row_lon = codes[rows], lat_all[rows], lon_all[rows]
    first = np.full(n, -1, dtype=np.int64)
    first[row_codes[::-1]] = rows[::-1]  # the last write wins: each speaker's first located row
    med_lat = np.where(first >= 0, lat_all[first], np.nan)
    med_lon = np.where(first >= 0, lon_all[first], np.nan)
    differs = (row_lat != med_lat[row_codes]) | (row_lon != med_lon[row_codes])
    moved = rows[:0]  # only utterances away from their speaker's median can be far from it
    if differs.any():
        varying = np.zeros(n, dtype=bool)
        varying[row_codes[differs]] = True
        subset = rows[varying[row_codes]]
        coords = pd.DataFrame({"lat": lat_all[subset], "lon": lon_all[subset], "code": codes[subset]})
        medians = coords.groupby("code", sort=True)[["lat", "lon"]].median()
        med_lat[medians.index.to_numpy()] = medians["lat"].to_numpy()
        med_lon[medians.index.to_numpy()] = medians["lon"].to_numpy()
        moved = rows[(row_lat != med_lat[row_codes]) | (row_lon != med_lon[row_codes])]
    distance = haversine_km(lat_all[moved], lon_all[moved], med_lat[codes[moved]], med_lon[codes[moved]])
    far = np.zeros(n, dtype=bool)
    far[codes[moved[distance > COORDINATE_CONFLICT_KM / 2]]] = True
    # Two points more than 50 km apart have at least one more than 25 km from the median;
    # confirm with the speaker's bounding-box diagonal to avoid over-counting.
    if far.any():
        subset = rows[far[row_codes]]
        coords = pd.DataFrame({"lat": lat_all[subset], "lon": lon_all[subset], "code": codes[subset]})
        box = coords.groupby("code").agg(
            lat_min=("lat", "min"), lat_max=("lat", "max"), lon_min=("lon", "min"), lon_max=("lon", "max")
        )
        diag = haversine_km(
            box["lat_min"].to_numpy(), box["lon_min"].to_numpy(), box["lat_max"].to_numpy(), box["lon_max"].to_numpy()
        )
        spread = int((diag > COORDINATE_CONFLICT_KM).sum())
    else:
        spread = 0
    return med_lat, med_lon, spread


DENSE_MODE_LIMIT = 20_000_000  # speakers x distinct values up to which a dense count table is used


def _most_frequent(codes: np.ndarray, n: int, values: pd.Series) -> tuple[pd.api.extensions.ExtensionArray, int]:
    """Per-speaker most frequent non-missing value (ties: the smallest value) and the number of
    speakers with more than one distinct value. Vectorised over integer value codes."""
    value_codes, uniques = pd.factorize(values, sort=False, use_na_sentinel=True)
    # Plain values (a categorical's own order is not the values' order), then re-code values by
    # their sort rank so that "smallest code" means "smallest value" when breaking ties.
    uniques = pd.Index(np.asarray(uniques, dtype=object) if isinstance(uniques.dtype, pd.CategoricalDtype) else uniques)
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[uniques.argsort()] = np.arange(len(uniques))
    keep = value_codes >= 0
    speaker = codes[keep].astype(np.int64)
    value = rank[value_codes[keep]]
    m = max(len(uniques), 1)
    best = np.full(n, -1, dtype=np.int64)
    if n * m <= DENSE_MODE_LIMIT:
        counts = np.bincount(speaker * m + value, minlength=n * m).reshape(n, m)
        has = counts.any(axis=1)
        best[has] = counts[has].argmax(axis=1)  # argmax: first maximum = smallest value
        distinct = (counts > 0).sum(axis=1)
    else:
        pairs, pair_counts = np.unique(speaker * m + value, return_counts=True)
        pair_speaker, pair_value = np.divmod(pairs, m)
        order = np.lexsort((pair_value, -pair_counts, pair_speaker))
        first = np.r_[True, pair_speaker[order][1:] != pair_speaker[order][:-1]]
        best[pair_speaker[order][first]] = pair_value[order][first]
        distinct = np.bincount(pair_speaker, minlength=n)
    by_rank = uniques[np.argsort(rank)] if len(uniques) else uniques
    chosen = by_rank.take(np.clip(best, 0, None)) if len(uniques) else pd.Index([None] * n)
    result = pd.Series(chosen, index=range(n)).where(best >= 0)
    if pd.api.types.is_numeric_dtype(values.dtype):
        result = pd.to_numeric(result, errors="coerce")
    else:
        result = result.astype("string")
    return result.array, int((distinct > 1).sum())


def _speaker_embeddings(
    table: EmbeddingTable, codes: np.ndarray, speaker_ids: pd.Index, utt: pd.DataFrame
) -> np.ndarray:
    """Mean vector per speaker, L2-normalised, as float32 (summed in float64); NaN rows where a
    speaker has no vector."""
    vectors = table.vectors
    if table.key == "row":
        row_codes = codes
    elif table.key == SPEAKER:
        row_codes = pd.Index(speaker_ids).get_indexer(pd.Index(table.ids))
    elif table.key == UTTERANCE:
        if UTTERANCE not in utt.columns:
            from fairaudit.errors import InputError

            raise InputError(
                "the embeddings are keyed by utterance_id but the log has no utterance_id column",
                file=table.source,
                column=UTTERANCE,
            )
        position = pd.Index(utt[UTTERANCE]).get_indexer(pd.Index(table.ids))
        row_codes = np.where(position >= 0, codes[np.clip(position, 0, None)], -1)
    else:  # pragma: no cover - guarded by the EmbeddingTable type
        raise ValueError(table.key)
    keep = row_codes >= 0
    if table.key == SPEAKER:  # one vector per speaker (ids are unique): the mean is the vector
        return _unit_speaker_vectors(vectors, np.flatnonzero(keep), row_codes[keep], len(speaker_ids))
    return unit_mean_vectors(vectors[keep], row_codes[keep], len(speaker_ids))


#: Vectors normalised at once by :func:`_unit_speaker_vectors` (bounds its float64 working copy).
UNIT_BLOCK_ROWS = 65_536


def _unit_speaker_vectors(vectors: np.ndarray, rows: np.ndarray, speakers: np.ndarray, n: int) -> np.ndarray:
    """(n, d) float32: row ``rows[i]`` of ``vectors``, L2-normalised, for speaker ``speakers[i]``; NaN rows
    for speakers without a vector. Block by block, so no (n, d) float64 copy is made (1.5 GiB at a
    million speakers x 192 dimensions); each row is computed exactly as :func:`_unit_rows` does."""
    result = np.full((n, vectors.shape[1]), np.nan, dtype=np.float32)
    for start in range(0, len(rows), UNIT_BLOCK_ROWS):
        block = slice(start, start + UNIT_BLOCK_ROWS)
        result[speakers[block]] = _unit_rows(np.asarray(vectors[rows[block]], dtype=np.float64))
    return result


def unit_mean_vectors(vectors: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
    """(n, d) float32: the mean of the vectors with each code 0..n-1, L2-normalised (summed in float64,
    in row order); NaN rows for codes with no vector. A speaker's embedding from its utterances' vectors."""
    sums = np.zeros((n, vectors.shape[1]))
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    if len(sorted_codes):
        starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
        sums[sorted_codes[starts]] = np.add.reduceat(np.asarray(vectors, dtype=np.float64)[order], starts, axis=0)
    return _unit_rows(sums)


def _unit_rows(sums: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (sums / norms).astype(np.float32)
    result[norms[:, 0] == 0] = np.nan
    return result


def _add_utterance_level_sums(frame: pd.DataFrame, utt: pd.DataFrame, codes: np.ndarray, n: int) -> None:
    """Per-speaker sums that need the utterances themselves: per-utterance WERs (for their mean,
    labelled as such) and, when the log has them, substitutions, deletions, insertions and
    empty hypotheses (a hypothesis with no words for a reference with some)."""
    errors = utt[ERRORS].to_numpy(np.float64)
    words = utt[REF_WORDS].to_numpy(np.float64)
    scored = words > 0
    per_utterance = np.divide(errors, words, out=np.zeros_like(errors), where=scored)
    frame[UTTERANCE_WER_SUM] = np.bincount(codes, weights=per_utterance, minlength=n)
    frame[SCORED_UTTERANCES] = np.bincount(codes, weights=scored, minlength=n).round().astype(np.int64)
    if not all(kind in utt.columns for kind in ANATOMY):
        return
    for kind in ANATOMY:
        frame[kind] = np.bincount(codes, weights=utt[kind].to_numpy(np.float64), minlength=n).round().astype(np.int64)
    hypothesis_words = words - utt[DELETIONS].to_numpy(np.float64) + utt[INSERTIONS].to_numpy(np.float64)
    empty = scored & (hypothesis_words == 0)
    frame[EMPTY_HYPOTHESES] = np.bincount(codes, weights=empty, minlength=n).round().astype(np.int64)


def build_utterance_table(log: UtteranceLog, columns: list[str]) -> SpeakerTable:
    """The utterance-level table of ``columns`` (SPEC 10): one row per speaker and combination of
    the columns' values, holding that speaker's utterances with those values. A speaker whose
    device varies counts in each device's cohort with exactly those utterances."""
    utt = log.frame
    if log.speaker_codes is not None and len(log.speaker_codes) == len(utt):
        codes, speaker_ids = log.speaker_codes, log.speaker_ids
    else:
        codes, speaker_ids = pd.factorize(utt[SPEAKER], sort=True)
    keys = pd.DataFrame({"__speaker": codes, **{column: utt[column] for column in columns}})
    unit = keys.groupby(["__speaker", *columns], dropna=False, sort=True, observed=True).ngroup().to_numpy()
    n = int(unit.max()) + 1 if len(unit) else 0
    first = np.unique(unit, return_index=True)[1]
    frame = pd.DataFrame(index=pd.Index(np.asarray(speaker_ids)[codes[first]], name=SPEAKER, dtype="string"))
    frame[ERRORS] = np.bincount(unit, weights=utt[ERRORS].to_numpy(np.float64), minlength=n).round().astype(np.int64)
    frame[REF_WORDS] = (
        np.bincount(unit, weights=utt[REF_WORDS].to_numpy(np.float64), minlength=n).round().astype(np.int64)
    )
    frame["utterances"] = np.bincount(unit, minlength=n).astype(np.int64)
    _add_utterance_level_sums(frame, utt, unit, n)
    for column in columns:
        frame[column] = utt[column].iloc[first].to_numpy()
    return SpeakerTable(frame=frame, metadata_columns=list(columns), clusters=np.asarray(codes[first], dtype=np.int64))
