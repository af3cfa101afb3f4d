"""Which cohorts are suppressed (SPEC 6): the one place that decides it.

A cohort under ``--min-report-speakers`` is suppressed, and so is whatever would let a reader
recover it: by subtraction from published totals (complementary suppression within a method) or
by differencing two published groups (a coarse ``--by`` cohort minus the finer cohorts inside it).
"""

from __future__ import annotations

import numpy as np


def suppressed_cells(speakers: np.ndarray, minimum: int, chosen: np.ndarray) -> np.ndarray:
    """Cells under ``minimum`` speakers, plus complementary cells (SPEC 6).

    Totals are published, so the union of the suppressed cells is always recoverable by
    subtraction; it must therefore itself hold at least ``minimum`` speakers. While it does not,
    the smallest other cell is suppressed too (cells outside the chosen bottom and top first), as
    census agencies do.
    """
    speakers = np.asarray(speakers)
    suppressed = speakers < minimum
    if not suppressed.any() or minimum <= 0:
        return suppressed
    order = np.lexsort((speakers, np.asarray(chosen, dtype=bool)))  # unchosen first, smallest first
    for cell in order:
        if speakers[suppressed].sum() >= minimum or suppressed.all():
            break
        if not suppressed[cell]:
            suppressed[cell] = True
    return suppressed



def suppress_nested_attributes(results: dict) -> None:
    """Across ``--by`` specs where one's columns are a subset of another's (``grp`` and
    ``grp,sex``), each coarse cohort is published and equals the union of the fine cohorts inside
    it; so within every coarse cohort the suppressed fine cohorts must together hold at least the
    minimum (or none), else more fine cohorts there are suppressed. Updates the figures in place."""
    specs = {key: tuple(r.partition.details.get("by") or ()) for key, r in results.items() if key.split(":")[0] == "attribute"}
    for fine_key, fine_by in specs.items():
        for coarse_by in {by for key, by in specs.items() if key != fine_key and set(by) < set(fine_by)}:
            result = results[fine_key]
            positions = [fine_by.index(column) for column in coarse_by]
            for figures in filter(None, [result.discovery, result.holdout]):
                cohorts = figures.cohorts
                parents = cohorts["id"].astype(str).str.split(" & ").map(lambda parts: tuple(parts[i] for i in positions))
                chosen = cohorts["id"].isin(figures.bottom) | cohorts["id"].isin(figures.top)
                suppressed = cohorts["suppressed"].to_numpy(dtype=bool).copy()
                for parent in parents.unique():
                    inside = (parents == parent).to_numpy()
                    suppressed[inside] = suppressed_cells(
                        cohorts["speakers"].to_numpy()[inside], result.min_report_speakers,
                        chosen.to_numpy()[inside]) | suppressed[inside]
                cohorts["suppressed"] = suppressed
                shown = cohorts.loc[~cohorts["suppressed"]]
                words = shown["ref_words"].sum()
                figures.reported_wer = float(shown["errors"].sum() / words) if words > 0 else None
