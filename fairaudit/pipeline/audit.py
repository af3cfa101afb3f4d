"""The audit pipeline on a built speaker table: discover -> select -> test -> measure -> judge.

:func:`run_audit` is what ``fairaudit.audit`` (in :mod:`fairaudit.api`) and the CLI call after reading
the log; :func:`run_stored_audit` measures stored cohorts instead of discovering new ones (SPEC 9).
"""

from __future__ import annotations

import threading
import zlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit.engines.speaker_table import build_utterance_table
from fairaudit.engines.threads import Checkpoint, available_cores, run_jobs
from fairaudit.errors import UsageError
from fairaudit.methods import AttributeGroups, CohortMethod
from fairaudit.methods.registry import method_classes
from fairaudit.model.log import LATITUDE, SPEAKER, UtteranceLog
from fairaudit.model.partition import Partition
from fairaudit.model.speakers import SpeakerTable
from fairaudit.options import AuditOptions
from fairaudit.privacy import EXPOSING, suppress_nested_attributes, unassign_exposing_rows
from fairaudit.report.result import AuditResult, MethodResult
from fairaudit.stats.adjust import covariate_design, utterance_rate_ratios
from fairaudit.stats.measure import (
    discover_selection,
    fixed_selection_p_value,
    measure_with_options,
    selection_from_ids,
)
from fairaudit.stats.metrics import Selection, random_cell_gain
from fairaudit.stats.resampling import (
    bootstrap_partitions,
    permutation_blocks,
    permutation_p_value,
    utterance_level_null,
)
from fairaudit.stats.selection import CELL_PENALTY, SelectionRule, fixed_partition_statistic, rule_for_method
from fairaudit.version import __version__


def run_stored_audit(
    log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions, cohorts: str | Path | dict
) -> AuditResult:
    """Measure ``speakers`` on the cohort definitions of an earlier audit report (no discovery)."""
    from fairaudit.pipeline.stored import measure_stored, read_cohort_report

    held_out = split_speakers(speakers.speaker_ids, opts.holdout, opts.seed)[1]
    if held_out is not None:  # only the speakers an audit with this --holdout and --seed holds out
        speakers = speakers.subset(held_out)
    report, where = read_cohort_report(cohorts)
    results = measure_stored(speakers, report, where, selection_rule(opts, speakers), opts)
    parameters = dict(opts.as_parameters(), cohorts=None if isinstance(cohorts, dict) else str(cohorts))
    result = _audit_result(log, speakers, opts, results, parameters, None)
    result.notes += withheld_cell_notes(report, results)
    result.notes += few_assigned_notes(results, len(speakers))
    result.notes += [note for note in [too_few_permutations(opts)] if note]
    return result


def few_assigned_notes(results: dict, n_speakers: int) -> list[str]:
    """A note per stored method that places fewer than half of this log's speakers in its cohorts:
    the definitions probably come from another population (other accents, another region)."""
    notes = []
    for key, result in results.items():
        assigned = int(result.partition.assigned.sum())
        if n_speakers and assigned < 0.5 * n_speakers:
            reasons = "; ".join(f"{reason}: {count:,}" for reason, count in result.partition.unassigned_reasons.items())
            notes.append(
                f"{key}: only {assigned:,} of {n_speakers:,} speakers fall in the stored cohorts ({reasons}); were "
                "the cohorts found on another population?"
            )
    return notes


def withheld_cell_notes(report: dict, results: dict) -> list[str]:
    """A note per stored method whose report withheld some cells for privacy: their definitions are
    not stored, so this log's speakers are assigned among the published cells only, and a published
    cell (a nearest cluster, the area outside the windows) can hold speakers it did not hold before."""
    notes = []
    classes = method_classes()
    for key in results:
        definition = (report["methods"].get(key) or {}).get("definition") or {}
        withheld = definition.get("withheld_cells")
        method = classes.get(str(definition.get("method")))
        if method is not None and method.absorbs_withheld_cells and isinstance(withheld, int) and withheld > 0:
            notes.append(
                f"{key}: the stored audit withheld {withheld} of its cohorts for privacy (fewer than its "
                "--min-report-speakers speakers), so their definitions are not stored; this log's speakers "
                "are assigned among the published cohorts only, which can therefore hold more speakers than "
                "they did in the stored audit"
            )
    return notes


