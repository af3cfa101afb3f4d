"""The Dask engine: read, validate and aggregate a log of many files (or one huge file) on Dask.

Pipeline (one ``dask.compute``):

1. **Pieces.** LOG is a glob pattern, a directory or a file, local or any fsspec URL
   (``s3://bucket/eval/*.parquet``). Files are taken in sorted order of their paths: that order is
   "the concatenated input". Uncompressed CSV/TSV files larger than ``blocksize`` are split at line
   breaks into pieces of about that size (gzip'd files and Parquet files are one piece each).
2. **Read and validate each piece** with :mod:`fairaudit.io.sources` (``read_table``) and
   :mod:`fairaudit.validate.log_columns` (``canonical_log``): the same rules and messages as the
   pandas engine. A message names the
   file and the line in that file (for a block of a large file, the line in the whole file).
   Metadata columns are carried as their text (CSV/TSV) or their Parquet type.
3. **Shuffle on speaker_id** (Dask dataframe; the disk shuffle on the local scheduler, P2P on a
   cluster), so every speaker's utterances are in one partition; the rows are put back in input
   order (piece, row) inside each partition.
4. **Aggregate each partition** with :func:`fairaudit.engines.speaker_table.build_speaker_table`; the partial
   speaker tables (disjoint speakers) are concatenated and sorted by speaker id, conflict counts are
   summed. The result equals ``build_speaker_table(read_log(concatenated input))``.

Things that need the whole input are settled across pieces:

* the type of a CSV metadata column is what pyarrow infers over all pieces' values (the pandas
  engine infers it over the whole file): each piece reports the type of its own values and, when
  there are at most ``DISTINCT_LIMIT`` distinct values, the values, and the type is inferred on their
  union; a Parquet metadata column gets the type its files' types promote to;
* the categories of text metadata: its values in order of first appearance in the whole input, as
  the pandas engine's categoricals have them (so anything depending on category order agrees);
* duplicate utterance ids across pieces (a second shuffle, of the ids only);
* the ``--embeddings`` file's key and coverage notes (counts summed over partitions);
* the notes (ZIP codes repaired: the pieces' typed counts summed, ``UtteranceLog.zip_repairs``);
* ``input.sha256``: see :func:`manifest_sha256`.

A bad piece stops the computation with its file's message (exit 2); when several pieces are bad,
the one reported is the first to fail, not necessarily the first in file order.

Only the speaker table, counts and notes come back to the client; the rows never do. The
``--embeddings`` file, if any, is read by one task (on a cluster, on a worker; it must fit in a
worker's memory) and passed from worker to worker to the speaker aggregation, never through the
client or the task graph; the client gets its name, key and id count. Inline ``emb_*`` columns
scale with the log. Dask's own log messages below errors stay out of the user's terminal.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fairaudit.engines import ShardedLog, is_pattern
from fairaudit.engines.threads import available_cores
from fairaudit.errors import NO_ROWS, InputError, UsageError
from fairaudit.io import embeddings as embedding_files
from fairaudit.io import sources
from fairaudit.model import log as logs
from fairaudit.model.log import EmbeddingKey, EmbeddingTable, UtteranceLog
from fairaudit.validate import column_rules, log_columns

try:
    import dask
    import dask.dataframe as dd
    from dask import delayed
except ImportError:  # pragma: no cover - exercised only without the extra
    raise UsageError(
        "--engine dask needs Dask: pip install 'dask[dataframe,distributed]' "
        "(or, in the fairaudit checkout, pip install '.[dask]')"
    ) from None

#: Uncompressed CSV/TSV files larger than this are read in blocks of about this many bytes.
DEFAULT_BLOCKSIZE = 128 * 2**20
#: A piece reports the distinct texts of a metadata column up to this many (for type inference).
DISTINCT_LIMIT = 50_000
#: File names skipped when LOG is a directory (Spark/Hadoop markers, hidden files).
_SKIPPED_PREFIXES = (".", "_")
_LOG_EXTENSIONS = (".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet")

# transport columns (names no log column can have: they hold a NUL-free prefix reserved here)
PIECE = "__fairaudit_piece"
ROW = "__fairaudit_row"
_EMB = "__fairaudit_emb_{}"
_META = "__fairaudit_meta_{}"
_STR = pd.Series(["a"]).astype("str").dtype  # the dtype ingest gives text columns (astype("str"))


# --- errors that survive a trip through a Dask worker --------------------------------------


class PieceError(Exception):
    """An InputError/UsageError raised on a worker; its fields survive pickling (``args``)."""

    def __init__(self, usage: bool, message: str, file, line, column, value, code: str) -> None:
        super().__init__(usage, message, file, line, column, value, code)

    @classmethod
    def wrap(cls, error: InputError) -> PieceError:
        return cls(
            isinstance(error, UsageError), error.message, error.file, error.line, error.column, error.value, error.code
        )

    def unwrap(self) -> InputError:
        usage, message, file, line, column, value, code = self.args
        kind = UsageError if usage else InputError
        return kind(message, file=file, line=line, column=column, value=value, code=code)


@contextmanager
def _reraised() -> Iterator[None]:
    """Turn InputErrors into PieceErrors (inside tasks)."""
    try:
        yield
    except InputError as error:
        raise PieceError.wrap(error) from None


# --- files and pieces ------------------------------------------------------------------------


def _filesystem(url: str):
    """(fsspec filesystem, path within it) for a URL with a protocol; (None, url) for local paths."""
    if "://" not in url or url.startswith("file://"):
        return None, url[len("file://") :] if url.startswith("file://") else url
    import fsspec

    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def _known_log_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.lower().endswith(_LOG_EXTENSIONS) and not base.startswith(_SKIPPED_PREFIXES)


def expand_inputs(pattern: str) -> list[str]:
    """The files LOG names, sorted: a glob pattern, a directory (its log files, recursively) or a file."""
    fs, path = _filesystem(pattern)
    if fs is None:
        import glob

        if is_pattern(path):
            matched = glob.glob(path, recursive=True)
        else:
            matched = [path]
        files: list[str] = []
        for item in matched:
            if os.path.isdir(item):
                for root, dirs, names in os.walk(item):
                    dirs[:] = sorted(d for d in dirs if not d.startswith(_SKIPPED_PREFIXES))
                    files.extend(os.path.join(root, n) for n in names if _known_log_file(n))
            else:
                files.append(item)
        if not files and not is_pattern(path):
            return [path]  # a missing file: ingest names it ("no such file")
        return sorted(dict.fromkeys(files))
    protocol = pattern.split("://", 1)[0]
    if is_pattern(path):
        matched = fs.glob(path)
    else:
        matched = [path]
    files = []
    for item in matched:
        if fs.isdir(item):
            files.extend(f for f in fs.find(item) if _known_log_file(f))
        else:
            files.append(item)
    return sorted(dict.fromkeys(f if "://" in f else f"{protocol}://{f}" for f in files))


@dataclass(frozen=True)
class Piece:
    """A part of the input read by one task: a whole file, or a byte range of an uncompressed one."""

    index: int
    url: str  # the file as matched (named in messages)
    location: str  # where workers open it: an absolute local path or a URL
    start: int | None = None  # byte range [start, end) of a block (None: the whole file)
    end: int | None = None


def _size(url: str) -> int:
    fs, path = _filesystem(url)
    if fs is None:
        return os.path.getsize(path) if os.path.isfile(path) else 0
    return int(fs.size(path) or 0)


def _location(url: str) -> str:
    """Where a worker opens a file: local paths made absolute (workers may run elsewhere)."""
    fs, path = _filesystem(url)
    return os.path.abspath(path) if fs is None else url


def make_pieces(files: list[str], blocksize: int | None) -> list[Piece]:
    """One piece per file; uncompressed CSV/TSV files larger than ``blocksize`` in several blocks."""
    pieces: list[Piece] = []
    for url in files:
        fmt = sources.format_of(url)
        size = _size(url)
        where = _location(url)
        if blocksize and fmt.kind in ("csv", "tsv") and not fmt.gzip and size > blocksize:
            for start in range(0, size, blocksize):
                pieces.append(Piece(len(pieces), url, where, start, min(start + blocksize, size)))
        else:
            pieces.append(Piece(len(pieces), url, where))
    return pieces


def _open_binary(url: str):
    fs, path = _filesystem(url)
    return open(path, "rb") if fs is None else fs.open(path, "rb")


def _next_line_start(handle, pos: int) -> int:
    """The start of the first line after the newline at or after ``pos`` (fsspec's block rule, the
    same for a block's end and the next block's start), or the end of the file; 0 stays 0."""
    from fsspec.utils import seek_delimiter

    handle.seek(pos)
    seek_delimiter(handle, b"\n", 1 << 16)
    return handle.tell()


def _header_bytes(handle) -> bytes:
    """The bytes up to the end of the first non-blank line (the header), newline included."""
    handle.seek(0)
    out = bytearray()
    while True:
        line = handle.readline()
        if not line:
            return bytes(out)
        out += line
        if line.strip(b"\r\n\t ").lstrip(b"\xef\xbb\xbf"):
            return bytes(out)


def _count_newlines(url: str, end: int) -> int:
    """Newlines in the first ``end`` bytes of a file (only on the error path)."""
    count = 0
    with _open_binary(url) as handle:
        left = end
        while left > 0:
            chunk = handle.read(min(left, 1 << 22))
            if not chunk:
                break
            count += chunk.count(b"\n")
            left -= len(chunk)
    return count


@dataclass
class _BlockSource(sources.Source):
    """A block of a large text file, copied after its header into a temporary file.

    Line numbers in messages are mapped back to lines of the whole file: temporary line k (after
    the ``header_lines`` header lines) is line ``k - header_lines + lines_before`` of the file,
    where ``lines_before`` counts the file's lines before the block (counted only when needed).
    """

    url: str = ""
    begin: int = 0
    header_lines: int = 1
    _lines_before: int | None = None

    def _shift(self, line: int | None) -> int | None:
        if line is None or line <= self.header_lines:
            return line
        if self._lines_before is None:
            self._lines_before = _count_newlines(self.url, self.begin) if self.begin else self.header_lines
        return line - self.header_lines + self._lines_before

    def locate(self, row, column):
        line, raw = super().locate(row, column)
        return self._shift(line), raw

    def error(self, message, *, row=None, column=None, value=sources.UNSET, line=None):
        if row is None:
            line = self._shift(line)
        return super().error(message, row=row, column=column, value=value, line=line)


@contextmanager
def _local_copy_path(fmt: sources.FileFormat, stem: str) -> Iterator[Path]:
    """A path in a fresh temporary folder for a local copy of (part of) a remote file; the folder
    and the copy are removed afterwards. The suffix keeps gzip files recognisable."""
    with tempfile.TemporaryDirectory(prefix="fairaudit-") as tmp:
        yield Path(tmp) / (stem + (".gz" if fmt.gzip else ""))


@contextmanager
def _piece_source(piece: Piece, digest: bool) -> Iterator[tuple[sources.Source | None, str | None]]:
    """A Source for the bytes of a piece (a local file, or a temporary copy), and the file's SHA-256.

    Yields (None, sha) for a block without data rows.
    """
    fs, path = _filesystem(piece.location)
    fmt = sources.format_of(piece.url)
    if piece.start is None and fs is None:
        try:
            src = sources.source_for(path)
        except InputError as error:
            error.file = piece.url
            raise
        src.name = piece.url
        yield src, (sources.file_sha256(path) if digest else None)
        return
    with _local_copy_path(fmt, "piece") as local:
        if piece.start is None:  # a whole remote file
            with _open_binary(piece.location) as source, open(local, "wb") as target:
                sha = sources.stream_sha256(source, copy_to=target)
            if local.stat().st_size == 0:
                raise InputError("the file is empty (0 bytes); expected a header line and data rows", file=piece.url)
            yield sources.Source(local, piece.url, fmt), sha
            return
        with _open_binary(piece.location) as handle:
            header = _header_bytes(handle)
            begin = max(_next_line_start(handle, piece.start), len(header)) if piece.start else 0
            end = _next_line_start(handle, piece.end) if piece.end else begin
            handle.seek(begin)
            data = handle.read(max(0, end - begin))
        if piece.start and not data.strip():
            yield None, None
            return
        with open(local, "wb") as target:
            if piece.start:
                target.write(header)
            target.write(data)
        src = _BlockSource(
            local,
            piece.url,
            fmt,
            url=piece.location,
            begin=begin,
            header_lines=header.count(b"\n") if piece.start else 0,
        )
        yield src, None


# --- the plan: what every piece needs to know, from the first file --------------------------


@dataclass(frozen=True)
class Plan:
    """Column layout shared by all pieces (taken from the first file) and the reading options."""

    kind: str  # "text" (CSV/TSV) or "parquet"
    reference: str  # the first file, named when another file's columns differ
    names: tuple[str, ...]  # the first file's columns, in order
    columns: tuple[tuple[str, str], ...]  # --column canonical=actual
    normalize: str
    core: tuple[str, ...]  # canonical columns of the canonical frame, in ingest's order
    metadata: tuple[str, ...]  # metadata columns, in file order
    emb_dim: int
    utterance_actual: str | None  # the file's name of the utterance_id column
    meta_types: tuple[pa.DataType, ...] = ()  # Parquet: the promoted type of each metadata column
    many: bool = False  # more than one piece: a piece without data rows is allowed

    def transport_meta(self) -> pd.DataFrame:
        """An empty frame with the columns and dtypes pieces travel in."""
        dtypes = {
            logs.SPEAKER: _STR,
            logs.UTTERANCE: _STR,
            logs.ERRORS: np.int64,
            logs.REF_WORDS: np.int64,
            **{kind: np.int64 for kind in logs.ANATOMY},
            logs.LATITUDE: np.float64,
            logs.LONGITUDE: np.float64,
            logs.ZIP_CODE: _STR,
        }
        columns: dict[str, pd.Series] = {c: pd.Series([], dtype=dtypes[c]) for c in self.core}
        for j in range(self.emb_dim):
            columns[_EMB.format(j)] = pd.Series([], dtype=np.float32)
        for i in range(len(self.metadata)):
            typ = self.meta_types[i] if self.kind == "parquet" else pa.string()
            columns[_META.format(i)] = pd.Series([], dtype=pd.ArrowDtype(typ))
        columns[PIECE] = pd.Series([], dtype=np.int32)
        columns[ROW] = pd.Series([], dtype=np.int64)
        return pd.DataFrame(columns)


def _header_of(url: str) -> tuple[list[str], sources.FileFormat]:
    """The column names of a file (header line or Parquet schema), without reading its rows."""
    fmt = sources.format_of(url)
    fs, path = _filesystem(url)
    if fmt.kind == "parquet":
        if fs is None:
            sources.source_for(path)  # the same existence and extension checks as the pandas engine
        return list(_parquet_schema(url).names), fmt
    if fs is None:
        src = sources.source_for(path)
        src.name = url
        return sources.read_header(src), fmt
    with _local_copy_path(fmt, "head") as local:
        with fs.open(path, "rb") as source, open(local, "wb") as target:
            if fmt.gzip:
                shutil.copyfileobj(source, target)
            else:
                target.write(_header_bytes(source))
        return sources.read_header(sources.Source(local, url, fmt)), fmt


def _parquet_schema(url: str) -> pa.Schema:
    """The schema of a local or remote Parquet file, without reading its rows."""
    fs, path = _filesystem(url)
    try:
        if fs is None:
            return pq.read_schema(path)
        with fs.open(path, "rb") as handle:
            return pq.read_schema(handle)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", file=url) from None


def make_plan(files: list[str], columns: Mapping[str, str] | None, normalize: str, many: bool) -> Plan:
    """Check the first file's header (mapping, embedding columns) and lay out the transport columns."""
    first = files[0]
    kinds = {sources.format_of(f).kind == "parquet" for f in files}
    if len(kinds) > 1:
        other = next(
            f for f in files if (sources.format_of(f).kind == "parquet") != (sources.format_of(first).kind == "parquet")
        )
        raise InputError(
            f"the input mixes Parquet and CSV/TSV files (the first file, {first}, is not of "
            "this kind); give one kind of file",
            file=other,
        )
    names, fmt = _header_of(first)
    src = sources.Source(Path(first), first, fmt, header=list(names))
    sources.check_header(src, names)
    rename = sources.check_mapping(src, columns, column_rules.CANONICAL_COLUMNS)
    emb_columns = embedding_files.embedding_columns(names, src)
    used = set(column_rules.CANONICAL_COLUMNS) | set(column_rules.ERROR_COLUMNS)
    metadata = tuple(c for c in names if rename.get(c, c) not in used and c not in emb_columns)
    present = {rename.get(c, c) for c in names}
    order: tuple[str, ...] = (logs.SPEAKER, logs.UTTERANCE, logs.ERRORS, logs.REF_WORDS, *logs.ANATOMY)
    order += (logs.LATITUDE, logs.LONGITUDE, logs.ZIP_CODE)
    always = {logs.SPEAKER, logs.ERRORS, logs.REF_WORDS}
    if column_rules.has_anatomy(present):
        always |= set(logs.ANATOMY)  # counted, or scored from the text, in every piece
    core = tuple(c for c in order if c in always or c in present)
    utterance = next((a for a in names if rename.get(a, a) == logs.UTTERANCE), None)
    meta_types: tuple[pa.DataType, ...] = ()
    if fmt.kind == "parquet" and metadata:
        meta_types = _parquet_metadata_types(files, metadata)
    return Plan(
        kind="parquet" if fmt.kind == "parquet" else "text",
        reference=first,
        names=tuple(names),
        columns=tuple((columns or {}).items()),
        normalize=normalize,
        core=core,
        metadata=metadata,
        emb_dim=len(emb_columns),
        utterance_actual=utterance,
        meta_types=meta_types,
        many=many,
    )


