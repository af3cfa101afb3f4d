"""The HTML report (SPEC 6, ``--html FILE``): one self-contained, printable file.

Everything is inline: CSS, and charts as base64 PNG data URIs (no network, no CDN, no JavaScript;
a Content-Security-Policy forbids anything else). The page is rendered from the jinja2 template
``fairaudit/templates/report.html.j2`` with autoescaping on, so every user-supplied string
(column names, metadata values, cohort descriptions, file names, parameters) is escaped; nothing
user-supplied is ever marked safe, and charts are PNG so names never enter SVG markup.

The renderer reads the JSON report (``result.to_dict()``) so the page shows exactly the figures
of the JSON; it computes no statistics. Number cells carry ``data-field`` and ``data-value``
attributes with the JSON value, so tests (and scripts) can check the page against the JSON.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache

from jinja2 import Environment, PackageLoader
from markupsafe import Markup

from fairaudit.render import charts, usmap
from fairaudit.render import format as fmt
from fairaudit.render.safe_text import html_text
from fairaudit.report.result import AuditResult, MethodResult, suppressed_note
from fairaudit.stats.selection import CELL_PENALTY

VERDICT_CLASS = {"disparity": "disparity", "no evidence": "no-evidence", "insufficient data": "insufficient"}

#: Definitions, worded as in the README's "What it reports" table.
DEFINITIONS = [
    (
        "cohort WER",
        "sum of errors in the cohort / sum of reference words in the cohort (pooled over utterances, "
        "never a mean of per-utterance WERs); shown as a percentage of words, stored in JSON as a fraction",
    ),
    (
        "cells",
        "what a method partitions the speakers into: tree regions, scan windows, census sides, k-means "
        "clusters, attribute values. A cell with fewer than --min-speakers (default 30) speakers is never chosen as "
        "bottom or top",
    ),
    (
        "bottom cohort B",
        "a real under-served group is rarely one cell, so by default (--bottom auto) B is the union "
        "of the j worst cells (ranked by WER) that best separates high-WER speakers from the rest: j maximises "
        "the size-weighted gain W_B x W_R / (W_B + W_R) x (WER_B - WER_R)^2 (W = reference words, R = every other "
        "assigned speaker; the criterion a geo-tree split maximises), each cell after the first must add more than "
        f"{CELL_PENALTY} x 2 ln(K) times the gain a cell of random speakers adds on average "
        "(the mean over random cells of a sixteenth of the speakers of sum(y w + alpha y^2 w^2) / sum(w), with y "
        "the overall WER, w each speaker's reference words and alpha the speakers' overdispersion; K eligible "
        "cells), and B holds at "
        "most --max-bottom-share (default 0.5) of the speakers: when even the worst cell a method found holds more, "
        "there is no bottom cohort (no minority of higher WER stands out), while the worse group of a --by "
        "attribute is reported whatever its size. --bottom worst: the single worst cell; "
        "--bottom-share p: the worst cells whose speaker share is closest to p",
    ),
    (
        "top cohort T",
        "every assigned speaker not in B (--top rest, default), or the lowest-WER eligible cell (--top best)",
    ),
    ("WER gap (%)", "100 x (WER(B) - WER(T)) / WER(T)"),
    (
        "bottom-cohort share (%)",
        "100 x speakers in B / all speakers assigned to a cohort; utterance and word shares are shown beside it",
    ),
    (
        "95% interval",
        "bias-corrected and accelerated (BCa) interval of 1,000 speaker-level bootstrap replicates "
        "(speakers are resampled, never utterances); BCa, unlike the plain percentile interval, does not sit low for a "
        "ratio such as a pooled WER. Cohort WER and WER gap intervals are expanded: Student-t quantiles replace the "
        "normal ones, with the effective degrees of freedom of the speakers' residuals errors - WER x words "
        "(Satterthwaite's; for the gap, Welch's combination of its two sides), so a cohort whose spread comes from a "
        "few speakers with many words gets a wider interval",
    ),
    (
        "p-value",
        "permutation test: speaker outcomes (errors and words together) are shuffled across speakers and the "
        "whole discovery (cells, then the choice of B) is re-run each time; the statistic is B's size-weighted gain, "
        "so the search for the worst cohort is accounted for",
    ),
    (
        "verdict",
        "disparity (p < --alpha, default 0.05), no evidence, or insufficient data (fewer than two cohorts of "
        "the minimum size)",
    ),
]


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The jinja2 environment of the report templates (autoescaping on for everything)."""
    env = Environment(
        loader=PackageLoader("fairaudit", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_without_controls,
    )
    env.filters["jsonnum"] = data_value
    env.globals["suppressed_note"] = suppressed_note
    return env


def _without_controls(value: object) -> object:
    """Every value a template prints: data strings lose control and bidirectional characters
    (already-safe markup is left as it is)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return html_text(value)
    return value


def data_value(value: object) -> str:
    """The exact JSON text of a number for a ``data-value`` attribute ("" when null)."""
    return "" if value is None else json.dumps(value)


def render_html(result: AuditResult, gate: tuple[str, list[dict]] | None = None) -> str:
    """The self-contained HTML report of an audit; ``gate`` (from ``fairaudit gate``): the gate's
    outcome and one row per rule and method, shown first, so a CI artifact says why a build failed."""
    context = report_context(result)
    if gate is not None:
        context["gate_outcome"], context["gate_rows"] = gate
    return environment().get_template("report.html.j2").render(**context)


def report_context(result: AuditResult) -> dict:
    """Everything the template shows, as plain values (strings are escaped by the template)."""
    data = result.to_dict()
    minimum = int(data["parameters"].get("min_report_speakers") or 0)
    methods = []
    used_anchors: set[str] = set()
    for key, method in data["methods"].items():
        view = _method_view(key, method, result.methods[key], minimum, _anchor(key, used_anchors))
        view["anatomy"], view["anatomy_columns"] = _anatomy_view(
            method["cohorts"], data["parameters"].get("target_gap")
        )
        methods.append(view)
    source = data["input"].get("path") or "data frame"
    return {
        "title": f"fairaudit report: {source}",
        "version": data["fairaudit_version"],
        "seed": data["seed"],
        "input": data["input"],
        "source": source,
        "methods": methods,
        "parameters": [(name, _parameter(name, value)) for name, value in data["parameters"].items()],
        "notes": data.get("notes") or [],
        "conflicts": [(k, f"{v:,}") for k, v in (data.get("speaker_conflicts") or {}).items() if v],
        "definitions": _definitions(data["parameters"]),
        "min_report_speakers": minimum,
        "min_speakers": data["parameters"].get("min_speakers"),
        "any_holdout": any(m["holdout"] is not None for m in data["methods"].values()),
    }


def _definitions(parameters: dict) -> list[tuple[str, str]]:
    """The README definitions, with this run's number of bootstrap replicates."""
    replicates = parameters.get("bootstrap")
    if not isinstance(replicates, int):
        return DEFINITIONS
    return [(term, text.replace("1,000 speaker-level", f"{replicates:,} speaker-level")) for term, text in DEFINITIONS]


def _anchor(key: str, used: set[str]) -> str:
    """An HTML id for a method section: letters, digits and dashes only, unique in the page."""
    base = "method-" + (re.sub(r"[^a-z0-9]+", "-", key.lower()).strip("-") or "x")
    anchor, n = base, 2
    while anchor in used:
        anchor, n = f"{base}-{n}", n + 1
    used.add(anchor)
    return anchor


#: What an unset (None) parameter means, for the settings table.
UNSET = {
    "methods": "every method the log supports",
    "bottom_share": "none (the bottom cohort follows --bottom)",
    "cohorts": "none (cohorts discovered on this log)",
    "demographics": "built-in ACS table",
    "holdout": "none (no held-out speakers)",
}


def _parameter(name: str, value: object) -> str:
    """A parameter's value as shown in the settings table."""
    if value is None:
        return UNSET.get(name, "none")
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) if value else "none"
    return str(value)