def build_methods(opts: AuditOptions, speakers: SpeakerTable) -> list[CohortMethod]:
    """Instantiate the requested methods; without a request, every method the data supports."""
    requested = opts.methods
    classes = method_classes()
    names = (
        list(dict.fromkeys(requested))
        if requested
        else [n for n, c in classes.items() if c.runs_by_default or n == "attribute"]
    )
    chosen: list[CohortMethod] = []
    for name in names:
        for method in classes[name].from_options(opts):
            missing = method.check_requirements(speakers)
            if missing and (requested or not classes[name].runs_by_default):  # asked for (--method, --by)
                raise UsageError(_missing_message(name, missing, opts, speakers))
            if not missing:
                chosen.append(method)
    if not chosen:
        raise UsageError(
            "no method can run on this log: add latitude/longitude (geo-tree, geo-scan), zip_code (zip-demographic), "
            "embeddings (embedding-kmeans), or --by COLUMN (attribute)"
        )
    return chosen


def method_key(method: CohortMethod, n_attribute: int) -> str:
    """The method's name in reports; several --by specs get "attribute:<columns>"."""
    if isinstance(method, AttributeGroups) and n_attribute > 1:
        return f"attribute:{','.join(method.columns)}"
    return method.name


@dataclass
class Discovered:
    """One method after discovery on the discovery speakers: its cells, chosen cohorts and p-value."""

    key: str  # the method's name in reports ("attribute:<columns>" for several --by)
    method: CohortMethod
    rng: np.random.Generator  # the method's own stream (bootstrap fallback, hold-out p-value)
    partition: Partition
    selection: Selection
    p_value: float | None  # search-aware permutation p-value; None when not tested
    #: The rows the method ran on: the speakers, or for an utterance-level --by spec one row per
    #: speaker and value (``table`` the discovery rows, ``full`` every speaker's).
    table: SpeakerTable
    full: SpeakerTable

    @property
    def utterance_level(self) -> bool:
        return self.table.clusters is not None