def _plain_type(typ: pa.DataType) -> pa.DataType:
    return typ.value_type if pa.types.is_dictionary(typ) else typ


def _parquet_metadata_types(files: list[str], metadata: tuple[str, ...]) -> tuple[pa.DataType, ...]:
    """The type each metadata column's Parquet types promote to (null -> any, int -> float, ...)."""
    seen: dict[str, list[tuple[str, pa.Field]]] = {name: [] for name in metadata}
    for url in files:
        schema = _parquet_schema(url)
        for name in metadata:
            index = schema.get_field_index(name)
            if index >= 0:  # a missing column is reported by the piece that lacks it
                f = schema.field(index)
                seen[name].append((url, pa.field(name, _plain_type(f.type))))
    result = []
    for name in metadata:
        fields = seen[name]
        try:
            unified = pa.unify_schemas([pa.schema([f]) for _, f in fields], promote_options="permissive")
        except (pa.ArrowException, TypeError):
            first_url, first_field = fields[0]
            other = next((u, f) for u, f in fields if f.type != first_field.type)
            raise InputError(
                f"this column is {other[1].type} here but {first_field.type} in {first_url}; "
                "every file must give a column the same type",
                file=other[0],
                column=name,
            ) from None
        result.append(unified.field(name).type)
    return tuple(result)


