"""Files of ``fairaudit export``: tables (CSV or Parquet), utterance lists and manifests (NeMo, Lhotse).

Every file is written atomically; these files hold speaker and utterance ids (training data).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.export.training import TrainingExport
from fairaudit.io.outputs import write_atomically, write_parquet_atomically
from fairaudit.model.log import SPEAKER, UTTERANCE, UtteranceLog


def write_export(export: TrainingExport, log: UtteranceLog, directory: Path, table_format: str = "csv") -> list[Path]:
    """Write every export file into ``directory`` (created if needed); return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in (("speakers", export.speakers), ("utterances", export.utterances)):
        path = directory / f"{name}.{table_format}"
        if table_format == "parquet":
            write_parquet_atomically(path, frame)
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


def _manifests(export: TrainingExport, log: UtteranceLog, directory: Path) -> list[Path]:
    """A NeMo manifest and Lhotse supervisions (JSON lines) carrying each utterance's weight and
    group, serialised by pandas (no Python loop over utterances)."""
    frame = export.utterances
    duration = log.frame["duration"].to_numpy(dtype=np.float64) if "duration" in log.frame else np.nan
    ids, speakers = frame[UTTERANCE].astype(str).to_numpy(), frame[SPEAKER].astype(str).to_numpy()
    common = pd.DataFrame(
        {"weight": frame["weight"].astype(float), "fairaudit_group": frame[f"{export.method}:group"].astype(int)}
    )
    nemo = pd.DataFrame({"audio_filepath": ids, "duration": duration, "speaker": speakers}).join(common)
    lhotse = pd.DataFrame(
        {
            "id": ids,
            "recording_id": ids,
            "start": 0.0,
            "duration": duration,
            "channel": 0,
            "speaker": speakers,
            "custom": common.to_dict("records"),
        }
    )
    written = []
    for name, table in (("manifest.nemo.jsonl", nemo), ("supervisions.lhotse.jsonl", lhotse)):
        path = directory / name
        text = table.to_json(orient="records", lines=True, force_ascii=False, double_precision=15)
        write_atomically(path, text if text.endswith("\n") else text + "\n")
        written.append(path)
    return written
