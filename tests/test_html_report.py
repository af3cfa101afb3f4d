"""The HTML report and the Markdown summary (SPEC 6): content equals the JSON, nothing unescaped,
nothing loaded from outside, suppressed cohorts carry no numbers.

The HTML marks every figure with ``data-field`` / ``data-value`` (and ``data-lo`` / ``data-hi``
for intervals) inside elements carrying ``data-method``, ``data-set`` and ``data-cohort``; the
tests parse that with the standard library and compare both the exact value and the displayed
text with ``result.to_dict()`` formatted by ``fairaudit.render.format``.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

import fairaudit
from fairaudit.render import format as fmt
from fairaudit.render.html import render_html as _render_html
from fairaudit.render.markdown import render_markdown

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "synthetic" / "eval_log.csv.gz"
EMBEDDINGS = ROOT / "examples" / "synthetic" / "eval_log.embeddings.parquet"
SCRIPT = "<script>alert(1)</script>"
BREAKOUT = '"><img src=x onerror=alert(1)>'
FAST = {"bootstrap": 100, "permutations": 30, "seed": 0}


_RENDERED: dict[int, tuple[object, str]] = {}


def render_html(result) -> str:
    """The report of ``result``, rendered once per result object (rendering draws the charts)."""
    cached = _RENDERED.get(id(result))
    if cached is None or cached[0] is not result:
        cached = _RENDERED[id(result)] = (result, _render_html(result))
    return cached[1]


# ---------------------------------------------------------------------------------------------
# Parsing the report
# ---------------------------------------------------------------------------------------------
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CONTEXT = ("data-method", "data-set", "data-cohort", "data-rank")


class ReportParser(HTMLParser):
    """Collects every element with a data-field: its context, attributes and visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = []
        self.fields: dict[tuple, list[dict]] = {}
        self.rows: dict[tuple, dict] = {}  # <tr data-cohort> -> {"text", "fields"}
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag in VOID:
            return
        context = dict(self.stack[-1]["context"]) if self.stack else {}
        context.update({k: attributes[k] for k in CONTEXT if k in attributes})
        entry = {"tag": tag, "attrs": attributes, "context": context, "text": []}
        self.stack.append(entry)
        if tag == "tr" and "data-cohort" in attributes:
            entry["row"] = {"text": entry["text"], "fields": []}
            self.rows[self._key(context)] = entry["row"]

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag):
        while self.stack:
            entry = self.stack.pop()
            if "data-field" in entry["attrs"]:
                record = {"attrs": entry["attrs"], "text": " ".join("".join(entry["text"]).split())}
                self.fields.setdefault(self._key(entry["context"]) + (entry["attrs"]["data-field"],), []).append(record)
                for outer in self.stack:
                    if "row" in outer:
                        outer["row"]["fields"].append(entry["attrs"]["data-field"])
            if entry["tag"] == tag:
                break

    def handle_data(self, data):
        for entry in self.stack:
            entry["text"].append(data)

    @staticmethod
    def _key(context: dict) -> tuple:
        return tuple(context.get(k) for k in CONTEXT)