def _check_same_columns(src: sources.Source, names: list[str], plan: Plan) -> None:
    """Every file must have the first file's columns (in any order)."""
    if set(names) == set(plan.names):
        return
    missing = [n for n in plan.names if n not in names]
    extra = [n for n in names if n not in plan.names]
    parts = []
    if missing:
        parts.append(f"it lacks {sources.list_names(missing)}")
    if extra:
        parts.append(f"it has {sources.list_names(extra)} in addition")
    raise InputError(
        f"this file's columns differ from those of {plan.reference} ({'; '.join(parts)}); "
        "every file of a log must have the same columns",
        file=src.name,
        column=(missing or extra)[0],
    )


# --- reading one piece (a task) ------------------------------------------------------------


def read_piece(piece: Piece, plan: Plan, digest: bool) -> tuple[pd.DataFrame, dict]:
    """Read and validate one piece: its rows in transport form, and a small summary."""
    with _reraised():
        with _piece_source(piece, digest) as (src, sha):
            summary = {
                "rows": 0,
                "notes": [],
                "zip_repairs": {},
                "form": None,
                "types": None,
                "distinct": None,
                "sha256": sha,
                "url": piece.url,
            }
            if src is None:
                return plan.transport_meta(), summary
            columns = dict(plan.columns)
            if plan.kind == "text":
                src.header = sources.read_header(src)
                sources.check_header(src, src.header)
                _check_same_columns(src, src.header, plan)
                forced = tuple(column_rules.STRING_COLUMNS) + plan.metadata
                try:
                    table, rename = sources.read_table(src, columns=columns, string_columns=forced)
                except InputError as error:
                    if plan.many and error.code == NO_ROWS:
                        return plan.transport_meta(), summary
                    raise
            else:
                try:
                    table, rename = sources.read_table(src, columns=columns)
                except InputError as error:
                    if plan.many and error.code == NO_ROWS:
                        return plan.transport_meta(), summary
                    raise
                _check_same_columns(src, table.column_names, plan)
            meta_arrays = []
            for i, name in enumerate(plan.metadata):
                arr = sources.as_plain(table.column(name))
                if plan.kind == "parquet" and arr.type != plan.meta_types[i]:
                    arr = arr.cast(plan.meta_types[i])
                meta_arrays.append(arr)
            core = table.drop_columns(list(plan.metadata)) if plan.metadata else table
            log = log_columns.canonical_log(core, rename, src, plan.normalize)
    n = log.n_utterances
    out: dict[str, object] = {c: log.frame[c] for c in plan.core}
    if plan.emb_dim:
        assert log.embeddings is not None  # every piece has the first file's emb_* columns (checked above)
        vectors = np.asarray(log.embeddings.vectors, dtype=np.float32)
        for j in range(plan.emb_dim):
            out[_EMB.format(j)] = vectors[:, j]
    for i, arr in enumerate(meta_arrays):
        out[_META.format(i)] = pd.arrays.ArrowExtensionArray(arr)
    out[PIECE] = np.full(n, piece.index, dtype=np.int32)
    out[ROW] = np.arange(n, dtype=np.int64)
    frame = pd.DataFrame(out).astype(plan.transport_meta().dtypes.to_dict())
    zip_notes = {log_columns.zip_repair_note(column, count) for column, count in log.zip_repairs.items()}
    summary.update(
        rows=n,
        notes=[note for note in log.notes if note not in zip_notes],
        zip_repairs=dict(log.zip_repairs),
        form=log.error_form,
    )
    distinct = [_distinct_texts(arr) for arr in meta_arrays]
    summary["distinct"] = [None if d is None or len(d) > DISTINCT_LIMIT else d for d in distinct]
    if plan.kind == "text":
        summary["types"] = [infer_text_type(d) for d in distinct]
    return frame, summary


