"""Input files: formats by extension, hashing, reading tables with pyarrow, and naming the line of a row.

Every problem is an :class:`~fairaudit.errors.InputError` naming file, line (1-based, as an editor
shows it), column and value; see :mod:`fairaudit.io.readers` for the whole contract.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fairaudit.errors import NO_ROWS, InputError, UsageError
from fairaudit.validate.column_rules import CANONICAL_COLUMNS, STRING_COLUMNS

MISSING_TEXT = ("", "NA")  # text values that mean "missing" in metadata, ZIP and id columns


NUMERIC_NULLS = pa_csv.ConvertOptions().null_values  # pyarrow's defaults: "", "NA", "nan", ...


UNSET = object()


@dataclass(frozen=True)
class FileFormat:
    """A file's format from its extension: kind is csv, tsv, parquet or npy."""

    kind: str
    gzip: bool = False


def format_of(path: str | Path, allowed: tuple[str, ...] = ("csv", "tsv", "parquet")) -> FileFormat:
    """The format of a file from its extension; an InputError for anything not in ``allowed``."""
    name = Path(path).name.lower()
    for ext, fmt in (
        (".csv.gz", FileFormat("csv", True)),
        (".tsv.gz", FileFormat("tsv", True)),
        (".csv", FileFormat("csv")),
        (".tsv", FileFormat("tsv")),
        (".parquet", FileFormat("parquet")),
        (".npy", FileFormat("npy")),
    ):
        if name.endswith(ext) and fmt.kind in allowed:
            return fmt
    known = {"csv": ".csv, .csv.gz", "tsv": ".tsv, .tsv.gz", "parquet": ".parquet", "npy": ".npy"}
    raise InputError(
        "unknown file type; the extension must be one of " + ", ".join(known[k] for k in allowed),
        file=str(path),
    )


