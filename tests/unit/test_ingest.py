"""Tests for fairaudit.io.readers: reading, validation and the location of every bad-input error."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.errors import InputError, UsageError
from fairaudit.io.demographics import read_demographics
from fairaudit.io.embeddings import read_embeddings
from fairaudit.io.readers import read_log
from fairaudit.io.sources import file_sha256
from fairaudit.validate.values import all_distinct

HEADER = "speaker_id,utterance_id,errors,ref_words"


def write(tmp_path: Path, text: str | bytes, name: str = "log.csv") -> Path:
    """Write a fixture file (text as UTF-8, or raw bytes)."""
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def fails(path: Path, reader=read_log, **kwargs) -> InputError:
    """Call a reader that must raise InputError, check the file is unchanged, return the error."""
    before = path.read_bytes()
    with pytest.raises(InputError) as info:
        reader(path, **kwargs)
    assert path.read_bytes() == before
    assert str(info.value)  # renders a message
    return info.value


def where(err: InputError) -> tuple:
    """(file name, line, column, value) of an error, for compact assertions."""
    return (Path(err.file).name if err.file else None, err.line, err.column, err.value)


# --- happy path ----------------------------------------------------------------------------------


def test_reads_canonical_log_with_types_and_metadata(tmp_path):
    path = write(
        tmp_path,
        HEADER + ",latitude,longitude,zip_code,accent,age\n"
        "007,u1,1,10,40.5,-70.25,02134,us,30\n"
        "008,u2,0,5,,,12345-6789,NA,\n"
        "007,u3,3,4,41,-71,,,25\n",
    )
    log = read_log(path)
    frame = log.frame
    assert frame.speaker_id.tolist() == ["007", "008", "007"]
    assert pd.api.types.is_string_dtype(frame.speaker_id)
    assert frame.errors.tolist() == [1, 0, 3] and frame.errors.dtype == np.int64
    assert frame.ref_words.tolist() == [10, 5, 4] and frame.ref_words.dtype == np.int64
    assert frame.utterance_id.tolist() == ["u1", "u2", "u3"]
    assert frame.latitude.dtype == np.float64 and np.isnan(frame.latitude[1])
    assert frame.longitude.tolist()[0] == -70.25
    assert frame.zip_code.tolist()[:2] == ["02134", "12345"] and pd.isna(frame.zip_code[2])
    assert log.metadata_columns == ["accent", "age"]
    assert frame.accent.isna().tolist() == [False, True, True]  # "NA" and "" are missing
    assert frame.accent[0] == "us"
    assert frame.age.tolist()[0] == 30 and pd.isna(frame.age[1])
    assert log.error_form == "errors"
    assert log.embeddings is None
    assert log.path == str(path)
    assert log.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert log.notes == []
    assert log.n_utterances == 3


def test_file_sha256(tmp_path):
    path = write(tmp_path, b"abc")
    assert file_sha256(path) == hashlib.sha256(b"abc").hexdigest()


# Six utterances with hand-computed counts (default normalisation).
TEXT_ROWS = [
    # reference, hypothesis, S, D, I, ref_words
    ("The cat sat.", "the cat sat down", 0, 0, 1, 3),
    ("a b c", "a x c", 1, 0, 0, 3),
    ("Hello, world!", "", 0, 2, 0, 2),
    ("", "uh huh", 0, 0, 2, 0),
    ("one two three four", "one three four", 0, 1, 0, 4),
    ("Don't stop", "dont stop", 0, 0, 0, 2),
]


def _forms_frame() -> pd.DataFrame:
    rows = []
    for k, (ref, hyp, s, d, i, n) in enumerate(TEXT_ROWS):
        rows.append(
            {
                "speaker_id": f"s{k % 2}",
                "reference": ref,
                "hypothesis": hyp,
                "substitutions": s,
                "deletions": d,
                "insertions": i,
                "ref_words": n,
                "errors": s + d + i,
                "wer": (s + d + i) / n if n else 0.0,
            }
        )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "form, columns",
    [
        ("errors", ["errors", "ref_words"]),
        ("sdi", ["substitutions", "deletions", "insertions", "ref_words"]),
        ("wer", ["wer", "ref_words"]),
        ("text", ["reference", "hypothesis"]),
    ],
)
def test_each_error_form_gives_the_same_counts(tmp_path, form, columns):
    frame = _forms_frame()
    if form == "wer":  # an empty reference can not be expressed as a wer: drop it
        frame = frame[frame.ref_words > 0].reset_index(drop=True)
    frame[["speaker_id", *columns]].to_csv(tmp_path / "log.csv", index=False)
    log = read_log(tmp_path / "log.csv")
    assert log.error_form == form
    assert log.frame.errors.tolist() == frame.errors.tolist()
    assert log.frame.ref_words.tolist() == frame.ref_words.tolist()
    assert log.metadata_columns == []  # error-form columns are never metadata


def test_all_forms_together_agree_and_first_form_wins(tmp_path):
    frame = _forms_frame()
    frame = frame[frame.ref_words > 0]
    frame.to_csv(tmp_path / "log.csv", index=False)
    log = read_log(tmp_path / "log.csv")
    assert log.error_form == "errors"
    assert log.frame.errors.tolist() == frame.errors.tolist()
    assert list(log.frame.columns) == [
        "speaker_id",
        "errors",
        "ref_words",
        "substitutions",
        "deletions",
        "insertions",
        "reference_hash",
    ]  # the hash matches systems in compare; S/D/I are the error anatomy (SPEC 10)
    for kind in ("substitutions", "deletions", "insertions"):
        assert log.frame[kind].tolist() == frame[kind].tolist()


def test_wer_is_rounded_to_whole_errors(tmp_path):
    path = write(tmp_path, "speaker_id,wer,ref_words\na,0.333,3\nb,0.14,7\nc,1.5,2\n")
    assert read_log(path).frame.errors.tolist() == [1, 1, 3]


def test_normalize_none_changes_text_scores(tmp_path):
    path = write(tmp_path, 'speaker_id,reference,hypothesis\na,"Hello, World",hello world\n')
    assert read_log(path).frame.errors.tolist() == [0]
    assert read_log(path, normalize="none").frame.errors.tolist() == [2]
    with pytest.raises(UsageError):
        read_log(path, normalize="loud")


def test_integral_float_counts_are_accepted(tmp_path):
    path = write(tmp_path, "speaker_id,errors,ref_words\na,2.0,10\nb,0,3.0\n")
    assert read_log(path).frame.errors.tolist() == [2, 0]


def test_column_mapping(tmp_path):
    path = write(tmp_path, "client_id,errs,n,accent\n1,0,3,us\n2,1,4,in\n")
    log = read_log(path, columns={"speaker_id": "client_id", "errors": "errs", "ref_words": "n"})
    assert log.frame.speaker_id.tolist() == ["1", "2"]  # numeric-looking ids stay strings
    assert log.frame.errors.tolist() == [0, 1]
    assert log.metadata_columns == ["accent"]


def test_tsv_without_quoting_and_na(tmp_path):
    text = (
        "client_id\tsentence\tprediction\taccent\n"
        "a\t\"Oh, that's too bad!\"\toh that's too bad\tNA\n"
        'b\tHe said "hi" twice\the said hi\tindian\n'
    )
    path = write(tmp_path, text, "log.tsv")
    log = read_log(path, columns={"speaker_id": "client_id", "reference": "sentence", "hypothesis": "prediction"})
    assert log.error_form == "text"
    assert log.frame.errors.tolist() == [0, 1]
    assert log.frame.ref_words.tolist() == [4, 4]
    assert pd.isna(log.frame.accent[0]) and log.frame.accent[1] == "indian"


def test_gzip_csv(tmp_path):
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(f"{HEADER}\na,u1,1,2\n".encode()))
    log = read_log(path)
    assert log.frame.errors.tolist() == [1]
    assert log.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_with_numeric_zip_and_ids(tmp_path):
    table = pa.table(
        {"speaker_id": [7, 8], "errors": [1, 2], "ref_words": [3, 4], "zip_code": [2134, 12345], "gender": ["f", None]}
    )
    pq.write_table(table, tmp_path / "log.parquet")
    log = read_log(tmp_path / "log.parquet")
    assert log.frame.speaker_id.tolist() == ["7", "8"]
    assert log.frame.zip_code.tolist() == ["02134", "12345"]
    assert "1 ZIP code" in log.notes[0]


def test_zip_repair_counts_and_notes(tmp_path):
    path = write(
        tmp_path,
        "speaker_id,errors,ref_words,zip\na,0,1,2134\nb,0,1,501\nc,0,1,2134.0\nd,0,1,02134\ne,0,1,12345-6789\nf,0,1,\n",
    )
    log = read_log(path, columns={"zip_code": "zip"})
    assert log.frame.zip_code.tolist()[:5] == ["02134", "00501", "02134", "02134", "12345"]
    assert pd.isna(log.frame.zip_code[5])
    assert len(log.notes) == 1 and "repaired 3 ZIP code" in log.notes[0] and "'zip'" in log.notes[0]


def test_spellings_of_one_zip_code_are_one_value_for_a_speaker(tmp_path):
    """The ZIP column stays dictionary-encoded: "2134", "2134.0" and "02134" must be one entry, or
    the speaker below would count as having several ZIP codes and its most frequent one could differ."""
    path = write(
        tmp_path,
        "speaker_id,errors,ref_words,zip_code\na,0,1,2134\na,0,1,2134.0\na,0,1,02134\na,0,1,10001\na,0,1,10001\n"
        "b,0,1,\nb,0,1,501\n",
    )
    log = read_log(path)
    assert log.frame.zip_code.cat.categories.tolist() == ["00501", "02134", "10001"]  # each once, sorted
    speakers = build_speaker_table(log)
    assert speakers.frame.zip_code.tolist() == ["02134", "00501"]
    assert speakers.conflicts["zip_code"] == 1  # speaker a: 02134 (3 rows) and 10001 (2 rows); b has one


def test_multiline_quoted_values_and_blank_lines_keep_line_numbers(tmp_path):
    path = write(tmp_path, 'speaker_id,errors,ref_words,note\na,0,1,"two\nlines"\n\nb,-1,1,x\n')
    err = fails(path)
    assert where(err) == ("log.csv", 5, "errors", "-1")


def test_byte_order_mark_is_ignored(tmp_path):
    path = write(tmp_path, "\ufeff" + HEADER + "\na,u,0,1\n")
    assert read_log(path).frame.speaker_id.tolist() == ["a"]


# --- inline embeddings ---------------------------------------------------------------------------


def test_inline_embeddings_become_a_row_table(tmp_path):
    path = write(tmp_path, "speaker_id,errors,ref_words,emb_1,emb_0,accent\na,0,1,0.5,1.0,us\nb,1,2,0,-2,in\n")
    log = read_log(path)
    assert log.embeddings.key == "row" and log.embeddings.ids is None
    np.testing.assert_allclose(log.embeddings.vectors, [[1.0, 0.5], [-2.0, 0.0]])
    assert "emb_0" not in log.frame.columns and log.metadata_columns == ["accent"]


@pytest.mark.parametrize(
    "rows, line, column, value",
    [
        ("a,0,1,1.0,0.5\nb,0,1,,0.5\n", 3, "emb_0", ""),  # a missing value: mixed dimension
        ("a,0,1,1.0,nan\n", 2, "emb_1", "nan"),
        ("a,0,1,1.0,0.5\nb,0,1,inf,1\n", 3, "emb_0", "inf"),
        ("a,0,1,1.0,x\n", 2, "emb_1", "x"),
        ("a,0,1,1.0,0.5\nb,0,1,0,0.0\n", 3, "emb_0", "0"),  # all-zero vector
    ],
)
def test_bad_inline_embeddings(tmp_path, rows, line, column, value):
    path = write(tmp_path, "speaker_id,errors,ref_words,emb_0,emb_1\n" + rows)
    assert where(fails(path)) == ("log.csv", line, column, value)


def test_gap_in_embedding_columns(tmp_path):
    path = write(tmp_path, "speaker_id,errors,ref_words,emb_0,emb_2\na,0,1,1,2\n")
    assert where(fails(path)) == ("log.csv", None, "emb_1", None)


# --- bad input: structure ------------------------------------------------------------------------


def test_empty_file(tmp_path):
    err = fails(write(tmp_path, b""))
    assert where(err) == ("log.csv", None, None, None)
    assert "empty" in err.message


def test_header_only_file(tmp_path):
    err = fails(write(tmp_path, HEADER + "\n"))
    assert where(err) == ("log.csv", None, None, None)
    assert "no data rows" in err.message


def test_unknown_extension(tmp_path):
    err = fails(write(tmp_path, HEADER + "\na,u,0,1\n", "log.xlsx"))
    assert where(err) == ("log.xlsx", None, None, None)
    assert ".parquet" in err.message


def test_undecodable_bytes(tmp_path):
    path = write(tmp_path, (HEADER + "\na,u1,0,1\nb\xe9,u2,0,1\n").encode("latin-1"))
    err = fails(path)
    assert where(err) == ("log.csv", 3, "speaker_id", b"\xe9")
    assert "UTF-8" in err.message


def test_undecodable_bytes_in_header(tmp_path):
    path = write(tmp_path, b"speaker_id,\xff\xfeerrors,ref_words\na,0,1\n")
    assert where(fails(path))[:2] == ("log.csv", 1)


@pytest.mark.parametrize("row, fields", [("c,u3,0,1,9", 5), ("c,u3,0", 3)])
def test_ragged_rows(tmp_path, row, fields):
    path = write(tmp_path, f"{HEADER}\na,u1,0,1\nb,u2,0,1\n{row}\nd,u4,0,1\n")
    err = fails(path)
    assert where(err) == ("log.csv", 4, None, row)
    assert f"{fields} field(s)" in err.message and "header has 4" in err.message


def test_unclosed_quote(tmp_path):
    path = write(tmp_path, f'{HEADER}\na,u1,0,1\n"b,u2,0,1\nc,u3,0,1\n')
    err = fails(path)
    assert err.line == 3 and "never closed" in err.message


def test_quoted_fields_keep_line_numbers(tmp_path):
    path = write(tmp_path, '"speaker_id","errors","ref_words"\n"a","1","2"\n"b, c","x","2"\n')
    assert where(fails(path)) == ("log.csv", 3, "errors", "x")


def test_ragged_tsv(tmp_path):
    path = write(tmp_path, "speaker_id\terrors\tref_words\na\t0\t1\tx\n", "log.tsv")
    assert where(fails(path)) == ("log.tsv", 2, None, "a\t0\t1\tx")


def test_duplicate_column_names(tmp_path):
    path = write(tmp_path, "speaker_id,errors,errors,ref_words\na,0,0,1\n")
    assert where(fails(path)) == ("log.csv", 1, "errors", None)


def test_missing_speaker_column(tmp_path):
    err = fails(write(tmp_path, "client_id,errors,ref_words\na,0,1\n"))
    assert where(err) == ("log.csv", None, "speaker_id", None)
    assert "--column speaker_id=" in err.message


def test_missing_error_information_names_the_alternatives(tmp_path):
    err = fails(write(tmp_path, "speaker_id,errors,accent\na,0,us\n"))
    assert where(err) == ("log.csv", None, "ref_words", None)
    for needed in (
        "errors + ref_words",
        "substitutions + deletions + insertions + ref_words",
        "wer + ref_words",
        "reference + hypothesis",
        "found: errors",
    ):
        assert needed in err.message


def test_mapping_to_absent_column(tmp_path):
    err = fails(write(tmp_path, HEADER + "\na,u,0,1\n"), columns={"speaker_id": "client_id"})
    assert where(err) == ("log.csv", None, "client_id", None)


def test_mapping_of_unknown_canonical_name(tmp_path):
    with pytest.raises(UsageError):
        read_log(write(tmp_path, HEADER + "\na,u,0,1\n"), columns={"speaker": "speaker_id"})


# --- bad input: values ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, reason",
    [
        ("-3", "negative"),
        ("2.5", "not a whole number"),
        ("x", "not a number"),
        ("", "missing"),
        ("nan", "missing"),
        ("NA", "missing"),
        ("inf", "infinite"),
    ],
)
def test_bad_error_counts(tmp_path, value, reason):
    path = write(tmp_path, f"{HEADER}\na,u1,1,5\nb,u2,0,3\nc,u3,{value},4\n")
    err = fails(path)
    assert where(err) == ("log.csv", 4, "errors", value)
    assert reason in err.message and "non-negative integers" in err.message


@pytest.mark.parametrize("column", ["substitutions", "deletions", "insertions", "ref_words"])
def test_bad_sdi_counts(tmp_path, column):
    values = {"substitutions": "0", "deletions": "0", "insertions": "0", "ref_words": "3"}
    values[column] = "-1"
    path = write(
        tmp_path,
        "speaker_id,substitutions,deletions,insertions,ref_words\n"
        "a,0,0,0,3\nb," + ",".join(values[c] for c in ["substitutions", "deletions", "insertions", "ref_words"]) + "\n",
    )
    assert where(fails(path)) == ("log.csv", 3, column, "-1")


def test_parquet_errors_name_the_row(tmp_path):
    pq.write_table(
        pa.table({"speaker_id": ["a", "b", "c"], "errors": [1.0, np.nan, 2.0], "ref_words": [3, 3, 3]}),
        tmp_path / "log.parquet",
    )
    err = fails(tmp_path / "log.parquet")
    assert err.line == 2 and err.column == "errors" and "row 2" in err.message
    assert np.isnan(err.value)


def test_parquet_negative_int(tmp_path):
    pq.write_table(
        pa.table({"speaker_id": ["a", "b"], "errors": [1, -4], "ref_words": [3, 3]}), tmp_path / "log.parquet"
    )
    assert where(fails(tmp_path / "log.parquet")) == ("log.parquet", 2, "errors", -4)


@pytest.mark.parametrize("value", ["-0.1", "nan", "x", ""])
def test_bad_wer(tmp_path, value):
    path = write(tmp_path, f"speaker_id,wer,ref_words\na,0.5,2\nb,{value},3\n")
    err = fails(path)
    assert where(err) == ("log.csv", 3, "wer", value)


def test_forms_that_disagree(tmp_path):
    path = write(
        tmp_path,
        "speaker_id,errors,ref_words,reference,hypothesis\na,1,3,the cat sat,the cat sat down\nb,1,3,a b c,a b c\n",
    )
    err = fails(path)
    assert where(err) == ("log.csv", 3, "errors", "1")
    assert "errors=1" in err.message and "reference='a b c'" in err.message
    assert "gives 0 errors" in err.message


def test_sdi_disagrees_with_errors(tmp_path):
    path = write(tmp_path, "speaker_id,errors,substitutions,deletions,insertions,ref_words\na,2,1,1,0,5\nb,2,1,0,0,5\n")
    err = fails(path)
    assert where(err) == ("log.csv", 3, "errors", "2")
    assert "substitutions=1" in err.message


def test_lone_errors_column_must_agree_with_text(tmp_path):
    path = write(tmp_path, "speaker_id,errors,reference,hypothesis\na,0,x y,x y\nb,0,x y,x\n")
    assert where(fails(path))[:3] == ("log.csv", 3, "reference")


@pytest.mark.parametrize(
    "lat, lon, column, value",
    [
        ("91", "0", "latitude", "91"),
        ("-90.5", "0", "latitude", "-90.5"),
        ("0", "180.1", "longitude", "180.1"),
        ("north", "0", "latitude", "north"),
        ("10", "", "longitude", ""),
    ],
)
def test_bad_coordinates(tmp_path, lat, lon, column, value):
    path = write(tmp_path, f"{HEADER},latitude,longitude\na,u1,0,1,,\nb,u2,0,1,{lat},{lon}\n")
    assert where(fails(path)) == ("log.csv", 3, column, value)


@pytest.mark.parametrize("zip_value", ["ABCDE", "123456", "12345-678", "12", "1234a", "12345-"])
def test_malformed_zip(tmp_path, zip_value):
    path = write(tmp_path, f"{HEADER},zip_code\na,u1,0,1,02134\nb,u2,0,1,{zip_value}\n")
    err = fails(path)
    assert where(err) == ("log.csv", 3, "zip_code", zip_value)
    assert "ZIP" in err.message


@pytest.mark.parametrize("speaker", ["", "NA", "  "])
def test_empty_speaker_id(tmp_path, speaker):
    path = write(tmp_path, f"{HEADER}\na,u1,0,1\n{speaker},u2,0,1\n")
    assert where(fails(path)) == ("log.csv", 3, "speaker_id", speaker)


def test_duplicate_utterance_ids(tmp_path):
    path = write(tmp_path, f"{HEADER}\na,u1,0,1\nb,u2,0,1\nc,u1,0,1\n")
    err = fails(path)
    assert where(err) == ("log.csv", 4, "utterance_id", "u1")
    assert "line 2" in err.message


def test_missing_utterance_ids_are_allowed(tmp_path):
    path = write(tmp_path, f"{HEADER}\na,,0,1\nb,,0,1\nc,u1,0,1\n")
    assert read_log(path).frame.utterance_id.isna().tolist() == [True, True, False]


# --- embeddings files ----------------------------------------------------------------------------


def _log(tmp_path) -> Path:
    return write(tmp_path, f"{HEADER}\ns1,u1,0,1\ns2,u2,1,2\ns1,u3,0,1\n")


def test_embeddings_csv_by_speaker(tmp_path):
    emb = write(tmp_path, "speaker_id,emb_0,emb_1\ns1,1,0\ns2,0,1\n", "emb.csv")
    table = read_embeddings(emb)
    assert table.key == "speaker_id" and table.ids.tolist() == ["s1", "s2"]
    np.testing.assert_allclose(table.vectors, [[1, 0], [0, 1]])
    log = read_log(_log(tmp_path), embeddings=emb)
    assert log.embeddings.key == "speaker_id" and log.notes == []


def test_embeddings_parquet_list_column_by_utterance(tmp_path):
    pq.write_table(
        pa.table({"utterance_id": ["u1", "u2"], "embedding": [[1.0, 2.0], [3.0, 4.0]]}), tmp_path / "emb.parquet"
    )
    log = read_log(_log(tmp_path), embeddings=tmp_path / "emb.parquet")
    assert log.embeddings.key == "utterance_id"
    np.testing.assert_allclose(log.embeddings.vectors, [[1, 2], [3, 4]])
    assert any("1 of 3 utterance_id" in note for note in log.notes)


@pytest.mark.parametrize(
    "sidecar, text, key",
    [
        ("emb.ids.txt", "s1\ns2\n", "speaker_id"),
        ("emb.ids.txt", "u1\nu2\n", "utterance_id"),  # inferred from the log
        ("emb.ids.csv", "utterance_id\nu1\nu2\n", "utterance_id"),
    ],
)
def test_embeddings_npy_with_sidecar(tmp_path, sidecar, text, key):
    np.save(tmp_path / "emb.npy", np.array([[1.0, 0.0], [0.5, 0.5]]))
    write(tmp_path, text, sidecar)
    log = read_log(_log(tmp_path), embeddings=tmp_path / "emb.npy")
    assert log.embeddings.key == key
    assert log.embeddings.ids.tolist() == text.split()[-2:]


def test_npy_without_sidecar(tmp_path):
    np.save(tmp_path / "emb.npy", np.ones((2, 3)))
    err = fails(tmp_path / "emb.npy", read_embeddings)
    assert "emb.ids.txt" in err.message


def test_npy_zero_vector_and_nan(tmp_path):
    write(tmp_path, "s1\ns2\n", "emb.ids.txt")
    np.save(tmp_path / "emb.npy", np.array([[1.0, 0.0], [0.0, 0.0]]))
    err = fails(tmp_path / "emb.npy", read_embeddings)
    assert (err.line, "row 2" in err.message, "zeros" in err.message) == (2, True, True)
    np.save(tmp_path / "emb.npy", np.array([[np.nan, 0.0], [1.0, 0.0]]))
    assert fails(tmp_path / "emb.npy", read_embeddings).line == 1


def test_npy_duplicate_ids(tmp_path):
    np.save(tmp_path / "emb.npy", np.ones((3, 2)))
    write(tmp_path, "speaker_id\ns1\ns2\ns1\n", "emb.ids.txt")
    err = fails(tmp_path / "emb.npy", read_embeddings)
    assert where(err) == ("emb.ids.txt", 4, "speaker_id", "s1")


def test_embeddings_duplicate_ids(tmp_path):
    emb = write(tmp_path, "speaker_id,emb_0\ns1,1\ns2,1\ns1,2\n", "emb.csv")
    err = fails(emb, read_embeddings)
    assert where(err) == ("emb.csv", 4, "speaker_id", "s1")
    assert "line 2" in err.message


@pytest.mark.parametrize(
    "rows, line, column, value",
    [("s1,1,2\ns2,3,\n", 3, "emb_1", ""), ("s1,1,2\ns2,nan,1\n", 3, "emb_0", "nan"), ("s1,0,0\n", 2, "emb_0", "0")],
)
def test_bad_embeddings_csv(tmp_path, rows, line, column, value):
    emb = write(tmp_path, "speaker_id,emb_0,emb_1\n" + rows, "emb.csv")
    assert where(fails(emb, read_embeddings)) == ("emb.csv", line, column, value)


def test_embeddings_parquet_mixed_dimension(tmp_path):
    pq.write_table(pa.table({"speaker_id": ["a", "b"], "embedding": [[1.0, 2.0], [3.0]]}), tmp_path / "emb.parquet")
    err = fails(tmp_path / "emb.parquet", read_embeddings)
    assert where(err) == ("emb.parquet", 2, "embedding", 1)
    assert "dimension" in err.message


def test_embeddings_need_one_id_column(tmp_path):
    emb = write(tmp_path, "speaker_id,utterance_id,emb_0\na,u,1\n", "emb.csv")
    assert "both" in fails(emb, read_embeddings).message


def test_embeddings_that_match_nothing(tmp_path):
    emb = write(tmp_path, "speaker_id,emb_0\nzz,1\n", "emb.csv")
    err = fails(_log(tmp_path), embeddings=emb)
    assert where(err) == ("emb.csv", None, "speaker_id", "zz")


def test_inline_and_file_embeddings_conflict(tmp_path):
    emb = write(tmp_path, "speaker_id,emb_0\ns1,1\n", "emb.csv")
    path = write(tmp_path, "speaker_id,errors,ref_words,emb_0\ns1,0,1,1\n")
    assert "inline" in fails(path, embeddings=emb).message


# --- demographics --------------------------------------------------------------------------------

DEMO_HEADER = "zip_code,pct_white,median_household_income,median_age,population_density,state"


def test_read_demographics(tmp_path):
    path = write(
        tmp_path,
        DEMO_HEADER + "\n02134,55.5,72000,31,15000,MA\n2135,,NA,40,0,MA\n10001-0001,40,90000,35.5,30000,NY\n",
        "demo.csv",
    )
    frame = read_demographics(path)
    assert frame.index.tolist() == ["02134", "02135", "10001"] and frame.index.name == "zip_code"
    assert list(frame.columns) == ["pct_white", "median_household_income", "median_age", "population_density"]
    assert all(frame[c].dtype == np.float64 for c in frame.columns)
    assert np.isnan(frame.loc["02135", "pct_white"]) and np.isnan(frame.loc["02135", "median_household_income"])
    assert any("repaired 1" in n for n in frame.attrs["notes"])
    assert any("'state'" in n for n in frame.attrs["notes"])


@pytest.mark.parametrize(
    "row, line, column, value",
    [
        ("02134,101,1,1,1,MA", 3, "pct_white", "101"),
        ("02134,50,-5,1,1,MA", 3, "median_household_income", "-5"),
        ("02134,50,1,-1,1,MA", 3, "median_age", "-1"),
        ("02134,50,1,1,lots,MA", 3, "population_density", "lots"),
        ("1234x,50,1,1,1,MA", 3, "zip_code", "1234x"),
        (",50,1,1,1,MA", 3, "zip_code", ""),
        ("10001,50,1,1,1,NY", 3, "zip_code", "10001"),
    ],  # duplicate of line 2
)
def test_bad_demographics(tmp_path, row, line, column, value):
    path = write(tmp_path, DEMO_HEADER + "\n10001,1,1,1,1,NY\n" + row + "\n", "demo.csv")
    assert where(fails(path, read_demographics)) == ("demo.csv", line, column, value)


def test_demographics_need_an_attribute(tmp_path):
    path = write(tmp_path, "zip_code,state\n02134,MA\n", "demo.csv")
    assert "at least one of" in fails(path, read_demographics).message
    path = write(tmp_path, "zip,pct_white\n02134,3\n", "demo.csv")
    assert fails(path, read_demographics).column == "zip_code"


# --- scale (vectorised happy path) ---------------------------------------------------------------


def test_large_log_reads_quickly(tmp_path):
    import time

    n = 200_000
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "speaker_id": np.char.add("s", (rng.integers(0, 5000, n)).astype(str)),
            "utterance_id": np.char.add("u", np.arange(n).astype(str)),
            "errors": rng.integers(0, 5, n),
            "ref_words": rng.integers(5, 20, n),
            "zip_code": np.char.zfill(rng.integers(501, 99999, n).astype(str), 5),
            "accent": rng.choice(["us", "in"], n),
        }
    )
    frame.to_csv(tmp_path / "big.csv", index=False)
    start = time.perf_counter()
    log = read_log(tmp_path / "big.csv")
    assert time.perf_counter() - start < 10
    assert len(log.frame) == n and log.frame.errors.sum() == frame.errors.sum()


# --- in-memory frames (fairaudit.audit(frame)) ---------------------------------------------------


def test_log_from_frame_matches_read_log(tmp_path):
    from fairaudit.io.readers import log_from_frame

    frame = pd.DataFrame(
        {
            "speaker_id": [7, 8, 7],
            "errors": [1, 0, 2],
            "ref_words": [3, 4, 5],
            "zip_code": [2134, None, 10001],
            "accent": ["us", "NA", "in"],
        }
    )
    log = log_from_frame(frame)
    assert log.frame.speaker_id.tolist() == ["7", "8", "7"]
    assert log.frame.zip_code.tolist()[0] == "02134" and pd.isna(log.frame.zip_code[1])
    assert log.metadata_columns == ["accent"] and pd.isna(log.frame.accent[1])
    assert log.path is None and log.sha256 is None
    frame.to_csv(tmp_path / "log.csv", index=False)
    from_file = read_log(tmp_path / "log.csv")
    assert from_file.frame.errors.tolist() == log.frame.errors.tolist()


def test_log_from_frame_errors_name_the_row():
    from fairaudit.io.readers import log_from_frame

    frame = pd.DataFrame({"speaker_id": ["a", "b"], "errors": [1, -2], "ref_words": [3, 3]})
    with pytest.raises(InputError) as info:
        log_from_frame(frame)
    assert (info.value.line, info.value.column, info.value.value) == (None, "errors", -2)
    assert "DataFrame row 2" in info.value.message


def test_embeddings_from_frame():
    from fairaudit.io.readers import log_from_frame

    frame = pd.DataFrame({"speaker_id": ["a", "b"], "errors": [1, 0], "ref_words": [3, 3]})
    emb = pd.DataFrame({"speaker_id": ["a", "b"], "emb_0": [1.0, 0.0], "emb_1": [0.0, 1.0]})
    log = log_from_frame(frame, embeddings=emb)
    assert log.embeddings.key == "speaker_id" and log.embeddings.vectors.shape == (2, 2)
    assert log.embeddings.source == "<embeddings DataFrame>"


# --- distinct values in groups (the utterance-id check of large logs) ------------------------------


def _ids(count: int, start: int = 0) -> list[str]:
    return [f"spk{(i * 7919) % 997:03d}-utt-{i:07d}" for i in range(start, start + count)]


@pytest.mark.parametrize("position", [0, 1, 50_000, 119_999])
def test_all_distinct_finds_one_repeat_anywhere_in_a_large_array(position):
    values = _ids(120_000)  # three groups of 40,000: the grouped path
    assert all_distinct(pa.array(values))
    repeated = list(values)
    repeated[position] = values[(position + 60_001) % len(values)]
    assert len(set(repeated)) == len(repeated) - 1  # the test's own count: exactly one repeat
    assert not all_distinct(pa.array(repeated))


@pytest.mark.parametrize("position", [0, 7_000, 7_001, 119_999])
def test_all_distinct_hashed_a_slice_at_a_time_finds_repeats_across_slices(monkeypatch, position):
    from fairaudit.validate import values as value_checks

    monkeypatch.setattr(value_checks, "HASH_SLICE", 7_001)  # 18 slices, so groups mix values of many
    values = _ids(120_000)
    assert all_distinct(pa.array(values))
    repeated = list(values)
    repeated[position] = values[(position + 60_001) % len(values)]
    assert not all_distinct(pa.array(repeated))


def test_missing_text_of_a_large_array_equals_trimming_every_value():
    """Large arrays trim only the values that could be blank or "NA" (short ones, or ones that start
    or end with whitespace or a non-ASCII byte): the mask must equal Python's own strip of each value."""
    from fairaudit.validate.values import missing_text

    tricky = ["", " ", "NA", " NA", "NA\t", "\u00a0NA\u00a0", "N A", "na", "NAN", "  NA  ", "\u00e9", "x", None, "ab"]
    values = [tricky[i % len(tricky)] if i % 9 == 0 else f"utt-{i:06d}" for i in range(150_000)]
    values += ["\tNA" + " " * 40, " " * 30, "NA" + "\u3000" * 5]  # long, but only whitespace around NA
    expected = np.array([v is None or v.strip() in ("", "NA") for v in values])
    assert expected.sum() > 9_000  # the test's own count: many missing values among the ids
    assert np.array_equal(missing_text(pa.array(values)), expected)
    sliced = pa.array(["NA"] + values).slice(1)  # an offset into the buffers
    assert np.array_equal(missing_text(sliced), expected)
    # Arrow lets a null slot span bytes: still missing
    plain = pa.array(values, pa.string())
    validity = pa.array([v is not None and i != 1 for i, v in enumerate(values)]).buffers()[1]
    with_null_bytes = pa.Array.from_buffers(pa.string(), len(values), [validity, *plain.buffers()[1:]])
    assert with_null_bytes[1].as_py() is None and plain[1].as_py() == "utt-000001"
    assert np.array_equal(missing_text(with_null_bytes), expected | (np.arange(len(values)) == 1))