def _adjusted_view(adjusted: dict | None) -> dict | None:
    """--adjust: rate ratios formatted for the report's small table (numbers come from the JSON)."""
    if not adjusted:
        return None
    view = {"covariates": ", ".join(adjusted["covariates"]), "error": adjusted.get("error")}
    if "raw" in adjusted:
        for name in ("raw", "adjusted"):
            part = adjusted[name]
            view[name] = (f"{part['rate_ratio']:.2f}", f"[{part['ci'][0]:.2f}, {part['ci'][1]:.2f}]")
        view["sentence"] = adjusted["sentence"]
        view["speakers"] = f"{adjusted['speakers']:,}"
    return view


def _anatomy_view(cohorts: list[dict], target_gap: float | None) -> tuple[list[list[str]], list[str]]:
    """Rows of the error-anatomy-and-power table for the reported cohorts, and its column heads."""
    reported = [c for c in cohorts if not c["suppressed"]]
    has_anatomy = any(c.get("substitution_rate") is not None for c in reported)
    if not any(c.get("detectable_gap_pct") is not None for c in reported):
        target_gap = None  # utterance-level cohorts have no power figures
    if not reported or not (has_anatomy or target_gap):
        return [], []
    heads = ["cohort"]
    if has_anatomy:
        heads += ["substitutions", "deletions", "insertions", "empty hypotheses", "mean of per-utterance WERs*"]
    heads += ["detectable gap"] + ([f"more speakers for a {target_gap:g}% gap"] if target_gap else [])
    rows = []
    for c in reported:
        row = [c["id"]]
        if has_anatomy:
            row += [fmt.wer(c.get(k)) for k in ("substitution_rate", "deletion_rate", "insertion_rate")]
            row += [fmt.pct(c.get("empty_hypothesis_pct")), fmt.wer(c.get("mean_utterance_wer"))]
        row.append(fmt.pct(c.get("detectable_gap_pct")))
        if target_gap:
            row.append("" if c.get("speakers_needed") is None else f"{c['speakers_needed']:,}")
        rows.append(row)
    return rows, heads


