"""The HTML report and the Markdown summary (SPEC 6): content equals the JSON, nothing unescaped,
nothing loaded from outside, suppressed cohorts carry no numbers.

The HTML marks every figure with ``data-field`` / ``data-value`` (and ``data-lo`` / ``data-hi``
for intervals) inside elements carrying ``data-method``, ``data-set`` and ``data-cohort``; the
tests parse that with the standard library and compare both the exact value and the displayed
text with ``result.to_dict()`` formatted by ``fairaudit.render.format``.
"""

from __future__ import annotations

import dataclasses
import html
import math
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from markupsafe import escape

import fairaudit
from fairaudit.model.partition import Partition
from fairaudit.render import format as fmt
from fairaudit.render import usmap
from fairaudit.render.charts import plt
from fairaudit.render.html import method_title, report_context
from fairaudit.render.html import render_html as _render_html
from fairaudit.render.markdown import render_markdown
from fairaudit.report.result import MethodResult, suppressed_note

ROOT = Path(__file__).resolve().parents[2]
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


def field(
    report: ReportParser, method: str, set_: str | None, cohort: str | None, name: str, rank: str | None = None
) -> list[dict]:
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
            check_number(
                field(report, key, label, None, "wer_gap_pct")[0],
                figures["wer_gap_pct"],
                fmt.pct(figures["wer_gap_pct"]),
            )
            check_interval(
                field(report, key, label, None, "wer_gap_ci")[0],
                figures["wer_gap_ci"],
                fmt.interval(*figures["wer_gap_ci"]),
            )
            check_number(
                field(report, key, label, None, "bottom_share_pct")[0],
                figures["bottom_share_pct"],
                fmt.pct(figures["bottom_share_pct"]),
            )
            check_interval(
                field(report, key, label, None, "bottom_share_ci")[0],
                figures["bottom_share_ci"],
                fmt.interval(*figures["bottom_share_ci"]),
            )
            check_number(
                field(report, key, label, None, "p_value")[0], figures["p_value"], fmt.p_value(figures["p_value"])
            )
            if figures["bottom"]:
                check_number(
                    field(report, key, label, None, "bottom_wer")[0],
                    figures["bottom_wer"],
                    fmt.wer(figures["bottom_wer"]),
                )
                check_number(
                    field(report, key, label, None, "top_wer")[0], figures["top_wer"], fmt.wer(figures["top_wer"])
                )
            for cohort in figures["cohorts"]:
                row = report.rows[(key, label, cohort["id"], None)]
                if cohort["suppressed"]:
                    assert row["fields"] == [], f"suppressed {cohort['id']} shows numbers"
                    assert suppressed_note(minimum) in "".join(row["text"])
                    continue
                get = lambda name, key=key, label=label, cohort=cohort: field(report, key, label, cohort["id"], name)[0]  # noqa: E731
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
    from builders import COLUMNS, artie_log

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
    path = tmp_path_factory.mktemp("hostile") / f"log{BREAKOUT.replace('/', '')}.csv"
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
    summary = text[text.index('id="summary"') : text.index("</section>")]
    assert summary.count('class="set heldout">held-out<') == len(quickstart_holdout.methods)
    assert summary.count('class="set discovery">discovery<') == len(quickstart_holdout.methods)