def test_all_distinct_on_slices_nulls_blanks_and_shared_tails():
    values = _ids(200_000)
    whole = pa.array(["dup"] + values + ["dup"])
    assert not all_distinct(whole)
    assert all_distinct(whole.slice(1, len(values)))  # an offset into the buffers: the same answer as a copy
    # ids that differ only before their last eight characters share a group; still told apart
    same_tail = [f"{i}/recording.wav" for i in range(100_000)]
    assert all_distinct(pa.array(same_tail))
    assert not all_distinct(pa.array(same_tail + ["7/recording.wav"]))
    with_nulls = pa.array(values[:90_000] + [None, ""])
    assert all_distinct(with_nulls)
    assert not all_distinct(pa.array(values[:90_000] + [None, None]))
    assert not all_distinct(pa.array(values[:90_000] + ["", ""]))


def test_duplicate_utterance_ids_in_a_large_log_name_both_lines(tmp_path):
    ids = _ids(100_000)
    ids[80_000] = ids[12_345]
    lines = "".join(f"s{i % 50},{utt},0,3\n" for i, utt in enumerate(ids))
    path = write(tmp_path, f"{HEADER}\n{lines}")
    err = fails(path)
    assert where(err) == ("log.csv", 80_002, "utterance_id", ids[12_345])
    assert "line 12347" in err.message