def run_audit(
    log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions, *, progress=None, stage=None
) -> AuditResult:
    """Discover, measure and judge every method on a built speaker table.

    ``progress(description, total)``, if given, is called in this thread and returns a callback taking
    the number of replicates just done; the callbacks run on the worker threads of the permutation
    tests and the bootstrap, one at a time (a lock serialises them). ``stage(name)``, if given, returns
    a context manager wrapped around each stage (method fit, permutation test, bootstrap, hold-out):
    the benchmarks use it to time them; the permutation tests and the bootstrap overlap, on their threads.
    """
    stage = stage or (lambda name: nullcontext())
    progress = _one_at_a_time(progress) if progress else None
    if opts.adjust:  # a misnamed covariate is an error before any work, whatever the verdicts
        covariate_design(speakers, list(opts.adjust))
    discovery_pos, holdout_pos = split_speakers(speakers.speaker_ids, opts.holdout, opts.seed)
    discovery = speakers.subset(discovery_pos) if holdout_pos is not None else speakers
    rule = selection_rule(opts, discovery)
    held_out = speakers.subset(holdout_pos) if holdout_pos is not None else None
    methods = build_methods(opts, speakers)
    n_attribute = sum(isinstance(m, AttributeGroups) for m in methods)
    keys = [method_key(method, n_attribute) for method in methods]
    rules = {key: rule_for_method(rule, method) for key, method in zip(keys, methods)}
    fulls = [method_table(method, log, speakers, opts) for method in methods]

    # 1. Discovery and the search-aware permutation test, method by method.
    tables = [full if full is speakers else full.of_speakers(discovery_pos) for full in fulls]
    tables = [discovery if full is speakers else table for full, table in zip(fulls, tables)]
    # One thread per fit, all at once (which fit is longest depends on the data, so none waits in a
    # queue); on one core, one after another in this thread.
    fits = [_fit_job(key, method, table, stage) for key, method, table in zip(keys, methods, tables)]
    run_jobs(fits, workers=len(fits) if available_cores() > 1 else 1)
    unassign_exposing_rows(
        [m.partition_ for m in methods],
        [_speaker_positions(t, discovery_pos) for t in tables],
        len(discovery),
        opts.min_report_speakers,
    )
    found: list[Discovered] = []
    observed: list[float] = []
    for key, method, table, full in zip(keys, methods, tables, fulls):
        rng = np.random.default_rng([opts.seed, zlib.crc32(key.encode())])
        partition = method.partition_
        selection = discover_selection(partition, table, rules[key])
        statistic = fixed_partition_statistic(partition, table.errors[None, :], table.ref_words[None, :], rules[key])[0]
        found.append(Discovered(key, method, rng, partition, selection, None, table, full))
        observed.append(float(statistic))

    # 2. The search-aware permutation tests (methods whose discovery chose a cohort) and one speaker
    #    bootstrap shared by every method (the same resampled speakers for all; utterance-level tables
    #    draw the same speakers and carry each speaker's rows along), run at the same time.
    tested = [
        i
        for i, item in enumerate(found)
        if opts.permutations > 0 and np.isfinite(observed[i]) and bool(item.selection.bottom.any())
    ]
    # The bootstrap starts first: it is the longest job (1,000 replicates of every method's cells), and
    # starting the longest first keeps the last core from running alone at the end.
    jobs = [_bootstrap_job(found, discovery, opts, progress, stage)]
    jobs += [_permutation_job(found[i], rules[found[i].key], opts.permutations, progress, stage) for i in tested]
    with stage("permutation tests and bootstrap (run together)"):
        boots, *nulls = run_jobs(jobs)
    for i, null in zip(tested, nulls):
        found[i].p_value = permutation_p_value(observed[i], null)

    # 3. Figures, the hold-out re-measurement and verdicts.
    results: dict[str, MethodResult] = {}
    assignment_frames = []
    held_designs = []
    for item, boot in zip(found, boots):
        key, method, rng, partition, selection, p_value = (
            item.key,
            item.method,
            item.rng,
            item.partition,
            item.selection,
            item.p_value,
        )
        with stage(f"{key}: measure"):
            figures = measure_with_options(
                partition,
                item.table,
                selection,
                rules[key],
                opts,
                rng=rng,
                boot=boot,
                p_value=p_value,
                cohort_p_values=isinstance(method, AttributeGroups) and not item.utterance_level,
            )
        results[key] = MethodResult(
            key,
            partition,
            figures,
            "",
            "",
            None,
            top_mode=opts.top,
            min_report_speakers=opts.min_report_speakers,
            definition=_definition(method, item.utterance_level),
        )
        results[key].cohort_level = "utterance" if item.utterance_level else "speaker"
        if figures.adjusted is not None and any(speakers.conflicts.get(c, 0) for c in opts.adjust):
            figures.adjusted = _adjusted_on_utterances(item, log, speakers, discovery_pos, opts.adjust)
        full = item.full
        assignment_frames.append(
            _assignments(key, method.assign(full) if held_out is not None else partition, full, figures.bottom)
        )
    if held_out is not None and holdout_pos is not None:
        held_tables = [held_out if item.full is speakers else item.full.of_speakers(holdout_pos) for item in found]
        held_partitions = [item.method.assign(table) for item, table in zip(found, held_tables)]
        unassign_exposing_rows(
            held_partitions,
            [_speaker_positions(t, holdout_pos) for t in held_tables],
            len(held_out),
            opts.min_report_speakers,
        )
        for held_partition, item in zip(held_partitions, found):
            key = item.key
            figures = results[key].discovery
            sizes = held_partition.speaker_counts()
            held_designs.append(
                (held_partition, selection_from_ids(held_partition, figures.bottom, figures.top, opts.top, sizes))
            )

    if held_out is not None:
        with stage("hold-out (all methods)"):
            held_found = [
                Discovered(item.key, item.method, item.rng, part, sel, None, table, item.full)
                for item, (part, sel), table in zip(found, held_designs, held_tables)
            ]
            held_boots = _bootstraps(held_found, held_out, opts, np.random.default_rng([opts.seed, 0x401D]), None)
            for item, held_item, boot in zip(found, held_found, held_boots):
                key, method, rng = item.key, item.method, item.rng
                held_partition, held_selection, held_table = held_item.partition, held_item.selection, held_item.table
                held = measure_with_options(
                    held_partition,
                    held_table,
                    held_selection,
                    rules[key],
                    opts,
                    rng=rng,
                    boot=boot,
                    p_value=None,
                    cohort_p_values=isinstance(method, AttributeGroups) and not held_item.utterance_level,
                )
                held.p_value = fixed_selection_p_value(
                    held_partition, held_table, held_selection, held.wer_gap_pct, opts.permutations, rng
                )
                results[key].holdout = held
    suppress_nested_attributes(results)
    for key, result in results.items():
        result.verdict, result.verdict_reason = judge(result.discovery, result.holdout, rules[key], opts)

    audit_result = _audit_result(
        log,
        speakers,
        opts,
        results,
        opts.as_parameters(),
        pd.concat(assignment_frames, ignore_index=True) if assignment_frames else None,
    )
    audit_result.notes += [_level_note(item, speakers) for item in found if item.utterance_level]
    notes = [too_few_permutations(opts), swapped_coordinates_note(speakers), small_cohorts_published(opts)]
    audit_result.notes += [note for note in notes if note]
    for key, result in results.items():
        audit_result.notes += [
            note for note in (benjamini_hochberg_floor(key, result, opts), left_out_note(key, result)) if note
        ]
    return audit_result


