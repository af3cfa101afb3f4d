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

import csv
import gzip
import hashlib
import io
import json
import re
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from fairaudit.errors import InputError, UsageError
from fairaudit.geodata.zipcodes import normalize_zip_array
from fairaudit.model import log as logs
from fairaudit.model.log import EmbeddingTable, UtteranceLog
from fairaudit.text.scoring import check_normalize, score_texts

# --- canonical names -------------------------------------------------------------------------

SUBSTITUTIONS, DELETIONS, INSERTIONS = "substitutions", "deletions", "insertions"
WER, REFERENCE, HYPOTHESIS = "wer", "reference", "hypothesis"

#: Every canonical column name of the utterance log (SPEC section 2).
CANONICAL_COLUMNS = (
    logs.SPEAKER,
    logs.UTTERANCE,
    logs.ERRORS,
    logs.REF_WORDS,
    SUBSTITUTIONS,
    DELETIONS,
    INSERTIONS,
    WER,
    REFERENCE,
    HYPOTHESIS,
    logs.LATITUDE,
    logs.LONGITUDE,
    logs.ZIP_CODE,
)
#: Columns always read as text, never guessed as numbers ("007" stays "007", "02134" keeps its 0).
STRING_COLUMNS = (
    logs.SPEAKER,
    logs.UTTERANCE,
    logs.ZIP_CODE,
    REFERENCE,
    HYPOTHESIS,
    # counts and rates too: pyarrow's CSV reader would read "0x10" as 16; they are parsed
    # here, strictly (plain decimal numbers only), by _counts and _floats
    logs.ERRORS,
    logs.REF_WORDS,
    "substitutions",
    "deletions",
    "insertions",
    "wer",
)
#: The four forms of error information, in order of preference (the first complete one is used).
ERROR_FORMS: dict[str, tuple[str, ...]] = {
    "errors": (logs.ERRORS, logs.REF_WORDS),
    "sdi": (SUBSTITUTIONS, DELETIONS, INSERTIONS, logs.REF_WORDS),
    "wer": (WER, logs.REF_WORDS),
    "text": (REFERENCE, HYPOTHESIS),
}
#: Columns that carry error information: never metadata.
ERROR_COLUMNS = (logs.ERRORS, logs.REF_WORDS, SUBSTITUTIONS, DELETIONS, INSERTIONS, WER, REFERENCE, HYPOTHESIS)
#: Census attributes of a demographics table, with their allowed ranges.
DEMOGRAPHIC_ATTRIBUTES: dict[str, tuple[float, float | None]] = {
    "pct_white": (0.0, 100.0),
    "pct_black": (0.0, 100.0),
    "pct_hispanic": (0.0, 100.0),
    "pct_asian": (0.0, 100.0),
    "pct_native_american": (0.0, 100.0),
    "pct_pacific_islander": (0.0, 100.0),
    "median_household_income": (0.0, None),
    "pct_bachelors_or_higher": (0.0, 100.0),
    "median_age": (0.0, None),
    "pct_below_poverty": (0.0, 100.0),
    "population_density": (0.0, None),
}

EMB_PATTERN = re.compile(r"^emb_([0-9]+)$")
MISSING_TEXT = ("", "NA")  # text values that mean "missing" in metadata, ZIP and id columns
_NUMERIC_NULLS = pa_csv.ConvertOptions().null_values  # pyarrow's defaults: "", "NA", "nan", ...
UNSET = object()


# --- files and formats -----------------------------------------------------------------------


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


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks: provenance for the audit report."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
        return InputError(message, file=self.name, line=line, column=column, value=None if value is UNSET else value)

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
                        raise _bad_utf8_error(src)
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


# --- column mapping --------------------------------------------------------------------------


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


# --- reading tables --------------------------------------------------------------------------


def read_table(
    src: Source,
    *,
    columns: Mapping[str, str] | None = None,
    all_strings: bool = False,
    string_columns: tuple[str, ...] = STRING_COLUMNS,
    canonical_names: tuple[str, ...] = CANONICAL_COLUMNS,
) -> tuple[pa.Table, dict[str, str]]:
    """Read a CSV/TSV/Parquet file into Arrow with its original column names.

    Returns the table and the actual -> canonical renaming from ``columns``. Columns whose
    canonical name is in ``string_columns`` are read as text; with ``all_strings`` every column is.
    Raises InputError for empty, header-only, ragged or non-UTF-8 files.
    """
    if src.fmt.kind == "parquet":
        table = _read_parquet(src)
        rename = check_mapping(src, columns, canonical_names)
    else:
        src.header = read_header(src)
        check_header(src, src.header)
        rename = check_mapping(src, columns, canonical_names)
        canonical_of = {a: rename.get(a, a) for a in src.header}
        forced = [a for a in src.header if all_strings or canonical_of[a] in string_columns]
        table = _read_text(src, forced)
    if table.num_rows == 0:
        raise src.error("the file has a header but no data rows")
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
                raise _bad_utf8_error(src) from None
            if "parse error" not in text:
                raise src.error(f"can not read the file: {exc}") from None
            failure = exc
            continue
        break
    else:
        raise _ragged_error(src, failure)
    if any(pa.types.is_binary(t) or pa.types.is_large_binary(t) for t in table.schema.types):
        raise _bad_utf8_error(src)
    if table.column_names != src.header:  # pyarrow and csv disagree on the header: trust neither
        raise src.error(f"could not read the header consistently (got {list_names(table.column_names)})", line=1)
    return table


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


