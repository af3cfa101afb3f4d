"""Shared fixtures and markers for the whole suite.

Layout: ``unit/`` (one module at a time, hand-made inputs), ``contract/`` (every registered method
passes the same estimator checks), ``integration/`` (CLI, reports, pinned outputs, engines),
``external/`` (needs something outside this repository: Chromium, or the real data in
``../shared/data``). Markers: ``browser``, ``shared_data``, ``cluster`` (select with ``-m``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))  # cli_runner, importable from every sub-folder

from cli_runner import run_main  # noqa: E402


@pytest.fixture(scope="session")
def synth_600(tmp_path_factory) -> Path:
    """Folder with a 600-speaker log written by ``fairaudit synth --seed 1`` (log.csv, log.embeddings.parquet)."""
    directory = tmp_path_factory.mktemp("synth600")
    done = run_main("synth", "-o", directory / "log.csv", "--speakers", 600, "--seed", 1)
    assert done.code == 0, done.stderr
    return directory


@pytest.fixture(scope="session")
def log(synth_600) -> Path:
    return synth_600 / "log.csv"


@pytest.fixture(scope="session")
def emb(synth_600) -> Path:
    return synth_600 / "log.embeddings.parquet"


@pytest.fixture(scope="session")
def frame(log) -> pd.DataFrame:
    """The 600-speaker log as read independently of fairaudit (ids and ZIP codes kept as text)."""
    return pd.read_csv(log, dtype={"speaker_id": str, "utterance_id": str, "zip_code": str})