def left_out_note(key: str, result: MethodResult) -> str:
    """A note when speakers were left out of this method because another method of the audit could
    not place them: its figures then differ from an audit of this method alone."""
    count = result.partition.unassigned_reasons.get(EXPOSING, 0)
    if not count:
        return ""
    return (
        f"{key}: {count:,} speaker(s) left out because another method of this audit could not place them and "
        "there are too few to publish the difference (SPEC 6); audited without that method, its figures include them"
    )


def benjamini_hochberg_floor(key: str, result: MethodResult, opts: AuditOptions) -> str:
    """A note when, with this many groups and permutations, no single group's Benjamini-Hochberg
    p-value can fall below --alpha: the smallest raw p is 1 / (B + 1), and BH multiplies the
    smallest by the number of groups m, so a lone differing group needs m / (B + 1) < alpha."""
    cohorts = result.discovery.cohorts
    if "p_value" not in cohorts.columns or opts.permutations <= 0:
        return ""
    tested = int(cohorts["p_value"].notna().sum())
    floor = tested / (opts.permutations + 1)
    if tested < 2 or floor < opts.alpha:
        return ""
    needed = int(np.ceil(tested / opts.alpha))
    return (
        f"{key}: with {tested} groups tested and --permutations {opts.permutations}, the Benjamini-Hochberg p-value "
        f"of a group that alone differs cannot fall below {tested} / {opts.permutations + 1} "
        f"{'= ' + format(floor, '.3g') if floor < 1 else '(above 1: it is 1)'}, not below --alpha {opts.alpha:g} "
        "(only groups that differ together can get below it); use at "
        f"least {needed} permutations for it (the method's verdict is not affected)"
    )


def small_cohorts_published(opts: AuditOptions) -> str:
    """A note when --min-report-speakers is below the default: the reports then publish cohorts
    small enough that their figures describe a few identifiable speakers."""
    default = AuditOptions().min_report_speakers
    if opts.min_report_speakers >= default:
        return ""
    smallest = max(opts.min_report_speakers, 1)
    return (
        f"--min-report-speakers {opts.min_report_speakers}: cohorts of {smallest} speaker(s) or more are published, so "
        f"a small cohort's figures may describe identifiable people; keep such reports internal (default {default})"
    )


def swapped_coordinates_note(speakers: SpeakerTable) -> str:
    """A note when 1% or more of the located speakers lie south of 60 degrees S, where nobody
    lives: the usual sign of latitude and longitude columns swapped (US longitudes are -65 to -125)."""
    frame = speakers.frame
    if LATITUDE not in frame.columns:
        return ""
    latitude = frame[LATITUDE].to_numpy(dtype=np.float64)
    located = latitude[~np.isnan(latitude)]
    antarctic = int((located < -60).sum())
    if not len(located) or antarctic < 0.01 * len(located):
        return ""
    return (
        f"{antarctic:,} of {len(located):,} located speakers lie south of 60 degrees S (Antarctica): are the "
        "latitude and longitude columns swapped? (rename them with --column latitude=... --column longitude=...)"
    )


def _speaker_positions(table: SpeakerTable, positions: np.ndarray) -> np.ndarray | None:
    """For an utterance-level table: each row's speaker as a position among ``positions`` (the sorted
    speaker-table positions of this discovery or hold-out set); None for a speaker-level table."""
    return None if table.clusters is None else np.searchsorted(positions, table.clusters)