def _method_view(key: str, method: dict, result: MethodResult, minimum: int, anchor: str) -> dict:
    """Everything one method's section shows: figures, tables and its method-specific view."""
    figures = [_figures_view("discovery", method, result.discovery, minimum)]
    if method["holdout"] is not None:
        figures.append(_figures_view("held-out", method["holdout"], result.holdout, minimum))
    base = key.split(":", 1)[0]
    view = {
        "key": key,
        "kind": base,
        "anchor": anchor,
        "title": method_title(key),
        "verdict": method["verdict"],
        "verdict_class": VERDICT_CLASS.get(method["verdict"], "insufficient"),
        "verdict_reason": method["verdict_reason"],
        "utterance_level": fmt.UTTERANCE_LEVEL if method.get("cohort_level") == "utterance" else "",
        "figures": figures,
        "has_p": any("p_value_bh" in c for c in method["cohorts"]),
        "unassigned": [(reason, f"{count:,}") for reason, count in (method.get("unassigned") or {}).items()],
        "unassigned_total": f"{sum((method.get('unassigned') or {}).values()):,}",
        "details": method.get("details") or {},
        "has_map": usmap.has_map(method.get("details") or {}),
    }
    view["adjusted"] = _adjusted_view(method.get("adjusted"))
    discovery = method
    bottom, top = discovery["bottom_cohorts"], discovery["top_cohorts"]
    if view["has_map"]:
        view.update(_map_view(view["details"], discovery["cohorts"], bottom, top))
    elif base == "zip-demographic":
        view["candidates"] = _candidates(method.get("candidates") or [], method.get("chosen"), minimum)
        view["source"] = view["details"].get("source") or ""
    elif base == "embedding-kmeans":
        ids = list(result.partition.cohort_ids)
        records = {c["id"]: c for c in discovery["cohorts"]}
        hidden = {i for i, cid in enumerate(ids) if records.get(cid, {}).get("suppressed")}
        wers = {cid: records.get(cid, {}).get("wer") for cid in ids}
        view["projection"] = charts.projection_view(view["details"].get("projection"), ids, hidden, bottom, top, wers)
        view["profiles"] = _profiles(view["details"].get("profiles") or [], ids, records, minimum)
    elif base == "attribute":
        view["by"] = view["details"].get("by") or []
    return view


