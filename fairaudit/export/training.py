"""``fairaudit export``: an audit's cohorts for the training pipeline (SPEC 11).

An audit is the first of two steps: Dheram et al. oversample the bottom cohorts, Trinh et al.
fine-tune on the worst regions with EWC protecting the rest, group-DRO needs a group per sample.
The export assigns a log's speakers to the cohorts stored in an audit report (no new discovery)
and derives, per utterance, each method's group id, whether it is in the bottom cohort, and an
oversampling weight. These files contain speaker and utterance ids: they are for training, not
for publication.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fairaudit.errors import InputError, UsageError
from fairaudit.model.log import SPEAKER, UTTERANCE, UtteranceLog
from fairaudit.model.speakers import SpeakerTable
from fairaudit.pipeline.stored import assign_stored, stored_methods


@dataclass
class TrainingExport:
    """Per speaker and per utterance cohort membership, weights and the lists for fine-tuning."""

    speakers: pd.DataFrame  # speaker_id, then per method <key>:cohort, <key>:group, <key>:bottom
    utterances: pd.DataFrame  # utterance_id (if any), speaker_id, the same per method, weight, role
    method: str  # the method whose bottom cohort the weights and roles are for
    factor: float  # the oversampling factor of bottom-cohort utterances (others 1)
    target_share: float  # the bottom cohort's share of reference words after weighting
    notes: list[str] = field(default_factory=list)


def oversampling_factor(bottom_words: float, other_words: float, target_share: float) -> float:
    """The weight f of bottom-cohort utterances (others 1) that makes their share of reference
    words f W_b / (f W_b + W_r) equal ``target_share``; at least 1 (the export never down-weights)."""
    if not 0 < target_share < 1:
        raise UsageError("--target-share must be a fraction between 0 and 1 (e.g. 0.3)")
    if bottom_words <= 0:
        raise UsageError("the bottom cohort has no reference words in this log: nothing to oversample")
    return max(1.0, target_share * other_words / ((1 - target_share) * bottom_words))


def build_export(
    report: dict,
    where: str,
    log: UtteranceLog,
    speakers: SpeakerTable,
    method: str | None = None,
    target_share: float | None = None,
) -> TrainingExport:
    """Assign ``log`` to the report's stored cohorts and derive groups, weights and roles."""
    rebuilt = stored_methods(report, where)
    keys = [key for key, _, _ in rebuilt]
    chosen = method or next(
        (key for key, _, entry in rebuilt if entry.get("verdict") == "disparity"),
        next((key for key, _, entry in rebuilt if entry.get("bottom_cohorts")), None),
    )
    if chosen not in keys:
        known = ", ".join(keys)
        raise UsageError(
            f"--method {chosen!r} is not in the audit report (it has {known})"
            if method
            else f"no method of the audit report has a bottom cohort to export (methods: {known})"
        )
    chosen_entry = next(entry for key, _, entry in rebuilt if key == chosen)
    if not chosen_entry.get("bottom_cohorts"):
        why = chosen_entry.get("verdict_reason") or "none was chosen"
        raise UsageError(
            f"{chosen} has no bottom cohort in the audit report ({why}): "
            "nothing to oversample; choose another method with --method, or audit again"
        )
    speaker_frame = pd.DataFrame({SPEAKER: speakers.speaker_ids.astype(str)})
    codes = log.speaker_codes
    if codes is None or len(codes) != len(log.frame):
        codes = pd.Index(speakers.speaker_ids).get_indexer(log.frame[SPEAKER].astype(str))
    utterances = pd.DataFrame(
        {
            **({UTTERANCE: log.frame[UTTERANCE].to_numpy()} if UTTERANCE in log.frame else {}),
            SPEAKER: log.frame[SPEAKER].astype(str).to_numpy(),
        }
    )
    notes = []
    for key, rebuilt_method, entry in rebuilt:
        missing = rebuilt_method.check_requirements(speakers)
        if missing and key != chosen:  # another method's cohorts are extra columns, not the export
            notes.append(f"left out the cohorts of {key}: this log has no {', '.join(missing)}")
            continue
        partition = assign_stored(rebuilt_method, key, where, speakers)
        ids = np.asarray([*partition.cohort_ids, ""], dtype=object)
        labels = partition.labels  # -1 (unassigned) picks the trailing ""
        bottom = np.isin(ids, entry.get("bottom_cohorts") or []) & (np.arange(len(ids)) < partition.n_cohorts)
        speaker_frame[f"{key}:cohort"] = ids[labels]
        speaker_frame[f"{key}:group"] = labels  # group-DRO: one integer per cohort, -1 unassigned
        speaker_frame[f"{key}:bottom"] = bottom[labels]
        for column in ("cohort", "group", "bottom"):
            utterances[f"{key}:{column}"] = speaker_frame[f"{key}:{column}"].to_numpy()[codes]
    in_bottom = utterances[f"{chosen}:bottom"].to_numpy(dtype=bool)
    assigned = utterances[f"{chosen}:group"].to_numpy() >= 0
    if not in_bottom.any():
        raise InputError(f"no utterance of this log falls in the bottom cohort of {chosen}", file=where)
    words = log.frame["ref_words"].to_numpy(dtype=np.float64)
    # every utterance is in the manifests (unassigned ones at weight 1), so all count in the share
    bottom_words, other_words = words[in_bottom].sum(), words[~in_bottom].sum()
    # the share the audit reports: among the speakers the method puts in a cohort (not all of the log's)
    in_cohorts = speaker_frame[f"{chosen}:group"].to_numpy() >= 0
    speaker_share = float(speaker_frame[f"{chosen}:bottom"].to_numpy()[in_cohorts].mean())
    target = speaker_share if target_share is None else target_share
    factor = oversampling_factor(bottom_words, other_words, target)
    utterances["weight"] = np.where(in_bottom, factor, 1.0)
    utterances["role"] = np.where(in_bottom, "target", np.where(assigned, "protect", "unassigned"))
    if factor == 1.0:
        notes.append(
            f"the bottom cohort of {chosen} already has {100 * bottom_words / (bottom_words + other_words):.1f}% of "
            f"the reference words, at least the target {100 * target:.1f}%: weights are all 1"
        )
    if UTTERANCE not in log.frame:
        notes.append("the log has no utterance ids: the utterance table and lists are by row, no manifests written")
    return TrainingExport(speaker_frame, utterances, chosen, factor, target, notes)