def _definition(method: CohortMethod, utterance_level: bool) -> dict:
    """The method's portable definition; utterance-level cohorts say so (their rule is per utterance)."""
    definition = method.definition()
    if utterance_level:
        columns = ", ".join(method.columns)  # type: ignore[attr-defined]
        definition = {**definition, "level": "utterance", "rule": f"each utterance by its value of {columns}"}
    return definition


def _level_note(item: Discovered, speakers: SpeakerTable) -> str:
    """Which kind of cohort an attribute spec became, and why (utterance-level ones only)."""
    columns = list(item.method.columns)  # type: ignore[attr-defined]
    varying = {c: speakers.conflicts.get(c, 0) for c in columns if speakers.conflicts.get(c, 0)}
    why = ", ".join(f"{c} varies within {n:,} speakers" for c, n in varying.items()) or "--by-level utterance"
    return (
        f"{item.key}: utterance-level cohorts ({why}): a cohort is the utterances with that value, and a speaker "
        "counts in every cohort they have utterances in; --by-level speaker puts each speaker in the cohort "
        "of their most frequent value instead"
    )


def _audit_result(
    log: UtteranceLog,
    speakers: SpeakerTable,
    opts: AuditOptions,
    results: dict,
    parameters: dict,
    assignments: pd.DataFrame | None,
) -> AuditResult:
    """The AuditResult of one run: results per method plus provenance."""
    if assignments is None:
        assignments = (
            pd.concat(
                [_assignments(key, r.partition, speakers, r.discovery.bottom) for key, r in results.items()],
                ignore_index=True,
            )
            if results
            else None
        )
    return AuditResult(
        version=__version__,
        seed=opts.seed,
        parameters=parameters,
        input={
            "path": log.path,
            "sha256": log.sha256,
            "utterances": int(log.n_utterances),
            "speakers": int(len(speakers)),
            "error_form": log.error_form,
            "text_normalization": getattr(log, "text_normalization", None),
        },
        methods=results,
        notes=list(log.notes),
        speaker_conflicts=dict(speakers.conflicts),
        assignments_frame=assignments,
    )


def selection_rule(opts: AuditOptions, speakers: SpeakerTable | None = None) -> SelectionRule:
    """How every method's bottom and top cohorts are chosen from its cells (SPEC 5); the price
    of a cell in ``--bottom auto`` comes from the discovery speakers (:func:`random_cell_gain`)."""
    penalty = 0.0
    if speakers is not None:
        penalty = CELL_PENALTY * random_cell_gain(speakers.errors, speakers.ref_words, opts.seed)
    return SelectionRule(
        min_speakers=max(opts.min_speakers, opts.min_report_speakers),
        bottom=opts.bottom,  # type: ignore[arg-type]
        bottom_share=opts.bottom_share,
        max_bottom_share=opts.max_bottom_share,
        cell_penalty=penalty,
        top=opts.top,  # type: ignore[arg-type]
    )


def _fit_job(key: str, method: CohortMethod, table: SpeakerTable, stage):
    """The job fitting one method. Fits are independent of each other, so they run at the same time:
    k-means gains little from a second core, and the scan and census fits need one each."""

    def job(checkpoint: Checkpoint) -> None:
        with stage(f"{key}: fit"):
            method.fit(table)

    return job


def _permutation_job(item: Discovered, rule: SelectionRule, permutations: int, progress, stage):
    """The job computing one method's null statistics (its progress bar is made here, in order)."""
    tick = progress(f"{item.key}: permutation test", permutations) if progress else None

    def job(checkpoint: Checkpoint) -> np.ndarray:
        with stage(f"{item.key}: permutations"):
            return _null_statistics(item.method, item.table, rule, permutations, item.rng, _ticker(tick, checkpoint))

    return job


def _bootstrap_job(found: list[Discovered], speakers: SpeakerTable, opts: AuditOptions, progress, stage):
    """The job drawing the shared speaker bootstrap of every method."""
    tick = progress("bootstrap (all methods)", opts.bootstrap) if progress and opts.bootstrap else None

    def job(checkpoint: Checkpoint) -> list[dict]:
        with stage("bootstrap (all methods)"):
            rng = np.random.default_rng([opts.seed, 0xB007])
            return _bootstraps(found, speakers, opts, rng, _ticker(tick, checkpoint), checkpoint)

    return job