def test_artie_real_data_report_shows_exactly_the_json_figures_and_suppresses_small_accents(artie):
    check_report_equals_json(artie)
    cohorts = artie.to_dict()["methods"]["attribute"]["cohorts"]
    suppressed = [c["id"] for c in cohorts if c["suppressed"]]
    assert suppressed, "the Artie corpus has accents with fewer than 10 speakers"
    text = render_html(artie)
    frame = artie.methods["attribute"].cohorts.set_index("id")
    hidden = frame[frame["suppressed"].astype(bool)]
    assert all(c.startswith("suppressed-") for c in suppressed) and len(suppressed) == len(hidden)
    for cohort in suppressed:
        row = re.search(rf'<tr data-cohort="{re.escape(str(escape(cohort)))}".*?</tr>', text, re.S).group(0)
        assert suppressed_note(10) in row and "data-value" not in row
    for accent, record in hidden.iterrows():  # neither the accent's name nor its WER is published
        assert f'data-cohort="{escape(accent)}"' not in text and fmt.wer(record["wer"]) not in text
    # Suppressed cohorts come after every reported one, so their rank is not shown by position.
    table = text[text.index('<table class="cohorts"') :]
    table = table[: table.index("</table>")]
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
    order = [text.index('id="summary"')] + [
        text.index(f'data-method="{key}"', text.index("</table>")) for key in data["methods"]
    ]
    order.append(text.index('id="settings"'))
    assert order == sorted(order), "summary first, then one section per method, then settings"
    assert "State outlines: US Census Bureau via bokeh-sampledata" in plain
    assert data["methods"]["zip-demographic"]["details"]["source"] in plain
    assert data["input"]["sha256"] in plain and str(EXAMPLE.name) in plain
    assert f"fairaudit {data['fairaudit_version']}" in plain
    for name in data["parameters"]:
        assert re.search(rf"<th>{name}</th>", text), name
    # One WER-by-cohort chart per method plus a map per geographic method and the cluster view, all inline PNG.
    maps = sum(1 for view in report_context(quickstart)["methods"] if view.get("map"))
    assert maps >= 1 and text.count('<figure class="chart map">') == maps
    assert text.count('src="data:image/png;base64,') == len(data["methods"]) + maps + 1
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
    from fairaudit.render.html import DEFINITIONS

    for term, _ in DEFINITIONS:  # every definition the report shows is the README's, word for word
        row = re.search(rf"^\| (\*\*)?{re.escape(term)}(\*\*)? \| (.+?) \|$", readme, re.M)
        assert row, f"README has no definition of {term}"
        definition = (
            row.group(3)
            .replace("`", "")
            .replace("1,000 speaker-level", f"{data['parameters']['bootstrap']:,} speaker-level")
        )  # this run's replicates
        assert " ".join(definition.split()) in " ".join(plain.split()), term


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
    for bad in (
        '<img src="https://x.example/a.png">',
        "<link href='//cdn.example/x.css'>",
        "<style>@import 'x.css';</style>",
        '<div style="background: url(http://x.example/a.png)">',
    ):
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
    for _tag, attributes in parse(text).tags:
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
            marker = {
                "disparity": "**DISPARITY**",
                "no evidence": "no evidence",
                "insufficient data": "*insufficient data*",
            }
            assert f"| {marker[method['verdict']]} |" in row
            assert f"{fmt.pct(method['wer_gap_pct'])} {fmt.interval(*method['wer_gap_ci'])}" in row
            assert f"{fmt.pct(method['bottom_share_pct'])} {fmt.interval(*method['bottom_share_ci'])}" in row
            assert f"({fmt.wer(method['bottom_wer'])})" in row and f"({fmt.wer(method['top_wer'])})" in row
            assert row.endswith(f"| {fmt.p_value(method['p_value'])} |")
        assert "WER gap = 100 x (WER(bottom) - WER(top)) / WER(top)" in text


# ---------------------------------------------------------------------------------------------
# The region map (SPEC 4.1, 4.2, 6): cells clipped to land, bottom cohort outlined, nothing
# suppressed drawn. Geo-tree and geo-scan results are built by hand so the cells are known.
# ---------------------------------------------------------------------------------------------
def _region(i: int, lat0=None, lat1=None, lon0=None, lon1=None) -> dict:
    return {
        "id": f"region-{i}",
        "latitude_min": lat0,
        "latitude_max": lat1,
        "longitude_min": lon0,
        "longitude_max": lon1,
    }


