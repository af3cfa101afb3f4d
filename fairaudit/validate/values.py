"""Value checks shared by every input reader: counts, bounded floats, missing text, duplicates.

Vectorised first; only when a check fails is the file scanned again to name the line and raw value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fairaudit.io.sources import MISSING_TEXT, NUMERIC_NULLS, Source, as_plain
from fairaudit.model import log as logs


def parse_numbers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        missing = pc.fill_null(pc.is_in(text, value_set=pa.array(NUMERIC_NULLS)), True)
        missing = missing.to_numpy(zero_copy_only=False)
        decimal = pc.fill_null(pc.match_substring_regex(text, _DECIMAL), False).to_numpy(zero_copy_only=False)
        parsed = np.full(len(arr), np.nan)
        if decimal.any():  # only plain decimal numbers: "0x10", "1_000" or "١٢" are not read as numbers
            parsed[decimal] = pc.cast(pc.filter(text, pa.array(decimal)), pa.float64()).to_numpy(zero_copy_only=False)
        return parsed, missing, ~decimal & ~missing
    return np.full(len(arr), np.nan), np.zeros(len(arr), bool), np.ones(len(arr), bool)


NUMBER_TEXT = (logs.ERRORS, logs.REF_WORDS, "substitutions", "deletions", "insertions", "wer")


#: A plain decimal number (optional sign, digits, point, exponent), or a spelled-out infinity.
_DECIMAL = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|infinity|Infinity|INF)$"


#: The largest count fairaudit accepts, per utterance and summed over the log: counts are added
#: in float64, which is exact up to 2**53.
MAX_COUNT = 2**53


FLOAT32_MAX = float(np.finfo(np.float32).max)


#: A WER above this (errors per reference word) is a broken value, not a recogniser's output.
MAX_WER = 100.0


def first_true(mask: np.ndarray) -> int | None:
    """Index of the first true entry, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def count_column(table: pa.Table, actual: str, src: Source, what: str) -> np.ndarray:
    """A column of non-negative integer counts as int64; the first bad value is an InputError."""
    arr = as_plain(table.column(actual))
    if pa.types.is_integer(arr.type) and arr.null_count == 0:
        bounds = pc.min_max(arr)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low is None or (low >= 0 and high <= MAX_COUNT):  # the usual column: one pass, one copy
            return checked_total(arr.to_numpy().astype(np.int64), src, actual, what)
        raw = arr.to_numpy()
        too_large = raw > MAX_COUNT if raw.dtype.kind == "u" else raw.astype(np.int64) > MAX_COUNT
        values = np.where(too_large, 0, raw).astype(np.int64)
        bad = first_true(values < 0)
        if bad is None and not too_large.any():
            return checked_total(values, src, actual, what)
        too = first_true(too_large)
        if bad is None or (too is not None and too < bad):
            assert too is not None  # no negative value, so a value too large was found above
            raise src.error(
                f"{what} must be at most {MAX_COUNT:,} (this one is too large to count exactly)",
                row=too,
                column=actual,
                value=value_at(arr, too),
            )
        raise src.error(
            f"{what} must be non-negative integers (this one is negative)",
            row=bad,
            column=actual,
            value=value_at(arr, bad),
        )
    if pa.types.is_string(arr.type) and arr.null_count == 0 and pc.all(pc.utf8_is_digit(arr)).as_py():
        try:  # the usual case, plain digits: Arrow's own cast, no regular expression
            digits = pa.Table.from_arrays([pc.cast(arr, pa.int64())], names=[actual])
            return count_column(digits, actual, src, what)
        except pa.ArrowInvalid:  # too many digits for int64: the general path says which row
            pass
    values, missing, nonnumeric = parse_numbers(arr)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        negative = values < 0
        fractional = ~missing & ~nonnumeric & ~infinite & (values != np.floor(values))
        too_large = ~missing & ~nonnumeric & ~infinite & (values > MAX_COUNT)
    bad = first_true(missing | nonnumeric | infinite | negative | fractional | too_large)
    if bad is None:
        return checked_total(values.astype(np.int64), src, actual, what)
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
        f"{what} must be non-negative integers (this one {reason})", row=bad, column=actual, value=value_at(arr, bad)
    )


def checked_total(values: np.ndarray, src: Source, actual: str, what: str) -> np.ndarray:
    """``values`` if their running total stays countable (per speaker sums never overflow)."""
    if float(values.sum(dtype=np.float64)) <= MAX_COUNT / 2:  # the usual case: no running total needed
        return values
    running = np.cumsum(values.astype(np.float64))
    bad = first_true(running > MAX_COUNT)
    if bad is not None:
        raise src.error(
            f"{what} add up to more than {MAX_COUNT:,} by this row, too many to count exactly",
            row=bad,
            column=actual,
            value=int(values[bad]),
        )
    return values


