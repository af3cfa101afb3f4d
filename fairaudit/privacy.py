"""Which cohorts are suppressed (SPEC 6): the one place that decides it.

A cohort under ``--min-report-speakers`` is suppressed, and so is whatever would let a reader
recover it: by subtraction from published totals (complementary suppression within a method; two
methods' totals that differ by a handful of speakers) or by differencing two published groups (a
coarse ``--by`` cohort minus the finer cohorts inside it; nested census splits).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fairaudit.model.partition import UNASSIGNED, Partition

#: Unassigned reason for speakers left out because another method could not place them.
EXPOSING = "left out: another method could not place them and there are fewer than --min-report-speakers"
#: Why a group of figures is withheld (shown in the report next to the withheld row).
SMALL_SIDE = "a side has fewer speakers than --min-report-speakers"
DIFFERENCING = "it differs from another published group by fewer speakers than --min-report-speakers"


def suppressed_cells(
    speakers: np.ndarray,
    minimum: int,
    chosen: np.ndarray,
    union_speakers: Callable[[np.ndarray], int] | None = None,
    published_unions: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Cells under ``minimum`` speakers, plus complementary cells (SPEC 6).

    Totals are published, so the union of the suppressed cells is always recoverable by
    subtraction; it must therefore itself hold at least ``minimum`` speakers. While it does not,
    the smallest other cell is suppressed too (cells outside the chosen bottom and top first), as
    census agencies do. The same holds inside each union of cells whose pooled figures are
    published (``published_unions``: the bottom and the top cohort): the union minus its published
    cells is its suppressed cells, so they too must hold ``minimum`` speakers or none, else the
    union's smallest other cell is suppressed. ``union_speakers(mask)`` counts the distinct
    speakers of a set of cells when a speaker can be in several (utterance-level cohorts); by
    default cells are disjoint.
    """
    speakers = np.asarray(speakers)
    count = union_speakers or (lambda mask: int(speakers[mask].sum()))
    suppressed = speakers < minimum
    if not suppressed.any() or minimum <= 0:
        return suppressed
    for union in published_unions or []:
        union = np.asarray(union, dtype=bool)
        for cell in np.flatnonzero(union)[np.argsort(speakers[union], kind="stable")]:
            if not 0 < count(suppressed & union) < minimum:
                break
            suppressed[cell] = True
    order = np.lexsort((speakers, np.asarray(chosen, dtype=bool)))  # unchosen first, smallest first
    for cell in order:
        if count(suppressed) >= minimum or suppressed.all():
            break
        if not suppressed[cell]:
            suppressed[cell] = True
    return suppressed


def unassign_exposing_speakers(partitions: list[Partition], minimum: int) -> None:
    """Make no two methods' assigned speakers differ by a handful (SPEC 6: subtraction across methods).

    Every method publishes the total of its assigned speakers (bottom plus top WER with their word
    shares, under ``--top rest``). When method j assigns method i's speakers plus 1 to
    ``minimum - 1`` more (speakers without a ZIP code but with an embedding), the two totals differ
    by exactly those speakers' errors and words. Those speakers are then left out of method j too
    (counted under an unassigned reason), until no such pair remains. Updates labels in place.
    """
    if minimum <= 0:
        return
    while (exposure := _first_exposure([partition.assigned for partition in partitions], minimum)) is not None:
        j, extra = exposure
        partitions[j].labels[extra] = UNASSIGNED
        reasons = partitions[j].unassigned_reasons
        reasons[EXPOSING] = reasons.get(EXPOSING, 0) + int(extra.sum())