def test_an_utterance_id_error_is_reported_before_errors_in_later_columns(tmp_path):
    # the ids are checked on a second thread while the counts are checked: the order of the
    # columns, not of the threads, decides which error the user sees
    path = write(tmp_path, f"{HEADER}\na,u1,0,1\nb,u2,x,1\nc,u1,0,1\n")
    assert where(fails(path)) == ("log.csv", 4, "utterance_id", "u1")
    path = write(tmp_path, f"{HEADER}\na,u1,0,1\nb,u2,x,1\nc,u3,0,1\n")
    assert where(fails(path)) == ("log.csv", 3, "errors", "x")


def test_all_distinct_on_chunks_empty_strings_nulls_over_data_and_varying_middles():
    values = _ids(100_000)
    chunked = pa.chunked_array([values[:30_000], values[30_000:]])
    assert all_distinct(chunked)
    assert not all_distinct(pa.chunked_array([values[:30_000], values[29_999:]]))
    assert not all_distinct(pa.array([""] * 90_000))  # an empty data buffer
    # nulls whose slots still cover bytes (valid Arrow): every null is the same value
    dense = pa.array(values)
    valid = np.ones(len(values), bool)
    valid[[3, 70_000]] = False
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    two_nulls = pa.Array.from_buffers(pa.string(), len(values), [bitmap, *dense.buffers()[1:]], null_count=2)
    assert two_nulls.null_count == 2 and not all_distinct(two_nulls)
    valid[70_000] = True
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    one_null = pa.Array.from_buffers(pa.string(), len(values), [bitmap, *dense.buffers()[1:]], null_count=1)
    assert all_distinct(one_null)
    # ids that vary only in the middle, with a constant head and tail
    paths = [f"/data/{i:08d}/audio.flac" for i in range(120_000)]
    assert all_distinct(pa.array(paths))
    assert not all_distinct(pa.array(paths + ["/data/00065432/audio.flac"]))


