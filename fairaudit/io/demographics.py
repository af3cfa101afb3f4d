"""The census demographics table per ZIP code that --demographics reads (schema: demographics)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairaudit.io.sources import as_plain, line_name, list_names, read_table, source_for
from fairaudit.model import log as logs
from fairaudit.validate.log_columns import zip_codes, zip_repair_note
from fairaudit.validate.values import first_duplicate, first_true, float_column, value_at

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
    repairs: dict[str, int] = {}
    zips = zip_codes(table, logs.ZIP_CODE, src, repairs).dictionary_decode()  # one row per ZIP code
    notes = [zip_repair_note(column, count) for column, count in repairs.items()]
    bad = first_true(zips.is_null().to_numpy(zero_copy_only=False))
    if bad is not None:
        raise src.error(
            "zip_code is empty; every row of a demographics table needs a ZIP code",
            row=bad,
            column=logs.ZIP_CODE,
            value="",
        )
    duplicate = first_duplicate(zips)
    if duplicate is not None:
        earlier, later = duplicate
        raise src.error(
            f"ZIP code {zips[later].as_py()} is repeated (first on "
            f"{line_name(src, earlier)}); each ZIP code may appear once",
            row=later,
            column=logs.ZIP_CODE,
            value=value_at(as_plain(table.column(logs.ZIP_CODE)), later),
        )
    data = {}
    for name in attributes:
        low, high = DEMOGRAPHIC_ATTRIBUTES[name]
        what = f"{name} (a percentage)" if high == 100.0 else name
        data[name] = float_column(table, name, src, what, low, high, True)
    ignored = [c for c in table.column_names if c != logs.ZIP_CODE and c not in attributes]
    if ignored:
        notes.append(f"ignored columns of {src.name} that are not census attributes: {list_names(ignored)}")
    frame = pd.DataFrame(data, index=pd.Index(zips.to_pandas().astype("str"), name=logs.ZIP_CODE))
    frame.attrs["notes"] = notes
    return frame


def load_demographics_option(path: str | None):
    """The --demographics table and its source line, or (None, None) for the built-in table."""
    if not path:
        return None, None
    return read_demographics(path), f"user demographics table {Path(path).name}"