def float_column(
    table: pa.Table, actual: str, src: Source, what: str, low: float | None, high: float | None, allow_missing: bool
) -> np.ndarray:
    """A float64 column within [low, high]; missing is NaN if allowed; first bad value raises."""
    arr = as_plain(table.column(actual))
    if pa.types.is_floating(arr.type) and (arr.null_count == 0 or allow_missing) and len(arr):
        # the usual column: one Arrow min/max (nulls and NaN ignored) and one NaN scan decide it
        bounds = pc.min_max(arr)
        smallest, largest = bounds["min"].as_py(), bounds["max"].as_py()
        raw = arr.to_numpy(zero_copy_only=False)  # nulls become NaN
        ordinary = (
            smallest is not None
            and np.isfinite(smallest)
            and np.isfinite(largest)
            and (low is None or smallest >= low)
            and (high is None or largest <= high)
        )
        if ordinary and (allow_missing or not np.isnan(raw).any()):
            return raw.astype(np.float64, copy=not raw.flags.writeable)  # writable, as the frame needs
    values, missing, nonnumeric = parse_numbers(arr)
    with np.errstate(invalid="ignore"):
        infinite = np.isinf(values)
        below = values < low if low is not None else np.zeros(len(values), bool)
        above = values > high if high is not None else np.zeros(len(values), bool)
    bad_missing = missing if not allow_missing else np.zeros(len(values), bool)
    bad = first_true(bad_missing | nonnumeric | infinite | below | above)
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
        value=value_at(arr, bad),
    )


def value_at(arr: pa.Array, row: int) -> object:
    """A value for messages: the Python value, or '' when missing."""
    value = arr[row].as_py()
    return "" if value is None else value


def text_column(table: pa.Table, actual: str) -> pa.Array:
    """A column as an Arrow string array (numbers in Parquet become their text)."""
    arr = as_plain(table.column(actual))
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = pc.cast(arr, pa.string())
    return pc.cast(arr, pa.string()) if pa.types.is_large_string(arr.type) else arr