#: (id, description, speakers, WER, suppressed); region-5 (Florida and the Gulf coast) is suppressed.
TREE_ROWS = [
    ("region-1", "lon < -100", 500, 0.08, False),
    ("region-2", "lon >= -100, lat >= 37", 600, 0.09, False),
    ("region-3", "-100 <= lon < -90, lat < 37", 200, 0.15, False),
    ("region-4", "lon >= -90, 33 <= lat < 37", 150, 0.14, False),
    ("region-5", "lon >= -90, lat < 33 SECRET", 5, 0.30, True),
]
TREE = {
    "regions": [
        _region(1, lon1=-100),
        _region(2, lat0=37, lon0=-100),
        _region(3, lat1=37, lon0=-100, lon1=-90),
        _region(4, lat0=33, lat1=37, lon0=-90),
        _region(5, lat1=33, lon0=-90),
    ]
}
#: Atlanta (inland), Chicago, Houston (suppressed) and San Francisco (on the coast).
SCAN_ROWS = [
    ("window-1", "within 150 km of 33.75, -84.40", 120, 0.16, False),
    ("window-2", "within 100 km of 41.90, -87.60", 90, 0.13, False),
    ("window-3", "within 80 km of 29.80, -95.40 SECRET", 6, 0.40, True),
    ("window-4", "within 60 km of 37.80, -122.40", 80, 0.10, False),
    ("outside-windows", "outside every window", 1500, 0.09, False),
]
SCAN = {
    "windows": [
        {"id": "window-1", "centre_lat": 33.75, "centre_lon": -84.4, "radius_km": 150, "score": 30.0},
        {"id": "window-2", "centre_lat": 41.9, "centre_lon": -87.6, "radius_km": 100, "score": 12.0},
        {"id": "window-3", "centre_lat": 29.8, "centre_lon": -95.4, "radius_km": 80, "score": 9.0},
        {"id": "window-4", "centre_lat": 37.8, "centre_lon": -122.4, "radius_km": 60, "score": 2.0},
    ]
}
SUPPRESSED_POINTS = {"geo-tree": (-81.5, 28.5), "geo-scan": (-95.4, 29.8)}  # (lon, lat) inside region-5 / window-3


def _cohort_frame(rows: list[tuple]) -> pd.DataFrame:
    """A discovery cohort table (result.Figures.cohorts) for the given rows."""
    total = sum(r[2] for r in rows)
    records = []
    for rank, (cid, description, speakers, wer, suppressed) in enumerate(sorted(rows, key=lambda r: -r[3]), start=1):
        words, share = speakers * 70, 100 * speakers / total
        records.append(
            dict(
                id=cid,
                description=description,
                rank=rank,
                speakers=speakers,
                utterances=speakers * 20,
                ref_words=words,
                errors=round(wer * words),
                wer=wer,
                wer_ci_low=wer * 0.9,
                wer_ci_high=wer * 1.1,
                speaker_share_pct=share,
                utterance_share_pct=share,
                word_share_pct=share,
                eligible=speakers >= 30,
                suppressed=suppressed,
            )
        )
    return pd.DataFrame(records)


def _fake_method(base, name: str, rows: list[tuple], details: dict, bottom: list[str], top: list[str]) -> MethodResult:
    """A method result with the given cells, reusing the headline figures of a real one."""
    partition = Partition(
        name, np.zeros(0, dtype=np.int64), [r[0] for r in rows], [r[1] for r in rows], details=details
    )
    figures = dataclasses.replace(
        base.methods["geo-tree"].discovery, cohorts=_cohort_frame(rows), bottom=bottom, top=top
    )
    return MethodResult(name, partition, figures, "disparity", "planted for the map tests")


@pytest.fixture(scope="module")
def geo_fake(quickstart):
    """A result with a hand-made geo-tree (one region suppressed) and geo-scan (one window suppressed)."""
    methods = {
        "geo-tree": _fake_method(quickstart, "geo-tree", TREE_ROWS, TREE, ["region-3", "region-4"], ["region-1"]),
        "geo-scan": _fake_method(
            quickstart, "geo-scan", SCAN_ROWS, SCAN, ["window-1", "window-2"], ["outside-windows"]
        ),
    }
    return dataclasses.replace(quickstart, methods=methods)


def _map_views(result) -> list[dict]:
    """The report views of the methods that draw a map (each must have drawn one)."""
    views = [v for v in report_context(result)["methods"] if v["has_map"]]
    assert views and all(v["map"] for v in views)
    return views


def _figure_patches(view: dict):
    """The filled cell patches and the thick bottom outline patches of the map as drawn."""
    fig = usmap.map_figure(view["map_shapes"], (8.0, 16.0), "WER")
    patches = list(fig.axes[0].patches)
    plt.close(fig)
    filled = [p for p in patches if p.zorder == 2]
    outlines = [
        p
        for p in patches
        if not p.get_fill()
        and p.get_linewidth() >= 2.9
        and matplotlib_colour(p.get_edgecolor()) == matplotlib_colour(usmap.BOTTOM_EDGE)
    ]
    return filled, outlines


