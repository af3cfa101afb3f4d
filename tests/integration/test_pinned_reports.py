"""The same input and seed give the same reports: pinned audit, compare and gate outputs.

The pins in ``tests/integration/pinned/`` were written before the layout refactor (issue 13); any change in a
figure, a cohort, a verdict or a note fails here. Floats may differ in the last bits between BLAS
builds, so they compare with a relative tolerance of 1e-9; everything else compares exactly.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "pinned"))
from pinned_runs import HERE, make_reports, normalised  # noqa: E402


def differences(expected: object, actual: object, where: str = "$") -> list[str]:
    """Every place where two JSON values differ (floats within a relative 1e-9 count as equal)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = [f"{where}: keys {sorted(set(expected) ^ set(actual))}"] if set(expected) != set(actual) else []
        for key in expected.keys() & actual.keys():
            found += differences(expected[key], actual[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items pinned, {len(actual)} now"]
        return [d for i, (e, a) in enumerate(zip(expected, actual)) for d in differences(e, a, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(actual, (int, float)) and not isinstance(actual, bool):
        return (
            [] if math.isclose(expected, actual, rel_tol=1e-9, abs_tol=1e-12) else [f"{where}: {expected} -> {actual}"]
        )
    return [] if expected == actual else [f"{where}: {expected!r} -> {actual!r}"]


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> dict[str, Path]:
    return make_reports(tmp_path_factory.mktemp("pinned"))


@pytest.mark.parametrize("name", ["all_methods", "options", "compare", "gate", "gate_junit"])
def test_output_matches_its_pin(reports, name):
    pinned = json.loads((HERE / f"{name}.json").read_text())
    found = differences(pinned, normalised(reports[name]))
    assert not found, f"{len(found)} differences from tests/integration/pinned/{name}.json, first: " + "; ".join(
        found[:5]
    )


def test_the_comparison_can_fail():
    assert differences({"a": [1.0, "x"]}, {"a": [1.0 + 1e-6, "x"]}) == ["$.a[0]: 1.0 -> 1.000001"]
    assert differences({"a": 1}, {"b": 1}) == ["$: keys ['a', 'b']"]