def missing_text(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Mask of null, blank or "NA" text values.

    Only values that could trim to a listed one are trimmed: those of at most ``_LONGEST_MISSING``
    bytes, and those starting or ending with a byte that may belong to whitespace (ASCII space and
    controls, or any non-ASCII byte). Every other value is itself after trimming and longer than
    any listed value. Trimming ten million utterance ids made a copy of all of them (0.3 GiB)."""
    if not isinstance(arr, pa.Array) or not pa.types.is_string(arr.type) or len(arr) < _MISSING_TEXT_SCAN_FROM:
        return _missing_text_trimmed(arr)
    starts, ends, text = _string_buffers(arr)
    lengths = ends - starts
    maybe = lengths <= _LONGEST_MISSING
    if len(text):
        for position in (np.minimum(starts, len(text) - 1), np.maximum(ends - 1, 0)):
            byte = text[position]
            maybe |= (byte <= 0x20) | (byte >= 0x7F)
    result = np.zeros(len(arr), dtype=bool)
    candidates = np.flatnonzero(maybe)
    if len(candidates):
        result[candidates] = _missing_text_trimmed(arr.take(pa.array(candidates)))
    return result | arr.is_null().to_numpy(zero_copy_only=False)  # a null slot may span any bytes


#: Arrays shorter than this are trimmed whole (the byte scan of :func:`missing_text` pays off on large ones).
_MISSING_TEXT_SCAN_FROM = 100_000
_LONGEST_MISSING = max(len(value.encode()) for value in MISSING_TEXT)


def _missing_text_trimmed(arr: pa.Array) -> np.ndarray:
    """:func:`missing_text` by trimming every value."""
    trimmed = pc.utf8_trim_whitespace(arr)
    listed = pc.fill_null(pc.is_in(trimmed, value_set=pa.array(MISSING_TEXT)), True).to_numpy(zero_copy_only=False)
    return listed | arr.is_null().to_numpy(zero_copy_only=False)  # is_in says "false" for a null


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end byte of every value of a string array, and its bytes (views, no copies)."""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    data = arr.buffers()[2]
    text = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return offsets[:-1], offsets[1:], text


#: Values per group in :func:`all_distinct` (each group's hash set then fits in the CPU caches).
DISTINCT_GROUP_SIZE = 40_000
#: A group this many times the average size means the sampled bytes barely vary (ids such as
#: "/data/000123/audio.flac" whose middle was missed): one hash set is then the faster check.
DISTINCT_GROUP_SKEW = 4
#: Values hashed at once by :func:`all_distinct` (bounds its temporaries).
HASH_SLICE = 1 << 20
#: Bytes sampled from the end and from the middle of each value for its group.
DISTINCT_SAMPLED_BYTES = 4


def all_distinct(arr: pa.Array | pa.ChunkedArray) -> bool:
    """Whether no value of a text array repeats (all nulls count as one value).

    One hash set over ten million ids is slow and large (2-3 s, 0.9 GiB). The values are first
    sorted into groups by a hash of their length and of a few bytes from their end and middle, and
    each group gets its own small set: equal values always land in one group, so the answer is
    exact however the groups fall; the grouping only decides the speed (1.1-1.6 s and 0.26 GiB for
    ten million ids). When the groups come out lopsided, one set over all values is used.
    """
    arr = as_plain(arr)
    groups = max(1, min(1024, len(arr) // DISTINCT_GROUP_SIZE))
    if groups > 1 and pa.types.is_string(arr.type):
        # hashed a slice at a time and each group gathered on its own: small temporaries instead of
        # (rows)-long ones and a grouped copy of every value (0.2-0.26 GiB less for ten million ids)
        group = np.concatenate(
            [_sampled_hash_groups(arr.slice(start, HASH_SLICE), groups) for start in range(0, len(arr), HASH_SLICE)]
        )
        sizes = np.bincount(group, minlength=groups)
        if sizes.max() <= DISTINCT_GROUP_SKEW * len(arr) / groups:
            order = np.argsort(group, kind="stable")
            del group
            start = 0
            for size in sizes:
                if len(pc.unique(arr.take(pa.array(order[start : start + size])))) != size:
                    return False
                start += size
            return True
    return len(pc.unique(arr)) == len(arr)


def _sampled_hash_groups(arr: pa.Array, groups: int) -> np.ndarray:
    """A group number in [0, groups) per value: an FNV-1a hash of its length and of up to
    DISTINCT_SAMPLED_BYTES bytes from its end and from its middle (nulls: length 0, no bytes)."""
    starts, ends, text = _string_buffers(arr)
    lengths = ends - starts
    if arr.null_count:
        lengths = np.where(arr.is_valid().to_numpy(zero_copy_only=False), lengths, 0)
    prime = np.uint32(16777619)
    key = (np.uint32(2166136261) ^ lengths.astype(np.uint32)) * prime
    if len(text):
        # positions are clipped into the value itself, so a value's group depends on its own bytes only
        last = np.clip(starts + lengths - 1, 0, len(text) - 1)
        present = (lengths > 0).astype(np.uint32)
        middle = starts + lengths // 2
        for step in range(DISTINCT_SAMPLED_BYTES):
            for position in (ends - 1 - step, middle + step):
                byte = text[np.clip(position, starts, last)].astype(np.uint32) * present
                key = (key ^ byte) * prime
    return ((key.astype(np.uint64) * np.uint64(groups)) >> np.uint64(32)).astype(np.uint16)


def first_duplicate(arr: pa.Array, skip: np.ndarray | None = None) -> tuple[int, int] | None:
    """(first row, later row) of the first repeated value in ``arr`` (ignoring ``skip`` rows)."""
    return first_repeat(dictionary_codes(arr.dictionary_encode()), skip)


def first_repeat(codes: np.ndarray, skip: np.ndarray | None = None) -> tuple[int, int] | None:
    """(first row, later row) of the first repeated dictionary code (ignoring ``skip`` and -1)."""
    # dictionary codes are numbered in order of first appearance: a code no larger than every
    # earlier code seen so far is a repeat
    codes = codes.copy()
    if skip is not None:
        codes[skip] = -1
    seen_max = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    later = first_true((codes >= 0) & (codes <= seen_max))
    if later is None:
        return None
    earlier = first_true(codes == codes[later])
    assert earlier is not None  # codes[later] occurs at later itself
    return earlier, later


def missing_rows(encoded: pa.DictionaryArray, codes: np.ndarray) -> np.ndarray:
    """Rows whose value is null, blank or "NA" (``codes`` from :func:`dictionary_codes`); the text checks
    run on the distinct values only."""
    missing_values = np.r_[missing_text(encoded.dictionary), True]  # the extra entry: code -1 (null)
    return missing_values[codes]


def dictionary_codes(encoded: pa.DictionaryArray) -> np.ndarray:
    """The indices of a dictionary array as int64 (-1 for null)."""
    return pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def sorted_codes(encoded: pa.DictionaryArray, codes: np.ndarray) -> tuple[np.ndarray, pd.Index]:
    """Codes into the sorted distinct values (what ``pd.factorize(sort=True)`` gives): Arrow sorts
    strings by UTF-8 bytes, which is code point order, as Python compares them."""
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    values = encoded.dictionary.take(pa.array(order)).to_pandas().astype("str")
    return rank[codes], pd.Index(values, dtype="string")
