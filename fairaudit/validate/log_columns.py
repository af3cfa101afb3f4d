"""The utterance log's column rules (SPEC 2) and the check that turns a table into an UtteranceLog.

Both engines call :func:`canonical_log`: the pandas engine on the whole file, the Dask engine per piece.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fairaudit.geodata.zipcodes import normalize_zip_array
from fairaudit.io.embeddings import embedding_columns, vectors_from_columns
from fairaudit.io.sources import MISSING_TEXT, Source, as_plain, line_name, list_names
from fairaudit.model import log as logs
from fairaudit.model.log import ANATOMY, EmbeddingTable, UtteranceLog
from fairaudit.text.scoring import score_texts
from fairaudit.validate.column_rules import (
    CANONICAL_COLUMNS,
    DELETIONS,
    ERROR_COLUMNS,
    ERROR_FORMS,
    HYPOTHESIS,
    INSERTIONS,
    REFERENCE,
    SUBSTITUTIONS,
    WER,
)
from fairaudit.validate.values import (
    MAX_WER,
    NUMBER_TEXT,
    all_distinct,
    checked_total,
    count_column,
    dictionary_codes,
    first_repeat,
    first_true,
    float_column,
    missing_rows,
    missing_text,
    sorted_codes,
    text_column,
    value_at,
)


def canonical_log(table: pa.Table, rename: dict[str, str], src: Source, normalize: str) -> UtteranceLog:
    """Validate an Arrow table of a log and build the UtteranceLog (frame, metadata, embeddings)."""
    actual = {rename.get(a, a): a for a in table.column_names}  # canonical -> actual
    present = set(actual)
    _require_columns(src, present)
    zip_repairs: dict[str, int] = {}
    data: dict[str, object] = {}

    # The utterance-id check (hashing every id) runs on a second thread while the speakers and the
    # other columns are checked; its errors still come after the speaker column's and before the others'.
    with ThreadPoolExecutor(max_workers=1) as pool:
        ids = pool.submit(_utterance_ids, table, actual[logs.UTTERANCE], src) if logs.UTTERANCE in present else None
        speakers = text_column(table, actual[logs.SPEAKER])
        encoded = speakers.dictionary_encode()  # once: checks, speaker grouping and the embedding join use it
        codes = dictionary_codes(encoded)
        bad = first_true(missing_rows(encoded, codes))
        if bad is not None:
            raise src.error(
                "speaker_id is empty (or NA); every row needs a speaker",
                row=bad,
                column=actual[logs.SPEAKER],
                value=value_at(speakers, bad),
            )
        data[logs.SPEAKER] = speakers
        speaker_codes, speaker_ids = sorted_codes(encoded, codes)
        if ids is not None:
            data[logs.UTTERANCE] = None  # keeps the column's place in the frame
        try:
            form, embeddings, metadata = _other_columns(
                table, rename, actual, present, src, normalize, data, zip_repairs
            )
        except Exception:
            failed = ids.exception() if ids is not None else None  # waits for the id check
            if failed is not None:
                raise failed from None  # an error in the ids is reported first
            raise
        if ids is not None:
            data[logs.UTTERANCE] = ids.result()
    frame = to_frame(data)
    return UtteranceLog(
        frame=frame,
        metadata_columns=metadata,
        embeddings=embeddings,
        error_form=form,
        notes=[zip_repair_note(column, count) for column, count in zip_repairs.items()],
        zip_repairs=zip_repairs,
        text_normalization=normalize if form == "text" else None,
        speaker_codes=speaker_codes,
        speaker_ids=speaker_ids,
    )


def _other_columns(
    table: pa.Table,
    rename: dict[str, str],
    actual: dict[str, str],
    present: set[str],
    src: Source,
    normalize: str,
    data: dict[str, object],
    zip_repairs: dict[str, int],
) -> tuple[str, EmbeddingTable | None, list[str]]:
    """Check every column after the ids into ``data``: error information, coordinates, ZIP codes,
    inline embeddings and metadata. Returns the error form, the embeddings and the metadata columns."""
    errors, ref_words, form, anatomy = _error_information(table, actual, present, src, normalize)
    data[logs.ERRORS] = errors
    data[logs.REF_WORDS] = ref_words
    data.update(anatomy)
    if REFERENCE in present:  # for matching two systems' logs that have no utterance ids
        text = pc.utf8_trim_whitespace(text_column(table, actual[REFERENCE])).to_numpy(zero_copy_only=False)
        data[logs.REFERENCE_HASH] = pd.util.hash_array(np.asarray(text, dtype=object))

    _coordinates(table, actual, present, src, data)
    if logs.ZIP_CODE in present:
        data[logs.ZIP_CODE] = zip_codes(table, actual[logs.ZIP_CODE], src, zip_repairs)

    emb_columns = embedding_columns(table.column_names, src)
    embeddings = None
    if emb_columns:
        vectors = vectors_from_columns(table, emb_columns, src)
        embeddings = EmbeddingTable(key="row", vectors=vectors, ids=None, source=src.name)

    used = set(CANONICAL_COLUMNS) | set(ERROR_COLUMNS)
    metadata = [c for c in table.column_names if rename.get(c, c) not in used and c not in emb_columns]
    for name in metadata:
        data[name] = metadata_column(table.column(name))
    return form, embeddings, metadata


def implausible_wer_notes(errors: np.ndarray, ref_words: np.ndarray, form: str) -> list[str]:
    """A note when the whole log has more errors than reference words: possible (insertions), but
    far more often a unit mistake, such as a wer column in percent (25) instead of a fraction
    (0.25), or error counts taken from another column. Judged on the whole log's totals, once (not
    per block of a Dask read), so both engines note the same."""
    total_errors, total_words = float(np.sum(errors)), float(np.sum(ref_words))
    if total_words <= 0 or total_errors <= total_words:
        return []
    hints = {
        "wer": "is the wer column a percentage (25) instead of a fraction (0.25)?",
        "text": "are the reference and hypothesis columns of the same utterances, and not swapped?",
    }
    hint = hints.get(
        form, "are the errors counts of word errors (substitutions + deletions + insertions) of each utterance?"
    )
    return [
        f"the overall WER is {100 * total_errors / total_words:.0f}%: more errors than reference words, which "
        f"recognisers rarely produce; {hint}"
    ]


def _require_columns(src: Source, present: set[str]) -> None:
    """speaker_id and one complete error form are required; say which columns would do."""
    separator = _separator_hint(src.header) or _spaced_names_hint(src.header, present)
    if logs.SPEAKER not in present:
        guess = _likely_column(src.header, SPEAKER_NAMES)
        rename = f"--column speaker_id={guess}" if guess else "--column speaker_id=NAME"
        raise src.error(
            separator
            or "the required column 'speaker_id' is missing (if the speaker is in another column, "
            f"use {rename}); the file's columns are: {list_names(src.header)}",
            column=None if separator else logs.SPEAKER,
        )
    if any(set(cols) <= present for cols in ERROR_FORMS.values()):
        return
    found = [c for c in ERROR_COLUMNS if c in present]
    options = "; ".join(" + ".join(cols) for cols in ERROR_FORMS.values())
    first_missing = next(
        (c for cols in ERROR_FORMS.values() if set(cols) & present for c in cols if c not in present), logs.ERRORS
    )
    reference, hypothesis = _likely_column(src.header, REFERENCE_NAMES), _likely_column(src.header, HYPOTHESIS_NAMES)
    rename = (
        ""
        if found
        else "; if they are under other names, say so: "
        f"--column reference={reference or 'ref'} --column hypothesis={hypothesis or 'hyp'}"
    )
    raise src.error(
        separator
        or f"no complete error information: add one of these sets of columns: {options} "
        f"(found: {', '.join(found) if found else 'none of them'}){rename}",
        column=None if separator else first_missing,
    )


#: Common names of the speaker, reference and hypothesis columns in other tools' logs (lower case):
#: a missing canonical column's error suggests the --column mapping for the first one present.
SPEAKER_NAMES = ("speaker", "spk", "spk_id", "speaker_name", "speakerid", "client_id", "talker", "participant")
REFERENCE_NAMES = ("ref", "reference_text", "ref_text", "sentence", "transcript", "text", "ground_truth", "truth")
HYPOTHESIS_NAMES = ("hyp", "hypothesis_text", "hyp_text", "prediction", "pred_text", "pred", "asr", "recognized")


def _likely_column(header: list[str] | None, names: tuple[str, ...]) -> str:
    """The first of ``names`` that is a column of this file (compared case-insensitively), else ""."""
    by_lower = {column.strip().lower(): column for column in header or []}
    return next((by_lower[name] for name in names if name in by_lower), "")


#: Separators a mis-named file may use, and what to do about each.
SEPARATOR_ADVICE = {
    "\t": "the file looks tab-separated: give it a .tsv (or .tsv.gz) name",
    ";": "the file looks semicolon-separated: fairaudit reads comma-separated .csv and tab-separated .tsv; "
    "save it as one of those",
    "|": "the file looks pipe-separated: fairaudit reads comma-separated .csv and tab-separated .tsv; "
    "save it as one of those",
}


def _spaced_names_hint(header: list[str] | None, present: set[str]) -> str:
    """Advice when a column would be a canonical one without the spaces around its name, else ""."""
    spaced = [name for name in header or [] if name != name.strip() and name.strip() in CANONICAL_COLUMNS]
    if not spaced or spaced[0].strip() in present:
        return ""
    name = spaced[0]
    return (
        f"the column {name!r} has spaces around its name, so it is not read as {name.strip()!r}: remove the "
        "spaces from the header line"
    )


def _separator_hint(header: list[str] | None) -> str:
    """Advice when the whole header was read as one column holding another separator, else ""."""
    if not header or len(header) != 1:
        return ""
    for separator, advice in SEPARATOR_ADVICE.items():
        if separator in header[0]:
            return f"{advice} (its header was read as the single column {header[0]!r})"
    return ""


def _utterance_ids(table: pa.Table, actual: str, src: Source) -> pa.Array:
    """Utterance ids as text (missing allowed as null); duplicates are an InputError."""
    ids = text_column(table, actual)
    if not missing_text(ids).any() and all_distinct(ids):
        return ids  # the usual log: every id present and distinct (grouped hash sets, 4x cheaper than encoding)
    encoded = ids.dictionary_encode()  # one hash of every id serves the missing and duplicate checks
    codes = dictionary_codes(encoded)
    missing = missing_rows(encoded, codes)
    duplicate = first_repeat(codes, missing)
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
) -> tuple[np.ndarray, np.ndarray, str, dict[str, np.ndarray]]:
    """Errors and ref_words from the first complete error form, checked against every other one,
    and the error anatomy (substitutions, deletions, insertions) when the log gives it."""
    forms = [name for name, cols in ERROR_FORMS.items() if set(cols) <= present]
    count_what = {
        logs.ERRORS: "error counts",
        SUBSTITUTIONS: "substitution counts",
        DELETIONS: "deletion counts",
        INSERTIONS: "insertion counts",
        logs.REF_WORDS: "reference word counts",
    }
    counts = {c: count_column(table, actual[c], src, count_what[c]) for c in count_what if c in present}
    derived: dict[str, tuple[np.ndarray, np.ndarray | None, str]] = {}  # form -> errors, ref, text
    if "errors" in forms:
        derived["errors"] = (counts[logs.ERRORS], counts[logs.REF_WORDS], "errors")
    if "sdi" in forms:
        sdi = counts[SUBSTITUTIONS] + counts[DELETIONS] + counts[INSERTIONS]
        derived["sdi"] = (sdi, counts[logs.REF_WORDS], "substitutions+deletions+insertions")
    if "wer" in forms:
        wer = float_column(table, actual[WER], src, "wer (word error rate)", 0.0, MAX_WER, False)
        _check_wer_counts(table, src, actual[WER], wer, counts[logs.REF_WORDS])
        derived["wer"] = (
            checked_total(
                np.floor(wer * counts[logs.REF_WORDS] + 0.5).astype(np.int64),
                src,
                actual[WER],
                "errors (round(wer x ref_words))",
            ),
            counts[logs.REF_WORDS],
            "round(wer x ref_words)",
        )
    if "text" in forms:
        scored = score_texts(text_column(table, actual[REFERENCE]), text_column(table, actual[HYPOTHESIS]), normalize)
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
    assert errors is not None and ref_words is not None  # a complete form gives both
    anatomy: dict[str, np.ndarray] = {}
    if "sdi" in forms:
        anatomy = {kind: np.asarray(counts[kind], dtype=np.int64) for kind in ANATOMY}
    elif "text" in forms:
        anatomy = {kind: scored[kind].to_numpy().astype(np.int64) for kind in ANATOMY}
    return np.asarray(errors, dtype=np.int64), np.asarray(ref_words, dtype=np.int64), primary, anatomy


def _check_wer_counts(table: pa.Table, src: Source, column: str, wer: np.ndarray, ref_words: np.ndarray) -> None:
    """A wer column must be each utterance's errors / ref_words, so wer x ref_words is a whole number
    of errors up to the rounding of the wer as written: a value with d decimals is off by at most
    0.5 x 10^-d, so its product by at most 0.5 x 10^-d x ref_words. A row further from a whole
    number is no errors / ref_words (0.1 on a 3-word utterance is 0.3 errors: read as 0)."""
    exact = wer * ref_words
    off = np.abs(exact - np.floor(exact + 0.5))
    decimals = np.full(len(wer), 7)
    for d in range(6, -1, -1):  # the fewest decimals that write each value exactly
        decimals = np.where(np.abs(wer * 10.0**d - np.round(wer * 10.0**d)) < 1e-6, d, decimals)
    allowed = 0.5 * 10.0 ** (-decimals.astype(np.float64)) * ref_words + 1e-6
    row = first_true(off > allowed)
    if row is None:
        return
    raise src.error(
        f"wer x ref_words = {exact[row]:.3g} is not a whole number of errors, even allowing for the wer's "
        "rounding: a wer column must be each utterance's errors / ref_words; give an errors column (word "
        "errors per utterance) instead",
        row=row,
        column=column,
        value=value_at(as_plain(table.column(column)), row),
    )


Derived = tuple  # (errors or None, ref_words or None, how it was computed)


def _check_agreement(
    table: pa.Table, actual: dict[str, str], src: Source, a: Derived, form_a: str, b: Derived, form_b: str | list[str]
) -> None:
    """Two forms of error information must give the same errors and ref_words on every row."""
    differs = np.zeros(table.num_rows, bool)
    for k in (0, 1):
        if a[k] is not None and b[k] is not None:
            differs |= a[k] != b[k]
    bad = first_true(differs)
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
        value=value_at(as_plain(table.column(column)), bad),
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
        text = repr(value) if isinstance(value, str) and col not in NUMBER_TEXT else str(value)
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
    lat = float_column(table, actual[logs.LATITUDE], src, "latitude (WGS84 degrees)", -90.0, 90.0, True)
    lon = float_column(table, actual[logs.LONGITUDE], src, "longitude (WGS84 degrees)", -180.0, 180.0, True)
    half = first_true(np.isnan(lat) != np.isnan(lon))
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


def zip_repair_note(column: str, repaired: int) -> str:
    """The note shown when ``repaired`` ZIP codes of ``column`` had lost their leading zeros."""
    return (
        f"repaired {repaired} ZIP code(s) in column {column!r} that had lost their leading "
        "zeros (e.g. 2134 -> 02134, 2134.0 -> 02134); the file was probably saved from a "
        "spreadsheet or a reader that treated ZIP codes as numbers"
    )


def zip_codes(table: pa.Table, actual: str, src: Source, repairs: dict[str, int] | None) -> pa.DictionaryArray:
    """Normalise a ZIP column to 5-digit strings, repairing lost leading zeros (counted in ``repairs``),
    dictionary-encoded (the log's frame keeps it as a categorical column)."""
    arr = as_plain(table.column(actual))
    result = normalize_zip_array(arr)
    if result.bad_index is not None:
        raise src.error(
            "malformed ZIP code: expected 5 digits or ZIP+4 (12345 or 12345-6789)",
            row=result.bad_index,
            column=actual,
            value=value_at(arr, result.bad_index),
        )
    if result.repaired and repairs is not None:
        repairs[actual] = repairs.get(actual, 0) + int(result.repaired)
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
            elif isinstance(series.dtype, np.dtype) and not series.to_numpy().flags.writeable:
                series = series.copy()  # a view of Arrow memory, perhaps of the caller's own DataFrame
            columns[name] = series
        elif isinstance(values, np.ndarray) and not values.flags.writeable:
            columns[name] = values.copy()  # a view of Arrow memory: the frame's columns must be writable
        else:
            columns[name] = values
    # Every column is now the frame's own: keep them as they are instead of stacking the numeric ones
    # into 2-D blocks (a copy of every number column, 0.7 s for ten million rows).
    return pd.DataFrame(columns, copy=False)
