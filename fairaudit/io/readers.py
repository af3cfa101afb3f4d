"""Reading and validating utterance logs, embeddings files and demographics tables (SPEC section 2).

Formats by extension: ``.csv``, ``.tsv``, ``.csv.gz`` / ``.tsv.gz`` (gzip), ``.parquet``; embeddings
also ``.npy`` with a sidecar id list. CSV files follow RFC 4180 quoting; TSV files have no quoting
(a ``"`` is an ordinary character, as in Common Voice and Kaldi files), so a TSV value can not hold
a tab or a newline.

Every problem with the input is an :class:`~fairaudit.errors.InputError` naming the file, the line
(1-based, as a text editor shows it: the header is line 1; the line where the offending record
starts, so quoted multi-line values and blank lines are accounted for), the column as it is named in
the file and the value as written in the file. For Parquet and ``.npy`` files ``line`` is the
1-based row number and the message says "row". The happy path is vectorised (pyarrow's
multi-threaded CSV reader and Arrow compute); only after a vectorised check has found a problem is
the file scanned again, row by row, to name the line and the raw value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa

from fairaudit.errors import InputError, UsageError
from fairaudit.io.asr_formats import (
    directory_sha256,
    is_kaldi_directory,
    is_nemo_manifest,
    is_trn,
    read_kaldi_directory,
    read_nemo_manifest,
    read_trn_pair,
)
from fairaudit.io.embeddings import attach_embeddings
from fairaudit.io.sources import (
    FileFormat,
    Source,
    check_header,
    check_mapping,
    file_sha256,
    frame_to_table,
    name_of,
    read_table,
    source_for,
)
from fairaudit.model.log import ERRORS, REF_WORDS, UtteranceLog
from fairaudit.text.scoring import check_normalize
from fairaudit.validate.column_rules import CANONICAL_COLUMNS
from fairaudit.validate.log_columns import canonical_log, implausible_wer_notes


def read_log(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    normalize: str = "default",
    embeddings: str | Path | None = None,
    reference: str | Path | None = None,
    speaker_pattern: str | None = None,
) -> UtteranceLog:
    """Read and validate an utterance log (CSV/TSV/gzip/Parquet, NeMo manifest, Kaldi directory, or
    a hypothesis trn with its ``reference`` trn) into canonical form.

    ``columns`` maps canonical names to the file's names (``--column canonical=actual``);
    ``normalize`` is the text normalisation for the reference/hypothesis form; ``embeddings`` is an
    optional ``--embeddings FILE``. The input file is only read, never changed.
    """
    check_normalize(normalize)
    if is_trn(path) or reference is not None:
        if not (is_trn(path) and reference is not None):
            raise UsageError("a NIST trn log is a hypothesis .trn file with --reference REF.trn (both needed)")
        log = _read_asr_format(Path(path), columns, normalize, Path(reference), speaker_pattern)
        return _with_embeddings(_with_wer_note(log), embeddings)
    if is_kaldi_directory(path) and speaker_pattern:
        raise UsageError("--speaker-pattern does not apply to a Kaldi directory: its speakers come from utt2spk")
    if is_kaldi_directory(path) or is_nemo_manifest(path):
        log = _read_asr_format(Path(path), columns, normalize, speaker_pattern=speaker_pattern)
        return _with_embeddings(_with_wer_note(log), embeddings)
    if Path(path).is_dir():
        raise InputError(
            "this is a folder: as a Kaldi data directory it needs text, utt2spk and hyp files; a folder of "
            "CSV or Parquet logs is read with --engine dask",
            file=str(path),
        )
    try:
        src = source_for(path)
    except InputError as error:
        if error.message.startswith("unknown file type"):
            error.message = f"{error.message}; or {OTHER_LOG_FORMATS}"
        raise
    table, rename = read_table(src, columns=columns)
    # hashlib releases the GIL: hash while the (mostly one-threaded) checks run, not during pyarrow's
    # parse, which already uses every core; the file is in the page cache by now.
    with ThreadPoolExecutor(max_workers=1) as pool:
        digest = pool.submit(file_sha256, path)
        log = canonical_log(table, rename, src, normalize)
        log.path = str(path)
        log.sha256 = digest.result()
    del table
    log = _with_embeddings(_with_wer_note(log), embeddings)
    # Arrow's allocator keeps the pages of the parser's blocks and of the checks' temporaries (1.3 GiB
    # for a 10-million-row log whose frame holds 0.8 GiB): give them back before the analysis (9 ms).
    pa.default_memory_pool().release_unused()
    return log


#: The log formats beside CSV/TSV/Parquet, for the message about an unknown extension.
OTHER_LOG_FORMATS = (
    "a NeMo manifest (.json, .jsonl), a NIST hypothesis .trn file with --reference REF.trn, or a Kaldi data "
    "directory (text, utt2spk, hyp)"
)


def _with_wer_note(log: UtteranceLog) -> UtteranceLog:
    """The log with a note when its overall WER is implausible (:func:`implausible_wer_notes`)."""
    log.notes += implausible_wer_notes(log.frame[ERRORS].to_numpy(), log.frame[REF_WORDS].to_numpy(), log.error_form)
    return log


def _with_embeddings(log: UtteranceLog, embeddings: str | Path | None) -> UtteranceLog:
    """Attach an --embeddings file, unless the log already has inline emb_* columns (an error)."""
    if embeddings is not None:
        if log.embeddings is not None:
            raise InputError(
                "the log has inline emb_* columns and --embeddings was also given; use one of them",
                file=name_of(embeddings),
            )
        log.embeddings = attach_embeddings(log, embeddings)
    return log


def _read_asr_format(
    path: Path,
    columns: Mapping[str, str] | None,
    normalize: str,
    reference: Path | None = None,
    speaker_pattern: str | None = None,
) -> UtteranceLog:
    """A NeMo manifest, Kaldi directory or trn pair, validated like a CSV; errors name file and line."""
    if reference is not None:
        frame, src, notes = read_trn_pair(path, reference, speaker_pattern)
        sha = hashlib.sha256((file_sha256(path) + file_sha256(reference)).encode()).hexdigest()
    elif is_kaldi_directory(path):
        frame, src, notes = read_kaldi_directory(path)
        sha = directory_sha256(path)
    else:
        roles = {"reference", "hypothesis"}
        frame, src, notes = read_nemo_manifest(
            path,
            {actual: canonical for canonical, actual in (columns or {}).items() if canonical in roles},
            speaker_pattern=speaker_pattern,
        )
        sha = file_sha256(path)
    for name in ("speaker_id", "utterance_id", "reference", "hypothesis", *(columns or {}).values()):
        if name in frame.columns:  # ids and text as written (a numeric speaker key stays "007"-safe text)
            values = frame[name]
            frame[name] = values.where(values.isna(), values.astype(str))
    table = frame_to_table(frame, src)
    src.header = list(table.column_names)
    rename = check_mapping(src, columns, CANONICAL_COLUMNS)
    log = canonical_log(table, rename, src, normalize)
    log.notes = notes + log.notes
    log.path = str(path)
    log.sha256 = sha
    return log


def log_from_frame(
    frame: pd.DataFrame,
    *,
    columns: Mapping[str, str] | None = None,
    normalize: str = "default",
    embeddings: str | Path | None = None,
) -> UtteranceLog:
    """Validate an in-memory DataFrame as an utterance log (for ``fairaudit.audit(frame)``).

    Same rules as :func:`read_log`; errors name the 1-based DataFrame row in the message
    (``line`` is None). ``path`` and ``sha256`` stay None: there is no input file.
    """
    check_normalize(normalize)
    src = Source(Path("<DataFrame>"), "<DataFrame>", FileFormat("frame"))
    table = frame_to_table(frame, src)
    src.header = list(table.column_names)
    check_header(src, src.header)
    rename = check_mapping(src, columns, CANONICAL_COLUMNS)
    if table.num_rows == 0:
        raise src.error("the DataFrame has no rows")
    return _with_embeddings(canonical_log(table, rename, src, normalize), embeddings)
