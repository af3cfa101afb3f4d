"""Errors carry a code for programs besides the message for people, and keep it across processes."""

from __future__ import annotations

import pickle

import pytest

from fairaudit.errors import NO_ROWS, InputError, UsageError
from fairaudit.io.readers import read_log


def test_header_only_file_is_a_no_rows_error(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("speaker_id,errors,ref_words\n")
    with pytest.raises(InputError) as caught:
        read_log(path)
    assert caught.value.code == NO_ROWS and caught.value.file == str(path)


def test_codes_default_by_kind_and_survive_pickling():
    assert InputError("bad").code == "input"
    assert UsageError("bad option").code == "usage"
    error = InputError("no rows", file="a.csv", line=1, column="x", value="v", code=NO_ROWS)
    again = pickle.loads(pickle.dumps(error))
    assert (again.message, again.file, again.line, again.column, again.value, again.code) == (
        "no rows",
        "a.csv",
        1,
        "x",
        "v",
        NO_ROWS,
    )
    assert str(again) == str(error)