def test_a_frame_given_to_fairaudit_is_not_shared_with_the_log():
    from fairaudit.io.readers import log_from_frame

    frame = pd.DataFrame(
        {"speaker_id": ["a", "b", "c"], "errors": [1, 2, 3], "ref_words": [5, 5, 5], "snr": [1.5, 2.5, 3.5]}
    )
    log = log_from_frame(frame)
    for column in ("errors", "ref_words", "snr"):
        assert not np.shares_memory(log.frame[column].to_numpy(), frame[column].to_numpy())
    frame.loc[0, "snr"] = -1.0
    assert log.frame["snr"].tolist() == [1.5, 2.5, 3.5]


@pytest.mark.parametrize(
    "values, low, high, allow_missing, expected",
    [
        ([1.5, -2.0, 3.25], -90.0, 90.0, False, [1.5, -2.0, 3.25]),
        ([1.5, float("nan"), 3.25], -90.0, 90.0, True, [1.5, float("nan"), 3.25]),
        ([1.5, float("nan"), 3.25], -90.0, 90.0, False, "missing"),
        ([1.5, float("inf"), 3.25], -90.0, 90.0, True, "infinite"),
        ([1.5, 95.0, 3.25], -90.0, 90.0, True, "out of range"),
        ([float("nan"), float("nan")], -90.0, 90.0, True, [float("nan"), float("nan")]),
        ([1.5, None, 3.25], -90.0, 90.0, True, [1.5, float("nan"), 3.25]),
        ([1.5, None, 3.25], -90.0, 90.0, False, "missing"),
        ([None, 95.0], -90.0, 90.0, True, "out of range"),
        (np.array([0.5, 2.5], dtype=np.float32), 0.0, None, False, [0.5, 2.5]),
    ],
)
def test_float_columns_give_the_values_or_name_the_bad_one(tmp_path, values, low, high, allow_missing, expected):
    from fairaudit.io.sources import source_for
    from fairaudit.validate.values import float_column

    table = pa.table({"x": pa.array(values)})
    src = source_for(write(tmp_path, "x\n1\n"))
    if isinstance(expected, str):
        with pytest.raises(InputError, match=expected):
            float_column(table, "x", src, "x", low, high, allow_missing)
        return
    got = float_column(table, "x", src, "x", low, high, allow_missing)
    assert got.dtype == np.float64 and got.flags.writeable
    np.testing.assert_array_equal(got, np.array(expected, dtype=np.float64))