def _one_at_a_time(progress):
    """The progress factory with its callbacks serialised by one lock (they run on several threads)."""
    lock = threading.Lock()

    def factory(description: str, total: int):
        tick = progress(description, total)

        def locked(done: int) -> None:
            with lock:
                tick(done)

        return locked

    return factory


def _ticker(tick, checkpoint: Checkpoint):
    """A progress callback that first stops the job if the run was abandoned, then moves the bar."""

    def advance(done: int) -> None:
        checkpoint()
        if tick:
            tick(done)

    return advance


def _null_statistics(
    method: CohortMethod, table: SpeakerTable, rule: SelectionRule, permutations: int, rng, tick
) -> np.ndarray:
    """The method's null statistics, block by block (bounded memory; the progress bar moves).

    Speaker rows: the speakers' outcomes are shuffled (whole speakers) and the discovery re-run.
    Utterance-level rows: whole speakers' totals are shuffled and spread over each speaker's rows
    (:func:`~fairaudit.stats.resampling.utterance_level_null`); the cells stay, the selection is re-run.
    """
    parts = []
    if table.clusters is not None:
        for drawn, words in utterance_level_null(table.clusters, table.errors, table.ref_words, permutations, rng):
            parts.append(fixed_partition_statistic(method.partition_, drawn, words, rule))
            if tick:
                tick(len(drawn))
        return np.concatenate(parts) if parts else np.empty(0)
    for block in permutation_blocks(method.partition_.assigned, len(table), permutations, rng):
        parts.append(method.null_gaps(table, block, rule))
        if tick:
            tick(len(block))
    return np.concatenate(parts) if parts else np.empty(0)


def _bootstraps(
    found: list[Discovered], speakers: SpeakerTable, opts: AuditOptions, rng, tick, checkpoint: Checkpoint | None = None
) -> list[dict]:
    """Bootstrap replicates per method: one draw of speakers for every speaker-level method, and the
    same draw (same seed, same speaker count) carried to each utterance-level method's rows.
    ``checkpoint`` (when the run is a job) is called between blocks of the utterance-level draws."""
    state = rng.bit_generator.state
    shared = [i for i, item in enumerate(found) if not item.utterance_level]
    boots: list[dict] = [{}] * len(found)
    results = bootstrap_partitions(
        [(found[i].partition.indicator(), found[i].selection) for i in shared],
        speakers.errors,
        speakers.ref_words,
        opts.bootstrap,
        rng,
        tick,
    )
    for i, boot in zip(shared, results):
        boots[i] = boot
    for i, item in enumerate(found):
        if item.utterance_level:
            again = np.random.default_rng()
            again.bit_generator.state = state  # the shared draw of speakers
            boots[i] = bootstrap_partitions(
                [(item.partition.indicator(), item.selection)],
                item.table.errors,
                item.table.ref_words,
                opts.bootstrap,
                again,
                _ticker(None, checkpoint) if checkpoint else None,
                clusters=item.table.clusters,
            )[0]
    return boots


def _adjusted_on_utterances(
    item: Discovered, log: UtteranceLog, speakers: SpeakerTable, discovery_pos: np.ndarray, columns: list[str]
) -> dict:
    """--adjust with a covariate that varies within speakers: the bottom-vs-top rate ratio from the
    utterances themselves (Poisson GLM, speaker-clustered errors) instead of speakers' most frequent values."""
    if item.utterance_level or len(log.frame) == 0:
        reason = (
            "adjusting utterance-level cohorts for covariates that vary within speakers is not supported yet"
            if item.utterance_level
            else "covariates that vary within speakers need the utterances: use --engine pandas"
        )
        return {"covariates": list(columns), "speakers": 0, "left_out": 0, "error": reason}
    labels = item.partition.labels
    cells_bottom, cells_top = item.selection.bottom[0], item.selection.top[0]
    in_bottom = np.zeros(len(speakers), dtype=bool)
    in_top = np.zeros(len(speakers), dtype=bool)
    in_bottom[discovery_pos] = (labels >= 0) & cells_bottom[np.maximum(labels, 0)]
    in_top[discovery_pos] = (labels >= 0) & cells_top[np.maximum(labels, 0)]
    codes = log.speaker_codes
    if codes is None or len(codes) != len(log.frame):
        codes = pd.Index(speakers.speaker_ids).get_indexer(log.frame[SPEAKER].astype(str))
    return utterance_rate_ratios(log.frame, np.asarray(codes), in_bottom, in_top, columns)


