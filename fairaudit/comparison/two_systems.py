"""Two systems, the same cohorts (SPEC 9): ``fairaudit compare BASELINE NEW``.

Cohorts are discovered once, on the baseline log (or read from ``--cohorts AUDIT_JSON``), and both
systems are measured on exactly those cohorts. When the two logs transcribe the same evaluation
set, utterances are matched by ``utterance_id`` and the comparison is *paired*: one speaker
bootstrap resamples the same speakers for both systems, so a cohort's change in WER has the narrow
interval of a paired difference (Bisani & Ney 2004), and the probability of improvement is the
share of replicates in which the new system is better, ties counting half (identical outputs: 0.5).
Otherwise the two logs are resampled independently (unpaired), and the outputs say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.errors import InputError, UsageError
from fairaudit.model.log import ERRORS, REF_WORDS, REFERENCE_HASH, SPEAKER, UTTERANCE, UtteranceLog
from fairaudit.model.numbers import finite_or_none
from fairaudit.model.partition import UNASSIGNED
from fairaudit.model.speakers import SpeakerTable
from fairaudit.stats.metrics import Selection, cohort_sums
from fairaudit.stats.resampling import bca_interval, bootstrap_partitions

LEVEL = 0.95


@dataclass
class CohortChange:
    """One cohort measured on both systems."""

    id: str
    description: str
    speakers: int | None
    wer_before: float | None
    wer_after: float | None
    change_points: float | None  # after - before, in percentage points of WER
    change_ci: list[float | None]
    probability_improved: float | None
    verdict: str  # worse, better, no evidence, suppressed
    suppressed: bool = False


@dataclass
class MethodChange:
    """Every cohort of one method, and the gap between its stored bottom and top cohorts."""

    name: str
    cohorts: list[CohortChange]
    bottom: list[str]
    top: list[str]
    gap_before_pct: float | None
    gap_after_pct: float | None
    gap_change_points: float | None
    gap_change_ci: list[float | None]
    gap_verdict: str
    summary_before: dict
    summary_after: dict


@dataclass
class Comparison:
    """The result of ``compare``: per method the cohort changes, plus the pairing and provenance."""

    paired: bool
    matched_utterances: int
    unmatched_baseline: int
    unmatched_new: int
    methods: dict[str, MethodChange]
    baseline: dict
    new: dict
    parameters: dict = field(default_factory=dict)
    version: str = ""
    cohorts_from: str = ""

    def to_dict(self) -> dict:
        """The comparison report (schema: ``fairaudit schema compare_report``); WERs are fractions,
        changes in percentage points of WER; nothing suppressed is shown."""
        from dataclasses import asdict

        return {
            "fairaudit_version": self.version,
            "paired": self.paired,
            "pairing": (
                "paired: utterances matched by utterance_id (or speaker and reference text), "
                "one speaker bootstrap for both systems"
                if self.paired
                else "unpaired: the two logs are resampled independently"
            ),
            "matched_utterances": self.matched_utterances,
            "unmatched_utterances": {"baseline": self.unmatched_baseline, "new": self.unmatched_new},
            "cohorts_from": self.cohorts_from,
            "baseline": dict(self.baseline),
            "new": dict(self.new),
            "parameters": dict(self.parameters),
            "methods": {name: asdict(method) for name, method in self.methods.items()},
        }

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def match_utterances(before: UtteranceLog, after: UtteranceLog) -> tuple[pd.DataFrame, int, int]:
    """Utterances of both logs joined on ``utterance_id`` (or, without ids, on speaker and reference
    text): speaker, errors and words of each system.

    A matched utterance must belong to the same speaker in both logs (else it is an error).
    """
    if UTTERANCE in before.frame.columns and UTTERANCE in after.frame.columns:
        left = before.frame[[UTTERANCE, SPEAKER, ERRORS, REF_WORDS]]
        right = after.frame[[UTTERANCE, SPEAKER, ERRORS, REF_WORDS]]
        joined = left.merge(right, on=UTTERANCE, suffixes=("_before", "_after"))
    elif REFERENCE_HASH in before.frame.columns and REFERENCE_HASH in after.frame.columns:
        # Same speaker and same reference text; a prompt a speaker read k times is matched in order.
        keys = [SPEAKER, REFERENCE_HASH, "occurrence"]
        left, right = (
            frame[[SPEAKER, REFERENCE_HASH, ERRORS, REF_WORDS]].assign(
                occurrence=frame.groupby([SPEAKER, REFERENCE_HASH]).cumcount()
            )
            for frame in (before.frame, after.frame)
        )
        joined = left.merge(right, on=keys, suffixes=("_before", "_after"))
        joined[f"{SPEAKER}_before"] = joined[f"{SPEAKER}_after"] = joined[SPEAKER]
        return joined, len(left) - len(joined), len(right) - len(joined)
    else:
        return pd.DataFrame(), len(before.frame), len(after.frame)
    clash = joined[f"{SPEAKER}_before"] != joined[f"{SPEAKER}_after"]
    if clash.any():
        row = joined[clash].iloc[0]
        raise InputError(
            f"utterance {row[UTTERANCE]!r} is spoken by {row[f'{SPEAKER}_before']!r} in the baseline "
            f"but by {row[f'{SPEAKER}_after']!r} in the new log",
            file=after.path,
            column=SPEAKER,
        )
    return joined, len(left) - len(joined), len(right) - len(joined)


def _check_same_references(matched: pd.DataFrame, after: UtteranceLog) -> None:
    """A paired comparison needs each matched utterance to have the same reference words in both
    logs; different counts mean other references or another text normalisation."""
    differs = matched[f"{REF_WORDS}_before"].to_numpy() != matched[f"{REF_WORDS}_after"].to_numpy()
    if not differs.any():
        return
    row = matched[differs].iloc[0]
    name = row[UTTERANCE] if UTTERANCE in matched.columns else f"of speaker {row[f'{SPEAKER}_before']!r}"
    raise InputError(
        f"utterance {name!r} has {int(row[f'{REF_WORDS}_before'])} reference words in the baseline but "
        f"{int(row[f'{REF_WORDS}_after'])} in the new log ({int(differs.sum()):,} matched utterances differ): a "
        "paired comparison needs the same references, scored the same way (same --normalize); fix that, or "
        "compare with --pairing unpaired",
        file=after.path,
        column=REF_WORDS,
    )


def per_speaker(matched: pd.DataFrame, speakers: SpeakerTable) -> tuple[np.ndarray, ...]:
    """Errors and words of each speaker of ``speakers`` over the matched utterances, per system."""
    position = pd.Index(speakers.speaker_ids).get_indexer(matched[f"{SPEAKER}_before"])
    n = len(speakers)
    total = lambda column: np.bincount(position, weights=matched[column].to_numpy(np.float64), minlength=n)  # noqa: E731
    return (
        total(f"{ERRORS}_before"),
        total(f"{REF_WORDS}_before"),
        total(f"{ERRORS}_after"),
        total(f"{REF_WORDS}_after"),
    )


def compare_logs(
    before: UtteranceLog, after: UtteranceLog, report: dict, where: str, opts, *, pairing: str = "auto"
) -> Comparison:
    """Measure both logs on the report's stored cohorts and compare them (paired when they match)."""
    from fairaudit.io.demographics import load_demographics_option
    from fairaudit.pipeline.stored import assign_stored, stored_methods

    matched, unmatched_before, unmatched_after = match_utterances(before, after)
    paired = pairing != "unpaired" and len(matched) > 0
    if paired:
        _check_same_references(matched, after)
    if pairing == "paired" and not paired:
        raise UsageError(
            "--pairing paired needs utterances in common (by utterance_id, or by speaker and reference "
            "text); none match"
        )
    demographics, source = load_demographics_option(opts.demographics)
    speakers_before = build_speaker_table(before)
    speakers_after = speakers_before if paired else build_speaker_table(after)
    if paired:
        e_b, w_b, e_a, w_a = per_speaker(matched, speakers_before)
    else:
        e_b, w_b = speakers_before.errors.astype(float), speakers_before.ref_words.astype(float)
        e_a, w_a = speakers_after.errors.astype(float), speakers_after.ref_words.astype(float)
    top_mode = str(report.get("parameters", {}).get("top", "rest"))
    held_before, held_after = _held_out_masks(speakers_before, speakers_after, opts)
    stored = []
    for key, method, entry in stored_methods(report, where, demographics, source, only=opts.methods):
        partition = assign_stored(method, key, where, speakers_before)
        after_partition = partition if paired else assign_stored(method, key, where, speakers_after)
        if held_before is not None:  # --holdout: measure both systems on the held-out speakers only
            partition.labels[~held_before] = UNASSIGNED
            if not paired and held_after is not None:
                after_partition.labels[~held_after] = UNASSIGNED
        ids = np.asarray(partition.cohort_ids, dtype=object)
        bottom = np.isin(ids, list(entry.get("bottom_cohorts") or []))
        top = ~bottom if top_mode == "rest" else np.isin(ids, list(entry.get("top_cohorts") or []))
        stored.append((key, partition, after_partition, Selection(bottom=bottom[None, :], top=top[None, :])))
    # One speaker bootstrap per system for every method together. Paired: the same seed, so both
    # systems see the very same resampled speakers; unpaired: independent draws.
    seed_before, seed_after = [opts.seed, 0xC0DE], [opts.seed, 0xC0DE if paired else 0xC0DF]
    boot_before = bootstrap_partitions(
        [(p.indicator(), sel) for _, p, _, sel in stored], e_b, w_b, opts.bootstrap, np.random.default_rng(seed_before)
    )
    boot_after = bootstrap_partitions(
        [(a.indicator(), sel) for _, _, a, sel in stored], e_a, w_a, opts.bootstrap, np.random.default_rng(seed_after)
    )
    methods = {
        key: _method_change(
            key,
            partition,
            after_partition,
            selection,
            (e_b, w_b, e_a, w_a),
            before_boot,
            after_boot,
            opts.min_report_speakers,
        )
        for (key, partition, after_partition, selection), before_boot, after_boot in zip(
            stored, boot_before, boot_after
        )
    }
    return Comparison(
        paired=paired,
        matched_utterances=int(len(matched)),
        unmatched_baseline=int(unmatched_before),
        unmatched_new=int(unmatched_after),
        methods=methods,
        baseline={"path": before.path, "sha256": before.sha256, "utterances": before.n_utterances},
        new={"path": after.path, "sha256": after.sha256, "utterances": after.n_utterances},
    )


