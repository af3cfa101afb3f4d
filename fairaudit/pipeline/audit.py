"""The audit pipeline: logs -> speaker table -> partitions -> figures -> AuditResult.

``audit(...)`` is the Python entry point (SPEC 7) and what the CLI calls.
"""

from __future__ import annotations

import zlib
from contextlib import nullcontext
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from fairaudit import __version__
from fairaudit.errors import InputError, UsageError
from fairaudit.model.log import SPEAKER, UtteranceLog
from fairaudit.stats.measure import discover_selection, fixed_selection_p_value, measure, selection_from_ids
from fairaudit.methods import AttributeGroups, CohortMethod, SelectionRule
from fairaudit.methods.registry import method_classes, method_names
from fairaudit.stats.metrics import BOTTOM_MODES, TOP_MODES, speaker_dispersion
from fairaudit.methods.base import fixed_partition_statistic
from fairaudit.model.partition import Partition
from fairaudit.privacy import suppress_nested_attributes, unassign_exposing_speakers
from fairaudit.report.result import AuditResult, MethodResult
from fairaudit.model.speakers import SpeakerTable, build_speaker_table
from fairaudit.stats.resampling import bootstrap_partitions, permutation_blocks, permutation_p_value



@dataclass
class AuditOptions:
    """Every audit parameter (recorded verbatim in the JSON report)."""

    methods: list[str] | None = None  # None: every discovery method the data supports (+ attribute with by)
    by: list[str] = field(default_factory=list)
    min_speakers: int = 30
    max_regions: int = 16
    min_gain: float | str = "auto"  # geo-tree: minimum split gain, or "auto" (beats shuffled-outcome splits)
    clusters: int | str = "auto"  # embedding-kmeans: k, or "auto" (chosen by silhouette, re-joined by WER)
    max_window_share: float = 0.5  # geo-scan: largest window, as a share of located speakers
    bottom: str = "auto"
    bottom_share: float | None = None
    max_bottom_share: float = 0.5
    top: str = "rest"
    demographics: str | None = None
    holdout: float | None = None
    bootstrap: int = 1000
    permutations: int = 200
    alpha: float = 0.05
    min_report_speakers: int = 10
    seed: int = 0

    def validate(self) -> None:
        """Raise UsageError for values outside their documented ranges."""
        checks = [
            (self.min_speakers >= 1, "--min-speakers must be at least 1"),
            (self.max_regions >= 2, "--max-regions must be at least 2"),
            (self.clusters == "auto" or (isinstance(self.clusters, int) and not isinstance(self.clusters, bool) and self.clusters >= 2),
             "--clusters must be 'auto' or a whole number of at least 2"),
            (0 < self.max_window_share <= 1, "--max-window-share must be a fraction above 0 and at most 1 (e.g. 0.5)"),
            (self.bottom in BOTTOM_MODES, f"--bottom must be one of {', '.join(BOTTOM_MODES)}"),
            (0 < self.max_bottom_share < 1, "--max-bottom-share must be a fraction between 0 and 1 (e.g. 0.5)"),
            (self.min_gain == "auto" or (isinstance(self.min_gain, (int, float)) and self.min_gain >= 0), "--min-gain must be 'auto' or a non-negative number"),
            (self.bottom_share is None or 0 < self.bottom_share < 1, "--bottom-share must be a fraction between 0 and 1 (e.g. 0.1)"),
            (self.top in TOP_MODES, f"--top must be one of {', '.join(TOP_MODES)}"),
            (self.holdout is None or 0 < self.holdout < 1, "--holdout must be a fraction between 0 and 1 (e.g. 0.5)"),
            (self.bootstrap >= 0, "--bootstrap must be 0 or more replicates"),
            (self.permutations >= 0, "--permutations must be 0 or more"),
            (0 < self.alpha < 1, "--alpha must be between 0 and 1"),
            (self.min_report_speakers >= 0, "--min-report-speakers must be 0 or more"),
            (isinstance(self.seed, int) and self.seed >= 0, "--seed must be a non-negative whole number"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        names = method_names()
        for name in self.methods or []:
            if name not in names:
                raise UsageError(f"unknown method {name!r}: choose from {', '.join(names)}")
        if self.methods and "attribute" in self.methods and not self.by:
            raise UsageError("the attribute method needs --by COLUMN")


def audit(
    data: str | Path | pd.DataFrame | UtteranceLog,
    methods: Sequence[str] | None = None,
    *,
    columns: dict[str, str] | None = None,
    embeddings: str | Path | pd.DataFrame | None = None,
    normalize: str = "default",
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
    engine: str = "pandas",
    scheduler: str | None = None,
    blocksize: int | str | None = None,
    cohorts: str | Path | dict | None = None,
    **options: object,
) -> AuditResult:
    """Audit an utterance log (path, DataFrame or UtteranceLog) and return an :class:`AuditResult`.

    ``options`` are the fields of :class:`AuditOptions` (``by``, ``min_speakers``, ``seed``, ...).
    ``engine="dask"`` reads ``data`` (a file, a directory or a glob pattern such as
    ``"logs/*.parquet"``, local or an fsspec URL) on Dask: on the cluster at ``scheduler`` (an
    address such as ``"tcp://dask-scheduler:8786"``) or on local threads; ``blocksize`` (bytes or "64MB")
    splits large uncompressed CSV/TSV files. The results equal the pandas engine's.

    ``cohorts`` (an audit report written by ``to_json``/``--json``, as a path or a dict) measures
    the log on that report's stored cohort definitions instead of discovering new ones (SPEC 9).
    """
    unknown = set(options) - set(AuditOptions.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown audit option(s): {', '.join(sorted(unknown))}")
    if isinstance(options.get("by"), str):
        options["by"] = [options["by"]]
    opts = AuditOptions(methods=list(methods) if methods is not None else None, **options)  # type: ignore[arg-type]
    opts.validate()
    log = load_log(data, columns=columns, embeddings=embeddings, normalize=normalize, engine=engine,
                   scheduler=scheduler, blocksize=blocksize)
    if engine == "dask":
        from fairaudit.engines import speaker_table_of

        speakers = speaker_table_of(log)  # built on Dask while reading
    else:
        speakers = build_speaker_table(log)
    if cohorts is not None:
        return run_stored_audit(log, speakers, opts, cohorts)
    return run_audit(log, speakers, opts, progress=progress)


def compare(
    baseline: str | Path | pd.DataFrame | UtteranceLog,
    new: str | Path | pd.DataFrame | UtteranceLog,
    *,
    cohorts: str | Path | dict | None = None,
    pairing: str = "auto",
    columns: dict[str, str] | None = None,
    embeddings: str | Path | pd.DataFrame | None = None,
    normalize: str = "default",
    **options: object,
):
    """Compare two systems on the same cohorts (SPEC 9) and return a :class:`~fairaudit.comparison.two_systems.Comparison`.

    Cohorts come from ``cohorts`` (an audit report) or are discovered on ``baseline``; both logs
    are measured on them. ``pairing``: "auto" (paired when utterance ids match), "paired" or
    "unpaired". ``embeddings`` applies to both logs (the same speakers).
    """
    from fairaudit.comparison.two_systems import cohort_report_for, compare_logs

    if pairing not in ("auto", "paired", "unpaired"):
        raise UsageError("pairing must be 'auto', 'paired' or 'unpaired'")
    if isinstance(options.get("by"), str):
        options["by"] = [options["by"]]
    unknown = set(options) - set(AuditOptions.__dataclass_fields__)
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
    opts = AuditOptions(**options)  # type: ignore[arg-type]
    opts.validate()
    if opts.holdout:
        raise UsageError("--holdout does not apply to compare: cohorts are discovered on the baseline and measured on both logs")
    before = load_log(baseline, columns=columns, embeddings=embeddings, normalize=normalize)
    after = load_log(new, columns=columns, embeddings=embeddings, normalize=normalize)
    report, where = cohort_report_for(before, cohorts, opts)
    comparison = compare_logs(before, after, report, where, opts, pairing=pairing)
    comparison.parameters = dict(asdict(opts), pairing=pairing,
                                 cohorts=None if cohorts is None or isinstance(cohorts, dict) else str(cohorts))
    comparison.version = __version__
    comparison.cohorts_from = where
    return comparison


def run_stored_audit(log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions, cohorts: str | Path | dict) -> AuditResult:
    """Measure ``speakers`` on the cohort definitions of an earlier audit report (no discovery)."""
    from fairaudit.pipeline.stored import measure_stored, read_cohort_report

    if opts.holdout:
        raise UsageError("--holdout splits speakers for discovery; with --cohorts nothing is discovered: drop one of them")
    report, where = read_cohort_report(cohorts)
    results = measure_stored(speakers, report, where, selection_rule(opts, speakers), opts)
    parameters = dict(asdict(opts), cohorts=None if isinstance(cohorts, dict) else str(cohorts))
    return _audit_result(log, speakers, opts, results, parameters, None)


def load_log(data, *, columns=None, embeddings=None, normalize="default", engine="pandas", scheduler=None,
             blocksize=None) -> UtteranceLog:
    """Turn a path, DataFrame or UtteranceLog into a validated UtteranceLog.

    With ``engine="dask"`` ``data`` is a file, directory or glob pattern and the result is a
    :class:`~fairaudit.engines.ShardedLog` that already holds its speaker table
    (``fairaudit.engines.speaker_table_of(log)``).
    """
    from fairaudit.io import readers as ingest
    from fairaudit.engines import check_engine, is_pattern

    check_engine(engine, scheduler, blocksize)
    if engine == "dask":
        if isinstance(data, (pd.DataFrame, UtteranceLog)):
            raise UsageError("engine='dask' reads files: give a path, a directory or a glob pattern such as 'logs/*.csv'")
        from fairaudit.engines.dask_engine import read_log_dask

        return read_log_dask(data, columns=columns, normalize=normalize, embeddings=embeddings,
                             scheduler=scheduler, blocksize=blocksize)
    if isinstance(data, UtteranceLog):
        return data
    if isinstance(data, (str, Path)) and is_pattern(data) and not Path(data).exists():
        import glob

        if not glob.glob(str(data)):
            raise InputError("no such file (and, read as a pattern of file names, it matches none)", file=str(data))
        raise UsageError(f"{data} is a pattern of many files; read it with --engine dask (engine='dask')")
    if isinstance(data, pd.DataFrame):
        return ingest.log_from_frame(data, columns=columns, normalize=normalize, embeddings=embeddings)
    return ingest.read_log(data, columns=columns, normalize=normalize, embeddings=embeddings)


def load_demographics_option(path: str | None):
    """The --demographics table and its source line, or (None, None) for the built-in table."""
    if not path:
        return None, None
    from fairaudit.io.readers import read_demographics

    return read_demographics(path), f"user demographics table {Path(path).name}"


def build_methods(opts: AuditOptions, speakers: SpeakerTable) -> list[CohortMethod]:
    """Instantiate the requested methods; without a request, every method the data supports."""
    requested = opts.methods
    classes = method_classes()
    names = list(dict.fromkeys(requested)) if requested else [n for n, c in classes.items() if c.runs_by_default or n == "attribute"]
    chosen: list[CohortMethod] = []
    for name in names:
        for method in classes[name].from_options(opts):
            missing = method.check_requirements(speakers)
            if missing and (requested or not classes[name].runs_by_default):  # asked for (--method, --by)
                raise UsageError(f"method {name} needs {', '.join(missing)}, which the log does not have")
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
        return f"attribute:{','.join(method.by)}"
    return method.name


def run_audit(log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions, *, progress=None, stage=None) -> AuditResult:
    """Discover, measure and judge every method on a built speaker table.

    ``stage(name)``, if given, returns a context manager wrapped around each stage (method fit,
    permutation test, bootstrap, hold-out): the benchmarks use it to time them.
    """
    stage = stage or (lambda name: nullcontext())
    discovery_pos, holdout_pos = split_speakers(len(speakers), opts.holdout, opts.seed)
    discovery = speakers.subset(discovery_pos) if holdout_pos is not None else speakers
    rule = selection_rule(opts, discovery)
    held_out = speakers.subset(holdout_pos) if holdout_pos is not None else None
    methods = build_methods(opts, speakers)
    n_attribute = sum(isinstance(m, AttributeGroups) for m in methods)

    # 1. Discovery and the search-aware permutation test, method by method.
    keys = [method_key(method, n_attribute) for method in methods]
    for key, method in zip(keys, methods):
        with stage(f"{key}: fit"):
            method.fit(discovery)
    unassign_exposing_speakers([method.partition_ for method in methods], opts.min_report_speakers)
    found = []
    for key, method in zip(keys, methods):
        rng = np.random.default_rng([opts.seed, zlib.crc32(key.encode())])
        partition = method.partition_
        selection = discover_selection(partition, discovery, rule)
        observed = fixed_partition_statistic(partition, discovery.errors[None, :], discovery.ref_words[None, :], rule)[0]
        p_value = None
        if opts.permutations > 0 and np.isfinite(observed) and bool(selection.bottom.any()):  # a cohort was chosen
            tick = progress(f"{key}: permutation test", opts.permutations) if progress else None
            with stage(f"{key}: permutations"):
                blocks = permutation_blocks(partition.assigned, len(discovery), opts.permutations, rng)
                null = _null_gaps(method, discovery, blocks, rule, tick)
            p_value = permutation_p_value(float(observed), null)
        found.append((key, method, rng, partition, selection, p_value))

    # 2. One speaker bootstrap shared by every method (the same resampled speakers for all).
    boot_rng = np.random.default_rng([opts.seed, 0xB007])
    tick = progress("bootstrap (all methods)", opts.bootstrap) if progress and opts.bootstrap else None
    with stage("bootstrap (all methods)"):
        boots = bootstrap_partitions(
            [(partition.indicator(), selection) for _, _, _, partition, selection, _ in found],
            discovery.errors, discovery.ref_words, opts.bootstrap, boot_rng, tick,
        )

    # 3. Figures, the hold-out re-measurement and verdicts.
    results: dict[str, MethodResult] = {}
    assignment_frames = []
    held_designs = []
    for (key, method, rng, partition, selection, p_value), boot in zip(found, boots):
        with stage(f"{key}: measure"):
            figures = measure(
                partition, discovery, selection, rule,
                bootstrap=opts.bootstrap, rng=rng, min_report_speakers=opts.min_report_speakers,
                p_value=p_value, cohort_p_values=isinstance(method, AttributeGroups),
                permutations=opts.permutations, boot=boot,
            )
        results[key] = MethodResult(
            key, partition, figures, "", "", None, top_mode=opts.top, min_report_speakers=opts.min_report_speakers,
            definition=method.definition(),
        )
        assignment_frames.append(_assignments(key, method.assign(speakers) if held_out is not None else partition, speakers, figures.bottom))
    if held_out is not None:
        held_partitions = [method.assign(held_out) for _, method, *_ in found]
        unassign_exposing_speakers(held_partitions, opts.min_report_speakers)
        for held_partition, (key, *_) in zip(held_partitions, found):
            figures = results[key].discovery
            sizes = np.bincount(held_partition.labels[held_partition.assigned], minlength=held_partition.n_cohorts)
            held_designs.append((held_partition, selection_from_ids(held_partition, figures.bottom, figures.top, opts.top, sizes)))

    if held_out is not None:
        with stage("hold-out (all methods)"):
            held_boots = bootstrap_partitions(
                [(part.indicator(), sel) for part, sel in held_designs],
                held_out.errors, held_out.ref_words, opts.bootstrap, np.random.default_rng([opts.seed, 0x401D]),
            )
            for (key, method, rng, *_), (held_partition, held_selection), boot in zip(found, held_designs, held_boots):
                held = measure(
                    held_partition, held_out, held_selection, rule,
                    bootstrap=opts.bootstrap, rng=rng, min_report_speakers=opts.min_report_speakers, p_value=None,
                    cohort_p_values=isinstance(method, AttributeGroups), permutations=opts.permutations, boot=boot,
                )
                held.p_value = fixed_selection_p_value(held_partition, held_out, held_selection, held.wer_gap_pct, opts.permutations, rng)
                results[key].holdout = held
    suppress_nested_attributes(results)
    for result in results.values():
        result.verdict, result.verdict_reason = judge(result.discovery, result.holdout, rule, opts)

    return _audit_result(log, speakers, opts, results, asdict(opts),
                         pd.concat(assignment_frames, ignore_index=True) if assignment_frames else None)


def _audit_result(log: UtteranceLog, speakers: SpeakerTable, opts: AuditOptions, results: dict, parameters: dict,
                  assignments: pd.DataFrame | None) -> AuditResult:
    """The AuditResult of one run: results per method plus provenance."""
    if assignments is None:
        assignments = pd.concat([_assignments(key, r.partition, speakers, r.discovery.bottom) for key, r in results.items()],
                                ignore_index=True) if results else None
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


#: --bottom auto: a cell joins the bottom cohort only if it adds more than CELL_PENALTY x 2 ln(K)
#: times the speaker dispersion to the size-weighted gain (a random cell adds 1x on average; the
#: 2 ln K of the risk-inflation criterion allows for the worst cells being the largest of K).
CELL_PENALTY = 1.0


def selection_rule(opts: AuditOptions, speakers: SpeakerTable | None = None) -> SelectionRule:
    """How every method's bottom and top cohorts are chosen from its cells (SPEC 5); the price
    of a cell in ``--bottom auto`` comes from the discovery speakers' dispersion."""
    penalty = CELL_PENALTY * speaker_dispersion(speakers.errors, speakers.ref_words) if speakers is not None else 0.0
    return SelectionRule(
        min_speakers=max(opts.min_speakers, opts.min_report_speakers),
        bottom=opts.bottom,  # type: ignore[arg-type]
        bottom_share=opts.bottom_share,
        max_bottom_share=opts.max_bottom_share,
        cell_penalty=penalty,
        top=opts.top,  # type: ignore[arg-type]
    )


def _null_gaps(method: CohortMethod, speakers: SpeakerTable, blocks, rule: SelectionRule, tick) -> np.ndarray:
    """The method's null statistics, block by block (bounded memory; the progress bar moves)."""
    parts = []
    for block in blocks:
        parts.append(method.null_gaps(speakers, block, rule))
        if tick:
            tick(len(block))
    return np.concatenate(parts) if parts else np.empty(0)


def split_speakers(n: int, holdout: float | None, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions of discovery and held-out speakers (a seeded random split), sorted."""
    if not holdout:
        return np.arange(n), None
    rng = np.random.default_rng([seed, 0x401D0])
    shuffled = rng.permutation(n)
    n_holdout = int(round(holdout * n))
    if n_holdout < 1 or n_holdout > n - 1:
        raise UsageError(f"--holdout {holdout:g} of {n:,} speakers holds out {n_holdout:,}: both parts need speakers; "
                         f"use a fraction between {1 / n:.3g} and {1 - 1 / n:.3g} (0.5 is usual)")
    return np.sort(shuffled[n_holdout:]), np.sort(shuffled[:n_holdout])


def judge(figures, held, rule: SelectionRule, opts: AuditOptions) -> tuple[str, str]:
    """Verdict per method (SPEC 5): disparity, no evidence, or insufficient data."""
    if not figures.bottom or not figures.top or figures.wer_gap_pct is None:
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
    return "no evidence", f"{where} p-value {p:.3g} >= {opts.alpha:g}"


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
