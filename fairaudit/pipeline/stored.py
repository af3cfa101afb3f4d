"""Measure a log on stored cohort definitions (``audit --cohorts AUDIT_JSON``; SPEC 9).

No discovery: each method is rebuilt from the ``definition`` an earlier audit wrote
(``CohortMethod.from_definition``), assigns this log's speakers to the same cohorts, and the
stored bottom and top cohorts are measured with the usual speaker bootstrap. Because nothing is
searched, the permutation test is the fixed-cohort one (as for a hold-out).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from fairaudit.errors import InputError, UsageError
from fairaudit.methods.base import CohortMethod
from fairaudit.methods.registry import method_classes
from fairaudit.model.speakers import SpeakerTable
from fairaudit.options import AuditOptions
from fairaudit.pipeline.audit import too_few_permutations
from fairaudit.privacy import unassign_exposing_speakers
from fairaudit.report.result import MethodResult
from fairaudit.stats.measure import fixed_selection_p_value, measure_with_options, selection_from_ids
from fairaudit.stats.resampling import bootstrap_partitions

#: What a hand-edited or damaged definition raises while being rebuilt or applied.
DEFINITION_ERRORS = (ValueError, KeyError, TypeError, IndexError, AttributeError)


def _definition_problem(error: Exception) -> str:
    """The error in words: a KeyError's text is only the key."""
    if isinstance(error, KeyError):
        return f"a required entry or a known value is missing: {error}"
    return str(error) or type(error).__name__


def read_cohort_report(source: str | Path | dict) -> tuple[dict, str]:
    """The audit report holding the definitions, and a name for messages; InputError when unusable."""
    if isinstance(source, dict):
        return source, "the given report"
    path = Path(source)
    if not path.is_file():
        raise InputError("no such audit report (give the JSON written by `fairaudit audit --json`)", file=str(path))
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"not a JSON audit report: {error}", file=str(path)) from None
    except RecursionError:
        raise InputError("not an audit report: its JSON is nested too deeply", file=str(path)) from None
    if not isinstance(report, dict) or not isinstance(report.get("methods"), dict):
        raise InputError("not an audit report: it has no 'methods' object", file=str(path))
    return report, str(path)


def stored_methods(
    report: dict, where: str, demographics=None, source: str | None = None, only: list[str] | None = None
) -> list[tuple[str, CohortMethod, dict]]:
    """(method key, rebuilt method, the report's method entry) for every stored method (or those
    whose name is in ``only``)."""
    classes = method_classes()
    rebuilt = []
    for key, entry in report["methods"].items():
        if only and key.split(":")[0] not in only:
            continue
        definition = entry.get("definition") if isinstance(entry, dict) else None
        if definition is None:
            raise InputError(
                f"method {key!r} has no cohort definitions (written by an older fairaudit?): "
                "re-run the audit with this version",
                file=where,
            )
        name = definition.get("method") if isinstance(definition, dict) else None
        if isinstance(definition, dict) and definition.get("level") == "utterance":
            raise UsageError(
                f"method {key!r} has utterance-level cohorts (a value that varies within speakers); measuring "
                "stored utterance-level cohorts on another log is not supported yet: audit that log with the "
                "same --by instead"
            )
        if name not in classes:
            raise InputError(f"method {key!r}: unknown method {name!r} in the definitions", file=where)
        try:
            method = classes[name].from_definition(definition, {"demographics": demographics, "source": source})
        except DEFINITION_ERRORS as error:
            raise InputError(
                f"method {key!r}: the stored cohorts cannot be used: {_definition_problem(error)}", file=where
            ) from None
        rebuilt.append((key, method, entry))
    if not rebuilt:
        raise InputError(
            "the audit report holds no methods" + (f" among {', '.join(only)}" if only else ""), file=where
        )
    return rebuilt


def assign_stored(method, key: str, where: str, speakers: SpeakerTable):
    """``method.assign(speakers)`` for a rebuilt method, with a clear error when the log lacks what
    the stored cohorts need or they cannot apply to it (another embedding dimension, ...)."""
    missing = method.check_requirements(speakers)
    if missing:
        raise UsageError(f"the stored cohorts of {key} need {', '.join(missing)}, which this log does not have")
    try:
        return method.assign(speakers)
    except DEFINITION_ERRORS as error:
        raise InputError(
            f"method {key!r}: the stored cohorts cannot be used on this log: {_definition_problem(error)}", file=where
        ) from None


def measure_stored(speakers: SpeakerTable, report: dict, where: str, rule, opts) -> dict[str, MethodResult]:
    """Every stored method's cohorts measured on ``speakers``: figures, fixed-cohort p-value, verdict."""
    from fairaudit.io.demographics import load_demographics_option

    demographics, source = load_demographics_option(opts.demographics)
    top_mode = str(report.get("parameters", {}).get("top", opts.top))
    designs, entries = [], []
    stored = [
        (key, method, entry, assign_stored(method, key, where, speakers))
        for key, method, entry in stored_methods(report, where, demographics, source, only=opts.methods)
    ]
    unassign_exposing_speakers([partition for *_, partition in stored], opts.min_report_speakers)
    for key, method, entry, partition in stored:
        sizes = partition.speaker_counts()
        selection = selection_from_ids(
            partition, list(entry.get("bottom_cohorts") or []), list(entry.get("top_cohorts") or []), top_mode, sizes
        )
        designs.append((partition.indicator(), selection))
        entries.append((key, method, partition, selection))
    boots = bootstrap_partitions(
        designs, speakers.errors, speakers.ref_words, opts.bootstrap, np.random.default_rng([opts.seed, 0xB007])
    )
    results = {}
    for (key, method, partition, selection), boot in zip(entries, boots):
        rng = np.random.default_rng([opts.seed, zlib.crc32(key.encode())])
        figures = measure_with_options(
            partition,
            speakers,
            selection,
            rule,
            opts,
            rng=rng,
            boot=boot,
            p_value=None,
            cohort_p_values=method.name == "attribute",
        )
        figures.p_value = fixed_selection_p_value(
            partition, speakers, selection, figures.wer_gap_pct, opts.permutations, rng
        )
        result = MethodResult(
            key,
            partition,
            figures,
            "",
            "",
            None,
            top_mode=top_mode,
            min_report_speakers=opts.min_report_speakers,
            definition=method.definition(),
            cohort_source="stored",
        )
        result.verdict, result.verdict_reason = judge_stored(figures, opts, where)
        results[key] = result
    return results


def judge_stored(figures, opts: AuditOptions, where: str) -> tuple[str, str]:
    """Verdict on cohorts fixed in advance: the permutation p-value needs no search correction."""
    origin, alpha = f"cohorts from {Path(where).name}", opts.alpha
    if not figures.bottom or not figures.top or figures.wer_gap_pct is None:
        return "insufficient data", f"{origin}: this log has no speakers in the stored bottom or top cohort"
    if figures.p_value is None:
        return "no evidence", f"{origin}: significance was not tested (--permutations 0)"
    if figures.p_value < alpha and figures.wer_gap_pct > 0:
        return "disparity", f"{origin} (no search): permutation p-value {figures.p_value:.3g} < {alpha:g}"
    limit = too_few_permutations(opts)
    reason = f"{origin} (no search): permutation p-value {figures.p_value:.3g} >= {alpha:g}"
    return "no evidence", reason + (f" ({limit})" if limit else "")
