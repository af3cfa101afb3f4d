"""Test inputs shared by several test modules: hand-made logs and the real Artie data (../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def grouped_log(n_speakers=1200, effect=0.5, seed=0, scale=None):
    """Groups g0..g3; g0 has WER x (1 + effect). `scale` multiplies each group's error rate."""
    rng = np.random.default_rng(seed)
    group = np.arange(n_speakers) % 4
    factor = (
        np.where(group == 0, 1 + effect, 1.0) * np.array([(scale or {}).get(f"g{g}", 1.0) for g in range(4)])[group]
    )
    rate = np.clip(0.1 * factor, 0, 1)
    speaker = np.repeat(np.arange(n_speakers), 8)
    words = rng.integers(2, 8, len(speaker))
    return pd.DataFrame(
        {
            "speaker_id": [f"s{i:05d}" for i in speaker],
            "group": [f"g{g}" for g in group[speaker]],
            "errors": rng.binomial(words, rate[speaker]),
            "ref_words": words,
        }
    )


def accent_groups_log(groups: dict[str, tuple[int, float]], seed: int = 0, words: int = 300) -> pd.DataFrame:
    """One utterance of ``words`` words per speaker; ``groups``: accent -> (speakers, error rate).
    E.g. {"a": (60, 0.12), "b": (60, 0.06), "c": (5, 0.08)}: two reportable groups and one to suppress."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"{group}{i}", group, int(rng.binomial(words, rate)), words)
        for group, (n, rate) in groups.items()
        for i in range(n)
    ]
    return pd.DataFrame(rows, columns=["speaker_id", "accent", "errors", "ref_words"])


#: The Artie bias corpus with three commercial recognisers' output (see ../shared/data/README).
ARTIE = Path(__file__).resolve().parents[2] / "shared" / "data" / "artie-bias-corpus"
SYSTEMS = sorted(p.stem for p in (ARTIE / "predictions").glob("*.tsv"))
COLUMNS = {"speaker_id": "client_id", "utterance_id": "path", "reference": "sentence", "hypothesis": "prediction"}


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)


def artie_log(system: str) -> pd.DataFrame:
    """The corpus joined with one system's predictions on the clip's file stem (.mp3 vs .wav)."""
    corpus = read_tsv(ARTIE / "artie-bias-corpus.tsv")
    predictions = read_tsv(ARTIE / "predictions" / f"{system}.tsv")
    corpus["stem"] = corpus["path"].str.rsplit(".", n=1).str[0]
    predictions["stem"] = predictions["path"].str.rsplit(".", n=1).str[0]
    merged = corpus.merge(predictions[["stem", "prediction"]], on="stem", how="inner", validate="one_to_one")
    return merged.drop(columns=["stem", "up_votes", "down_votes"])