def _bad_utf8_error(src: Source) -> InputError:
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
    fields = next(_csv_reader(io.StringIO(text), src), [])
    for position, value in enumerate(fields):
        if _has_bad_bytes(value):
            return src.header[position] if position < len(src.header) else None
    return None


def _has_bad_bytes(text: str) -> bool:
    """True if text decoded with surrogateescape holds undecodable bytes."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


# --- value checks (vectorised; locate on failure) --------------------------------------------


def as_plain(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """One contiguous, non-dictionary Arrow array."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    return arr


def _numeric(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values as float64 plus masks (missing, not a number); text is parsed, booleans rejected."""
    typ = arr.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        values = pc.cast(arr, pa.float64()) if not pa.types.is_floating(typ) else arr
        missing = arr.is_null().to_numpy(zero_copy_only=False)
        out = np.array(pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)  # writable copy
        return out, missing | np.isnan(out), np.zeros(len(arr), bool)
    if pa.types.is_null(typ):
        return np.full(len(arr), np.nan), np.ones(len(arr), bool), np.zeros(len(arr), bool)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        text = pc.utf8_trim_whitespace(arr)
        missing = pc.fill_null(pc.is_in(text, value_set=pa.array(_NUMERIC_NULLS)), True)
        missing = missing.to_numpy(zero_copy_only=False)
        decimal = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), False).to_numpy(zero_copy_only=False)
        parsed = np.full(len(arr), np.nan)
        if decimal.any():  # only plain decimal numbers: "0x10", "1_000" or "١٢" are not read as numbers
            parsed[decimal] = pc.cast(pc.filter(text, pa.array(decimal)), pa.float64()).to_numpy(zero_copy_only=False)
        return parsed, missing, ~decimal & ~missing
    return np.full(len(arr), np.nan), np.zeros(len(arr), bool), np.ones(len(arr), bool)


_NUMBER_TEXT = (logs.ERRORS, logs.REF_WORDS, "substitutions", "deletions", "insertions", "wer")
#: A plain decimal number (optional sign, digits, point, exponent), or a spelled-out infinity.
_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|Infinity|INF)$"
#: The largest count fairaudit accepts, per utterance and summed over the log: counts are added
#: in float64, which is exact up to 2**53.
MAX_COUNT = 2**53
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: A WER above this (errors per reference word) is a broken value, not a recogniser's output.
MAX_WER = 100.0


def _first(mask: np.ndarray) -> int | None:
    """Index of the first true entry, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _counts(table: pa.Table, actual: str, src: Source, what: str) -> np.ndarray:
    """A column of non-negative integer counts as int64; the first bad value is an InputError."""
    arr = as_plain(table.column(actual))
    if pa.types.is_integer(arr.type) and arr.null_count == 0:
        raw = arr.to_numpy()
        too_large = raw > MAX_COUNT if raw.dtype.kind == "u" else raw.astype(np.int64) > MAX_COUNT
        values = np.where(too_large, 0, raw).astype(np.int64)
        bad = _first(values < 0)
        if bad is None and not too_large.any():
            return _checked_total(values, src, actual, what)
        if bad is None or (_first(too_large) is not None and _first(too_large) < bad):
            bad = _first(too_large)
            raise src.error(
                f"{what} must be at most {MAX_COUNT:,} (this one is too large to count exactly)",
                row=bad,
                column=actual,
                value=_pyvalue(arr, bad),
            )
        raise src.error(
            f"{what} must be non-negative integers (this one is negative)",
            row=bad,
            column=actual,
            value=_pyvalue(arr, bad),
        )
    if pa.types.is_string(arr.type) and arr.null_count == 0 and pc.all(pc.utf8_is_digit(arr)).as_py():
        try:  # the usual case, plain digits: Arrow's own cast, no regular expression
            digits = pa.Table.from_arrays([pc.cast(arr, pa.int64())], names=[actual])
            return _counts(digits, actual, src, what)
        except pa.ArrowInvalid:  # too many digits for int64: the general path says which row
            pass
    values, missing, nonnumeric = _numeric(arr)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        negative = values < 0
        fractional = ~missing & ~nonnumeric & ~infinite & (values != np.floor(values))
        too_large = ~missing & ~nonnumeric & ~infinite & (values > MAX_COUNT)
    bad = _first(missing | nonnumeric | infinite | negative | fractional | too_large)
    if bad is None:
        return _checked_total(values.astype(np.int64), src, actual, what)
    reason = (
        "is missing (empty, NA or NaN); every row needs a value"
        if missing[bad]
        else "is not a number"
        if nonnumeric[bad]
        else "is infinite"
        if infinite[bad]
        else "is negative"
        if negative[bad]
        else f"is above {MAX_COUNT:,}, too large to count exactly"
        if too_large[bad]
        else "is not a whole number"
    )
    raise src.error(
        f"{what} must be non-negative integers (this one {reason})", row=bad, column=actual, value=_pyvalue(arr, bad)
    )


def _checked_total(values: np.ndarray, src: Source, actual: str, what: str) -> np.ndarray:
    """``values`` if their running total stays countable (per speaker sums never overflow)."""
    if float(values.sum(dtype=np.float64)) <= MAX_COUNT / 2:  # the usual case: no running total needed
        return values
    running = np.cumsum(values.astype(np.float64))
    bad = _first(running > MAX_COUNT)
    if bad is not None:
        raise src.error(
            f"{what} add up to more than {MAX_COUNT:,} by this row, too many to count exactly",
            row=bad,
            column=actual,
            value=int(values[bad]),
        )
    return values


def _floats(
    table: pa.Table, actual: str, src: Source, what: str, low: float | None, high: float | None, allow_missing: bool
) -> np.ndarray:
    """A float64 column within [low, high]; missing is NaN if allowed; first bad value raises."""
    arr = as_plain(table.column(actual))
    values, missing, nonnumeric = _numeric(arr)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        below = values < low if low is not None else np.zeros(len(values), bool)
        above = values > high if high is not None else np.zeros(len(values), bool)
    bad_missing = missing if not allow_missing else np.zeros(len(values), bool)
    bad = _first(bad_missing | nonnumeric | infinite | below | above)
    if bad is None:
        values[missing] = np.nan
        return values
    if low is not None and high is not None:
        rule = f"between {low:g} and {high:g}"
    elif low is not None:
        rule = f"at least {low:g}"
    else:
        rule = "a finite number"
    reason = (
        "is missing (empty, NA or NaN)"
        if bad_missing[bad]
        else "is not a number"
        if nonnumeric[bad]
        else "is infinite"
        if infinite[bad]
        else "is out of range"
    )
    raise src.error(
        f"{what} must be {rule}{'' if allow_missing else ' on every row'} (this one {reason})",
        row=bad,
        column=actual,
        value=_pyvalue(arr, bad),
    )


def _pyvalue(arr: pa.Array, row: int) -> object:
    """A value for messages: the Python value, or '' when missing."""
    value = arr[row].as_py()
    return "" if value is None else value


def _text_column(table: pa.Table, actual: str) -> pa.Array:
    """A column as an Arrow string array (numbers in Parquet become their text)."""
    arr = as_plain(table.column(actual))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return pc.cast(arr, pa.string()) if pa.types.is_large_string(arr.type) else arr


def _missing_text(arr: pa.Array) -> np.ndarray:
    """Mask of null, blank or "NA" text values."""
    trimmed = pc.utf8_trim_whitespace(arr)
    listed = pc.fill_null(pc.is_in(trimmed, value_set=pa.array(MISSING_TEXT)), True).to_numpy(zero_copy_only=False)
    return listed | arr.is_null().to_numpy(zero_copy_only=False)  # is_in says "false" for a null


def _first_duplicate(arr: pa.Array, skip: np.ndarray | None = None) -> tuple[int, int] | None:
    """(first row, later row) of the first repeated value in ``arr`` (ignoring ``skip`` rows)."""
    return _first_repeat(_codes(arr.dictionary_encode()), skip)


def _first_repeat(codes: np.ndarray, skip: np.ndarray | None = None) -> tuple[int, int] | None:
    """(first row, later row) of the first repeated dictionary code (ignoring ``skip`` and -1)."""
    # dictionary codes are numbered in order of first appearance: a code no larger than every
    # earlier code seen so far is a repeat
    codes = codes.copy()
    if skip is not None:
        codes[skip] = -1
    seen_max = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    later = _first((codes >= 0) & (codes <= seen_max))
    if later is None:
        return None
    earlier = _first(codes == codes[later])
    return earlier, later


def line_name(src: Source, row: int) -> str:
    """How to refer to a row in a message: 'line N' for text files, 'row N' otherwise."""
    if src.fmt.kind == "frame":
        return f"DataFrame row {row + 1}"
    if src.fmt.kind in ("csv", "tsv"):
        return f"line {src.locate(row, None)[0]}"
    return f"row {row + 1}"


# --- the utterance log -----------------------------------------------------------------------


def read_log(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    normalize: str = "default",
    embeddings: str | Path | None = None,
) -> UtteranceLog:
    """Read and validate an utterance log (CSV/TSV/gzip/Parquet) into canonical form.

    ``columns`` maps canonical names to the file's names (``--column canonical=actual``);
    ``normalize`` is the text normalisation for the reference/hypothesis form; ``embeddings`` is an
    optional ``--embeddings FILE``. The input file is only read, never changed.
    """
    check_normalize(normalize)
    src = source_for(path)
    with ThreadPoolExecutor(max_workers=1) as pool:  # hashlib releases the GIL: hash while parsing
        digest = pool.submit(file_sha256, path)
        table, rename = read_table(src, columns=columns)
        log = canonical_log(table, rename, src, normalize)
        log.path = str(path)
        log.sha256 = digest.result()
    if embeddings is not None:
        if log.embeddings is not None:
            raise InputError(
                "the log has inline emb_* columns and --embeddings was also given; use one of them",
                file=name_of(embeddings),
            )
        log.embeddings = attach_embeddings(log, embeddings)
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
    table = _frame_to_table(frame, src)
    src.header = list(table.column_names)
    check_header(src, src.header)
    rename = check_mapping(src, columns, CANONICAL_COLUMNS)
    if table.num_rows == 0:
        raise src.error("the DataFrame has no rows")
    log = canonical_log(table, rename, src, normalize)
    if embeddings is not None:
        if log.embeddings is not None:
            raise InputError(
                "the log has inline emb_* columns and --embeddings was also given; use one of them",
                file=name_of(embeddings),
            )
        log.embeddings = attach_embeddings(log, embeddings)
    return log


def name_of(source: object) -> str:
    """A short name for a path or an in-memory frame, for messages."""
    return "<embeddings DataFrame>" if isinstance(source, pd.DataFrame) else str(source)


def _frame_to_table(frame: pd.DataFrame, src: Source) -> pa.Table:
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


def canonical_log(table: pa.Table, rename: dict[str, str], src: Source, normalize: str) -> UtteranceLog:
    """Validate an Arrow table of a log and build the UtteranceLog (frame, metadata, embeddings)."""
    actual = {rename.get(a, a): a for a in table.column_names}  # canonical -> actual
    present = set(actual)
    _require_columns(src, present)
    notes: list[str] = []
    data: dict[str, object] = {}

    speakers = _text_column(table, actual[logs.SPEAKER])
    encoded = speakers.dictionary_encode()  # once: checks, speaker grouping and the embedding join use it
    codes = _codes(encoded)
    bad = _first(_missing_rows(encoded, codes))
    if bad is not None:
        raise src.error(
            "speaker_id is empty (or NA); every row needs a speaker",
            row=bad,
            column=actual[logs.SPEAKER],
            value=_pyvalue(speakers, bad),
        )
    data[logs.SPEAKER] = speakers
    speaker_codes, speaker_ids = _sorted_codes(encoded, codes)

    if logs.UTTERANCE in present:
        data[logs.UTTERANCE] = _utterance_ids(table, actual[logs.UTTERANCE], src)

    errors, ref_words, form = _error_information(table, actual, present, src, normalize)
    data[logs.ERRORS] = errors
    data[logs.REF_WORDS] = ref_words
    if REFERENCE in present:  # for matching two systems' logs that have no utterance ids
        text = pc.utf8_trim_whitespace(_text_column(table, actual[REFERENCE])).to_numpy(zero_copy_only=False)
        data[logs.REFERENCE_HASH] = pd.util.hash_array(np.asarray(text, dtype=object))

    _coordinates(table, actual, present, src, data)
    if logs.ZIP_CODE in present:
        data[logs.ZIP_CODE] = _zip_codes(table, actual[logs.ZIP_CODE], src, notes)

    emb_columns = embedding_columns(table.column_names, src)
    embeddings = None
    if emb_columns:
        vectors = _vectors_from_columns(table, emb_columns, src)
        embeddings = EmbeddingTable(key="row", vectors=vectors, ids=None, source=src.name)

    used = set(CANONICAL_COLUMNS) | set(ERROR_COLUMNS)
    metadata = [c for c in table.column_names if rename.get(c, c) not in used and c not in emb_columns]
    for name in metadata:
        data[name] = metadata_column(table.column(name))
    frame = to_frame(data)
    return UtteranceLog(
        frame=frame,
        metadata_columns=metadata,
        embeddings=embeddings,
        error_form=form,
        notes=notes,
        text_normalization=normalize if form == "text" else None,
        speaker_codes=speaker_codes,
        speaker_ids=speaker_ids,
    )


def _missing_rows(encoded: pa.DictionaryArray, codes: np.ndarray) -> np.ndarray:
    """Rows whose value is null, blank or "NA" (``codes`` from :func:`_codes`); the text checks
    run on the distinct values only."""
    missing_values = np.r_[_missing_text(encoded.dictionary), True]  # the extra entry: code -1 (null)
    return missing_values[codes]


def _codes(encoded: pa.DictionaryArray) -> np.ndarray:
    """The indices of a dictionary array as int64 (-1 for null)."""
    return pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _sorted_codes(encoded: pa.DictionaryArray, codes: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Codes into the sorted distinct values (what ``pd.factorize(sort=True)`` gives): Arrow sorts
    strings by UTF-8 bytes, which is code point order, as Python compares them."""
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    values = encoded.dictionary.take(pa.array(order)).to_pandas().astype("str")
    return rank[codes], pd.Index(values, dtype="string")


def _require_columns(src: Source, present: set[str]) -> None:
    """speaker_id and one complete error form are required; say which columns would do."""
    if logs.SPEAKER not in present:
        raise src.error(
            "the required column 'speaker_id' is missing (if the speaker is in another column, "
            f"use --column speaker_id=NAME); the file's columns are: {list_names(src.header)}",
            column=logs.SPEAKER,
        )
    if any(set(cols) <= present for cols in ERROR_FORMS.values()):
        return
    found = [c for c in ERROR_COLUMNS if c in present]
    options = "; ".join(" + ".join(cols) for cols in ERROR_FORMS.values())
    first_missing = next(
        (c for cols in ERROR_FORMS.values() if set(cols) & present for c in cols if c not in present), logs.ERRORS
    )
    raise src.error(
        f"no complete error information: add one of these sets of columns: {options} "
        f"(found: {', '.join(found) if found else 'none of them'})",
        column=first_missing,
    )


def _utterance_ids(table: pa.Table, actual: str, src: Source) -> pa.Array:
    """Utterance ids as text (missing allowed as null); duplicates are an InputError."""
    ids = _text_column(table, actual)
    encoded = ids.dictionary_encode()  # one hash of every id serves the missing and duplicate checks
    codes = _codes(encoded)
    missing = _missing_rows(encoded, codes)
    duplicate = _first_repeat(codes, missing)
    if duplicate is not None:
        earlier, later = duplicate
        raise src.error(
            f"utterance_id is repeated: the same id is on {line_name(src, earlier)}; utterance ids must be unique",
            row=later,
            column=actual,
            value=ids[later].as_py(),
        )
    if missing.any():
        ids = pc.if_else(pa.array(missing), pa.scalar(None, pa.string()), ids)
    return ids


def _error_information(
    table: pa.Table, actual: dict[str, str], present: set[str], src: Source, normalize: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """Errors and ref_words from the first complete error form, checked against every other one."""
    forms = [name for name, cols in ERROR_FORMS.items() if set(cols) <= present]
    count_what = {
        logs.ERRORS: "error counts",
        SUBSTITUTIONS: "substitution counts",
        DELETIONS: "deletion counts",
        INSERTIONS: "insertion counts",
        logs.REF_WORDS: "reference word counts",
    }
    counts = {c: _counts(table, actual[c], src, count_what[c]) for c in count_what if c in present}
    derived: dict[str, tuple[np.ndarray, np.ndarray | None, str]] = {}  # form -> errors, ref, text
    if "errors" in forms:
        derived["errors"] = (counts[logs.ERRORS], counts[logs.REF_WORDS], "errors")
    if "sdi" in forms:
        sdi = counts[SUBSTITUTIONS] + counts[DELETIONS] + counts[INSERTIONS]
        derived["sdi"] = (sdi, counts[logs.REF_WORDS], "substitutions+deletions+insertions")
    if "wer" in forms:
        wer = _floats(table, actual[WER], src, "wer (word error rate)", 0.0, MAX_WER, False)
        derived["wer"] = (
            _checked_total(
                np.floor(wer * counts[logs.REF_WORDS] + 0.5).astype(np.int64),
                src,
                actual[WER],
                "errors (round(wer x ref_words))",
            ),
            counts[logs.REF_WORDS],
            "round(wer x ref_words)",
        )
    if "text" in forms:
        scored = score_texts(_text_column(table, actual[REFERENCE]), _text_column(table, actual[HYPOTHESIS]), normalize)
        derived["text"] = (
            scored["errors"].to_numpy(),
            scored["ref_words"].to_numpy(),
            f"scoring reference vs hypothesis (normalize={normalize})",
        )
    primary = forms[0]
    errors, ref_words, _ = derived[primary]
    for other in forms[1:]:
        _check_agreement(table, actual, src, derived[primary], primary, derived[other], other)
    # a lone errors or ref_words column outside any complete form must still agree
    if logs.ERRORS in counts and "errors" not in forms:
        _check_agreement(
            table, actual, src, derived[primary], primary, (counts[logs.ERRORS], None, "errors"), [actual[logs.ERRORS]]
        )
    if logs.REF_WORDS in counts and not set(forms) & {"errors", "sdi", "wer"}:
        _check_agreement(
            table,
            actual,
            src,
            derived[primary],
            primary,
            (None, counts[logs.REF_WORDS], "ref_words"),
            [actual[logs.REF_WORDS]],
        )
    return errors.astype(np.int64), ref_words.astype(np.int64), primary


Derived = tuple  # (errors or None, ref_words or None, how it was computed)


def _check_agreement(
    table: pa.Table, actual: dict[str, str], src: Source, a: Derived, form_a: str, b: Derived, form_b: str | list[str]
) -> None:
    """Two forms of error information must give the same errors and ref_words on every row."""
    differs = np.zeros(table.num_rows, bool)
    for k in (0, 1):
        if a[k] is not None and b[k] is not None:
            differs |= a[k] != b[k]
    bad = _first(differs)
    if bad is None:
        return
    cols_a = _form_columns(form_a, actual)
    cols_b = form_b if isinstance(form_b, list) else _form_columns(form_b, actual)
    sides = []
    for (errs, ref, how), cols in ((a, cols_a), (b, cols_b)):
        said = []
        if errs is not None:
            said.append(f"{errs[bad]} errors")
        if ref is not None:
            said.append(f"{ref[bad]} reference words")
        sides.append(f"{how} ({_shown_values(table, cols, bad)}) gives {' in '.join(said)}")
    column = cols_a[0]
    raise src.error(
        f"the error information disagrees on this row: {sides[0]}, but {sides[1]}; "
        "when several forms are present they must agree (drop the wrong columns)",
        row=bad,
        column=column,
        value=_pyvalue(as_plain(table.column(column)), bad),
    )


def _form_columns(form: str, actual: dict[str, str]) -> list[str]:
    """The file's column names for an error form."""
    return [actual[c] for c in ERROR_FORMS[form]]


def _shown_values(table: pa.Table, cols: list[str], row: int) -> str:
    """'col=value, ...' for one row, for disagreement messages."""
    parts = []
    for col in cols:
        value = table.column(col)[row].as_py()
        # text is quoted, except counts and rates (read as text only to parse them strictly)
        text = repr(value) if isinstance(value, str) and col not in _NUMBER_TEXT else str(value)
        parts.append(f"{col}={text if len(text) <= 60 else text[:57] + '...'}")
    return ", ".join(parts)


def _coordinates(
    table: pa.Table, actual: dict[str, str], present: set[str], src: Source, data: dict[str, object]
) -> None:
    """Latitude/longitude as float64 (NaN = missing); both or neither, on every row."""
    has = [c for c in (logs.LATITUDE, logs.LONGITUDE) if c in present]
    if not has:
        return
    if len(has) == 1:
        missing = logs.LONGITUDE if has[0] == logs.LATITUDE else logs.LATITUDE
        raise src.error(f"the file has a {has[0]} column but no {missing} column; give both or neither", column=missing)
    lat = _floats(table, actual[logs.LATITUDE], src, "latitude (WGS84 degrees)", -90.0, 90.0, True)
    lon = _floats(table, actual[logs.LONGITUDE], src, "longitude (WGS84 degrees)", -180.0, 180.0, True)
    half = _first(np.isnan(lat) != np.isnan(lon))
    if half is not None:
        empty = actual[logs.LATITUDE] if np.isnan(lat[half]) else actual[logs.LONGITUDE]
        raise src.error(
            "this row has only one of latitude and longitude; give both or leave both empty",
            row=half,
            column=empty,
            value="",
        )
    data[logs.LATITUDE] = lat
    data[logs.LONGITUDE] = lon


def _zip_codes(table: pa.Table, actual: str, src: Source, notes: list[str] | None) -> pa.Array:
    """Normalise a ZIP column to 5-digit strings, repairing lost leading zeros (with a note)."""
    arr = as_plain(table.column(actual))
    result = normalize_zip_array(arr)
    if result.bad_index is not None:
        raise src.error(
            "malformed ZIP code: expected 5 digits or ZIP+4 (12345 or 12345-6789)",
            row=result.bad_index,
            column=actual,
            value=_pyvalue(arr, result.bad_index),
        )
    if result.repaired and notes is not None:
        notes.append(
            f"repaired {result.repaired} ZIP code(s) in column {actual!r} that had lost their leading "
            "zeros (e.g. 2134 -> 02134, 2134.0 -> 02134); the file was probably saved from a "
            "spreadsheet or a reader that treated ZIP codes as numbers"
        )
    return result.zips


def metadata_column(arr: pa.ChunkedArray) -> pd.Series | pa.Array:
    """A metadata column: text becomes categorical with "" and "NA" as missing; numbers as read;
    nested values (struct, list, map) become their JSON text and bytes their UTF-8 text, so that
    every value can be counted and grouped."""
    arr = as_plain(arr)
    if pa.types.is_nested(arr.type) or pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type):
        arr = pa.array(
            [
                None
                if v is None
                else v.decode("utf-8", "replace")
                if isinstance(v, bytes)
                else json.dumps(v, default=str, sort_keys=True)
                for v in arr.to_pylist()
            ],
            pa.string(),
        )
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        missing = pc.is_in(arr, value_set=pa.array(MISSING_TEXT, arr.type))
        arr = pc.if_else(missing, pa.scalar(None, arr.type), arr)
        return arr.dictionary_encode()
    return arr


def to_frame(data: dict[str, object]) -> pd.DataFrame:
    """Assemble the canonical pandas frame from Arrow arrays and numpy columns."""
    columns: dict[str, object] = {}
    for name, values in data.items():
        if isinstance(values, (pa.Array, pa.ChunkedArray)):
            series = values.to_pandas()
            if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
                series = series.astype("str")
            columns[name] = series
        else:
            columns[name] = values
    return pd.DataFrame(columns)


# --- embeddings ------------------------------------------------------------------------------


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


def _vectors_from_columns(table: pa.Table, emb_columns: list[str], src: Source) -> np.ndarray:
    """Stack emb_* columns into a float32 matrix; empty, non-numeric, non-finite values raise."""
    n, d = table.num_rows, len(emb_columns)
    vectors = np.empty((n, d), dtype=np.float32)
    first_bad: tuple[int, str, str] | None = None
    for j, name in enumerate(emb_columns):
        arr = as_plain(table.column(name))
        values, missing, nonnumeric = _numeric(arr)
        with np.errstate(invalid="ignore"):
            too_large = np.isfinite(values) & (np.abs(values) > FLOAT32_MAX)  # would become infinite as float32
        bad = _first(missing | nonnumeric | ~np.isfinite(values) | too_large)
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
            value=_pyvalue(as_plain(table.column(name)), row),
        )
    _check_nonzero(vectors, src, emb_columns[0])
    return vectors