def _held_out_masks(before: SpeakerTable, after: SpeakerTable, opts) -> tuple[np.ndarray | None, np.ndarray | None]:
    """With --holdout, which speakers of each log are held out: those the baseline's split (by
    speaker id and --seed, as ``audit --holdout``) holds out; the cohorts were discovered on the others."""
    if not opts.holdout:
        return None, None
    from fairaudit.pipeline.audit import split_speakers

    held_ids = before.speaker_ids[split_speakers(before.speaker_ids, opts.holdout, opts.seed)[1]]
    return np.isin(before.speaker_ids, held_ids), np.isin(after.speaker_ids, held_ids)


def _method_change(
    key, partition, after_partition, selection, outcomes, boot_before: dict, boot_after: dict, min_report
) -> MethodChange:
    """Cohort WERs before/after with paired (or independent) bootstrap intervals of the change."""
    e_b, w_b, e_a, w_a = outcomes
    k = partition.n_cohorts
    ids = np.asarray(partition.cohort_ids, dtype=object)
    bottom_mask, top_mask = selection.bottom[0], selection.top[0]
    sums = {
        "before": cohort_sums(partition, e_b, w_b, np.zeros(len(e_b))),
        "after": cohort_sums(after_partition, e_a, w_a, np.zeros(len(e_a))),
    }
    # Speakers who contribute words to a cohort's WER on each side (paired: those with matched
    # utterances); a cohort is published only when both sides have the minimum.
    contributing = {
        "before": _speakers_with_words(partition, w_b),
        "after": _speakers_with_words(after_partition, w_a),
    }
    sizes = contributing["before"]
    small = np.minimum(contributing["before"], contributing["after"]) < min_report
    wer = {side: total.wer for side, total in sums.items()}
    change = 100 * (wer["after"] - wer["before"])
    change_boot = 100 * (boot_after["wer"] - boot_before["wer"])
    cohorts = []
    for c in range(k):
        if small[c]:
            cohorts.append(
                CohortChange(
                    str(ids[c]),
                    "suppressed: fewer speakers than --min-report-speakers",
                    None,
                    None,
                    None,
                    None,
                    [None, None],
                    None,
                    "suppressed",
                    True,
                )
            )
            continue
        ci = bca_interval(change_boot[:, c], change[c], 0.0) if len(change_boot) else [None, None]
        finite = change_boot[np.isfinite(change_boot[:, c]), c]
        improved = float(np.mean(finite < 0) + 0.5 * np.mean(finite == 0)) if len(finite) else None
        cohorts.append(
            CohortChange(
                str(ids[c]),
                partition.descriptions[c],
                int(sizes[c]),
                finite_or_none(wer["before"][c]),
                finite_or_none(wer["after"][c]),
                finite_or_none(change[c]),
                ci,
                improved,
                _verdict(ci),
            )
        )
    gap_before, gap_after = (
        float(selection.gap_pct(sums[side].errors[None, :], sums[side].ref_words[None, :])[0])
        for side in ("before", "after")
    )
    gap_boot = boot_after["gap_pct"] - boot_before["gap_pct"]
    gap_change = float(gap_after - gap_before) if np.isfinite(gap_after - gap_before) else None
    gap_ci = (
        bca_interval(gap_boot, gap_change if gap_change is not None else np.nan, 0.0) if len(gap_boot) else [None, None]
    )
    visible = ~small
    return MethodChange(
        name=key,
        cohorts=cohorts,
        bottom=list(map(str, ids[bottom_mask])),
        top=list(map(str, ids[top_mask])),
        gap_before_pct=finite_or_none(gap_before),
        gap_after_pct=finite_or_none(gap_after),
        gap_change_points=gap_change,
        gap_change_ci=gap_ci,
        gap_verdict=_verdict(gap_ci),
        summary_before=_summary(wer["before"][visible]),
        summary_after=_summary(wer["after"][visible]),
    )