def matplotlib_colour(colour) -> tuple:
    """RGBA of a matplotlib colour, rounded for comparison."""
    from matplotlib.colors import to_rgba

    return tuple(round(c, 3) for c in to_rgba(colour))


def _within_land(points) -> bool:
    """Whether every point lies on the lower 48 states' land (within 0.001 degree)."""
    from shapely.geometry import MultiPoint

    return MultiPoint([tuple(p) for p in points]).within(usmap.land().buffer(1e-3))


def test_map_draws_every_cell_clipped_to_land(quickstart, geo_fake):
    from shapely.geometry import Point

    for result in (quickstart, geo_fake):
        for view in _map_views(result):
            shapes = view["map_shapes"]
            assert shapes
            for shape in shapes:
                assert shape.geometry.within(usmap.land().buffer(1e-6)), shape.id
            filled, _ = _figure_patches(view)
            assert len(filled) == len(shapes), "one filled patch per shape, nothing else"
            for patch in filled:
                assert _within_land(patch.get_path().vertices)
                # Nothing is painted over the ocean (the old maps drew latitude bands across it).
                for lon, lat in ((-120.0, 30.0), (-70.0, 35.0), (-88.0, 26.0)):
                    assert not patch.get_path().contains_point((lon, lat))
            assert not any(s.geometry.contains(Point(-120.0, 30.0)) for s in shapes)
    # The unbounded geo-tree region-1 (lon < -100) is clipped: it reaches the coast and stops there.
    region1 = next(s for s in _map_views(geo_fake)[0]["map_shapes"] if s.id == "region-1")
    assert region1.geometry.bounds[0] > -125.0 and region1.geometry.bounds[2] <= -100.0 + 1e-9


def test_suppressed_cells_are_not_drawn_labelled_or_in_the_legend(geo_fake):
    text = _render_html(geo_fake)
    for view in _map_views(geo_fake):
        published = {c["id"] for c in geo_fake.to_dict()["methods"][view["key"]]["cohorts"] if c["suppressed"]}
        assert published == {"suppressed-1"}  # the JSON names a suppressed cell by a placeholder only
        hidden = {"geo-tree": {"region-5"}, "geo-scan": {"window-3"}}[view["key"]]
        assert not hidden & {c["id"] for c in geo_fake.to_dict()["methods"][view["key"]]["cohorts"]}
        assert not hidden & {s.id for s in view["map_shapes"]}
        assert not any(cid in legend for _, legend in view["map_legend"] for cid in hidden)
        assert not any(cid in note for note in view["map_notes"] for cid in hidden), "region-5 also covers Puerto Rico"
        filled, outlines = _figure_patches(view)
        point = SUPPRESSED_POINTS[view["key"]]
        assert not any(p.get_path().contains_point(point) for p in filled + outlines)
        section = text[text.index(f'id="{view["anchor"]}"') :]
        section = section[: section.index("</section>")]
        caption = section[section.index('<figure class="chart map">') :]
        caption = caption[: caption.index("</figure>")]
        assert not any(cid in caption for cid in hidden)
        assert "atched" not in caption and "atched" not in text
    # Their bounds are not shown anywhere in the page either.
    assert "SECRET" not in text


def test_bottom_cohort_cells_are_outlined_and_named_in_the_legend(quickstart, geo_fake):
    expected = {"geo-tree": ["region-3", "region-4"], "geo-scan": ["window-1", "window-2"]}
    for view in _map_views(geo_fake):
        shapes = view["map_shapes"]
        bottom = [s for s in shapes if s.role == "bottom"]
        assert sorted(s.id for s in bottom) == expected[view["key"]]
        assert ("bottom", f"bottom cohort: {', '.join(expected[view['key']])}") in view["map_legend"]
        _, outlines = _figure_patches(view)
        assert len(outlines) == 1, "the bottom cohort is outlined once, thickly"
        path = outlines[0].get_path()
        for shape in shapes:
            point = shape.geometry.representative_point()
            assert path.contains_point((point.x, point.y)) == (shape.role == "bottom"), shape.id
    top = next(v for v in _map_views(geo_fake) if v["key"] == "geo-tree")
    assert [s.id for s in top["map_shapes"] if s.role == "top"] == ["region-1"]
    # On the Quickstart log every bottom cell that lies on land is outlined.
    for view in _map_views(quickstart):
        bottom = quickstart.to_dict()["methods"][view["key"]]["bottom_cohorts"]
        assert {s.id for s in view["map_shapes"] if s.role == "bottom"} == {
            s.id for s in view["map_shapes"] if s.id in bottom
        }
        assert any(s.role == "bottom" for s in view["map_shapes"])