def method_title(key: str) -> str:
    """A method section's heading: the registered class's ``title``, with ``key`` for its name.

    For "attribute:accent" the title "attribute: cohorts of given metadata" becomes
    "attribute:accent: cohorts of given metadata"; without a title the heading is the key.
    """
    from fairaudit.methods.registry import method_classes

    base = key.split(":", 1)[0]
    title = getattr(method_classes().get(base), "title", "") or ""
    if not isinstance(title, str) or not title.strip():
        return key
    return key + title[len(base) :] if title.startswith(base + ":") else title


def _map_view(details: dict, cohorts: list[dict], bottom: list[str], top: list[str]) -> dict:
    """The map of a geographic method: land-clipped shapes drawn, legend, notes and caption facts."""
    shapes = usmap.map_shapes(details, cohorts, bottom, top)
    descriptions = {c["id"]: c["description"] for c in cohorts if not c["suppressed"]}
    kind = "windows" if details.get("windows") else "regions"
    cells = usmap.cell_geometries(details)
    # Cohorts without a shape of their own (geo-scan's outside-windows) are the land left grey.
    rest = [c["id"] for c in cohorts if not c["suppressed"] and c["id"] not in cells]
    return {
        "map": usmap.draw_map(shapes, usmap.wer_range(cohorts)),
        "map_shapes": shapes,
        "map_legend": usmap.legend_entries(shapes),
        "map_kind": kind,
        "map_undrawn": rest,
        "map_notes": usmap.outside_notes(details, cohorts, descriptions),
        "attribution": usmap.ATTRIBUTION,
    }


def _figures_view(label: str, figures: dict, frame_figures, minimum: int) -> dict:
    """One set of headline figures (discovery or held-out) with its table rows and chart."""
    bottom, top = figures["bottom_cohorts"], figures["top_cohorts"]
    overall, partial = _overall_wer(frame_figures)
    rows = []
    # Suppressed cohorts go last, unranked: their position in the ranking would tell their WER.
    for cohort in sorted(figures["cohorts"], key=lambda c: (bool(c["suppressed"]), c["rank"] or 0)):
        role = "bottom" if cohort["id"] in bottom else "top" if cohort["id"] in top and len(top) == 1 else ""
        if not role and cohort.get("eligible") is False:
            role = "ineligible"  # fewer than --min-speakers: shown, but never chosen as bottom or top
        row = {"record": cohort, "role": role, "suppressed": cohort["suppressed"]}
        if not cohort["suppressed"]:
            row.update(
                speakers=f"{cohort['speakers']:,}",
                utterances=f"{cohort['utterances']:,}",
                ref_words=f"{cohort['ref_words']:,}",
                wer=fmt.wer(cohort["wer"]),
                wer_ci=fmt.interval(cohort["wer_ci"][0], cohort["wer_ci"][1], fmt=fmt.wer),
                speaker_share=fmt.pct(cohort["speaker_share_pct"]),
                word_share=fmt.pct(cohort["word_share_pct"]),
                p_value=fmt.p_value(cohort.get("p_value")),
                p_value_bh=fmt.p_value(cohort.get("p_value_bh")),
            )
        rows.append(row)
    return {
        "label": label,
        "record": figures,
        "gap": fmt.pct(figures["wer_gap_pct"]),
        "gap_ci": fmt.interval(*figures["wer_gap_ci"]),
        "share": fmt.pct(figures["bottom_share_pct"]),
        "share_ci": fmt.interval(*figures["bottom_share_ci"]),
        "utterance_share": fmt.pct(figures["bottom_utterance_share_pct"]),
        "word_share": fmt.pct(figures["bottom_word_share_pct"]),
        "p_value": fmt.p_value(figures["p_value"]),
        "bottom_wer": fmt.wer(figures["bottom_wer"]),
        "top_wer": fmt.wer(figures["top_wer"]),
        "overall_wer": overall,
        "overall_wer_text": fmt.wer(overall),
        "overall_partial": partial,
        "speakers": f"{figures['speakers']:,}",
        "assigned": f"{figures['assigned_speakers']:,}",
        "rows": rows,
        "chart": charts.wer_by_cohort(
            figures["cohorts"], bottom, top, overall, "WER of reported cohorts" if partial else "overall WER"
        ),
        "suppressed": sum(1 for c in figures["cohorts"] if c["suppressed"]),
    }