@pytest.mark.parametrize(
    ("separator", "advice"), [("\t", "looks tab-separated: give it a .tsv"), (";", "looks semicolon-separated")]
)
def test_a_file_with_another_separator_is_named_as_such(tmp_path, separator, advice):
    """A tab- or semicolon-separated file named .csv reads as one column; the error must say so,
    not advise --column speaker_id=NAME."""
    from cli_runner import run_main

    path = tmp_path / "log.csv"
    path.write_text(separator.join(["speaker_id", "errors", "ref_words"]) + "\n" + separator.join(["s1", "1", "5"]))
    run = run_main("validate", path)
    assert run.code == 2 and advice in run.stderr and "--column speaker_id" not in run.stderr


def test_text_columns_under_other_names_get_the_column_hint(tmp_path):
    from cli_runner import run_main

    path = tmp_path / "log.csv"
    path.write_text("speaker_id,ref,hyp\ns1,a b,a\n")
    run = run_main("validate", path)
    assert run.code == 2 and "--column reference=ref --column hypothesis=hyp" in run.stderr


@pytest.mark.parametrize(
    ("header", "advice"),
    [
        ("client_id,sentence,prediction", "--column speaker_id=client_id"),
        ("Speaker,ref,hyp", "--column speaker_id=Speaker"),
        ("who,a,b", "--column speaker_id=NAME"),
        ("speaker_id,Sentence,prediction", "--column reference=Sentence --column hypothesis=prediction"),
        ("speaker_id,transcript,pred_text", "--column reference=transcript --column hypothesis=pred_text"),
    ],
)
def test_missing_columns_suggest_the_file_own_likely_names(tmp_path, header, advice):
    """The mapping the error advises uses this file's own column names when they are common ones
    (Common Voice's client_id/sentence, prediction, pred_text), so it can be pasted as is."""
    from cli_runner import run_main

    path = tmp_path / "log.csv"
    path.write_text(header + "\ns1,a b,a\n")
    run = run_main("validate", path)
    assert run.code == 2 and advice in run.stderr, run.stderr


