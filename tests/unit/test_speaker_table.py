"""The speaker table's fast paths (issue 12) against plain pandas group-bys computed here."""

import numpy as np
import pandas as pd

from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.io.readers import log_from_frame


def test_median_coordinates_and_codes_match_pandas_on_mixed_speakers():
    rng = np.random.default_rng(5)
    n_rows, n_speakers = 20_000, 700
    speaker = rng.integers(0, n_speakers, n_rows)
    home_lat, home_lon = rng.uniform(25, 49, n_speakers), rng.uniform(-124, -67, n_speakers)
    lat, lon = home_lat[speaker].copy(), home_lon[speaker].copy()
    movers = np.isin(speaker, np.arange(0, n_speakers, 7))  # every 7th speaker reports varying points
    lat[movers] += rng.normal(0, 0.5, movers.sum())
    lon[movers] += rng.normal(0, 0.5, movers.sum())
    lat[rng.random(n_rows) < 0.05] = np.nan  # some utterances without a location
    lon[np.isnan(lat)] = np.nan
    ids = np.array([f"spk-{i:04d}" if i % 3 else f"Spk é{i}" for i in range(n_speakers)])
    frame = pd.DataFrame(
        {
            "speaker_id": ids[speaker],
            "errors": rng.integers(0, 5, n_rows),
            "ref_words": rng.integers(5, 20, n_rows),
            "latitude": lat,
            "longitude": lon,
        }
    )
    table = build_speaker_table(log_from_frame(frame))
    expected = frame.groupby("speaker_id").agg(
        latitude=("latitude", "median"),
        longitude=("longitude", "median"),
        errors=("errors", "sum"),
        ref_words=("ref_words", "sum"),
    )
    expected = expected.sort_index()
    assert list(table.frame.index) == sorted(expected.index)  # code point order, as Python sorts
    got = table.frame.loc[expected.index]
    np.testing.assert_allclose(got["latitude"].to_numpy(float), expected["latitude"].to_numpy(), equal_nan=True)
    np.testing.assert_allclose(got["longitude"].to_numpy(float), expected["longitude"].to_numpy(), equal_nan=True)
    assert (got["errors"].to_numpy() == expected["errors"].to_numpy()).all()
    assert (got["ref_words"].to_numpy() == expected["ref_words"].to_numpy()).all()


def test_speaker_keyed_embeddings_are_each_speakers_unit_vector(tmp_path, monkeypatch):
    import fairaudit.engines.speaker_table as speaker_table

    monkeypatch.setattr(speaker_table, "UNIT_BLOCK_ROWS", 7)  # several blocks on a small table
    rng = np.random.default_rng(2)
    speakers = [f"s{i:02d}" for i in range(40)]
    frame = pd.DataFrame({"speaker_id": np.repeat(speakers, 2), "errors": 1, "ref_words": 10})
    vectors = rng.normal(size=(45, 6)).astype(np.float32)
    ids = speakers[::-1][:35] + [f"not-in-log-{i}" for i in range(10)]  # other order; 5 speakers missing
    emb = pd.DataFrame(vectors, columns=[f"emb_{j}" for j in range(6)])
    emb.insert(0, "speaker_id", ids)
    path = tmp_path / "emb.parquet"
    emb.to_parquet(path)
    table = build_speaker_table(log_from_frame(frame, embeddings=path))
    got = pd.DataFrame(table.embeddings, index=table.frame.index)
    for position, speaker in enumerate(ids[:35]):
        vector = vectors[position].astype(np.float64)
        np.testing.assert_allclose(got.loc[speaker], vector / np.sqrt((vector**2).sum()), rtol=1e-6)
    for speaker in speakers[:5]:  # the five speakers the file has no vector for
        assert np.isnan(got.loc[speaker]).all()
