"""Numbers as reports publish them: JSON has no NaN or infinity, so those become None (once, here)."""

from __future__ import annotations

import math

import pandas as pd


def finite_or_none(value: object) -> float | None:
    """A plain float, or None for a missing, NaN or infinite value."""
    if value is None or value is pd.NA:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