# --- CSV metadata types: pyarrow's inference over all pieces ------------------------------


def _csv_of(values: list[str]) -> bytes:
    """A one-column CSV (column "x") holding ``values``, every value quoted."""
    quoted = ['"' + v.replace('"', '""') + '"' for v in values]
    return ("x\n" + "\n".join(quoted) + "\n").encode("utf-8")


def infer_text_type(values: list[str] | None) -> pa.DataType:
    """The type pyarrow's CSV reader infers for a column holding exactly these texts (null when none)."""
    if not values:
        return pa.null()
    convert = pa_csv.ConvertOptions(strings_can_be_null=False)
    table = pa_csv.read_csv(pa.py_buffer(_csv_of(values)), convert_options=convert)
    return table.column("x").type


def _distinct_texts(arr: pa.Array) -> list[str] | None:
    """The distinct values of a text column in order of first appearance (None if not text)."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return None
    return pc.unique(arr.drop_null()).to_pylist()


def unify_text_types(summaries: list[dict], n_columns: int) -> list[pa.DataType]:
    """The type of each CSV metadata column over all pieces (what the pandas engine infers)."""
    result = []
    for i in range(n_columns):
        parts = [(s["types"][i], s["distinct"][i]) for s in summaries if s.get("types")]
        kinds = [t for t, _ in parts]
        if not kinds:
            result.append(pa.null())
        elif all(k == kinds[0] for k in kinds):
            result.append(kinds[0])
        elif all(values is not None for _, values in parts):
            union = sorted(set().union(*(v for _, v in parts)))
            result.append(infer_text_type(union))
        else:  # too many distinct values to send: the usual promotions, else text
            found = {k for k in kinds if not pa.types.is_null(k)}
            if found <= {pa.int64(), pa.float64()}:
                result.append(pa.float64() if pa.float64() in found else pa.int64())
            elif found <= {pa.date32(), pa.timestamp("s")}:
                result.append(pa.timestamp("s"))
            else:
                result.append(pa.string())
    return result


def global_categories(summaries: list[dict], n_columns: int) -> list[list[str] | None]:
    """Per text metadata column, its values in order of first appearance in the whole input.

    The pandas engine's categorical metadata has its categories in that order; partitions use the
    same categories, so anything that depends on category order agrees with it.
    """
    result: list[list[str] | None] = []
    for i in range(n_columns):
        lists = [s["distinct"][i] for s in summaries if s.get("distinct") is not None]
        if not lists or any(values is None for values in lists):
            result.append(None)
            continue
        ordered = dict.fromkeys(v for values in lists for v in values)
        for missing in sources.MISSING_TEXT:
            ordered.pop(missing, None)
        result.append(list(ordered))
    return result


def convert_text(arr: pa.Array, typ: pa.DataType) -> pa.Array:
    """Text values converted to ``typ`` exactly as pyarrow's CSV reader converts them."""
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return arr
    if pa.types.is_null(typ):
        return pa.nulls(len(arr))
    encoded = arr.dictionary_encode()
    dictionary = encoded.dictionary.to_pylist()
    if not dictionary:
        return pa.nulls(len(arr), typ)
    convert = pa_csv.ConvertOptions(strings_can_be_null=False, column_types={"x": typ})
    values = pa_csv.read_csv(pa.py_buffer(_csv_of(dictionary)), convert_options=convert).column("x")
    return sources.as_plain(values).take(encoded.indices)


