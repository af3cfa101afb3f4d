"""Ingestion engines: how an utterance log becomes a validated log and a speaker table.

``pandas`` (the default) reads one file into memory with :mod:`fairaudit.io.readers` and aggregates it
with :func:`fairaudit.engines.speaker_table.build_speaker_table`. ``dask`` (:mod:`fairaudit.engines.dask_engine`)
reads a glob of CSV/TSV/Parquet files (or one large file in blocks) on a Dask scheduler, validates
every piece with the same ingest code, shuffles the rows so each speaker's utterances meet in one
partition and runs the same speaker aggregation per partition. Everything after the speaker table is
the same for both engines, and so are the results. :mod:`fairaudit.engines.threads` runs the
independent analysis stages of one audit (the permutation tests, the bootstrap) on the available cores.

This module does not import Dask: ``import fairaudit`` must work without it (it is the optional
extra ``fairaudit[dask]``).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

from fairaudit.errors import UsageError
from fairaudit.model.log import UtteranceLog
from fairaudit.model.speakers import SpeakerTable

ENGINES = ("pandas", "dask")


def check_engine(engine: str, scheduler: str | None = None, blocksize: object = None) -> None:
    """UsageError for an unknown engine, or for Dask-only options given to the pandas engine."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}: choose pandas or dask")
    if engine != "dask":
        if scheduler:
            raise UsageError("--scheduler ADDRESS connects to a Dask cluster: it needs --engine dask")
        if blocksize is not None:
            raise UsageError("--blocksize splits files for Dask: it needs --engine dask")


def is_pattern(path: str | Path) -> bool:
    """True if ``path`` holds glob wildcards (``*``, ``?``, ``[``)."""
    return glob.has_magic(str(path))


@dataclass
class ShardedLog(UtteranceLog):
    """A log read by the Dask engine: the rows stay in their files, the speakers are aggregated.

    ``frame`` has the canonical columns but no rows; ``n_utterances`` is the number of rows read;
    ``speaker_table`` is the speaker table (identical to ``build_speaker_table`` on the whole log);
    ``files`` are the files read, in the order their rows count as concatenated.
    """

    utterance_count: int = 0
    speaker_table: SpeakerTable | None = None
    files: list[str] = field(default_factory=list)

    @property
    def n_utterances(self) -> int:  # type: ignore[override]
        return self.utterance_count


def speaker_table_of(log: UtteranceLog) -> SpeakerTable:
    """The speaker table of a log: already built for a ShardedLog, else built now."""
    if isinstance(log, ShardedLog) and log.speaker_table is not None:
        return log.speaker_table
    from fairaudit.engines.speaker_table import build_speaker_table

    return build_speaker_table(log)