def test_an_unclosed_quote_is_an_error_not_a_value_holding_the_rest_of_the_file(tmp_path):
    """pyarrow reads a quote that is never closed as one value running to the end of the file:
    114 of 120 rows vanished into one speaker's accent and the log read as valid."""
    from cli_runner import run_main

    rows = ["speaker_id,utterance_id,errors,ref_words,accent"] + [f"s{i // 3:03d},u{i},1,5,a" for i in range(120)]
    rows[7] = 's002,u6,1,5,"oops'
    (tmp_path / "unclosed.csv").write_text("\n".join(rows) + "\n")
    for engine in ("pandas", "dask"):
        run = run_main("audit", tmp_path / "unclosed.csv", "--by", "accent", "--engine", engine, "-q")
        assert run.code == 2, (engine, run.stderr)
        assert "line 8" in run.stderr and "never closed" in run.stderr
    # real multi-line quoted values are fine, even with commas, in the middle or on the last row
    for last in ("x", '"last\nline, with, commas, here"'):
        (tmp_path / "note.csv").write_text(
            'speaker_id,errors,ref_words,note\ns1,1,5,"two\nlines, a, b, c, d"\n' + f"s2,0,4,{last}\n"
        )
        assert run_main("validate", tmp_path / "note.csv").code == 0