# --- aggregating one partition of whole speakers (a task) ---------------------------------


def _arrow_of(series: pd.Series, typ: pa.DataType) -> pa.Array:
    """A transported column back as Arrow (a shuffle may have turned it into plain objects)."""
    if isinstance(series.dtype, pd.ArrowDtype):
        arr = sources.as_plain(
            pa.chunked_array(series.array._pa_array) if hasattr(series.array, "_pa_array") else pa.array(series.array)
        )
    else:
        arr = pa.array(series.to_numpy(dtype=object), type=typ, from_pandas=True)
    return arr if arr.type == typ else arr.cast(typ)


def aggregate_partition(
    part: pd.DataFrame,
    plan: Plan,
    types: list[pa.DataType] | None,
    categories: list[list[str] | None],
    embeddings: EmbeddingTable | None,
    key_known: bool,
    error_form: str | None,
) -> dict | None:
    """The speaker table of a partition holding whole speakers, built by build_speaker_table."""
    from fairaudit.engines.speaker_table import build_speaker_table

    with _reraised():
        if not len(part):
            return None
        part = part.sort_values([PIECE, ROW], kind="stable", ignore_index=True)
        data: dict[str, object] = {}
        for c in plan.core:
            series = part[c]
            data[c] = (
                series.astype(_STR)
                if series.dtype != _STR and c in (logs.SPEAKER, logs.UTTERANCE, logs.ZIP_CODE)
                else series
            )
        for i, name in enumerate(plan.metadata):
            transported = plan.meta_types[i] if plan.kind == "parquet" else pa.string()
            arr = _arrow_of(part[_META.format(i)], transported)
            if plan.kind == "text":
                assert types is not None  # unify_text_types runs for every text plan
                arr = convert_text(arr, types[i])
            data[name] = log_columns.metadata_column(arr)
        frame = log_columns.to_frame(data)
        for i, name in enumerate(plan.metadata):
            if categories[i] is not None and isinstance(frame[name].dtype, pd.CategoricalDtype):
                frame[name] = frame[name].cat.set_categories(categories[i])
        emb = None
        if plan.emb_dim:
            vectors = part[[_EMB.format(j) for j in range(plan.emb_dim)]].to_numpy(dtype=np.float32)
            emb = EmbeddingTable(key="row", vectors=vectors, ids=None, source=plan.reference)
        elif embeddings is not None:
            emb = (
                embeddings
                if key_known
                else EmbeddingTable(
                    cast(EmbeddingKey, logs.SPEAKER), embeddings.vectors, embeddings.ids, embeddings.source
                )
            )
        log = UtteranceLog(
            frame=frame, metadata_columns=list(plan.metadata), embeddings=emb, error_form=error_form or "errors"
        )
        table = build_speaker_table(log)
        result: dict[str, Any] = {"table": table, "alt_embeddings": None, "matched": {}, "ids": {}}
        if embeddings is not None:
            wanted = pd.Index(embeddings.ids)
            result["ids"][logs.SPEAKER] = len(table)
            result["matched"][logs.SPEAKER] = int(wanted.isin(table.speaker_ids.astype(object)).sum())
            if logs.UTTERANCE in frame.columns:
                utt = frame[logs.UTTERANCE].dropna().astype(object)
                result["ids"][logs.UTTERANCE] = int(len(utt))
                result["matched"][logs.UTTERANCE] = int(wanted.isin(utt.to_numpy()).sum())
                if not key_known:
                    alt = UtteranceLog(
                        frame=frame[[logs.SPEAKER, logs.UTTERANCE, logs.ERRORS, logs.REF_WORDS]],
                        embeddings=EmbeddingTable(
                            cast(EmbeddingKey, logs.UTTERANCE), embeddings.vectors, embeddings.ids, embeddings.source
                        ),
                    )
                    result["alt_embeddings"] = build_speaker_table(alt).embeddings
        return result