def _check_nonzero(vectors: np.ndarray, src: Source, column: str | None) -> None:
    """All-zero vectors have no direction: an InputError at the first one."""
    zero = _first(~np.any(vectors != 0, axis=1)) if vectors.size else None
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
    bad = _first(~finite.all(axis=1))
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
        table = _frame_to_table(path, src)
        src.header = list(table.column_names)
        check_header(src, src.header)
        if table.num_rows == 0:
            raise src.error("the embeddings DataFrame has no rows")
        return _embeddings_from_table(table, src)
    src = source_for(path, allowed=("csv", "tsv", "parquet", "npy"))
    if src.fmt.kind == "npy":
        return _read_npy_embeddings(src)
    table, _ = read_table(
        src, string_columns=(logs.SPEAKER, logs.UTTERANCE), canonical_names=(logs.SPEAKER, logs.UTTERANCE)
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
    key = keys[0]
    ids = _text_column(table, key)
    bad = _first(_missing_text(ids))
    if bad is not None:
        raise src.error(
            f"{key} is empty (or NA); every embedding needs an id", row=bad, column=key, value=_pyvalue(ids, bad)
        )
    _raise_duplicate_ids(ids, src, key)
    emb_columns = embedding_columns(table.column_names, src)
    if emb_columns:
        vectors = _vectors_from_columns(table, emb_columns, src)
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
    duplicate = _first_duplicate(ids)
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
    bad = _first(lengths != d)
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
        values, missing, nonnumeric = _numeric(flat)
    if (missing | nonnumeric).any():
        k = _first(missing | nonnumeric)
        raise src.error(
            "embedding values must be finite numbers (a component is empty or not a number)",
            row=k // d,
            column=name,
            value=_pyvalue(flat, k),
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


def _read_sidecar_ids(src: Source) -> tuple[pa.Array, str, bool, Source, int]:
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
        raise _bad_utf8_error(sidecar) from None
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
    return pa.array(ids, pa.string()), key, known, sidecar, offset


def attach_embeddings(log: UtteranceLog, path: str | Path | pd.DataFrame) -> EmbeddingTable:
    """Read --embeddings FILE, settle its key against the log, and note coverage."""
    table, known = read_embeddings_input(path)
    name = table.source
    frame = log.frame
    ids = pa.array(table.ids, pa.string())
    present = {key for key in (logs.SPEAKER, logs.UTTERANCE) if key in frame}

    def log_values(key: str) -> pa.Array:
        """The distinct ids of one key in the log (speakers were made distinct at ingest; otherwise
        Arrow's hash table: logs have millions of rows)."""
        if key == logs.SPEAKER and log.speaker_ids is not None:
            return pa.array(log.speaker_ids.array, pa.string())
        return pc.unique(pa.array(frame[key].array, pa.string()).drop_null())

    def matches(values: pa.Array) -> int:
        return int(pc.sum(pc.is_in(ids, value_set=values)).as_py() or 0)

    if not known:
        overlaps = {key: matches(log_values(key)) for key in present}
        table.key = max(overlaps, key=lambda k: (overlaps[k], k == logs.SPEAKER))
    if table.key not in present:
        raise InputError(
            "the embeddings are keyed by utterance_id but the log has no utterance_id column",
            file=name,
            column=logs.UTTERANCE,
        )
    values = log_values(table.key)
    matched = matches(values)
    if matched == 0:
        example = table.ids[0] if len(table.ids) else ""
        raise InputError(
            f"none of the {len(ids)} ids in the embeddings file match a {table.key} in "
            "the log; check the id column and the --column mapping",
            file=name,
            column=table.key,
            value=example,
        )
    without = len(values) - matched
    if without:
        log.notes.append(f"{without} of {len(values)} {table.key} values in the log have no embedding in {name}")
    unused = len(ids) - matched
    if unused:
        log.notes.append(f"{unused} embeddings in {name} belong to no {table.key} in the log")
    return table


# --- demographics ----------------------------------------------------------------------------


def read_demographics(path: str | Path) -> pd.DataFrame:
    """Read a demographics table (ZIP -> census attributes) for ``--demographics FILE``.

    Returns a frame indexed by 5-digit ``zip_code`` strings (unique) with float64 attribute
    columns (NaN = missing in the census). Unknown columns are dropped; notes about dropped columns
    and repaired ZIP codes are in ``frame.attrs["notes"]``.
    """
    src = source_for(path)
    table, _ = read_table(src, string_columns=(logs.ZIP_CODE,), canonical_names=(logs.ZIP_CODE,))
    if logs.ZIP_CODE not in table.column_names:
        raise src.error(
            f"the required column 'zip_code' is missing; the file's columns are: {list_names(src.header)}",
            column=logs.ZIP_CODE,
        )
    attributes = [c for c in DEMOGRAPHIC_ATTRIBUTES if c in table.column_names]
    if not attributes:
        raise src.error(
            "no census attribute columns; expected at least one of: " + ", ".join(DEMOGRAPHIC_ATTRIBUTES), column=None
        )
    notes: list[str] = []
    zips = _zip_codes(table, logs.ZIP_CODE, src, notes)
    bad = _first(zips.is_null().to_numpy(zero_copy_only=False))
    if bad is not None:
        raise src.error(
            "zip_code is empty; every row of a demographics table needs a ZIP code",
            row=bad,
            column=logs.ZIP_CODE,
            value="",
        )
    duplicate = _first_duplicate(zips)
    if duplicate is not None:
        earlier, later = duplicate
        raise src.error(
            f"ZIP code {zips[later].as_py()} is repeated (first on "
            f"{line_name(src, earlier)}); each ZIP code may appear once",
            row=later,
            column=logs.ZIP_CODE,
            value=_pyvalue(as_plain(table.column(logs.ZIP_CODE)), later),
        )
    data = {}
    for name in attributes:
        low, high = DEMOGRAPHIC_ATTRIBUTES[name]
        what = f"{name} (a percentage)" if high == 100.0 else name
        data[name] = _floats(table, name, src, what, low, high, True)
    ignored = [c for c in table.column_names if c != logs.ZIP_CODE and c not in attributes]
    if ignored:
        notes.append(f"ignored columns of {src.name} that are not census attributes: {list_names(ignored)}")
    frame = pd.DataFrame(data, index=pd.Index(zips.to_pandas().astype("str"), name=logs.ZIP_CODE))
    frame.attrs["notes"] = notes
    return frame


# --- writing ---------------------------------------------------------------------------------


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


def load_demographics_option(path: str | None):
    """The --demographics table and its source line, or (None, None) for the built-in table."""
    if not path:
        return None, None
    return read_demographics(path), f"user demographics table {Path(path).name}"