def method_table(method: CohortMethod, log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions) -> SpeakerTable:
    """The rows a method runs on: the speaker table, or for an attribute spec whose columns vary
    within speakers (``--by-level auto``, or ``utterance``) the utterance-level table of the spec."""
    if not isinstance(method, AttributeGroups) or opts.by_level == "speaker":
        return speakers
    columns = list(method.columns)
    varies = any(speakers.conflicts.get(column, 0) > 0 for column in columns)
    if opts.by_level == "auto" and not varies:
        return speakers
    if len(log.frame) == 0:  # the Dask engine keeps the rows in their files
        raise UsageError(
            f"--by {','.join(columns)} varies within speakers, so its cohorts are utterances, which the "
            "Dask engine does not keep in memory: use --engine pandas, or --by-level speaker to put "
            "each speaker in the cohort of their most frequent value"
        )
    return build_utterance_table(log, columns)


def _missing_message(name: str, missing: list[str], opts: AuditOptions, speakers: SpeakerTable) -> str:
    """Why a requested method cannot run, and what the log offers instead."""
    ids = [column for column in opts.by for part in column.split(",") if part.strip() in (SPEAKER, "utterance_id")]
    if ids and name == AttributeGroups.name:
        return (
            f"--by {ids[0]}: that is an id, so every speaker (or utterance) would be a cohort of its own; "
            "--by takes a metadata column that groups speakers, such as accent or gender"
        )
    offered = ", ".join(repr(c) for c in speakers.metadata_columns) or "none"
    return f"method {name} needs {', '.join(missing)}, which the log does not have (its metadata columns: {offered})"