# --- duplicate utterance ids across pieces --------------------------------------------------


def first_repeat(part: pd.DataFrame) -> tuple | None:
    """In a partition of (id, piece, row): the earliest row whose id came before, and that first row."""
    if not len(part):
        return None
    part = part.sort_values([PIECE, ROW], kind="stable")
    repeated = part[logs.UTTERANCE].duplicated(keep="first").to_numpy()
    if not repeated.any():
        return None
    later = part[repeated].iloc[0]
    earlier = part[part[logs.UTTERANCE] == later[logs.UTTERANCE]].iloc[0]
    return (int(later[PIECE]), int(later[ROW]), int(earlier[PIECE]), int(earlier[ROW]), str(later[logs.UTTERANCE]))


def _repeat_error(found: tuple, pieces: list[Piece], summaries: list[dict], plan: Plan) -> InputError:
    """The pandas engine's duplicate-id message, with the other file named when it differs."""
    later_piece, later_row, earlier_piece, earlier_row, value = found
    starts: dict[int, int] = {}
    offset: dict[str, int] = {}
    for piece, summary in zip(pieces, summaries):
        starts[piece.index] = offset.get(piece.url, 0)
        offset[piece.url] = offset.get(piece.url, 0) + summary["rows"]
    later_url, earlier_url = pieces[later_piece].url, pieces[earlier_piece].url
    later_at = starts[later_piece] + later_row
    earlier_at = starts[earlier_piece] + earlier_row
    column = plan.utterance_actual or logs.UTTERANCE

    def source(url: str) -> sources.Source | None:
        fs, path = _filesystem(url)
        if fs is not None:
            return None
        src = sources.source_for(path)
        src.name = url
        if src.fmt.kind in ("csv", "tsv"):
            src.header = sources.read_header(src)
        return src

    later_src, earlier_src = source(later_url), source(earlier_url)
    where = sources.line_name(earlier_src, earlier_at) if earlier_src else f"data row {earlier_at + 1}"
    if earlier_url != later_url:
        where += f" of {earlier_url}"
    message = f"utterance_id is repeated: the same id is on {where}; utterance ids must be unique"
    if later_src is None:
        return InputError(f"{message} (data row {later_at + 1})", file=later_url, column=column, value=value)
    return later_src.error(message, row=later_at, column=column, value=value)


# --- input.sha256 for many files ----------------------------------------------------------


def manifest_sha256(digests: Mapping[str, str]) -> str:
    """SHA-256 of a ``sha256sum``-style manifest of the files.

    One line per file, ``<file SHA-256 in hex>  <path relative to the files' deepest common
    directory>\\n``, sorted by that relative path (code-point order): the same bytes as
    ``cd COMMON && sha256sum FILES | LC_ALL=C sort -k2 | sha256sum`` (for names without spaces).
    It changes when a file's content, name or the set of files changes, not when the files move
    together or the pattern is written differently.
    """
    import posixpath

    urls = list(digests)
    paths = [u.split("://", 1)[-1].replace(os.sep, "/") for u in urls]
    dirs = [posixpath.dirname(p) for p in paths]
    try:
        base = posixpath.commonpath(dirs) if all(dirs) else ""
    except ValueError:  # absolute and relative paths mixed
        base = ""
    names = {(posixpath.relpath(p, base) if base else p): digests[u] for u, p in zip(urls, paths)}
    manifest = "".join(f"{names[n]}  {n}\n" for n in sorted(names))
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def file_digest(url: str) -> str:
    """SHA-256 of a file (local or fsspec URL)."""
    with _open_binary(url) as handle:
        return sources.stream_sha256(handle)


# --- notes and embeddings across partitions -----------------------------------------------


def merge_notes(summaries: list[dict]) -> list[str]:
    """Notes of all pieces as the pandas engine would write them once: ZIP repairs summed per
    column (from the pieces' counts, not their text), other notes once each."""
    repairs: dict[str, int] = {}
    for summary in summaries:
        for column, count in summary["zip_repairs"].items():
            repairs[column] = repairs.get(column, 0) + count
    merged = [log_columns.zip_repair_note(column, count) for column, count in repairs.items()]
    for summary in summaries:
        merged += [note for note in summary["notes"] if note not in merged]
    return merged


def load_embeddings(embeddings: str | Path | pd.DataFrame, shown_as: str | None = None) -> tuple[EmbeddingTable, bool]:
    """Read an --embeddings file where this task runs; also whether its key was stated in it.

    A worker's working directory is not the user's: a local file arrives as an absolute path and
    is named in messages and notes ``shown_as`` (as the user wrote it).
    """
    with _reraised():
        try:
            table, known = embedding_files.read_embeddings_input(embeddings)
        except InputError as error:
            if shown_as is not None and error.file is not None and str(error.file) == str(embeddings):
                error.file = shown_as
            raise
        if shown_as is not None:
            table = replace(table, source=shown_as)
        return table, known


def _embeddings_argument(embeddings: str | Path | pd.DataFrame) -> tuple[str | Path | pd.DataFrame, str | None]:
    """What the reading task gets: a DataFrame as is; a local path made absolute, with its name as given."""
    if isinstance(embeddings, pd.DataFrame) or "://" in str(embeddings):
        return embeddings, None
    return str(Path(embeddings).absolute()), str(embeddings)


@dataclass(frozen=True)
class EmbeddingSummary:
    """What the client needs of an --embeddings file: its name, key, distinct ids and an example id."""

    source: str | None
    key: str
    n_ids: int
    example: str


def summarize_embeddings(table: EmbeddingTable) -> EmbeddingSummary:
    """The few facts about the embeddings that travel back to the client (not the vectors)."""
    assert table.ids is not None  # a file's table is keyed by speaker or utterance ids, never by row
    example = table.ids[0] if len(table.ids) else ""
    return EmbeddingSummary(table.source, table.key, len(set(table.ids.tolist())), str(example))