def stream_sha256(handle: BinaryIO, copy_to: BinaryIO | None = None) -> str:
    """SHA-256 (hex) of the rest of an open binary stream, read in 1 MiB blocks; with ``copy_to``
    the bytes are also written there (a remote file copied and hashed in one pass)."""
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
        if copy_to is not None:
            copy_to.write(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a local file's bytes (hex): provenance for the audit report."""
    with open(path, "rb") as handle:
        return stream_sha256(handle)


@dataclass
class Source:
    """An input file being read: its path, format and header, and how to name a row in messages."""

    path: Path
    name: str
    fmt: FileFormat
    header: list[str] = field(default_factory=list)

    def error(
        self,
        message: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: object = UNSET,
        line: int | None = None,
        code: str = "input",
    ) -> InputError:
        """An InputError for this file; ``row`` is a 0-based data row, located to a line here."""
        if row is not None:
            if self.fmt.kind == "frame":
                message = f"{message} (DataFrame row {row + 1}, counting from 1)"
            elif self.fmt.kind in ("parquet", "npy"):
                line = row + 1
                what = "Parquet table" if self.fmt.kind == "parquet" else "array"
                message = f"{message} (row {row + 1} of the {what}, counting from 1)"
            else:
                line, raw = self.locate(row, column)
                if raw is not None:
                    value = raw
        shown = None if value is UNSET else value
        return InputError(message, file=self.name, line=line, column=column, value=shown, code=code)

    def locate(self, row: int, column: str | None) -> tuple[int | None, str | None]:
        """The line where data row ``row`` starts, and its raw text in ``column`` (error path only)."""
        found = _locate_fast(self, row)
        if found is not None:
            line, fields = found
            return line, self._field(fields, column)
        for index, (line, fields) in enumerate(iter_text_rows(self)):
            if index == row:
                return line, self._field(fields, column)
        return row + 2, None

    def _field(self, fields: list[str], column: str | None) -> str | None:
        """The raw text of ``column`` in a parsed row, if there is one."""
        if column is None or column not in self.header:
            return None
        position = self.header.index(column)
        return fields[position] if position < len(fields) else None


def _locate_fast(src: Source, row: int) -> tuple[int, list[str]] | None:
    """Find a data row by counting raw lines (fast); None if a quote makes that unsafe in CSV."""
    opener = gzip.open if src.fmt.gzip else open
    csv_quotes = src.fmt.kind == "csv"
    index = -2  # the header is not a data row
    with opener(src.path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            if csv_quotes and raw.count(b'"') % 2:
                return None  # an open quoted value continues on the next line: let csv decide
            if not raw.strip(b"\r\n"):
                continue
            index += 1
            if index == row:
                text = raw.decode("utf-8-sig").rstrip("\r\n")
                return number, next(_csv_reader(io.StringIO(text), src), [])
    return None


def source_for(path: str | Path, allowed: tuple[str, ...] = ("csv", "tsv", "parquet")) -> Source:
    """A Source for an existing, non-empty file of a known format."""
    fmt = format_of(path, allowed)
    p = Path(path)
    if not p.exists():
        raise InputError("no such file", file=str(path))
    if p.is_dir():
        raise InputError("this is a directory, not a file", file=str(path))
    if p.stat().st_size == 0:
        raise InputError("the file is empty (0 bytes); expected a header line and data rows", file=str(path))
    with open(p, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PAR1" and fmt.kind != "parquet":
        raise InputError(
            f"this is a Parquet file (it starts with PAR1) but is named .{fmt.kind}: rename it to .parquet",
            file=str(path),
        )
    if magic[:2] == b"\x1f\x8b" and not fmt.gzip and fmt.kind in ("csv", "tsv"):
        raise InputError(
            f"this file is gzip-compressed but is named .{fmt.kind}: rename it to .{fmt.kind}.gz", file=str(path)
        )
    return Source(p, str(path), fmt)


def _open_text(src: Source, errors: str = "strict") -> io.TextIOBase:
    """Open a text file (gzip'd or not) as UTF-8, dropping a byte-order mark."""
    if src.fmt.gzip:
        return gzip.open(src.path, "rt", encoding="utf-8-sig", errors=errors, newline="")
    return open(src.path, encoding="utf-8-sig", errors=errors, newline="")


def _csv_reader(handle: io.TextIOBase, src: Source):
    """A csv.reader with the dialect pyarrow is given: RFC 4180 for CSV, no quoting for TSV."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    if src.fmt.kind == "tsv":
        return csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(handle, delimiter=",", quotechar='"', doublequote=True)


def iter_text_rows(src: Source) -> Iterator[tuple[int, list[str]]]:
    """Yield (line where the record starts, fields) for each data row, skipping blank lines."""
    with _open_text(src) as handle:
        reader = _csv_reader(handle, src)
        previous = 0
        header_seen = False
        for fields in reader:
            start = previous + 1
            previous = reader.line_num
            if not fields:
                continue
            if not header_seen:
                header_seen = True
                continue
            yield start, fields


def read_header(src: Source) -> list[str]:
    """The header row of a text file, read with Python's csv module (the first non-blank line)."""
    try:
        with _open_text(src, errors="surrogateescape") as handle:  # bad bytes later are found later
            for fields in _csv_reader(handle, src):
                if fields:
                    if any(_has_bad_bytes(name) for name in fields):
                        raise bad_utf8_error(src)
                    return fields
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise src.error(f"can not read the file: {exc}") from None
    raise src.error("the file has no header line (it is empty or blank)")


def check_header(src: Source, header: list[str]) -> None:
    """Column names must be non-empty and unique."""
    seen: set[str] = set()
    for position, name in enumerate(header, 1):
        if not name.strip():
            raise src.error(
                f"column {position} of the header has no name; every column needs one",
                line=1 if src.fmt.kind in ("csv", "tsv") else None,
                value=name,
            )
        if name in seen:
            raise src.error(
                "two columns have this name; column names must be unique",
                line=1 if src.fmt.kind in ("csv", "tsv") else None,
                column=name,
            )
        seen.add(name)


def mapped_name(canonical: str, columns: Mapping[str, str] | None) -> str:
    """The column name in the file that holds the canonical column ``canonical``."""
    if columns and canonical in columns:
        return columns[canonical]
    return canonical


def check_mapping(src: Source, columns: Mapping[str, str] | None, canonical_names: tuple[str, ...]) -> dict[str, str]:
    """Validate ``--column canonical=actual`` against the header; return actual -> canonical."""
    rename: dict[str, str] = {}
    for canonical, actual in (columns or {}).items():
        if canonical not in canonical_names:
            raise UsageError(
                f"--column {canonical}={actual}: {canonical!r} is not a canonical column name; "
                f"known names: {', '.join(canonical_names)}",
                column=canonical,
            )
        if actual not in src.header:
            raise src.error(
                f"--column {canonical}={actual}: the file has no column {actual!r} "
                f"(its columns are: {list_names(src.header)})",
                column=actual,
            )
        if actual != canonical and canonical in src.header:
            raise src.error(
                f"--column {canonical}={actual} maps another column to {canonical!r}, but the file "
                f"already has a column {canonical!r}; rename or drop one of them",
                column=canonical,
            )
        if actual in rename:
            raise UsageError(f"--column maps column {actual!r} twice", column=actual)
        rename[actual] = canonical
    return rename


def list_names(names: list[str], limit: int = 20) -> str:
    """Comma-separated quoted names, shortened for messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_table(
    src: Source,
    *,
    columns: Mapping[str, str] | None = None,
    all_strings: bool = False,
    string_columns: tuple[str, ...] = STRING_COLUMNS,
    canonical_names: tuple[str, ...] = CANONICAL_COLUMNS,
    list_columns: tuple[str, ...] = (),
) -> tuple[pa.Table, dict[str, str]]:
    """Read a CSV/TSV/Parquet file into Arrow with its original column names.

    Returns the table and the actual -> canonical renaming from ``columns``. Columns whose
    canonical name is in ``string_columns`` are read as text; with ``all_strings`` every column is.
    Raises InputError for empty, header-only, ragged or non-UTF-8 files.
    """
    if src.fmt.kind == "parquet":
        table = _read_parquet(src)
        rename = check_mapping(src, columns, canonical_names)
        flat = [name for name in table.column_names if rename.get(name, name) in canonical_names]
        table = _flat_parquet_columns(src, table, [name for name in flat if name not in list_columns])
    else:
        src.header = read_header(src)
        check_header(src, src.header)
        rename = check_mapping(src, columns, canonical_names)
        canonical_of = {a: rename.get(a, a) for a in src.header}
        forced = [a for a in src.header if all_strings or canonical_of[a] in string_columns]
        table = _read_text(src, forced)
    if table.num_rows == 0:
        raise src.error("the file has a header but no data rows", code=NO_ROWS)
    return table, rename


def _read_parquet(src: Source) -> pa.Table:
    """Read a Parquet file; unreadable files are an InputError."""
    try:
        table = pq.read_table(src.path)
    except (pa.ArrowException, OSError) as exc:
        raise src.error(f"not a readable Parquet file: {exc}") from None
    src.header = list(table.column_names)
    check_header(src, src.header)
    return table


def _flat_parquet_columns(src: Source, table: pa.Table, flat: list[str]) -> pa.Table:
    """The ``flat`` columns (speaker, counts, text, coordinates: metadata may be nested and is read
    as JSON text) one value per row: nested values are an error naming the column. Binary columns
    become text, or an error naming the first row that is not UTF-8."""
    for position, (name, column) in enumerate(zip(table.column_names, table.columns)):
        kind = column.type
        nested = pa.types.is_nested(kind) or (pa.types.is_dictionary(kind) and pa.types.is_nested(kind.value_type))
        if name in flat and nested:
            raise src.error(
                f"this column holds {kind} values, not one value per row; flatten it (one column per value, "
                "or a text column) before auditing",
                column=name,
            )
        if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            try:
                table = table.set_column(position, name, pc.cast(column, pa.string()))
            except pa.ArrowInvalid:
                row = next(
                    index for index, value in enumerate(column.to_pylist()) if value is not None and not _is_utf8(value)
                )
                raise src.error(
                    "this column holds bytes that are not UTF-8 text; write it as text (UTF-8 strings)",
                    row=row,
                    column=name,
                    value=column[row].as_py(),
                ) from None
    return table


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _read_text(src: Source, forced_strings: list[str]) -> pa.Table:
    """Read CSV/TSV with pyarrow's multi-threaded reader; locate parse and encoding errors."""
    convert = pa_csv.ConvertOptions(
        column_types={name: pa.string() for name in forced_strings},
        strings_can_be_null=False,
    )
    read = pa_csv.ReadOptions(use_threads=True, block_size=1 << 24)
    tsv = src.fmt.kind == "tsv"
    attempts = [False] if tsv else [False, True]  # retry CSV allowing newlines in quoted values
    failure: Exception | None = None
    for newlines in attempts:
        parse = pa_csv.ParseOptions(
            delimiter="\t" if tsv else ",", quote_char=False if tsv else '"', newlines_in_values=newlines
        )
        try:
            with pa.input_stream(str(src.path), compression="gzip" if src.fmt.gzip else None) as stream:
                table = pa_csv.read_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
        except (pa.ArrowInvalid, OSError) as exc:
            text = str(exc).lower()
            if "utf8" in text or "utf-8" in text:
                raise bad_utf8_error(src) from None
            if "parse error" not in text:
                raise src.error(f"can not read the file: {exc}") from None
            failure = exc
            continue
        break
    else:
        raise _ragged_error(src, failure)
    if not tsv and _last_row_spans_lines(table):  # maybe a quote never closed, swallowing the rest
        unclosed = _unclosed_quote_error(src)
        if unclosed is not None:
            raise unclosed
    # The parser's block buffers are free now, but Arrow's allocator keeps their pages (about 1.4 GiB
    # for a 0.8 GiB table of ten million rows): give them back, so the checks add to the table's size.
    pa.default_memory_pool().release_unused()
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        raise bad_utf8_error(src)
    if table.column_names != src.header:  # pyarrow and csv disagree on the header: trust neither
        raise src.error(f"could not read the header consistently (got {list_names(table.column_names)})", line=1)
    return table


def _last_row_spans_lines(table: pa.Table) -> bool:
    """Whether a text value of the last row holds a line break: where a quote that is never closed
    ends up (pyarrow reads it as one value running to the end of the file, without an error)."""
    if table.num_rows == 0:
        return False
    last = table.slice(table.num_rows - 1)
    for column in last.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            value = column[0].as_py()
            if value is not None and ("\n" in value or "\r" in value):
                return True
    return False


def _unclosed_quote_error(src: Source) -> InputError | None:
    """The error naming the line where a quoted value starts that is never closed, found with
    Python's strict CSV parser; None when every quote is closed (a real multi-line value)."""
    with _open_text(src) as handle:
        reader = csv.reader(handle, delimiter=",", quotechar='"', doublequote=True, strict=True)
        previous = 0
        try:
            for _ in reader:
                previous = reader.line_num
        except csv.Error:
            return src.error(
                "a quoted value starting on this line is never closed (an unbalanced '\"'?): the rest of the "
                "file would be read as part of this one value; close the quote or remove it",
                line=previous + 1,
            )
    return None


def _ragged_error(src: Source, failure: Exception | None) -> InputError:
    """Find the first row whose field count differs from the header's and describe it."""
    width = len(src.header)
    try:
        for line, fields in iter_text_rows(src):
            if len(fields) != width:
                sep = "\t" if src.fmt.kind == "tsv" else ","
                hint = (
                    "a quoted value starting on this line is never closed (an unbalanced '\"'?)"
                    if any("\n" in f or "\r" in f for f in fields)
                    else "check for unquoted delimiters inside values"
                )
                return src.error(
                    f"this row has {len(fields)} field(s) but the header has {width}; "
                    f"every row needs one value per column; {hint}",
                    line=line,
                    value=sep.join(fields),
                )
    except (UnicodeDecodeError, csv.Error):
        pass
    return src.error(f"can not parse the file: {failure}")


def bad_utf8_error(src: Source) -> InputError:
    """Find the first line that is not valid UTF-8 and show the offending bytes."""
    opener = gzip.open if src.fmt.gzip else open
    with opener(src.path, "rb") as handle:
        for number, raw in enumerate(handle, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start : exc.end]
                context = raw[max(0, exc.start - 20) : exc.end + 20]
                hint = " (it looks like UTF-16)" if raw.startswith((b"\xff\xfe", b"\xfe\xff")) else ""
                return src.error(
                    f"the file is not UTF-8 text{hint}: byte {exc.start + 1} of this line starts an "
                    f"invalid sequence {bad!r} in {context!r}; save the file as UTF-8",
                    line=number,
                    value=bad,
                    column=_column_holding_bad_bytes(src, raw, number),
                )
    return src.error("the file is not valid UTF-8 text; save it as UTF-8")


def _column_holding_bad_bytes(src: Source, raw: bytes, number: int) -> str | None:
    """Which header column the first undecodable byte of a data line falls in, if known."""
    if number == 1 or not src.header or src.fmt.kind not in ("csv", "tsv"):
        return None
    text = raw.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
    fields: list[str] = next(_csv_reader(io.StringIO(text), src), [])
    for position, value in enumerate(fields):
        if _has_bad_bytes(value):
            return src.header[position] if position < len(src.header) else None
    return None


def _has_bad_bytes(text: str) -> bool:
    """True if text decoded with surrogateescape holds undecodable bytes."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def as_plain(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous, non-dictionary Arrow array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def line_name(src: Source, row: int) -> str:
    """How to refer to a row in a message: 'line N' for text files, 'row N' otherwise."""
    if src.fmt.kind == "frame":
        return f"DataFrame row {row + 1}"
    if src.fmt.kind in ("csv", "tsv"):
        return f"line {src.locate(row, None)[0]}"
    return f"row {row + 1}"


def name_of(source: object) -> str:
    """A short name for a path or an in-memory frame, for messages."""
    return "<embeddings DataFrame>" if isinstance(source, pd.DataFrame) else str(source)


def frame_to_table(frame: pd.DataFrame, src: Source) -> pa.Table:
    """A pandas frame as Arrow; columns of mixed Python types become text rather than failing."""
    frame = frame.rename(columns=str).reset_index(drop=True)
    arrays = []
    for name in frame.columns:
        column = frame[name]
        try:
            arrays.append(pa.Array.from_pandas(column))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            text = column.astype(object).where(column.notna(), None)
            arrays.append(pa.array([None if v is None else str(v) for v in text], pa.string()))
    return pa.Table.from_arrays(arrays, names=list(frame.columns))


def write_table(table: pa.Table, path: str | Path, fmt: FileFormat) -> None:
    """Write an Arrow table as CSV, TSV (unquoted), optionally gzip'd, or Parquet."""
    if fmt.kind == "parquet":
        pq.write_table(table, str(path))
        return
    with pa.output_stream(str(path), compression="gzip" if fmt.gzip else None) as stream:
        if fmt.kind == "csv":
            pa_csv.write_csv(table, stream)
        else:
            _write_tsv(table, stream, str(path))


def _write_tsv(table: pa.Table, stream, name: str) -> None:
    """TSV without quoting, in batches; a value holding a tab or newline is an InputError."""
    stream.write(("\t".join(table.column_names) + "\n").encode("utf-8"))
    for batch in table.to_batches(max_chunksize=65_536):
        texts = []
        for column_name, column in zip(table.column_names, batch.columns):
            text = pc.fill_null(pc.cast(column, pa.string()), "")
            bad = pc.match_substring_regex(text, r"[\t\r\n]")
            if pc.any(bad).as_py():
                raise InputError(
                    "a value holds a tab or a line break, which TSV can not represent; write CSV or Parquet instead",
                    file=name,
                    column=column_name,
                )
            texts.append(text)
        lines = pc.binary_join_element_wise(*texts, pa.scalar("\t")) if len(texts) > 1 else texts[0]
        lines = pc.binary_join_element_wise(lines, pa.scalar(""), pa.scalar("\n"))
        stream.write("".join(lines.to_pylist()).encode("utf-8"))
