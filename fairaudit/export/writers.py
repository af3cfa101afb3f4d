"""Files of ``fairaudit export``: tables (CSV or Parquet), utterance lists and manifests (NeMo, Lhotse).

Every file is written atomically; these files hold speaker and utterance ids (training data).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.export.training import TrainingExport
from fairaudit.io.outputs import replace_atomically, write_atomically
from fairaudit.model.log import SPEAKER, UTTERANCE, UtteranceLog


def write_export(export: TrainingExport, log: UtteranceLog, directory: Path, table_format: str = "csv") -> list[Path]:
    """Write every export file into ``directory`` (created if needed); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("speakers", export.speakers), ("utterances", export.utterances)):
        path = directory / f"{name}.{table_format}"
        if table_format == "parquet":
            replace_atomically(path, _parquet_writer(frame))
        else:
            write_atomically(path, frame.to_csv(index=False))
        written.append(path)
    ids = export.utterances[UTTERANCE] if UTTERANCE in export.utterances else pd.Series(export.utterances.index)
    for role in ("target", "protect"):
        path = directory / f"{role}_utterances.txt"
        chosen = ids[export.utterances["role"] == role].astype(str)
        write_atomically(path, "".join(f"{value}\n" for value in chosen))
        written.append(path)
    if UTTERANCE in export.utterances:
        written += _manifests(export, log, directory)
    return written


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    def write(temporary: Path) -> None:
        frame.to_parquet(temporary, index=False)

    return write


def _manifests(export: TrainingExport, log: UtteranceLog, directory: Path) -> list[Path]:
    """A NeMo manifest and Lhotse supervisions (JSON lines) carrying each utterance's weight and group."""
    frame = export.utterances
    duration = log.frame["duration"].to_numpy() if "duration" in log.frame else np.full(len(frame), np.nan)
    group = frame[f"{export.method}:group"].to_numpy()
    nemo, lhotse = [], []
    for i, (utterance, speaker, weight) in enumerate(zip(frame[UTTERANCE], frame[SPEAKER], frame["weight"])):
        seconds = None if pd.isna(duration[i]) else float(duration[i])
        common = {"weight": float(weight), "fairaudit_group": int(group[i])}
        nemo.append({"audio_filepath": str(utterance), "duration": seconds, "speaker": str(speaker), **common})
        lhotse.append(
            {
                "id": str(utterance),
                "recording_id": str(utterance),
                "start": 0.0,
                "duration": seconds,
                "channel": 0,
                "speaker": str(speaker),
                "custom": common,
            }
        )
    written = []
    for name, rows in (("manifest.nemo.jsonl", nemo), ("supervisions.lhotse.jsonl", lhotse)):
        path = directory / name
        write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        written.append(path)
    return written