def _haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a sphere of radius 6371 km (independent of usmap)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def test_geo_scan_windows_are_geodesic_circles_of_their_radius(geo_fake):
    from pyproj import Geod

    window = SCAN["windows"][0]
    circle = usmap.window_geometry(window)
    for lon, lat in circle.exterior.coords:
        assert _haversine_km(window["centre_lat"], window["centre_lon"], lat, lon) == pytest.approx(150.0, rel=2e-3)
    area_km2 = abs(Geod(ellps="WGS84").geometry_area_perimeter(circle)[0]) / 1e6
    assert area_km2 == pytest.approx(math.pi * 150.0**2, rel=0.01)
    views = {v["key"]: v for v in _map_views(geo_fake)}
    shapes = {s.id: s for s in views["geo-scan"]["map_shapes"]}
    assert set(shapes) == {"window-1", "window-2", "window-4"}, "outside-windows and suppressed windows are not drawn"
    # Atlanta's window lies on land: drawn whole. San Francisco's loses the Pacific and the bay.
    assert shapes["window-1"].geometry.area == pytest.approx(circle.area, rel=1e-6)
    coast = usmap.window_geometry(SCAN["windows"][3])
    assert shapes["window-4"].geometry.area < 0.8 * coast.area
    # The geo-scan section has the same parts as geo-tree: table, WER chart, map.
    text = _render_html(geo_fake)
    section = text[text.index('data-method="geo-scan"', text.index("</table>")) :]
    section = section[: section.index("</section>")]
    assert '<table class="cohorts" data-method="geo-scan"' in section
    assert section.count('src="data:image/png;base64,') == 2
    assert "Scan windows on the map" in section and "Grey land: outside-windows" in section


def test_method_headings_are_the_registered_titles(quickstart, monkeypatch):
    from fairaudit.methods.registry import method_classes

    classes = method_classes()
    assert method_title("no-such-method") == "no-such-method"
    assert method_title("attribute:accent,gender").startswith("attribute:accent,gender")
    monkeypatch.setattr(classes["geo-tree"], "title", "geo-tree: <b>planted</b> regions", raising=False)
    monkeypatch.setattr(classes["zip-demographic"], "title", "", raising=False)
    text = _render_html(quickstart)
    assert "<h2>geo-tree: &lt;b&gt;planted&lt;/b&gt; regions</h2>" in text
    assert "<h2>zip-demographic</h2>" in text


def test_crowded_cluster_labels_do_not_overlap_and_stay_inside_the_plot():
    """Twenty clusters with close centres (k = 20 on 2,000 speakers) once drew labels on top of one
    another; each label now has its own line, inside the axes, the bottom cohort's placed first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fairaudit.render.charts import _place_cluster_labels

    fig, ax = plt.subplots(figsize=(8.6, 5.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    centres = [(0.5 + 0.01 * i, 0.5) for i in range(8)] + [(0.2, 0.02), (0.21, 0.03)]
    roles = [" (bottom)" if i == 3 else "" for i in range(len(centres))]
    labels = [(c, f"cluster-{i}{role}", "red", role) for i, (c, role) in enumerate(zip(centres, roles))]
    _place_cluster_labels(ax, labels, (1.0, 1.0))
    fig.canvas.draw()
    boxes = [a.get_bbox_patch().get_window_extent() for a in ax.texts]
    inside = ax.get_window_extent()
    assert len(boxes) == len(labels)
    for i, one in enumerate(boxes):
        assert inside.y0 - 1 <= one.y0 and one.y1 <= inside.y1 + 1, ax.texts[i].get_text()
        for other in boxes[i + 1 :]:
            assert not one.overlaps(other), (ax.texts[i].get_text(), "overlaps another label")
    assert ax.texts[0].get_text() == "cluster-3 (bottom)"  # roles first: they keep their centres
    plt.close(fig)
