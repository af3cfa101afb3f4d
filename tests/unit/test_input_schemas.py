"""Tests for the input schemas in data_schemas/: valid rows pass, invalid rows fail, and the
schemas agree with what fairaudit.io.readers accepts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest

from fairaudit.geodata.zipcodes import ZIP_PATTERN
from fairaudit.io import demographics, embeddings
from fairaudit.io.demographics import read_demographics
from fairaudit.io.embeddings import read_embeddings
from fairaudit.io.readers import read_log
from fairaudit.validate import column_rules

SCHEMAS = Path(__file__).resolve().parents[2] / "data_schemas"
NAMES = ["utterance_log", "embeddings", "demographics"]


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text(encoding="utf-8"))


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema(name))


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as JSON-like dicts: NaN and missing values are left out, numpy scalars made plain."""
    out = []
    for row in frame.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            clean[key] = value.item() if isinstance(value, np.generic) else value
        out.append(clean)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_schema_files_are_valid_json_schema(name):
    doc = schema(name)
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["description"] and doc["title"]
    for prop in doc.get("properties", {}).values():
        assert prop.get("description"), "every property is described"


# --- utterance log -------------------------------------------------------------------------------


def _valid_log(n: int = 60) -> pd.DataFrame:
    """A valid log mixing the four error forms, with coordinates, ZIPs, embeddings, metadata."""
    rng = np.random.default_rng(7)
    s = rng.integers(0, 3, n)
    d = rng.integers(0, 3, n)
    i = rng.integers(0, 2, n)
    ref = rng.integers(3, 12, n)
    frame = pd.DataFrame(
        {
            "speaker_id": [f"{k % 9:03d}" for k in range(n)],
            "utterance_id": [f"utt-{k}" for k in range(n)],
            "errors": s + d + i,
            "ref_words": ref,
            "substitutions": s,
            "deletions": d,
            "insertions": i,
            "wer": (s + d + i) / ref,
            "latitude": np.where(np.arange(n) % 5 == 0, np.nan, rng.uniform(25, 49, n).round(3)),
            "longitude": np.where(np.arange(n) % 5 == 0, np.nan, rng.uniform(-124, -67, n).round(3)),
            "zip_code": [["02134", "10001-1234", "94110"][k % 3] for k in range(n)],
            "emb_0": rng.normal(size=n) + 3,
            "emb_1": rng.normal(size=n),
            "accent": rng.choice(["us", "indian", "england"], n),
        }
    )
    return frame


def test_valid_log_rows_validate_and_read(tmp_path):
    frame = _valid_log()
    frame.to_csv(tmp_path / "log.csv", index=False)
    log = read_log(tmp_path / "log.csv")  # the same data is accepted by the reader
    assert len(log.frame) == len(frame)
    check = validator("utterance_log")
    for row in records(frame):
        check.validate(row)
    # each error form alone is enough
    base = ["speaker_id", "accent"]
    for form, cols in column_rules.ERROR_FORMS.items():
        sub = frame[base + [c for c in cols if c in frame]].copy()
        if form == "text":
            sub["reference"], sub["hypothesis"] = "the cat sat", "the cat sat down"
        for row in records(sub):
            check.validate(row)


@pytest.mark.parametrize(
    "change",
    [
        {"speaker_id": None},  # missing required
        {"speaker_id": ""},
        {"speaker_id": 7},  # ids are strings
        {"errors": -1},
        {"errors": 2.5},
        {"ref_words": "ten"},
        {"wer": -0.1},
        {"latitude": 91.0},
        {"longitude": -180.5},
        {"zip_code": "2134"},  # the reader repairs this, but it is not well-formed
        {"zip_code": "12345-678"},
        {"zip_code": "ABCDE"},
        {"emb_0": "x"},
    ],
)
def test_invalid_log_rows_fail(change):
    row = {
        "speaker_id": "a",
        "errors": 1,
        "ref_words": 3,
        "latitude": 40.0,
        "longitude": -70.0,
        "zip_code": "02134",
        "emb_0": 0.5,
    }
    validator("utterance_log").validate(row)
    for key, value in change.items():
        if value is None:
            row.pop(key)
        else:
            row[key] = value
    with pytest.raises(jsonschema.ValidationError):
        validator("utterance_log").validate(row)


