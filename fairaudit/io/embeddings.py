"""Speaker (or utterance) embeddings: .parquet/.csv with emb_* columns or a list column, .npy with ids."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fairaudit.errors import InputError
from fairaudit.io.sources import (
    UNSET,
    FileFormat,
    Source,
    as_plain,
    bad_utf8_error,
    check_header,
    frame_to_table,
    line_name,
    read_table,
    source_for,
)
from fairaudit.model import log as logs
from fairaudit.model.log import EmbeddingKey, EmbeddingTable, UtteranceLog
from fairaudit.validate.values import (
    FLOAT32_MAX,
    first_duplicate,
    first_true,
    missing_text,
    parse_numbers,
    text_column,
    value_at,
)

EMB_PATTERN = re.compile(r"^emb_([0-9]+)$")


def embedding_columns(names: list[str], src: Source) -> list[str]:
    """The emb_0 ... emb_{d-1} columns in index order; a gap in the numbering is an InputError."""
    found = {int(m.group(1)): n for n in names if (m := EMB_PATTERN.match(n))}
    if not found:
        return []
    for index in range(len(found)):
        if index not in found:
            raise src.error(
                f"embedding columns must be emb_0 ... emb_{len(found) - 1} without gaps, but emb_{index} is missing",
                column=f"emb_{index}",
            )
    return [found[i] for i in range(len(found))]


def vectors_from_columns(table: pa.Table, emb_columns: list[str], src: Source) -> np.ndarray:
    """Stack emb_* columns into a float32 matrix; empty, non-numeric, non-finite values raise."""
    n, d = table.num_rows, len(emb_columns)
    vectors = np.empty((n, d), dtype=np.float32)
    first_bad: tuple[int, str, str] | None = None
    for j, name in enumerate(emb_columns):
        arr = as_plain(table.column(name))
        values, missing, nonnumeric = parse_numbers(arr)
        with np.errstate(invalid="ignore"):
            too_large = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)  # would become infinite as float32
        bad = first_true(missing | nonnumeric | ~np.isfinite(values) | too_large)
        if bad is not None and (first_bad is None or bad < first_bad[0]):
            reason = (
                f"is empty: every row needs all {d} embedding values (mixed dimensions)"
                if missing[bad]
                else "is not a number"
                if nonnumeric[bad]
                else f"is beyond +-{FLOAT32_MAX:.3g}, the float32 range"
                if too_large[bad]
                else "is infinite"
            )
            first_bad = (bad, name, reason)
        if first_bad is None:
            vectors[:, j] = values
    if first_bad is not None:
        row, name, reason = first_bad
        raise src.error(
            f"embedding values must be finite numbers (this one {reason})",
            row=row,
            column=name,
            value=value_at(as_plain(table.column(name)), row),
        )
    _check_nonzero(vectors, src, emb_columns[0])
    return vectors


def _check_nonzero(vectors: np.ndarray, src: Source, column: str | None) -> None:
    """All-zero vectors have no direction: an InputError at the first one."""
    zero = first_true(~np.any(vectors != 0, axis=1)) if vectors.size else None
    if zero is not None:
        raise src.error(
            "this embedding vector is all zeros, which has no direction to normalise; "
            "drop the row or supply a real embedding",
            row=zero,
            column=column,
            value="0" if src.fmt.kind in ("parquet", "npy") else UNSET,
        )


def _check_vectors(vectors: np.ndarray, src: Source, column: str | None) -> np.ndarray:
    """Finite and non-zero vectors (for .npy and list-valued columns)."""
    finite = np.isfinite(vectors)
    bad = first_true(~finite.all(axis=1))
    if bad is not None:
        j = int(np.flatnonzero(~finite[bad])[0])
        raise src.error(
            f"embedding values must be finite numbers (component {j} is {vectors[bad, j]})",
            row=bad,
            column=column,
            value=float(vectors[bad, j]),
        )
    _check_nonzero(vectors, src, column)
    return vectors


def read_embeddings(path: str | Path) -> EmbeddingTable:
    """Read an embeddings file (Parquet, CSV/TSV, or .npy + sidecar ids) keyed by speaker or utterance.

    A pandas DataFrame with the same columns is accepted too (for ``fairaudit.pipeline.audit``).

    For an ``.npy`` file whose sidecar id list has no header line naming the key, the key is taken
    to be ``speaker_id`` (``read_log`` instead infers it from which ids match the log).
    """
    table, _ = read_embeddings_input(path)
    return table


def read_embeddings_input(path: str | Path | pd.DataFrame) -> tuple[EmbeddingTable, bool]:
    """Read an embeddings file (or DataFrame); also say whether the key was stated in it."""
    if isinstance(path, pd.DataFrame):  # fairaudit.audit(..., embeddings=frame)
        src = Source(Path("<embeddings DataFrame>"), "<embeddings DataFrame>", FileFormat("frame"))
        table = frame_to_table(path, src)
        src.header = list(table.column_names)
        check_header(src, src.header)
        if table.num_rows == 0:
            raise src.error("the embeddings DataFrame has no rows")
        return _embeddings_from_table(table, src)
    src = source_for(path, allowed=("csv", "tsv", "parquet", "npy"))
    if src.fmt.kind == "npy":
        return _read_npy_embeddings(src)
    table, _ = read_table(
        src,
        string_columns=(logs.SPEAKER, logs.UTTERANCE),
        canonical_names=(logs.SPEAKER, logs.UTTERANCE),
        list_columns=("embedding",),
    )
    return _embeddings_from_table(table, src)


def _embeddings_from_table(table: pa.Table, src: Source) -> tuple[EmbeddingTable, bool]:
    """Validate an id column plus emb_* (or list-valued 'embedding') columns."""
    keys = [k for k in (logs.SPEAKER, logs.UTTERANCE) if k in table.column_names]
    if len(keys) != 1:
        problem = "has both" if keys else "has neither"
        raise src.error(
            f"an embeddings file needs exactly one id column, speaker_id or utterance_id; this one {problem}",
            column=logs.SPEAKER,
        )
    key = cast(EmbeddingKey, keys[0])
    ids = text_column(table, key)
    bad = first_true(missing_text(ids))
    if bad is not None:
        raise src.error(
            f"{key} is empty (or NA); every embedding needs an id", row=bad, column=key, value=value_at(ids, bad)
        )
    _raise_duplicate_ids(ids, src, key)
    emb_columns = embedding_columns(table.column_names, src)
    if emb_columns:
        vectors = vectors_from_columns(table, emb_columns, src)
    elif "embedding" in table.column_names:
        vectors = _vectors_from_list_column(table, "embedding", src)
    else:
        raise src.error(
            "no embedding columns: expected emb_0, emb_1, ... (or, in Parquet, one list-valued 'embedding' column)",
            column="emb_0",
        )
    ids_np = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
    return EmbeddingTable(key=key, vectors=vectors, ids=ids_np, source=src.name), True


def _raise_duplicate_ids(ids: pa.Array, src: Source, key: str, line_offset: int | None = None) -> None:
    """Duplicate ids in an embeddings file are an InputError at the second occurrence."""
    duplicate = first_duplicate(ids)
    if duplicate is None:
        return
    earlier, later = duplicate
    if line_offset is not None:  # a sidecar id list: lines are known directly
        raise InputError(
            f"{key} is repeated: the same id is on line {earlier + line_offset}; each id may have one embedding",
            file=src.name,
            line=later + line_offset,
            column=key,
            value=ids[later].as_py(),
        )
    raise src.error(
        f"{key} is repeated: the same id is on {line_name(src, earlier)}; each id may have one embedding",
        row=later,
        column=key,
        value=ids[later].as_py(),
    )


def _vectors_from_list_column(table: pa.Table, name: str, src: Source) -> np.ndarray:
    """A list-valued column of equal-length float lists as a float32 matrix."""
    arr = as_plain(table.column(name))
    if not (pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type) or pa.types.is_fixed_size_list(arr.type)):
        raise src.error(f"the 'embedding' column must hold lists of numbers, not {arr.type}", column=name)
    lengths = pc.fill_null(pc.list_value_length(arr), -1).to_numpy(zero_copy_only=False)
    d = int(lengths[0])
    bad = first_true(lengths != d)
    if bad is not None or d <= 0:
        row = bad if bad is not None else 0
        got = "no vector" if lengths[row] < 0 else f"{lengths[row]} values"
        raise src.error(
            f"every embedding must have the same dimension ({d} on the first row); this row has {got}",
            row=row,
            column=name,
            value=int(lengths[row]),
        )
    flat = as_plain(pc.list_flatten(arr))
    if pa.types.is_floating(flat.type) and flat.null_count == 0:  # the usual case: no copy to float64
        values = flat.to_numpy(zero_copy_only=False)
        missing, nonnumeric = np.isnan(values), np.zeros(len(values), dtype=bool)
    else:
        values, missing, nonnumeric = parse_numbers(flat)
    if (missing | nonnumeric).any():
        k = first_true(missing | nonnumeric)
        assert k is not None
        raise src.error(
            "embedding values must be finite numbers (a component is empty or not a number)",
            row=k // d,
            column=name,
            value=value_at(flat, k),
        )
    return _check_vectors(values.reshape(-1, d).astype(np.float32, copy=False), src, name)


def _read_npy_embeddings(src: Source) -> tuple[EmbeddingTable, bool]:
    """A 2-D numeric .npy array plus a sidecar list of ids (<name>.ids.txt or <name>.ids.csv)."""
    try:
        array = np.load(src.path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise src.error(f"not a readable .npy array of numbers: {exc}") from None
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number) or array.shape[1] == 0:
        raise src.error(
            f"the array must be 2-D numbers (one row per id), not shape {array.shape} of {array.dtype}",
            value=str(array.shape),
        )
    vectors = _check_vectors(np.asarray(array, dtype=np.float32), src, None)
    ids, key, known, sidecar, offset = _read_sidecar_ids(src)
    if len(ids) != len(vectors):
        raise InputError(
            f"the id list has {len(ids)} ids but the array {src.name} has "
            f"{len(vectors)} rows; they must match one to one",
            file=sidecar.name,
        )
    _raise_duplicate_ids(ids, sidecar, key, line_offset=offset)
    ids_np = np.asarray(ids.to_numpy(zero_copy_only=False), dtype=object)
    return EmbeddingTable(key=key, vectors=vectors, ids=ids_np, source=src.name), known


def _read_sidecar_ids(src: Source) -> tuple[pa.Array, EmbeddingKey, bool, Source, int]:
    """Ids for a .npy file: one per line, optionally after a header naming the key."""
    stem = src.path.name[: -len(".npy")]
    candidates = [src.path.with_name(stem + ext) for ext in (".ids.txt", ".ids.csv")]
    found = [p for p in candidates if p.exists()]
    if not found:
        raise src.error(
            f"an .npy embeddings file needs a sidecar id list, one id per line: "
            f"{candidates[0].name} or {candidates[1].name}"
        )
    sidecar = Source(found[0], str(found[0]), FileFormat("csv"))
    raw = found[0].read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise bad_utf8_error(sidecar) from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if found[0].name.endswith(".csv"):
        lines = [row[0] if row else "" for row in csv.reader(lines)]
    key, known, offset = logs.SPEAKER, False, 1
    if lines and lines[0].strip() in (logs.SPEAKER, logs.UTTERANCE):
        key, known, offset = lines[0].strip(), True, 2
        lines = lines[1:]
    ids = [line.strip() for line in lines]
    for number, value in enumerate(ids):
        if not value:
            raise InputError(
                "empty id: the id list needs one non-empty id per line",
                file=sidecar.name,
                line=number + offset,
                column=key,
                value="",
            )
    return pa.array(ids, pa.string()), cast(EmbeddingKey, key), known, sidecar, offset


def settle_embedding_key(
    name: str | None, declared: EmbeddingKey | None, present: Iterable[str], overlap: Callable[[str], int]
) -> EmbeddingKey:
    """The log key an embeddings file is joined on: the one its id column names (``declared``), else
    the log key (speaker_id, utterance_id) its ids overlap most, speakers on a tie. Both engines use it."""
    present = list(present)
    key = declared
    if key is None:
        overlaps = {candidate: overlap(candidate) for candidate in present}
        key = cast(EmbeddingKey, max(overlaps, key=lambda k: (overlaps[k], k == logs.SPEAKER)))
    if key not in present:
        raise InputError(
            "the embeddings are keyed by utterance_id but the log has no utterance_id column",
            file=name,
            column=logs.UTTERANCE,
        )
    return key


def coverage_notes(name: str | None, key: str, log_values: int, matched: int, n_ids: int, example: object) -> list[str]:
    """Notes on how the embeddings cover the log's ``key`` values; InputError when none match."""
    if matched == 0:
        raise InputError(
            f"none of the {n_ids} ids in the embeddings file match a {key} in "
            "the log; check the id column and the --column mapping",
            file=name,
            column=key,
            value=example,
        )
    notes = []
    if log_values - matched:
        notes.append(f"{log_values - matched} of {log_values} {key} values in the log have no embedding in {name}")
    if n_ids - matched:
        notes.append(f"{n_ids - matched} embeddings in {name} belong to no {key} in the log")
    return notes


def attach_embeddings(log: UtteranceLog, path: str | Path | pd.DataFrame) -> EmbeddingTable:
    """Read --embeddings FILE, settle its key against the log, and note coverage."""
    table, known = read_embeddings_input(path)
    name = table.source
    frame = log.frame
    ids = pa.array(table.ids, pa.string())
    present = [key for key in (logs.SPEAKER, logs.UTTERANCE) if key in frame]

    def log_values(key: str) -> pa.Array:
        """The distinct ids of one key in the log (speakers were made distinct at ingest; otherwise
        Arrow's hash table: logs have millions of rows)."""
        if key == logs.SPEAKER and log.speaker_ids is not None:
            return pa.array(log.speaker_ids.array, pa.string())
        return pc.unique(pa.array(frame[key].array, pa.string()).drop_null())

    def matches(values: pa.Array) -> int:
        return int(pc.sum(pc.is_in(ids, value_set=values)).as_py() or 0)

    table.key = settle_embedding_key(name, table.key if known else None, present, lambda k: matches(log_values(k)))
    values = log_values(table.key)
    example = table.ids[0] if table.ids is not None and len(table.ids) else ""
    log.notes += coverage_notes(name, table.key, len(values), matches(values), len(ids), example)
    return table