def _speakers_with_words(partition, words: np.ndarray) -> np.ndarray:
    """Per cohort, the speakers with reference words in it (the ones its WER is pooled over)."""
    labels = partition.labels
    counted = (labels >= 0) & (np.asarray(words) > 0)
    return np.bincount(labels[counted], minlength=partition.n_cohorts)


def _verdict(ci: list[float | None]) -> str:
    """worse / better when the whole interval of the change is above / below zero."""
    low, high = ci
    if low is not None and low > 0:
        return "worse"
    if high is not None and high < 0:
        return "better"
    return "no evidence"


def _summary(wers: np.ndarray) -> dict:
    """Mean, maximum and spread (max - min) of the reported cohorts' WERs (Trinh et al. report these)."""
    wers = wers[np.isfinite(wers)]
    if not len(wers):
        return {"mean_wer": None, "max_wer": None, "spread": None}
    return {"mean_wer": float(wers.mean()), "max_wer": float(wers.max()), "spread": float(wers.max() - wers.min())}


def cohort_report_for(baseline: UtteranceLog, cohorts: str | Path | dict | None, opts) -> tuple[dict, str]:
    """The report holding the cohorts: ``--cohorts`` if given, else a discovery on the baseline log."""
    import json

    from fairaudit.pipeline.audit import run_audit
    from fairaudit.pipeline.stored import read_cohort_report

    if cohorts is not None:
        return read_cohort_report(cohorts)

    result = run_audit(
        baseline, build_speaker_table(baseline), opts.model_copy(update={"bootstrap": 0, "permutations": 0})
    )
    varying = [key for key, method in result.methods.items() if method.cohort_level == "utterance"]
    if varying:
        raise UsageError(
            f"{', '.join(varying)}: the --by column varies within speakers, and compare measures speakers on "
            "stored cohorts; use --by-level speaker (each speaker in the cohort of their most frequent value)"
        )
    return json.loads(result.to_json()), "cohorts discovered on the baseline"