def settle_embeddings(
    table: EmbeddingSummary, known: bool, parts: list[dict], has_utterance: bool, notes: list[str]
) -> str:
    """The key of an --embeddings file and its coverage notes, from the partitions' counts (the
    same rules as the pandas engine: :func:`fairaudit.io.embeddings.settle_embedding_key`)."""
    present = [logs.SPEAKER, logs.UTTERANCE] if has_utterance else [logs.SPEAKER]
    totals = {key: sum(p["ids"].get(key, 0) for p in parts) for key in present}
    overlaps = {key: sum(p["matched"].get(key, 0) for p in parts) for key in present}
    declared = cast(EmbeddingKey, table.key) if known else None
    key = embedding_files.settle_embedding_key(table.source, declared, present, overlaps.__getitem__)
    notes += embedding_files.coverage_notes(table.source, key, totals[key], overlaps[key], table.n_ids, table.example)
    return key


# --- assembling the speaker table ---------------------------------------------------------


def concat_speaker_tables(parts: list[dict], embeddings_of: str):
    """One speaker table from partial tables of disjoint speakers, sorted by speaker id."""
    from fairaudit.model.speakers import SpeakerTable

    tables = [p["table"] for p in parts]
    frames = [t.frame for t in tables]
    frame = pd.concat(frames)
    for column in frame.columns:
        dtypes = {str(f[column].dtype) for f in frames}
        if len(dtypes) > 1 and all(
            pd.api.types.is_numeric_dtype(f[column].dtype) or pd.api.types.is_bool_dtype(f[column].dtype)
            for f in frames
        ):
            # a partition without missing values keeps int/bool; the whole log has them: float
            frame[column] = pd.concat([f[column].astype(np.float64) for f in frames]).to_numpy()
    order = np.argsort(frame.index.to_numpy(dtype=object), kind="stable")
    frame = frame.iloc[order]
    embeddings = None
    if embeddings_of == "table" and tables[0].embeddings is not None:
        embeddings = np.concatenate([t.embeddings for t in tables])[order]
    elif embeddings_of == "alt":
        embeddings = np.concatenate([p["alt_embeddings"] for p in parts])[order]
    conflicts: dict[str, int] = {}
    for t in tables:
        for key, count in t.conflicts.items():
            conflicts[key] = conflicts.get(key, 0) + int(count)
    return SpeakerTable(
        frame=frame, metadata_columns=list(tables[0].metadata_columns), embeddings=embeddings, conflicts=conflicts
    )


# --- scheduler -----------------------------------------------------------------------------


