"""A seeded fuzz test of the CSV and Parquet readers (issue 11): whatever the file holds, fairaudit
answers with exit 0 or 2, never exit 3 or a traceback, and never changes the input file."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_runner import run_main

NASTY = [
    "",
    " ",
    "NA",
    "nan",
    "-1",
    "1.5",
    "1e309",
    "-inf",
    "0x1f",
    "１２",
    "9" * 30,
    "\x00",
    "\x1b[2J",
    "a,b",
    '"q"',
    "1;2",
    "\u202e",
    "é",
    "true",
    "None",
    "[1, 2]",
    '{"a": 1}',
    "18446744073709551617",
    "-0",
    "+3",
    ".5e1",
]
COLUMNS = [
    "speaker_id",
    "utterance_id",
    "errors",
    "ref_words",
    "latitude",
    "longitude",
    "zip_code",
    "accent",
    "wer",
    "substitutions",
    "deletions",
    "insertions",
    "reference",
    "hypothesis",
    "emb_0",
    "emb_1",
]
CASES = 60


def random_log(rng: np.random.Generator) -> pd.DataFrame:
    """A plausible log with a random subset of columns, then random cells replaced by nasty values."""
    n = int(rng.integers(1, 80))
    frame = pd.DataFrame(
        {
            "speaker_id": [f"s{i % max(1, n // 3)}" for i in range(n)],
            "utterance_id": [f"u{i}" for i in range(n)],
            "errors": rng.integers(0, 5, n),
            "ref_words": rng.integers(1, 9, n),
            "latitude": rng.uniform(25, 48, n),
            "longitude": rng.uniform(-120, -70, n),
            "zip_code": rng.choice(["02134", "10001", "94103", "60601"], n),
            "accent": rng.choice(["a", "b", "c"], n),
            "wer": rng.uniform(0, 1, n),
            "substitutions": rng.integers(0, 3, n),
            "deletions": rng.integers(0, 2, n),
            "insertions": rng.integers(0, 2, n),
            "reference": rng.choice(["hello world", "a b c", ""], n),
            "hypothesis": rng.choice(["hello word", "a c", ""], n),
            "emb_0": rng.normal(size=n),
            "emb_1": rng.normal(size=n),
        }
    )
    keep = [c for c in COLUMNS if rng.random() < 0.7 or c in ("speaker_id",)]
    frame = frame[keep].astype(object)
    for _ in range(int(rng.integers(0, 6))):
        frame.iat[int(rng.integers(0, n)), int(rng.integers(0, len(keep)))] = NASTY[int(rng.integers(0, len(NASTY)))]
    return frame


def check(run, path, before: str, case: int) -> None:
    assert run.code in (0, 2), (case, run.code, run.stderr[-500:])
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, (case, run.stderr[-500:])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, case


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_fuzzed_logs_get_exit_0_or_2_and_stay_unchanged(tmp_path, kind):
    rng = np.random.default_rng(20261130 if kind == "csv" else 7)
    for case in range(CASES):
        frame = random_log(rng)
        path = tmp_path / f"case{case}.{kind}"
        if kind == "csv":
            frame.to_csv(path, index=False)
        else:
            try:  # mixed-type object columns: write each column as text or numbers, whichever Arrow takes
                table = pa.Table.from_pandas(frame, preserve_index=False)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                table = pa.Table.from_pandas(frame.astype(str), preserve_index=False)
            pq.write_table(table, path)
        before = hashlib.sha256(path.read_bytes()).hexdigest()
        check(run_main("validate", path), path, before, case)
        check(
            run_main("audit", path, "--by", "accent", "--bootstrap", 0, "--permutations", 0, "-q", "--min-speakers", 2),
            path,
            before,
            case,
        )