def unassign_exposing_rows(
    partitions: list[Partition], clusters: list[np.ndarray | None], n_speakers: int, minimum: int
) -> None:
    """:func:`unassign_exposing_speakers` when some partitions are utterance-level (rows are a
    speaker's utterances with one value; ``clusters[i]`` maps partition i's rows to speaker
    positions 0..n_speakers-1, None for a speaker-level partition).

    An utterance-level method that leaves out some rows (a missing value) of 1 to ``minimum - 1``
    speakers would publish totals differing from a speaker-level method's by exactly those rows:
    those speakers' rows are all left out. Then each utterance-level method takes part in the
    speaker-level check as the set of speakers it has rows of, and the speakers it must drop lose
    all their rows. Updates labels in place.
    """
    if minimum <= 0:
        return
    views = []
    for partition, rows_speaker in zip(partitions, clusters):
        if rows_speaker is None:
            views.append(partition)
            continue
        partial = np.zeros(n_speakers, dtype=bool)
        partial[rows_speaker[~partition.assigned]] = True
        partial &= np.isin(np.arange(n_speakers), rows_speaker[partition.assigned])
        if 0 < partial.sum() < minimum:
            _drop_rows(partition, partial[rows_speaker])
        has_rows = np.zeros(n_speakers, dtype=bool)
        has_rows[rows_speaker[partition.assigned]] = True
        views.append(Partition("speakers", np.where(has_rows, 0, UNASSIGNED), ["all"], ["all"]))
    unassign_exposing_speakers(views, minimum)
    for partition, rows_speaker, view in zip(partitions, clusters, views):
        if rows_speaker is not None:
            dropped = (view.labels == UNASSIGNED)[rows_speaker] & partition.assigned
            if dropped.any():
                _drop_rows(partition, dropped)


def _drop_rows(partition: Partition, rows: np.ndarray) -> None:
    """Leave ``rows`` out of ``partition`` (counted, as rows, under the exposing reason)."""
    count = int((rows & partition.assigned).sum())
    partition.labels[rows] = UNASSIGNED
    if count:
        partition.unassigned_reasons[EXPOSING] = partition.unassigned_reasons.get(EXPOSING, 0) + count


def _first_exposure(masks: list[np.ndarray], minimum: int) -> tuple[int, np.ndarray] | None:
    """The first method j (and its extra speakers) assigning another method's speakers plus 1 to
    ``minimum - 1`` more, or None."""
    for i, own in enumerate(masks):
        for j, other in enumerate(masks):
            extra = other & ~own
            if j != i and not (own & ~other).any() and 0 < extra.sum() < minimum:
                return j, extra
    return None


def suppress_nested_attributes(results: dict) -> None:
    """Across ``--by`` specs where one's columns are a subset of another's (``grp`` and
    ``grp,sex``), each coarse cohort is published and equals the union of the fine cohorts inside
    it; so within every coarse cohort the suppressed fine cohorts must together hold at least the
    minimum (or none), else more fine cohorts there are suppressed. Updates the figures in place."""
    specs = {
        key: tuple(r.partition.details.get("by") or ())
        for key, r in results.items()
        if key.split(":")[0] == "attribute"
    }
    for fine_key, fine_by in specs.items():
        for coarse_by in {by for key, by in specs.items() if key != fine_key and set(by) < set(fine_by)}:
            result = results[fine_key]
            positions = [fine_by.index(column) for column in coarse_by]
            for figures in filter(None, [result.discovery, result.holdout]):
                cohorts = figures.cohorts
                parents = (
                    cohorts["id"]
                    .astype(str)
                    .str.split(" & ")
                    .map(lambda parts, positions=positions: tuple(parts[i] for i in positions))
                )
                in_bottom = cohorts["id"].isin(figures.bottom).to_numpy()
                in_top = cohorts["id"].isin(figures.top).to_numpy()
                chosen = in_bottom | in_top
                suppressed = cohorts["suppressed"].to_numpy(dtype=bool).copy()
                exposed = False
                for parent in parents.unique():
                    inside = (parents == parent).to_numpy()
                    counts = cohorts["speakers"].to_numpy()[inside]
                    # Utterance-level cohorts can share speakers: their union holds at least the
                    # largest one's speakers, and counting only that is the safe side.
                    union = (
                        (lambda mask, counts=counts: int(counts[mask].max()) if mask.any() else 0)
                        if getattr(result, "cohort_level", "speaker") == "utterance"
                        else None
                    )
                    unions = [in_bottom[inside], in_top[inside]]
                    suppressed[inside] = (
                        suppressed_cells(
                            counts,
                            result.min_report_speakers,
                            chosen[inside],
                            union,
                            published_unions=unions,
                        )
                        | suppressed[inside]
                    )
                    # The bottom and top figures are published, and so is the parent: the suppressed
                    # cells of the parent inside each must hold the minimum or none, else those figures go.
                    count = union or (lambda mask, counts=counts: int(counts[mask].sum()))
                    exposed |= any(0 < count(suppressed[inside] & part) < result.min_report_speakers for part in unions)
                cohorts["suppressed"] = suppressed
                if exposed:
                    withhold_bottom_and_top(figures, coarse_by)
                shown = cohorts.loc[~cohorts["suppressed"]]
                words = shown["ref_words"].sum()
                figures.reported_wer = float(shown["errors"].sum() / words) if words > 0 else None