@contextmanager
def _quiet_dask_logs() -> Iterator[None]:
    """Keep Dask's informational warnings ("Sending large graph ...", shuffle notices) off stderr;
    errors still reach the user, as fairaudit's own messages."""
    import logging
    import warnings

    loggers = [logging.getLogger(name) for name in ("distributed", "dask")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(dask|distributed)(\.|$)")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextmanager
def scheduler_context(address: str | None) -> Iterator[tuple[str, ThreadPoolExecutor | None]]:
    """Run Dask on the cluster at ``address`` (a distributed Client), else on local threads.

    Yields the shuffle method (P2P on a cluster, the disk shuffle locally: memory stays bounded)
    and, locally, the thread pool to pass to ``dask.compute``.
    """
    if address:
        try:
            from distributed import Client
        except ImportError:
            raise UsageError(
                "--scheduler needs dask.distributed: pip install 'dask[distributed]' "
                "(or, in the fairaudit checkout, pip install '.[dask]')"
            ) from None
        try:
            client = Client(address, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise UsageError(f"--scheduler {address}: can not connect to a Dask scheduler there ({exc})") from None
        with client, _quiet_dask_logs():
            yield "p2p", None
        return
    # The threads are a pool of this read's own (passed to dask.compute, not put in Dask's
    # process-wide settings, so two reads in two threads do not share it), joined on the way out
    # after an error: Dask raises as soon as one piece fails, and a process that then ended while
    # other pieces were inside Arrow's reader aborted ("terminate called without an active
    # exception", exit 134) about 1 time in 10. A Ctrl-C leaves at once, as in
    # ``engines.threads.run_jobs``.
    with _shuffle_folder():
        pool = _thread_pool(available_cores())
        interrupted = False
        try:
            yield "disk", pool
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            pool.shutdown(wait=not interrupted, cancel_futures=True)


_SHUFFLE_LOCK = threading.Lock()
#: The shuffle folder of the local reads running now: [reads using it, the folder, Dask's setting].
_shuffle_users: list[Any] = [0, None, None]


@contextmanager
def _shuffle_folder() -> Iterator[None]:
    """The disk shuffle's partd folders go in a folder of our own, removed when the last read using
    it ends (even after an error): partd cleans up only at interpreter exit, which the CLI skips.

    Dask reads the folder from its process-wide settings, so reads running in several threads
    share one folder: a folder per read was deleted by the first read to finish while another
    read's shuffle, which had picked it up from the shared setting, was still writing to it.
    """
    with _SHUFFLE_LOCK:
        if _shuffle_users[0] == 0:
            folder = tempfile.TemporaryDirectory(prefix="fairaudit-shuffle-")
            setting = dask.config.set(scheduler="threads", temporary_directory=folder.name)
            _shuffle_users[1:] = [folder, setting]
        _shuffle_users[0] += 1
    try:
        yield
    finally:
        with _SHUFFLE_LOCK:
            _shuffle_users[0] -= 1
            if _shuffle_users[0] == 0:
                folder, setting = _shuffle_users[1:]
                _shuffle_users[1:] = [None, None]
                setting.__exit__(None, None, None)
                folder.cleanup()


def _thread_pool(workers: int) -> ThreadPoolExecutor:
    """Dask's own thread pool class where it has one (it passes the caller's contextvars to tasks)."""
    import dask.threaded

    pool_class = getattr(dask.threaded, "ContextAwareThreadPoolExecutor", ThreadPoolExecutor)
    return pool_class(workers, thread_name_prefix="fairaudit-dask")


def parse_blocksize(blocksize: int | str | None) -> int | None:
    """Bytes per block: an int, a string like "64MB" / "1GiB", None for the default, 0 for whole files."""
    if blocksize is None:
        return DEFAULT_BLOCKSIZE
    if isinstance(blocksize, str):
        from dask.utils import parse_bytes

        try:
            blocksize = parse_bytes(blocksize)
        except (ValueError, TypeError):
            raise UsageError(f"--blocksize takes a size such as 64MB or 1GiB, not {blocksize!r}") from None
    if not isinstance(blocksize, (int, np.integer)) or blocksize < 0:
        raise UsageError("--blocksize must be a size of 0 bytes or more (0: one piece per file)")
    return int(blocksize) or None


# --- the entry point -----------------------------------------------------------------------


#: Serialises building and optimising task graphs across threads (see read_log_dask).
GRAPH_LOCK = threading.Lock()


def read_log_dask(
    pattern: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    normalize: str = "default",
    embeddings: str | Path | pd.DataFrame | None = None,
    scheduler: str | None = None,
    blocksize: int | str | None = None,
) -> ShardedLog:
    """Read, validate and aggregate a log of one or many files on Dask (see the module docstring)."""
    from fairaudit.text.scoring import check_normalize

    check_normalize(normalize)
    size = parse_blocksize(blocksize)
    pattern = str(pattern)
    files = expand_inputs(pattern)
    if not files:
        raise InputError("no files match this pattern", file=pattern)
    for url in files:
        sources.format_of(url)  # an unknown extension is named before any work
    pieces = make_pieces(files, size)
    plan = make_plan(files, columns, normalize, many=len(pieces) > 1)

    if embeddings is not None and plan.emb_dim:
        raise InputError(
            "the log has inline emb_* columns and --embeddings was also given; use one of them",
            file=sources.name_of(embeddings),
        )

    whole = {p.url for p in pieces if p.start is None}
    single_file = not is_pattern(pattern) and len(files) == 1 and files[0] == pattern.removeprefix("file://")
    with scheduler_context(scheduler) as (shuffle_method, pool):
        # Built under a process-wide lock: dask's expression optimiser relies on functools.cached_property,
        # whose class-wide lock in Python 3.11 deadlocks two threads optimising graphs at once (CPython
        # gh-87634); two concurrent reads hung in test_dask_engine. Building is cheap; the reads still overlap.
        with GRAPH_LOCK:
            reads = [delayed(read_piece, nout=2)(p, plan, p.url in whole) for p in pieces]
            frames = [r[0] for r in reads]
            summaries = [r[1] for r in reads]
            ddf = dd.from_delayed(frames, meta=plan.transport_meta(), verify_meta=False)
            npart = max(1, len(pieces))
            by_speaker = ddf.shuffle(on=logs.SPEAKER, npartitions=npart, shuffle_method=shuffle_method)
            types = delayed(unify_text_types, pure=True)(summaries, len(plan.metadata)) if plan.kind == "text" else None
            forms = delayed(_error_form, pure=True)(summaries)
            categories = delayed(global_categories, pure=True)(summaries, len(plan.metadata))
            # The embeddings are read by a task (on a cluster, a worker) and passed between workers:
            # never through the client or inside the task graph; the client gets a summary.
            loaded = (
                delayed(load_embeddings, pure=True, nout=2)(*_embeddings_argument(embeddings))
                if embeddings is not None
                else (None, True)
            )
            about = delayed(summarize_embeddings, pure=True)(loaded[0]) if embeddings is not None else None
            parts = [
                delayed(aggregate_partition, pure=True)(p, plan, types, categories, loaded[0], loaded[1], forms)
                for p in by_speaker.to_delayed()
            ]
            repeats: list = []
            if plan.utterance_actual is not None:
                ids = ddf[[logs.UTTERANCE, PIECE, ROW]]
                ids = ids[~ids[logs.UTTERANCE].isna()]
                by_id = ids.shuffle(on=logs.UTTERANCE, npartitions=npart, shuffle_method=shuffle_method)
                repeats = [delayed(first_repeat, pure=True)(p) for p in by_id.to_delayed()]
            digests = [delayed(file_digest)(_location(url)) for url in files if url not in whole]
        try:
            summaries_v, parts_v, repeats_v, digests_v, about_v, known_v = dask.compute(
                summaries, parts, repeats, digests, about, loaded[1], **({"pool": pool} if pool else {})
            )
        except PieceError as error:
            raise error.unwrap() from None

    found = [r for r in repeats_v if r is not None]
    if found:
        raise _repeat_error(min(found), pieces, summaries_v, plan)
    rows = sum(s["rows"] for s in summaries_v)
    if rows == 0:
        raise InputError(f"none of the {len(files)} files has data rows", file=pattern)
    notes = merge_notes(summaries_v)
    parts_v = [p for p in parts_v if p is not None]
    embeddings_of = "table"
    if about_v is not None:
        key = settle_embeddings(about_v, known_v, parts_v, plan.utterance_actual is not None, notes)
        if not known_v and key == logs.UTTERANCE:
            embeddings_of = "alt"
    speakers = concat_speaker_tables(parts_v, embeddings_of)
    notes += log_columns.implausible_wer_notes(speakers.errors, speakers.ref_words, _error_form(summaries_v))

    sha_of = {s["url"]: s["sha256"] for s in summaries_v if s["sha256"]}
    sha_of.update(zip([u for u in files if u not in whole], digests_v))
    sha = sha_of[files[0]] if single_file else manifest_sha256({u: sha_of[u] for u in files})
    empty = pd.DataFrame({c: pd.Series([], dtype=plan.transport_meta()[c].dtype) for c in plan.core})
    return ShardedLog(
        frame=empty,
        metadata_columns=list(speakers.metadata_columns),
        embeddings=None,
        path=pattern,
        sha256=sha,
        error_form=_error_form(summaries_v),
        notes=notes,
        utterance_count=rows,
        speaker_table=speakers,
        files=files,
    )


def _error_form(summaries: list[dict]) -> str:
    """The error form of the log (the same in every piece: the files have the same columns)."""
    return next((s["form"] for s in summaries if s.get("form")), "errors")