def split_speakers(speaker_ids: np.ndarray, holdout: float | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions of discovery and held-out speakers, sorted: the round(holdout x n) speakers whose
    id hashes lowest under a key made from ``seed`` are held out.

    The split depends on each speaker's id, not on its position, so two logs of the same speakers
    (a new model on the same test set) hold out the same speakers, and mostly the same ones when a
    few speakers differ: the gate can then re-measure a new log on exactly the speakers a baseline
    audit's held-out figures come from.
    """
    n = len(speaker_ids)
    if not holdout:
        return np.arange(n), None
    n_holdout = int(round(holdout * n))
    if n_holdout < 1 or n_holdout > n - 1:
        raise UsageError(
            f"--holdout {holdout:g} of {n:,} speakers holds out {n_holdout:,}: both parts need speakers; "
            f"use a fraction between {1 / n:.3g} and {1 - 1 / n:.3g} (0.5 is usual)"
        )
    key = f"{int(seed) & 0xFFFFFFFFFFFF:016x}"[-16:]  # pandas hashes with a 16-character key
    hashes = pd.util.hash_array(np.asarray(speaker_ids).astype(str).astype(object), hash_key=key)
    order = np.lexsort((np.arange(n), hashes))
    return np.sort(order[n_holdout:]), np.sort(order[:n_holdout])


def judge(figures, held, rule: SelectionRule, opts: AuditOptions) -> tuple[str, str]:
    """Verdict per method (SPEC 5) and its reason; "no evidence" says what gap the data could have
    detected and, with --target-gap, how many more speakers that gap needs (SPEC 10)."""
    verdict, reason = _verdict(figures, held, rule, opts)
    figures = held if held is not None else figures  # the verdict rests on the held-out speakers then
    if verdict in ("no evidence", "insufficient data") and figures.detectable_gap_pct is not None:
        reason += (
            f"; these speakers could detect a bottom-vs-top gap of {figures.detectable_gap_pct:.0f}% or more "
            f"(80% power at alpha {opts.alpha:g}, for cohorts named in advance)"
        )
        if opts.target_gap and figures.speakers_needed == 0:
            reason += f"; a {opts.target_gap:g}% gap would be detectable with these speakers"
        elif opts.target_gap and figures.speakers_needed is not None:
            reason += (
                f"; to detect {opts.target_gap:g}%, the bottom cohort needs "
                f"{int(figures.speakers_needed):,} more speakers like its own"
            )
        elif opts.target_gap:
            reason += (
                f"; a {opts.target_gap:g}% gap needs more speakers in the top cohort too, not only in the bottom one"
            )
    return verdict, reason


def _verdict(figures, held, rule: SelectionRule, opts: AuditOptions) -> tuple[str, str]:
    """Verdict per method (SPEC 5): disparity, no evidence, or insufficient data."""
    withheld = (held if held is not None else figures).withheld
    if withheld:  # the test ran on the cohorts; only the figures are not published
        p = held.p_value if held is not None else figures.p_value
        if p is None:
            return "no evidence", f"significance was not tested (--permutations 0); {withheld}"
        verdict = "disparity" if p < opts.alpha else "no evidence"
        return verdict, f"p-value {p:.3g} {'<' if p < opts.alpha else '>='} {opts.alpha:g}; {withheld}"
    if not figures.bottom or not figures.top or figures.wer_gap_pct is None:
        majority = _majority_worst_cell(figures, rule)
        if majority:
            return "no evidence", majority
        single = len(figures.cohorts) == 1 and bool(figures.cohorts["eligible"].iloc[0])
        if single and figures.assigned_speakers >= 2 * rule.min_speakers:
            return "no evidence", "the method found a single cohort: no split of the speakers beat noise"
        return "insufficient data", (
            f"fewer than two cohorts with at least {rule.min_speakers} speakers and some reference words"
        )
    if held is not None:
        if held.wer_gap_pct is None:
            return "insufficient data", "the held-out speakers do not fill both the bottom and the top cohort"
        p, where = held.p_value, "held-out"
    else:
        p, where = figures.p_value, "search-aware permutation"
    if p is None:
        return "no evidence", "significance was not tested (--permutations 0)"
    gap = held.wer_gap_pct if held is not None else figures.wer_gap_pct
    if p < opts.alpha and gap > 0:
        return "disparity", f"{where} p-value {p:.3g} < {opts.alpha:g}"
    limit = too_few_permutations(opts)
    return "no evidence", f"{where} p-value {p:.3g} >= {opts.alpha:g}" + (f" ({limit})" if limit else "")


def _majority_worst_cell(figures, rule: SelectionRule) -> str:
    """Why there is no bottom cohort when the worst of two or more eligible cells holds more than
    --max-bottom-share of the speakers (a method's cells, ``SelectionRule.majority_bottom`` off), else ""."""
    cohorts = figures.cohorts
    if rule.majority_bottom or rule.bottom != "auto" or rule.bottom_share is not None or not len(cohorts):
        return ""
    eligible = cohorts[cohorts["eligible"].astype(bool) & cohorts["wer"].notna()]
    if len(eligible) < 2:
        return ""
    worst = eligible.loc[eligible["wer"].idxmax()]
    share = float(worst["speaker_share_pct"])
    if share <= 100 * rule.max_bottom_share:
        return ""
    return (
        f"no minority cohort stands out: the highest-WER cell ({worst['id']}) holds {share:.0f}% of the speakers, "
        f"more than --max-bottom-share {rule.max_bottom_share:g}, so there is no bottom cohort (an under-served "
        "cohort is a minority); the cells' WERs are listed"
    )


def too_few_permutations(opts: AuditOptions) -> str:
    """Why no verdict can be "disparity" when the smallest possible permutation p-value,
    1 / (permutations + 1), is not below --alpha; "" otherwise."""
    if opts.permutations <= 0 or 1 / (opts.permutations + 1) < opts.alpha:
        return ""
    needed = int(np.floor(1 / opts.alpha + 1e-9))
    return (
        f"with --permutations {opts.permutations} the smallest possible p-value is "
        f"{1 / (opts.permutations + 1):.3g}, not below --alpha {opts.alpha:g}, so no verdict can be a disparity: "
        f"use at least {needed} permutations (default 200)"
    )


def _assignments(key: str, partition: Partition, speakers: SpeakerTable, bottom: list[str]) -> pd.DataFrame:
    ids = np.asarray(partition.cohort_ids + [""], dtype=object)
    descriptions = np.asarray(partition.descriptions + ["unassigned"], dtype=object)
    labels = partition.labels
    cohort_id = ids[labels]  # label -1 picks the trailing "" / "unassigned"
    return pd.DataFrame(
        {
            "method": key,
            SPEAKER: speakers.speaker_ids.astype(str),
            "cohort_id": cohort_id,
            "cohort": descriptions[labels],
            "bottom": np.isin(cohort_id, bottom) & (labels >= 0),
        }
    )