def withhold_bottom_and_top(figures, coarse_by: tuple[str, ...]) -> None:
    """Withhold a method's bottom and top figures (WERs, gap, shares, adjusted ratios): with the
    coarser --by cohorts published, they would let a reader subtract a suppressed group."""
    figures.withheld = (
        "the bottom and top cohorts' figures are withheld: with the cohorts of --by "
        f"{','.join(coarse_by)} also published, they would reveal a group under --min-report-speakers by subtraction"
    )
    figures.wer_gap_pct = figures.bottom_wer = figures.top_wer = None
    figures.bottom_share_pct = figures.bottom_utterance_share_pct = figures.bottom_word_share_pct = None
    figures.wer_gap_ci, figures.bottom_share_ci, figures.bottom_wer_ci = [None, None], [None, None], [None, None]
    figures.adjusted = None


def differencing_withheld(
    items: list[list[np.ndarray]], speakers: np.ndarray, minimum: int, already_published: list[np.ndarray] | None = None
) -> list[str | None]:
    """Which items (in publication order) must be withheld so that no two published groups differ
    by a handful of speakers (SPEC 6: differencing).

    Each item is the list of speaker groups it would publish figures for (its sides), each a boolean
    mask over "atoms" (sets of speakers that every group either holds whole or not at all, such as
    ZIP codes) with ``speakers[a]`` speakers in atom ``a``. When one published group contains
    another, their difference is published by subtraction; it must hold no speakers or at least
    ``minimum``, as must each side itself. Compared are every side, the union of an item's sides
    (recoverable by adding them), all speakers (the published totals) and ``already_published``
    groups. An item that would break the rule is withheld whole (its entry is the reason, else None); the next items are
    checked against what is published. Differences of three or more groups are not examined.
    """
    speakers = np.asarray(speakers, dtype=np.float64)
    withheld: list[str | None] = [None] * len(items)
    if minimum <= 0:
        return withheld
    start = [np.ones(len(speakers), dtype=bool), *(already_published or [])]
    capacity = len(start) + sum(len(sides) + 1 for sides in items)
    published = np.zeros((capacity, len(speakers)), dtype=np.float64)  # rows: published groups
    published[: len(start)] = start
    sizes_old = np.zeros(capacity)
    sizes_old[: len(start)] = published[: len(start)] @ speakers
    count = len(start)
    for index, sides in enumerate(items):
        groups = [np.asarray(side, dtype=bool) for side in sides]
        if len(groups) > 1:
            groups.append(np.logical_or.reduce(groups))
        new = np.array(groups, dtype=np.float64)  # (g, atoms)
        sizes_new = new @ speakers
        if ((sizes_new > 0) & (sizes_new < minimum)).any():
            withheld[index] = SMALL_SIDE
            continue
        overlap = (new * speakers) @ published[:count].T  # speakers in both
        old = sizes_old[:count]
        nested = np.isclose(overlap, sizes_new[:, None]) | np.isclose(overlap, old[None, :])
        difference = np.abs(old[None, :] - sizes_new[:, None])
        if (nested & (difference > 0) & (difference < minimum)).any():
            withheld[index] = DIFFERENCING
            continue
        published[count : count + len(groups)] = new
        sizes_old[count : count + len(groups)] = sizes_new
        count += len(groups)
    return withheld