def _overall_wer(figures) -> tuple[float | None, bool]:
    """The overall pooled WER to draw, and whether it covers only the reported cohorts.

    When cohorts are suppressed the report shows the WER pooled over the reported cohorts only,
    so the overall figure cannot be used to back out a suppressed cohort's WER.
    """
    if figures is None or figures.cohorts is None or len(figures.cohorts) == 0:
        return None, False
    partial = bool(figures.cohorts["suppressed"].astype(bool).any())
    return (figures.reported_wer if partial else figures.overall_wer), partial


def _candidates(candidates: list[dict], chosen: list[str] | None, minimum: int) -> list[dict]:
    """Every candidate split, ranked, with sides under the reporting minimum suppressed."""
    from fairaudit.geodata.census import CONTINUOUS_COLUMNS, format_value

    chosen_ids = set(chosen or [])
    rows = []
    for candidate in candidates:
        attribute = str(candidate.get("attribute"))
        value = candidate.get("value")
        if candidate.get("kind") == "threshold" and attribute in CONTINUOUS_COLUMNS and isinstance(value, (int, float)):
            label, threshold = CONTINUOUS_COLUMNS[attribute][0], format_value(attribute, value)
        elif candidate.get("kind") == "threshold":
            label, threshold = attribute, f"{value:g}" if isinstance(value, (int, float)) else str(value)
        else:
            label, threshold = attribute, f"= {value}"
        suppressed_any = bool(candidate.get("suppressed"))  # decided by fairaudit.privacy, never here
        sides = [
            {
                "id": side.get("id"),
                "description": side.get("description"),
                "speakers": None if suppressed_any else side.get("speakers"),
                "speakers_text": "" if suppressed_any else f"{side.get('speakers') or 0:,}",
                "wer": None if suppressed_any else side.get("wer"),
                "wer_text": "" if suppressed_any else fmt.wer(side.get("wer")),
            }
            for side in candidate.get("cohorts") or []
        ]
        ids = {side["id"] for side in sides}
        rows.append(
            {
                "rank": candidate.get("rank"),
                "attribute": label,
                "threshold": threshold,
                "kind": candidate.get("kind"),
                "sides": sides,
                "gap": None if suppressed_any else candidate.get("wer_gap_pct"),
                "gap_text": "" if suppressed_any else fmt.pct(candidate.get("wer_gap_pct")),
                "suppressed": suppressed_any,
                "reason": candidate.get("suppressed_reason") or f"a side has fewer than {minimum} speakers",
                "eligible": bool(candidate.get("eligible")),
                "chosen": bool(ids) and ids == chosen_ids,
            }
        )
    return rows


def _profiles(profiles: list[list[dict]], ids: list[str], records: dict, minimum: int) -> list[dict]:
    """Each cluster's metadata profile, in WER rank order; suppressed clusters show no profile."""
    rows = []
    for index, profile in enumerate(profiles):
        if index >= len(ids):
            break
        record = records.get(ids[index], {})
        suppressed = bool(record.get("suppressed"))
        rows.append(
            {
                "id": ids[index],
                "rank": record.get("rank", index + 1),
                "suppressed": suppressed,
                "wer": None if suppressed else record.get("wer"),
                "wer_text": "" if suppressed else fmt.wer(record.get("wer")),
                "profile": []
                if suppressed
                else [
                    {
                        "column": item["column"],
                        "value": item["value"],
                        "share": fmt.pct(item["share_pct"], 0),
                        "lift": f"{item['lift']:.1f}x",
                    }
                    for item in profile
                ],
            }
        )
    return sorted(rows, key=lambda r: (r["suppressed"], r["rank"] is None, r["rank"] or 0))