@pytest.mark.parametrize(
    "row",
    [
        {"speaker_id": "a"},
        {"speaker_id": "a", "errors": 1},
        {"speaker_id": "a", "substitutions": 1, "deletions": 0, "ref_words": 3},
        {"speaker_id": "a", "reference": "x"},
    ],
)
def test_log_rows_without_a_complete_error_form_fail(row):
    with pytest.raises(jsonschema.ValidationError):
        validator("utterance_log").validate(row)


def test_log_schema_matches_the_reader():
    doc = schema("utterance_log")
    assert set(column_rules.CANONICAL_COLUMNS) <= set(doc["properties"])
    assert [set(alt["required"]) for alt in doc["anyOf"]] == [set(c) for c in column_rules.ERROR_FORMS.values()]
    assert doc["properties"]["zip_code"]["pattern"] == ZIP_PATTERN
    assert list(doc["patternProperties"]) == [embeddings.EMB_PATTERN.pattern.replace("(", "").replace(")", "")]


# --- embeddings ----------------------------------------------------------------------------------


def test_valid_embedding_rows(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {"speaker_id": [f"s{k}" for k in range(10)], **{f"emb_{j}": rng.normal(size=10) for j in range(4)}}
    )
    frame.to_csv(tmp_path / "emb.csv", index=False)
    assert read_embeddings(tmp_path / "emb.csv").vectors.shape == (10, 4)
    check = validator("embeddings")
    for row in records(frame):
        check.validate(row)
    check.validate({"utterance_id": "u1", "embedding": [0.1, 0.2, 0.3]})


@pytest.mark.parametrize(
    "row",
    [
        {"emb_0": 1.0},  # no id
        {"speaker_id": "a", "utterance_id": "u", "emb_0": 1.0},  # two ids
        {"speaker_id": "a"},  # no vector
        {"speaker_id": "a", "emb_0": "x"},
        {"speaker_id": "a", "embedding": []},
        {"speaker_id": "", "emb_0": 1.0},
    ],
)
def test_invalid_embedding_rows(row):
    with pytest.raises(jsonschema.ValidationError):
        validator("embeddings").validate(row)


# --- demographics --------------------------------------------------------------------------------


def test_valid_demographic_rows(tmp_path):
    frame = pd.DataFrame(
        {
            "zip_code": ["02134", "10001", "94110"],
            "pct_white": [55.0, 40.0, np.nan],
            "pct_black": [10.0, 20.0, 5.0],
            "median_household_income": [72000.0, 90000.0, 120000.0],
            "median_age": [31.0, 35.5, 38.0],
            "population_density": [15000.0, 30000.0, 28000.0],
        }
    )
    frame.to_csv(tmp_path / "demo.csv", index=False)
    assert read_demographics(tmp_path / "demo.csv").shape == (3, 5)
    check = validator("demographics")
    for row in records(frame):
        check.validate(row)


@pytest.mark.parametrize(
    "row",
    [
        {"zip_code": "02134"},  # no attribute
        {"pct_white": 50.0},  # no zip
        {"zip_code": "2134", "pct_white": 50.0},
        {"zip_code": "02134-1234", "pct_white": 50.0},  # 5 digits only in a demographics table
        {"zip_code": "02134", "pct_white": 100.5},
        {"zip_code": "02134", "pct_asian": -1},
        {"zip_code": "02134", "median_household_income": -10},
        {"zip_code": "02134", "median_age": -1},
        {"zip_code": "02134", "population_density": "dense"},
    ],
)
def test_invalid_demographic_rows(row):
    with pytest.raises(jsonschema.ValidationError):
        validator("demographics").validate(row)


def test_demographics_schema_matches_the_reader():
    doc = schema("demographics")
    attributes = {k for k in doc["properties"] if k != "zip_code"}
    assert attributes == set(demographics.DEMOGRAPHIC_ATTRIBUTES)
    for name, (low, high) in demographics.DEMOGRAPHIC_ATTRIBUTES.items():
        prop = doc["properties"][name]
        assert prop["minimum"] == low and prop.get("maximum") == high