def test_a_wer_column_that_is_not_errors_over_words_is_an_error(tmp_path):
    """wer 0.1 on 3-word utterances is 0.3 errors each: rounded, the log read as 0% WER, silently.
    A wer column rounded to two decimals on 20-32-word utterances still reads (7 errors each)."""
    from cli_runner import run_main

    bad = ["speaker_id,utterance_id,wer,ref_words"] + [f"s{i % 40},u{i},0.1,3" for i in range(120)]
    (tmp_path / "bad.csv").write_text("\n".join(bad) + "\n")
    run = run_main("validate", tmp_path / "bad.csv")
    assert run.code == 2 and "line 2" in run.stderr and "column 'wer'" in run.stderr
    assert "not a whole number of errors" in run.stderr
    rounded = ["speaker_id,utterance_id,wer,ref_words"] + [
        f"s{i % 40},u{i},{round(7 / (20 + i % 13), 2)},{20 + i % 13}" for i in range(120)
    ]
    (tmp_path / "rounded.csv").write_text("\n".join(rounded) + "\n")
    run = run_main("validate", tmp_path / "rounded.csv")
    assert run.code == 0 and "840 errors" in run.stdout
    # 1/3 written as 0.3 on 3-word utterances: 0.9, one error each (it crashed the first version)
    third = ["speaker_id,utterance_id,wer,ref_words"] + [f"s{i % 40},u{i},0.3,3" for i in range(100)]
    (tmp_path / "third.csv").write_text("\n".join(third) + "\n")
    run = run_main("validate", tmp_path / "third.csv")
    assert run.code == 0 and "100 errors" in run.stdout