def parse(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser


def field(report: ReportParser, method: str, set_: str | None, cohort: str | None, name: str, rank: str | None = None) -> list[dict]:
    found = report.fields.get((method, set_, cohort, rank, name))
    assert found, f"no {name} for {method}/{set_}/{cohort} in the report"
    return found


def check_number(record: dict, value, text: str) -> None:
    """data-value holds exactly the JSON number and the cell shows it formatted."""
    shown = record["attrs"]["data-value"]
    assert (float(shown) if shown else None) == value
    assert record["text"] == text, (record["text"], text)


def check_interval(record: dict, pair, text: str) -> None:
    lo, hi = record["attrs"]["data-lo"], record["attrs"]["data-hi"]
    assert [float(lo) if lo else None, float(hi) if hi else None] == pair
    assert record["text"] == text


def check_report_equals_json(result) -> None:
    """Every headline figure and every cohort figure of every method is shown as in the JSON."""
    data = result.to_dict()
    report = parse(render_html(result))
    minimum = data["parameters"]["min_report_speakers"]
    for key, method in data["methods"].items():
        sets = [("discovery", method)] + ([("held-out", method["holdout"])] if method["holdout"] else [])
        for label, figures in sets:
            check_number(field(report, key, label, None, "wer_gap_pct")[0], figures["wer_gap_pct"], fmt.pct(figures["wer_gap_pct"]))
            check_interval(field(report, key, label, None, "wer_gap_ci")[0], figures["wer_gap_ci"], fmt.interval(*figures["wer_gap_ci"]))
            check_number(field(report, key, label, None, "bottom_share_pct")[0], figures["bottom_share_pct"], fmt.pct(figures["bottom_share_pct"]))
            check_interval(field(report, key, label, None, "bottom_share_ci")[0], figures["bottom_share_ci"], fmt.interval(*figures["bottom_share_ci"]))
            check_number(field(report, key, label, None, "p_value")[0], figures["p_value"], fmt.p_value(figures["p_value"]))
            if figures["bottom"]:
                check_number(field(report, key, label, None, "bottom_wer")[0], figures["bottom_wer"], fmt.wer(figures["bottom_wer"]))
                check_number(field(report, key, label, None, "top_wer")[0], figures["top_wer"], fmt.wer(figures["top_wer"]))
            for cohort in figures["cohorts"]:
                row = report.rows[(key, label, cohort["id"], None)]
                if cohort["suppressed"]:
                    assert row["fields"] == [], f"suppressed {cohort['id']} shows numbers"
                    assert f"suppressed (fewer than {minimum} speakers)" in "".join(row["text"])
                    continue
                get = lambda name: field(report, key, label, cohort["id"], name)[0]  # noqa: E731
                check_number(get("rank"), cohort["rank"], str(cohort["rank"]))
                for name in ("speakers", "utterances", "ref_words"):
                    check_number(get(name), cohort[name], f"{cohort[name]:,}")
                for name in ("speaker_share_pct", "word_share_pct"):
                    check_number(get(name), cohort[name], fmt.pct(cohort[name]))
                check_number(get("wer"), cohort["wer"], fmt.wer(cohort["wer"]))
                check_interval(get("wer_ci"), cohort["wer_ci"], fmt.interval(*cohort["wer_ci"], fmt=fmt.wer))
                if "p_value_bh" in cohort:
                    check_number(get("p_value"), cohort["p_value"], fmt.p_value(cohort["p_value"]))
                    check_number(get("p_value_bh"), cohort["p_value_bh"], fmt.p_value(cohort["p_value_bh"]))
        for candidate in method.get("candidates") or []:
            sides = candidate["cohorts"]
            if candidate.get("suppressed") or any((side["speakers"] or 0) < minimum for side in sides):
                assert (key, None, None, str(candidate["rank"]), "wer") not in report.fields
                continue
            speakers = field(report, key, None, None, "speakers", rank=str(candidate["rank"]))
            wers = field(report, key, None, None, "wer", rank=str(candidate["rank"]))
            for side, shown_speakers, shown_wer in zip(sides, speakers, wers, strict=True):
                check_number(shown_speakers, side["speakers"], f"{side['speakers']:,}")
                check_number(shown_wer, side["wer"], fmt.wer(side["wer"]))
            gap = field(report, key, None, None, "wer_gap_pct", rank=str(candidate["rank"]))[0]
            check_number(gap, candidate["wer_gap_pct"], fmt.pct(candidate["wer_gap_pct"]))


def assert_self_contained(text: str) -> None:
    """No resource from outside: every src is a data: URI, every href an in-page anchor."""
    assert not re.search(r"""(?:src|href|action|poster|srcset)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I)
    assert not re.search(r"@import", text, re.I)
    assert not re.search(r"""url\(\s*["']?\s*(?!data:)""", text, re.I)
    report = parse(text)
    for tag, attributes in report.tags:
        if "src" in attributes:
            assert attributes["src"].startswith("data:image/png;base64,"), (tag, attributes["src"][:60])
        if "href" in attributes:
            assert attributes["href"].startswith("#"), (tag, attributes["href"])
        assert tag not in ("script", "link", "iframe", "object", "embed")
        assert not any(name.startswith("on") for name in attributes), (tag, attributes)


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quickstart():
    return fairaudit.audit(EXAMPLE, embeddings=EMBEDDINGS, by=["accent"], holdout=None, **FAST)


@pytest.fixture(scope="module")
def quickstart_holdout():
    return fairaudit.audit(EXAMPLE, embeddings=EMBEDDINGS, by=["accent"], holdout=0.5, **FAST)


@pytest.fixture(scope="module")
def artie():
    from test_artie_real_data import COLUMNS, artie_log

    log = artie_log("google-en-US-dec-4-2019")
    return fairaudit.audit(log, methods=["attribute"], columns=COLUMNS, by=["accent"], min_speakers=20, **FAST)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """The Quickstart log with hostile strings as accent values, as a column name and in the file name."""
    frame = pd.read_csv(EXAMPLE, dtype={"zip_code": "string"})
    speakers = frame["speaker_id"].drop_duplicates().to_numpy()
    frame.loc[frame["speaker_id"].isin(speakers[:80]), "accent"] = SCRIPT
    frame.loc[frame["speaker_id"].isin(speakers[80:160]), "accent"] = BREAKOUT
    rng = np.random.default_rng(0)
    group = dict(zip(speakers, rng.choice([SCRIPT, BREAKOUT, "plain & simple"], size=len(speakers))))
    frame[SCRIPT] = frame["speaker_id"].map(group)
    path = tmp_path_factory.mktemp("hostile") / f'log{BREAKOUT.replace("/", "")}.csv'
    frame.to_csv(path, index=False)
    result = fairaudit.audit(path, embeddings=EMBEDDINGS, by=["accent", SCRIPT], bootstrap=50, permutations=10, seed=0)
    assert any(SCRIPT in c for c in result.to_frame()["description"]), "the hostile values must reach the report"
    return result


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
def test_quickstart_report_shows_exactly_the_json_figures(quickstart):
    check_report_equals_json(quickstart)


def test_held_out_figures_are_shown_and_labelled_beside_discovery(quickstart_holdout):
    check_report_equals_json(quickstart_holdout)
    text = render_html(quickstart_holdout)
    summary = text[text.index('id="summary"'):text.index("</section>")]
    assert summary.count('class="set heldout">held-out<') == len(quickstart_holdout.methods)
    assert summary.count('class="set discovery">discovery<') == len(quickstart_holdout.methods)


def test_artie_real_data_report_shows_exactly_the_json_figures_and_suppresses_small_accents(artie):
    check_report_equals_json(artie)
    cohorts = artie.to_dict()["methods"]["attribute"]["cohorts"]
    suppressed = [c["id"] for c in cohorts if c["suppressed"]]
    assert suppressed, "the Artie corpus has accents with fewer than 10 speakers"
    text = render_html(artie)
    frame = artie.methods["attribute"].cohorts.set_index("id")
    for cohort in suppressed:
        row = re.search(rf'<tr data-cohort="{re.escape(str(escape(cohort)))}".*?</tr>', text, re.S).group(0)
        assert "suppressed (fewer than 10 speakers)" in row
        assert fmt.wer(frame.loc[cohort, "wer"]) not in row and "data-value" not in row
    # Suppressed cohorts come after every reported one, so their rank is not shown by position.
    table = text[text.index('<table class="cohorts"'):]
    table = table[:table.index("</table>")]
    # The JSON withholds suppressed cohorts' ranks too (null), for the same reason.
    assert all(c["rank"] is None for c in cohorts if c["suppressed"])
    ordered = sorted(cohorts, key=lambda c: (c["suppressed"], c["rank"] or 0))
    positions = [table.index(f'data-cohort="{c["id"]}"') for c in ordered]
    reported = [p for p, c in zip(positions, ordered) if not c["suppressed"]]
    assert max(reported) < min(p for p in positions if p not in reported)
    assert reported == sorted(reported)
    # The reference line pools only the reported cohorts, so it cannot reveal a suppressed one.
    shown = frame[~frame["suppressed"].astype(bool)]
    pooled = fmt.wer(shown["errors"].sum() / shown["ref_words"].sum())
    assert f"Dashed line: WER {pooled} pooled over the reported cohorts" in text


def test_sections_charts_attribution_and_provenance(quickstart):
    data = quickstart.to_dict()
    text = render_html(quickstart)
    plain = html.unescape(re.sub(r"<[^>]+>", " ", text))
    plain = " ".join(plain.split())
    order = [text.index('id="summary"')] + [text.index(f'data-method="{key}"', text.index("</table>")) for key in data["methods"]]
    order.append(text.index('id="settings"'))
    assert order == sorted(order), "summary first, then one section per method, then settings"
    assert "State outlines: US Census Bureau via bokeh-sampledata" in plain
    assert data["methods"]["zip-demographic"]["details"]["source"] in plain
    assert data["input"]["sha256"] in plain and str(EXAMPLE.name) in plain
    assert f"fairaudit {data['fairaudit_version']}" in plain
    for name in data["parameters"]:
        assert re.search(rf'<th>{name}</th>', text), name
    # One WER-by-cohort chart per method plus the map and the cluster view, all inline PNG.
    assert text.count('src="data:image/png;base64,') == len(data["methods"]) + 2
    # The overall WER reference line is labelled with the pooled WER of all assigned speakers.
    for method in quickstart.methods.values():
        cohorts = method.discovery.cohorts
        assert f"overall WER {fmt.wer(cohorts['errors'].sum() / cohorts['ref_words'].sum())}" in plain
    # Every candidate split is listed and the chosen one is marked.
    candidates = data["methods"]["zip-demographic"]["candidates"]
    assert text.count("<tr data-rank=") == len(candidates)
    assert len(re.findall(r'<tr data-rank="\d+" class="chosen', text)) == 1
    # Definitions are the README's wording.
    readme = (ROOT / "README.md").read_text()
    for term in ("cohort WER", "**WER gap (%)**", "**bottom-cohort share (%)**"):
        definition = re.search(rf"^\| {re.escape(term)} \| (.+?) \|$", readme, re.M).group(1).replace("`", "")
        assert " ".join(definition.split()) in plain, term


def test_no_speaker_ids_or_coordinates_in_the_report(quickstart):
    text = render_html(quickstart)
    ids = quickstart.assignments()["speaker_id"].unique()
    assert not [s for s in ids[:500] if s in text]
    assert "latitude_min" not in text and "spk0" not in text


def test_report_is_self_contained_and_small(quickstart, quickstart_holdout):
    for result in (quickstart, quickstart_holdout):
        text = render_html(result)
        assert_self_contained(text)
        assert "Content-Security-Policy" in text
        assert len(text.encode()) < 2_000_000
    # The check itself catches remote resources.
    for bad in ('<img src="https://x.example/a.png">', "<link href='//cdn.example/x.css'>", "<style>@import 'x.css';</style>",
                '<div style="background: url(http://x.example/a.png)">'):
        with pytest.raises(AssertionError):
            assert_self_contained(bad)


def test_hostile_strings_are_escaped_in_html(hostile):
    text = render_html(hostile)
    assert SCRIPT not in text and BREAKOUT not in text
    assert str(escape(SCRIPT)) in text
    assert str(escape(BREAKOUT)) in text  # &#34;&gt;&lt;img ...
    assert "<script" not in text.lower()
    assert_self_contained(text)
    # No element came from the data: every tag is one the template writes.
    for tag, attributes in parse(text).tags:
        assert "onerror" not in attributes and attributes.get("src") != "x"


def test_hostile_strings_are_escaped_in_markdown(hostile):
    text = render_markdown(hostile)
    assert SCRIPT not in text and BREAKOUT not in text
    assert "&lt;script&gt;" in text
    assert "<" not in text and ">" not in text  # every angle bracket is an entity
    for line in text.splitlines():
        if line.startswith("| attribute"):
            # a hostile value cannot add table cells: unescaped pipes are only the 8 cell borders
            assert len(re.findall(r"(?<!\\)\|", line)) == 8


def test_markdown_summary_matches_the_json(quickstart, quickstart_holdout):
    for result in (quickstart, quickstart_holdout):
        data = result.to_dict()
        text = render_markdown(result)
        rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
        assert len(rows) == sum(1 + (m["holdout"] is not None) for m in data["methods"].values())
        for key, method in data["methods"].items():
            row = next(r for r in rows if r.startswith(f"| {key}"))
            marker = {"disparity": "**DISPARITY**", "no evidence": "no evidence", "insufficient data": "*insufficient data*"}
            assert f"| {marker[method['verdict']]} |" in row
            assert f"{fmt.pct(method['wer_gap_pct'])} {fmt.interval(*method['wer_gap_ci'])}" in row
            assert f"{fmt.pct(method['bottom_share_pct'])} {fmt.interval(*method['bottom_share_ci'])}" in row
            assert f"({fmt.wer(method['bottom_wer'])})" in row and f"({fmt.wer(method['top_wer'])})" in row
            assert row.endswith(f"| {fmt.p_value(method['p_value'])} |")
        assert "WER gap = 100 x (WER(bottom) - WER(top)) / WER(top)" in text
