"""The Python API (SPEC 7): ``fairaudit.audit`` and ``fairaudit.compare``.

Each call reads the log (:func:`load_log`: pandas or Dask engine), builds the speaker table and
hands it to the pipeline (:mod:`fairaudit.pipeline.audit`); the CLI follows the same path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fairaudit.comparison.two_systems import Comparison
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.errors import InputError, UsageError
from fairaudit.model.log import UtteranceLog
from fairaudit.options import AuditOptions
from fairaudit.pipeline.audit import run_audit, run_stored_audit
from fairaudit.report.result import AuditResult
from fairaudit.version import __version__


def audit_options(options: dict[str, Any], methods: Sequence[str] | None = None) -> AuditOptions:
    """Checked :class:`AuditOptions` from keyword arguments (a single ``by`` string is a list of one)."""
    if isinstance(options.get("by"), str):
        options["by"] = [options["by"]]
    if methods is not None:
        options["methods"] = list(methods)
    return AuditOptions(**options)


def audit(
    data: str | Path | pd.DataFrame | UtteranceLog,
    methods: Sequence[str] | None = None,
    *,
    columns: dict[str, str] | None = None,
    embeddings: str | Path | pd.DataFrame | None = None,
    normalize: str = "default",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    engine: str = "pandas",
    scheduler: str | None = None,
    blocksize: int | str | None = None,
    cohorts: str | Path | dict | None = None,
    reference: str | Path | None = None,
    speaker_pattern: str | None = None,
    **options: object,
) -> AuditResult:
    """Audit an utterance log (path, DataFrame or UtteranceLog) and return an :class:`AuditResult`.

    ``options`` are the fields of :class:`AuditOptions` (``by``, ``min_speakers``, ``seed``, ...).
    ``engine="dask"`` reads ``data`` (a file, a directory or a glob pattern such as
    ``"logs/*.parquet"``, local or an fsspec URL) on Dask: on the cluster at ``scheduler`` (an
    address such as ``"tcp://dask-scheduler:8786"``) or on local threads; ``blocksize`` (bytes or "64MB")
    splits large uncompressed CSV/TSV files. The results equal the pandas engine's.

    ``cohorts`` (an audit report written by ``to_json``/``--json``, as a path or a dict) measures
    the log on that report's stored cohort definitions instead of discovering new ones (SPEC 9).
    ``reference`` (a NIST trn file) makes ``data`` its hypothesis trn; ``speaker_pattern`` is the
    regular expression whose first group takes the speaker from each utterance id.
    """
    opts = audit_options(options, methods)
    log = load_log(
        data,
        columns=columns,
        embeddings=embeddings,
        normalize=normalize,
        engine=engine,
        scheduler=scheduler,
        blocksize=blocksize,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    if engine == "dask":
        from fairaudit.engines import speaker_table_of

        speakers = speaker_table_of(log)  # built on Dask while reading
    else:
        speakers = build_speaker_table(log)
    if cohorts is not None:
        return run_stored_audit(log, speakers, opts, cohorts)
    return run_audit(log, speakers, opts, progress=progress)


def compare(
    baseline: str | Path | pd.DataFrame | UtteranceLog,
    new: str | Path | pd.DataFrame | UtteranceLog,
    *,
    cohorts: str | Path | dict | None = None,
    pairing: str = "auto",
    columns: dict[str, str] | None = None,
    embeddings: str | Path | pd.DataFrame | None = None,
    normalize: str = "default",
    reference: str | Path | None = None,
    speaker_pattern: str | None = None,
    **options: object,
) -> Comparison:
    """Compare two systems on the same cohorts (SPEC 9).

    Returns a :class:`~fairaudit.comparison.two_systems.Comparison`.

    Cohorts come from ``cohorts`` (an audit report) or are discovered on ``baseline``; both logs
    are measured on them. ``pairing``: "auto" (paired when utterance ids match), "paired" or
    "unpaired". ``embeddings`` applies to both logs (the same speakers).
    """
    from fairaudit.comparison.two_systems import cohort_report_for, compare_logs

    if pairing not in ("auto", "paired", "unpaired"):
        raise UsageError("pairing must be 'auto', 'paired' or 'unpaired'")
    opts = audit_options(options)
    if opts.holdout and cohorts is not None:
        raise UsageError(
            "--holdout with --cohorts: the stored cohorts are not discovered here; measure on the held-out speakers "
            "by auditing each log with --cohorts and the same --holdout and --seed"
        )
    inputs = dict(
        columns=columns,
        embeddings=embeddings,
        normalize=normalize,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    before = load_log(baseline, **inputs)  # type: ignore[arg-type]
    after = load_log(new, **inputs)  # type: ignore[arg-type]
    report, where = cohort_report_for(before, cohorts, opts)
    comparison = compare_logs(before, after, report, where, opts, pairing=pairing)
    comparison.parameters = dict(
        opts.as_parameters(),
        pairing=pairing,
        cohorts=None if cohorts is None or isinstance(cohorts, dict) else str(cohorts),
    )
    comparison.version = __version__
    comparison.cohorts_from = where
    return comparison


def load_log(
    data,
    *,
    columns=None,
    embeddings=None,
    normalize="default",
    engine="pandas",
    scheduler=None,
    blocksize=None,
    reference=None,
    speaker_pattern=None,
) -> UtteranceLog:
    """Turn a path, DataFrame or UtteranceLog into a validated UtteranceLog.

    With ``engine="dask"`` ``data`` is a file, directory or glob pattern and the result is a
    :class:`~fairaudit.engines.ShardedLog` that already holds its speaker table
    (``fairaudit.engines.speaker_table_of(log)``).
    """
    from fairaudit.engines import check_engine, is_pattern
    from fairaudit.io import readers

    check_engine(engine, scheduler, blocksize)
    if engine == "dask":
        if isinstance(data, (pd.DataFrame, UtteranceLog)):
            raise UsageError(
                "engine='dask' reads files: give a path, a directory or a glob pattern such as 'logs/*.csv'"
            )
        from fairaudit.engines.dask_engine import read_log_dask

        return read_log_dask(
            data, columns=columns, normalize=normalize, embeddings=embeddings, scheduler=scheduler, blocksize=blocksize
        )
    if isinstance(data, UtteranceLog):
        return data
    if isinstance(data, (str, Path)) and is_pattern(data) and not Path(data).exists():
        import glob

        if not glob.glob(str(data)):
            raise InputError("no such file (and, read as a pattern of file names, it matches none)", file=str(data))
        raise UsageError(f"{data} is a pattern of many files; read it with --engine dask (engine='dask')")
    if isinstance(data, pd.DataFrame):
        return readers.log_from_frame(data, columns=columns, normalize=normalize, embeddings=embeddings)
    return readers.read_log(
        data,
        columns=columns,
        normalize=normalize,
        embeddings=embeddings,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