@pytest.mark.parametrize(
    ("column", "values", "said"),
    [
        ("speaker_id", [b"\xff\xfe", b"s1"], "not UTF-8 text"),
        ("speaker_id", [["s0"], ["s1"]], "not one value per row"),
        ("errors", [[1], [2]], "not one value per row"),
    ],
)
def test_parquet_columns_of_bytes_or_lists_are_input_errors(tmp_path, column, values, said):
    """Binary text that is not UTF-8 and list-valued speaker or count columns were internal errors
    (exit 3); nested metadata stays allowed (read as its JSON text)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from cli_runner import run_main

    data = {"speaker_id": ["a", "b"], "errors": [1, 2], "ref_words": [5, 5], "accent": ["x", "y"]}
    data[column] = pa.array(values)
    pq.write_table(pa.table(data), tmp_path / "log.parquet")
    run = run_main("validate", tmp_path / "log.parquet")
    assert run.code == 2 and f"column '{column}'" in run.stderr and said in run.stderr, run.stderr


def test_a_column_name_with_spaces_around_it_is_named_as_such(tmp_path):
    from cli_runner import run_main

    (tmp_path / "log.csv").write_text("speaker_id, errors,ref_words\ns1,1,5\n")
    run = run_main("validate", tmp_path / "log.csv")
    assert run.code == 2 and "' errors' has spaces around its name" in run.stderr
