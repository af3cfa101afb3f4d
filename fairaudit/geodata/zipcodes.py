"""US ZIP code normalisation: 5-digit strings, with repair of leading zeros lost to numeric readers.

Accepted forms (after trimming whitespace):

- ``12345`` and ``12345-6789`` (ZIP+4, reduced to its first five digits);
- ``2134`` / ``501`` (3 or 4 digits: a ZIP whose leading zeros were lost when a spreadsheet or a
  numeric reader saw it as a number) are left-padded with zeros to 5 digits and counted as repaired;
- ``2134.0`` / ``12345.0`` (the same number written as a float) likewise.

Empty values and ``NA`` are missing. Anything else (letters, 1-2 or 6+ digits, a malformed ZIP+4
such as ``12345-678``) is malformed. The smallest real ZIP code is 00501, so 1-2 digit values can
not be repaired safely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Pattern of a well-formed ZIP code in a file (the schemas use the same one).
ZIP_PATTERN = r"^[0-9]{5}(-[0-9]{4})?$"
_REPAIRABLE = r"^([0-9]{3,4}|[0-9]{3,5}\.0*)$"
_MISSING = ("", "NA")


@dataclass
class ZipResult:
    """Normalised ZIP codes plus what normalisation found."""

    zips: pa.DictionaryArray  # string values, 5 digits, each listed once, sorted; null where missing
    bad_index: int | None  # first malformed row, or None
    repaired: int  # number of values left-padded or stripped of a ".0"


def normalize_zip_array(values: pa.Array | pa.ChunkedArray) -> ZipResult:
    """Normalise an Arrow array of ZIP codes (string or numeric) to 5-digit strings, vectorised.

    The rules run on the distinct values only (a log has many rows but few ZIP codes), and the
    result stays dictionary-encoded (each normalised code listed once): grouping by ZIP code later
    reuses its integer codes instead of hashing ten million strings again.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    text = _as_text(values)
    if text is None:  # a float column with a non-integral value
        bad = np.flatnonzero(_non_integral(values))
        return ZipResult(_all_missing(len(values)), int(bad[0]), 0)
    encoded = text.dictionary_encode()
    distinct, indices = encoded.dictionary, encoded.indices
    trimmed = pc.utf8_trim_whitespace(distinct)
    missing = pc.fill_null(pc.is_in(trimmed, value_set=pa.array(_MISSING)), True)
    proper = pc.fill_null(pc.match_substring_regex(trimmed, ZIP_PATTERN), False)
    repairable = pc.fill_null(pc.match_substring_regex(trimmed, _REPAIRABLE), False)
    bad_values = pc.invert(pc.or_(pc.or_(missing, proper), repairable))
    if pc.any(bad_values).as_py():
        bad_codes = pa.array(np.flatnonzero(bad_values.to_numpy(zero_copy_only=False)), indices.type)
        row_is_bad = pc.fill_null(pc.is_in(indices, value_set=bad_codes), False)
        return ZipResult(_all_missing(len(values)), _first_true(row_is_bad), 0)
    digits = pc.replace_substring_regex(trimmed, pattern=r"(\.0*|-[0-9]{4})$", replacement="")
    normalized = pc.if_else(missing, pa.scalar(None, pa.string()), pc.utf8_lpad(digits, width=5, padding="0"))
    # Two spellings can normalise to one code ("2134", "02134"): list each code once, in sorted order
    # (so grouping by the categorical column orders ZIP codes as grouping by the text did).
    unique = normalized.dictionary_encode()
    order = np.asarray(pc.array_sort_indices(unique.dictionary), dtype=np.int64)
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    code_of_distinct = pa.array(rank).take(unique.indices)  # null where the value is missing
    zips = pa.DictionaryArray.from_arrays(code_of_distinct.take(indices), unique.dictionary.take(pa.array(order)))
    repaired_codes = pa.array(np.flatnonzero(repairable.to_numpy(zero_copy_only=False)), indices.type)
    repaired = int(pc.sum(pc.cast(pc.is_in(indices, value_set=repaired_codes), pa.int64())).as_py() or 0)
    return ZipResult(zips, None, repaired)


def _all_missing(n: int) -> pa.DictionaryArray:
    """n missing ZIP codes (the result when a value is malformed: the caller reports it)."""
    return pa.DictionaryArray.from_arrays(pa.nulls(n, pa.int32()), pa.array([], pa.string()))


def _as_text(values: pa.Array) -> pa.Array | None:
    """Cast a ZIP column to strings; numbers become their integer text, None if not integral."""
    typ = values.type
    if pa.types.is_dictionary(typ):
        values = values.dictionary_decode()
        typ = values.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return pc.cast(values, pa.string())
    if pa.types.is_null(typ):
        return pa.nulls(len(values), pa.string())
    if pa.types.is_integer(typ):
        return pc.cast(values, pa.string())
    if pa.types.is_floating(typ):
        if _non_integral(values).any():
            return None
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, typ), values)
        return pc.cast(pc.cast(values, pa.int64()), pa.string())
    return pc.cast(values, pa.string())


def _non_integral(values: pa.Array) -> np.ndarray:
    """Mask of float values that are not whole non-negative numbers (NaN counts as missing)."""
    arr = values.to_numpy(zero_copy_only=False).astype("float64")
    with np.errstate(invalid="ignore"):
        return ~np.isnan(arr) & ((arr != np.floor(arr)) | (arr < 0) | ~np.isfinite(arr))


def _first_true(mask: pa.Array) -> int:
    """Index of the first true value of a boolean Arrow array."""
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])
