"""The ``fairaudit`` command line (SPEC 7). Exit codes: 0 success, 1 gate failed, 2 bad input/usage."""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional, Protocol, TypeGuard

import typer
from rich.console import Console

from fairaudit.errors import InputError, UsageError
from fairaudit.io.outputs import is_same_file, write_atomically
from fairaudit.options import AuditOptions
from fairaudit.text.normalizations import NORMALIZATION_DESCRIPTIONS, NORMALIZATIONS


class _PlainHelpCommand(typer.core.TyperCommand):
    """A typer command whose help reads like other Unix tools: ``fairaudit audit [OPTIONS] LOG``.

    typer writes required arguments as ``{LOG}`` (braces read as a set) and types a ``str`` argument
    ``<str>``; every argument naming a log or report here is a file path, a glob pattern or a URL,
    shown as ``<path>`` whether it is declared ``Path`` or (to keep ``s3://`` intact) ``str``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if isinstance(param, typer.core.TyperArgument) and "LOG" in (param.metavar or ""):
                param.display_type_rich = lambda ctx: "<path>"  # type: ignore[method-assign]

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece for piece in pieces]


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Audit a speech recogniser for fairness: find the speaker cohorts with the highest word error rate (WER).",
)
err_console = Console(stderr=True)


def _show_version(value: bool) -> None:
    """--version: print the version and stop."""
    if value:
        from fairaudit.version import __version__

        typer.echo(f"fairaudit {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the fairaudit version and exit."
    ),
) -> None:
    """Audit a speech recogniser for fairness: find the speaker cohorts with the highest word error rate (WER)."""


def audit_option(name: str, *aliases: str, prefix: str = "") -> Any:
    """The typer option of an audit setting: flag, metavar and help come from :class:`AuditOptions`;
    the default is None so that the configuration file and then the model's default apply."""
    info = AuditOptions.field_info(name)
    text = info["help"] if not prefix else info["help"][0].lower() + info["help"][1:]
    return typer.Option(None, info["flag"], *aliases, metavar=info["metavar"], help=prefix + text)


METHOD_HELP = AuditOptions.field_info("methods")["help"]


def parse_columns(pairs: list[str] | None) -> dict[str, str]:
    """--column canonical=actual pairs -> {canonical: actual}."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        canonical, sep, actual = pair.partition("=")
        if not sep or not canonical.strip() or not actual.strip():
            raise UsageError(f"--column takes canonical=actual (e.g. speaker_id=client_id), not {pair!r}")
        mapping[canonical.strip()] = actual.strip()
    return mapping


def _check_output(path: Path | None, inputs: list[Path | None]) -> None:
    """Refuse to write an output over an input file, into a missing directory or onto a directory."""
    if path is None:
        return
    path = Path(path)
    for source in inputs:
        if source is not None and path.exists() and is_same_file(path, source):
            raise UsageError(f"refusing to overwrite the input file {source} with an output (the same file)")
    if path.is_dir():
        raise UsageError(f"the output {path} is a directory; give a file name")
    if not path.resolve().parent.is_dir():
        raise UsageError(f"can not write {path}: the directory {path.resolve().parent} does not exist")


def _config_file() -> Path | None:
    """The configuration file the working directory provides (an input no output may replace)."""
    from fairaudit.io.config_file import find_config

    return find_config()[1]


def _check_outputs(outputs: list[Path | None], inputs: list[Path | None]) -> None:
    """Every output checked against the inputs, and no two outputs on the same file."""
    seen: dict[Path, Path] = {}
    for out in outputs:
        if out is None:
            continue
        _check_output(out, inputs)
        key = Path(out).resolve()
        if key in seen:
            raise UsageError(f"two outputs would write the same file {out}")
        seen[key] = out


def _stdout_console(plain: bool = False) -> Console:
    """The console for results. Piped or redirected (CI logs, files): each line stays one line and
    tables keep their natural width instead of being wrapped and squeezed to 80 columns.

    ``plain``: the text holds user strings (paths, column names) that must never be read as rich
    markup or emoji codes (a path like ``runs[/red]/log.csv`` would otherwise crash the print).
    """
    options: dict[str, Any] = {"markup": False, "emoji": False} if plain else {"emoji": False}
    console = _ResultConsole(**options)
    return console if console.is_terminal else _ResultConsole(soft_wrap=True, **options)


class _ResultConsole(Console):
    """A stdout console whose reader may stop reading (``fairaudit audit LOG | head``).

    rich's default turns a closed pipe into exit code 1, which here means "gate failed"; the work is
    done by the time results are printed, so stop printing quietly and exit 0 instead.
    """

    def on_broken_pipe(self) -> None:
        self.quiet = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # pragma: no cover - stdout without a file descriptor
            pass
        raise typer.Exit(0)


@contextmanager
def _writing(path: Path):
    """Turn an operating-system error while writing an output into a one-line error (exit 2)."""
    try:
        yield
    except OSError as error:
        raise InputError(f"can not write this output: {error.strerror or error}", file=str(path)) from None


@contextmanager
def _progress_bars(enabled: bool):
    """A rich progress bar factory for the bootstrap and permutation loops (stderr only)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bars:

        def factory(description: str, total: int):
            task = bars.add_task(description, total=total)
            return lambda done: bars.advance(task, done)

        yield factory


def _log_argument(log: str, engine: str) -> tuple[str | Path, list[Path]]:
    """LOG as the engine takes it (a Path for pandas; the text as given for Dask: a glob or a URL),
    and the local input files it names (outputs must not overwrite them)."""
    from fairaudit.engines import check_engine

    check_engine(engine)
    if engine == "pandas":
        return Path(log), [Path(log)]
    if "://" in log and not log.startswith("file://"):
        return log, []
    from fairaudit.engines.dask_engine import expand_inputs

    return log, [Path(f) for f in expand_inputs(log)]


def _audit_result(
    log: str,
    cli_values: dict,
    column,
    embeddings,
    normalize,
    outputs: list[Path | None],
    quiet: bool,
    engine: str = "pandas",
    scheduler: str | None = None,
    blocksize: str | None = None,
    cohorts: Path | None = None,
    config_file: Path | None = None,
    reference: Path | None = None,
    speaker_pattern: str | None = None,
):
    """Merge config and command-line options, read the log and run the audit (audit and gate)."""
    from fairaudit.api import load_log
    from fairaudit.engines import check_engine, speaker_table_of
    from fairaudit.io.config_file import AUDIT_KINDS, check_section, find_config, merge_configs, read_config_file
    from fairaudit.options import AuditOptions
    from fairaudit.pipeline.audit import run_audit, run_stored_audit

    check_engine(engine, scheduler, blocksize)
    log_arg, log_files = _log_argument(log, engine)

    config, config_path = find_config()
    if config_file is not None:  # --policy FILE: its audit keys apply, over the working directory's
        extra, extra_path = read_config_file(config_file)
        if extra:
            config = merge_configs(config, extra)
            config_path = extra_path
    fields = set(AuditOptions.names())
    settings = check_section(config, "audit", AUDIT_KINDS, config_path)
    if "method" in settings and "methods" not in settings:
        settings["methods"] = settings.pop("method")
    merged = {k: v for k, v in settings.items() if k in fields}
    merged.update({k: v for k, v in cli_values.items() if v is not None})
    for key in ("methods", "by"):
        if isinstance(merged.get(key), str):
            merged[key] = [merged[key]]
        if merged.get(key):
            merged[key] = list(dict.fromkeys(merged[key]))  # "--by accent --by accent" is one attribute audit
    if isinstance(merged.get("min_gain"), str) and merged["min_gain"] != "auto":
        try:
            merged["min_gain"] = float(merged["min_gain"])
        except ValueError:
            raise UsageError(
                f"--min-gain must be 'auto' or a non-negative number, not {merged['min_gain']!r}"
            ) from None
    opts = AuditOptions(**merged)
    columns = dict(settings.get("columns") or {})
    config_column = settings.get("column")
    columns.update(parse_columns([config_column] if isinstance(config_column, str) else config_column))
    columns.update(parse_columns(column))
    embeddings_file = embeddings or (Path(settings["embeddings"]) if settings.get("embeddings") else None)
    demographics_file = Path(opts.demographics) if opts.demographics else None
    _check_outputs(
        outputs, [*log_files, embeddings_file, demographics_file, cohorts, config_path, config_file, reference]
    )

    data = load_log(
        log_arg,
        columns=columns,
        embeddings=embeddings_file,
        normalize=normalize or settings.get("normalize", "default"),
        engine=engine,
        scheduler=scheduler,
        blocksize=blocksize,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    speakers = speaker_table_of(data)
    if cohorts is not None:
        return run_stored_audit(data, speakers, opts, cohorts)
    with _progress_bars(err_console.is_terminal and not quiet) as bars:
        return run_audit(data, speakers, opts, progress=bars)


def _gate_comparison(source: str, baseline: Path, before: dict | None, result, column, embeddings, policy):
    """The change of every figure on the baseline's cohorts: paired against a baseline log, or
    against a baseline audit report by re-measuring the new log on its stored cohorts."""
    import fairaudit
    from fairaudit.gate.judge import comparison_from_reports

    parameters = {
        k: v
        for k, v in result.parameters.items()
        if k
        in (
            "methods",
            "by",
            "min_speakers",
            "min_report_speakers",
            "bootstrap",
            "seed",
            "alpha",
            "bottom",
            "bottom_share",
            "max_bottom_share",
            "top",
            "clusters",
            "max_regions",
            "min_gain",
            "max_window_share",
            "demographics",
        )
    }
    if before is None:
        comparison = fairaudit.compare(
            str(baseline), source, columns=parse_columns(column), embeddings=embeddings, **parameters
        )
        return comparison.to_dict()
    stored = fairaudit.audit(
        source,
        columns=parse_columns(column),
        embeddings=embeddings,
        cohorts=str(baseline),
        **{k: v for k, v in parameters.items() if k != "methods"},
    )
    return comparison_from_reports(before, json.loads(stored.to_json()))


def _write_reports(result, json_out=None, assignments=None, html=None, markdown=None) -> None:
    """Write the requested report files (before any terminal output: `| head` must not lose them)."""
    if json_out:
        with _writing(json_out):
            write_atomically(json_out, result.to_json())
    if assignments:
        from fairaudit.render.assignments import write_assignments

        with _writing(assignments):
            write_assignments(result, assignments)
    if html:
        from fairaudit.render.html import render_html

        with _writing(html):
            write_atomically(html, render_html(result))
    if markdown:
        from fairaudit.render.markdown import render_markdown

        with _writing(markdown):
            write_atomically(markdown, render_markdown(result))


LOG_HELP = (
    "Utterance log: .csv, .tsv, .csv.gz or .parquet (one row per utterance), a NeMo manifest (.json or .jsonl: "
    "text, pred_text, audio_filepath, speaker) or a Kaldi data directory (text, utt2spk and the hypotheses in hyp). "
    "With --engine dask also a directory or a glob pattern of CSV/Parquet files, quoted ('logs/*.parquet'), local "
    "or a URL (s3://...)."
)
REFERENCE_HELP = (
    "With a NIST trn LOG (hypotheses, lines 'words ... (utterance-id)'): the reference trn of the same utterances."
)
SPEAKER_PATTERN_HELP = (
    "With trn files: regular expression whose first group is the speaker in each utterance id. Default: the "
    "part before the first - or _ ('^(.+?)[-_]'). An id it does not match is an error, never a lost speaker."
)
#: Shared by audit, compare and validate (a trn hypothesis file needs its reference).
REFERENCE_OPTION = typer.Option(None, "--reference", metavar="REF.trn", help=REFERENCE_HELP)
SPEAKER_PATTERN_OPTION = typer.Option(None, "--speaker-pattern", metavar="REGEX", help=SPEAKER_PATTERN_HELP)
ENGINE_HELP = (
    "pandas (default): read the log into memory. dask: read and aggregate it on Dask, for logs that do not "
    "fit in memory or are many files; same results."
)
SCHEDULER_HELP = (
    "With --engine dask: address of a running Dask scheduler (e.g. tcp://dask-scheduler:8786). Default: local threads."
)
BLOCKSIZE_HELP = (
    "With --engine dask: split uncompressed CSV/TSV files into blocks of about this size (e.g. 64MB; default 128MB; "
    "0 = one block per file, needed if quoted values hold line breaks)."
)


NORMALIZE_METAVAR = "|".join(NORMALIZATIONS)
NORMALIZE_HELP = (
    "Text normalisation of reference and hypothesis before scoring: "
    + "; ".join(f"'{name}' ({what})" for name, what in NORMALIZATION_DESCRIPTIONS.items())
    + ". Recorded in the report."
)


COHORTS_HELP = (
    "Measure the log on the cohorts stored in an earlier audit report (written by --json) instead of discovering "
    "new ones: the same regions, windows, census rule, clusters or groups, and the same bottom and top cohorts; "
    "p-values are then for fixed cohorts. Use it to compare two models on the same cohorts."
)


def _clusters_value(text: str | None) -> int | str | None:
    """--clusters: 'auto' or a whole number."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--clusters takes 'auto' or a whole number, not {text!r}") from None


@app.command(cls=_PlainHelpCommand)
def audit(
    log: str = typer.Argument(..., metavar="LOG", help=LOG_HELP),
    method: Optional[list[str]] = audit_option("methods", "-m"),
    by: Optional[list[str]] = audit_option("by"),
    column: Optional[list[str]] = typer.Option(
        None,
        "--column",
        metavar="CANONICAL=ACTUAL",
        help="Rename a column: canonical=actual, e.g. speaker_id=client_id (repeatable).",
    ),
    embeddings: Optional[Path] = typer.Option(
        None,
        "--embeddings",
        metavar="FILE",
        help="Embeddings file (.parquet, .csv, or .npy with a .ids.txt sidecar) keyed by speaker_id or utterance_id.",
    ),
    normalize: Optional[str] = typer.Option(None, "--normalize", metavar=NORMALIZE_METAVAR, help=NORMALIZE_HELP),
    min_speakers: Optional[int] = audit_option("min_speakers"),
    max_regions: Optional[int] = audit_option("max_regions"),
    min_gain: Optional[str] = audit_option("min_gain"),
    clusters: Optional[str] = audit_option("clusters"),
    max_window_share: Optional[float] = audit_option("max_window_share"),
    bottom: Optional[str] = audit_option("bottom"),
    bottom_share: Optional[float] = audit_option("bottom_share"),
    max_bottom_share: Optional[float] = audit_option("max_bottom_share"),
    top: Optional[str] = audit_option("top"),
    demographics: Optional[Path] = audit_option("demographics"),
    holdout: Optional[float] = audit_option("holdout"),
    bootstrap: Optional[int] = audit_option("bootstrap"),
    permutations: Optional[int] = audit_option("permutations"),
    alpha: Optional[float] = audit_option("alpha"),
    min_report_speakers: Optional[int] = audit_option("min_report_speakers"),
    adjust: Optional[list[str]] = audit_option("adjust"),
    target_gap: Optional[float] = audit_option("target_gap"),
    seed: Optional[int] = audit_option("seed"),
    json_out: Optional[Path] = typer.Option(
        None, "--json", metavar="FILE", help="Write the audit report as JSON (schema: fairaudit schema audit_report)."
    ),
    html: Optional[Path] = typer.Option(
        None, "--html", metavar="FILE", help="Write the self-contained HTML report (no network needed to view it)."
    ),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", metavar="FILE", help="Write a short Markdown summary for a pull-request comment."
    ),
    assignments: Optional[Path] = typer.Option(
        None,
        "--assignments",
        metavar="FILE",
        help=(
            "Write speaker -> cohort per method as CSV (method, speaker_id, cohort_id, cohort, bottom). "
            "Contains speaker ids."
        ),
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the tables to the terminal."),
    engine: str = typer.Option("pandas", "--engine", metavar="pandas|dask", help=ENGINE_HELP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP),
    blocksize: Optional[str] = typer.Option(None, "--blocksize", metavar="SIZE", help=BLOCKSIZE_HELP),
    cohorts: Optional[Path] = typer.Option(None, "--cohorts", metavar="AUDIT_JSON", help=COHORTS_HELP),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="REF.trn", help=REFERENCE_HELP),
    speaker_pattern: Optional[str] = typer.Option(
        None, "--speaker-pattern", metavar="REGEX", help=SPEAKER_PATTERN_HELP
    ),
) -> None:
    """Find the speaker cohorts with the highest WER and report WER gap, bottom-cohort share and verdicts."""
    from fairaudit.render.terminal import print_audit

    cli_values = {
        "methods": method or None,
        "by": by or None,
        "min_speakers": min_speakers,
        "max_regions": max_regions,
        "min_gain": min_gain,
        "clusters": _clusters_value(clusters),
        "max_window_share": max_window_share,
        "bottom": bottom,
        "bottom_share": bottom_share,
        "max_bottom_share": max_bottom_share,
        "top": top,
        "demographics": str(demographics) if demographics else None,
        "holdout": holdout,
        "bootstrap": bootstrap,
        "permutations": permutations,
        "alpha": alpha,
        "min_report_speakers": min_report_speakers,
        "seed": seed,
        "adjust": adjust or None,
        "target_gap": target_gap,
    }
    result = _audit_result(
        log,
        cli_values,
        column,
        embeddings,
        normalize,
        [json_out, assignments, html, markdown],
        quiet,
        engine=engine,
        scheduler=scheduler,
        blocksize=blocksize,
        cohorts=cohorts,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    _write_reports(result, json_out, assignments, html, markdown)
    if not quiet:
        print_audit(result, _stdout_console())


@app.command(cls=_PlainHelpCommand)
def compare(
    baseline: Path = typer.Argument(
        ..., metavar="BASELINE_LOG", help="Utterance log of the released (baseline) model."
    ),
    new: Path = typer.Argument(
        ..., metavar="NEW_LOG", help="Utterance log of the new model, ideally on the same utterances."
    ),
    cohorts: Optional[Path] = typer.Option(
        None,
        "--cohorts",
        metavar="AUDIT_JSON",
        help="Cohorts stored in an audit report (--json). Default: discovered on BASELINE_LOG.",
    ),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", metavar="NAME", help=METHOD_HELP),
    by: Optional[list[str]] = typer.Option(
        None, "--by", metavar="COLUMN", help="Metadata column(s) for the attribute method (repeatable)."
    ),
    column: Optional[list[str]] = typer.Option(
        None,
        "--column",
        metavar="CANONICAL=ACTUAL",
        help="Rename a column in both logs: canonical=actual (repeatable).",
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", metavar="FILE", help="Speaker embeddings for both logs (same speakers)."
    ),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="REF.trn", help=REFERENCE_HELP),
    speaker_pattern: Optional[str] = typer.Option(
        None, "--speaker-pattern", metavar="REGEX", help=SPEAKER_PATTERN_HELP
    ),
    pairing: str = typer.Option(
        "auto",
        "--pairing",
        metavar="auto|paired|unpaired",
        help=(
            "auto (default): paired when the logs share utterance_ids (one speaker bootstrap for both, "
            "narrower intervals); unpaired: independent bootstraps."
        ),
    ),
    bootstrap: int = typer.Option(
        1000,
        "--bootstrap",
        metavar="N",
        help="Speaker bootstrap replicates for the 95% intervals of each change. Default 1000.",
    ),
    min_report_speakers: int = typer.Option(
        10, "--min-report-speakers", metavar="N", help="Cohorts with fewer speakers are suppressed. Default 10."
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Random seed. Default 0."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", metavar="FILE", help="Write the comparison as JSON (schema: fairaudit schema compare_report)."
    ),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", metavar="FILE", help="Write a Markdown pull-request comment."
    ),
    html: Optional[Path] = typer.Option(
        None, "--html", metavar="FILE", help="Write the self-contained HTML comparison (no network needed to view it)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the tables."),
) -> None:
    """Compare two models on the same cohorts: each cohort's WER before and after, the change with a paired
    95% interval, and a verdict (worse, better, no evidence)."""
    import fairaudit
    from fairaudit.render.comparison import comparison_html, comparison_markdown, print_comparison

    _check_outputs([json_out, markdown, html], [baseline, new, cohorts, embeddings, reference])
    comparison = fairaudit.compare(
        str(baseline),
        str(new),
        cohorts=cohorts,
        pairing=pairing,
        columns=parse_columns(column),
        embeddings=embeddings,
        reference=reference,
        speaker_pattern=speaker_pattern,
        methods=list(method) if method else None,
        by=list(by or []),
        bootstrap=bootstrap,
        min_report_speakers=min_report_speakers,
        seed=seed,
    )
    data = comparison.to_dict()
    if json_out:
        with _writing(json_out):
            write_atomically(json_out, comparison.to_json())
    if markdown:
        with _writing(markdown):
            write_atomically(markdown, comparison_markdown(data))
    if html:
        with _writing(html):
            write_atomically(html, comparison_html(data))
    if not quiet:
        print_comparison(data, _stdout_console())


@app.command(cls=_PlainHelpCommand)
def gate(
    source: str = typer.Argument(
        ...,
        metavar="LOG_OR_AUDIT_JSON",
        help=(
            "An utterance log (audited now, with the options of [tool.fairaudit]; with --engine dask also a "
            "directory or glob pattern) or an audit report written by `fairaudit audit --json`."
        ),
    ),
    policy: Optional[Path] = typer.Option(
        None,
        "--policy",
        metavar="FILE",
        help=(
            "Gate policy TOML (a [gate] table). "
            "Default: [gate] in fairaudit.toml or [tool.fairaudit.gate] in pyproject.toml."
        ),
    ),
    baseline: Optional[Path] = typer.Option(
        None,
        "--baseline",
        metavar="LOG_OR_AUDIT_JSON",
        help=(
            "The last released model, for the regression rules: its audit report (--json; the new log is "
            "re-measured on its cohorts) or its log (paired when the logs share utterances)."
        ),
    ),
    junit: Optional[Path] = typer.Option(
        None,
        "--junit",
        metavar="FILE",
        help="Write JUnit XML: one test case per rule and method, failures carrying the figures.",
    ),
    markdown: Optional[Path] = typer.Option(
        None, "--markdown", metavar="FILE", help="Write the gate result as a Markdown pull-request comment."
    ),
    json_out: Optional[Path] = typer.Option(
        None,
        "--json",
        metavar="FILE",
        help="When auditing a log: also write its audit report as JSON (use it as the next --baseline).",
    ),
    html: Optional[Path] = typer.Option(
        None, "--html", metavar="FILE", help="When auditing a log: also write the HTML report."
    ),
    method: Optional[list[str]] = audit_option("methods", "-m", prefix="When auditing a log: "),
    by: Optional[list[str]] = audit_option("by", prefix="When auditing a log: "),
    column: Optional[list[str]] = typer.Option(
        None,
        "--column",
        metavar="CANONICAL=ACTUAL",
        help="When auditing a log: rename a column, canonical=actual (repeatable).",
    ),
    embeddings: Optional[Path] = typer.Option(
        None,
        "--embeddings",
        metavar="FILE",
        help="When auditing a log: embeddings file keyed by speaker_id or utterance_id.",
    ),
    holdout: Optional[float] = audit_option("holdout", prefix="When auditing a log: "),
    seed: Optional[int] = audit_option("seed", prefix="When auditing a log: "),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the gate table to the terminal."),
    engine: str = typer.Option("pandas", "--engine", metavar="pandas|dask", help="When auditing a log: " + ENGINE_HELP),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP),
    blocksize: Optional[str] = typer.Option(None, "--blocksize", metavar="SIZE", help=BLOCKSIZE_HELP),
) -> None:
    """Fail a CI build (exit 1) when an audit breaks the policy; exit 0 on pass or warnings, 2 on bad input."""
    from fairaudit.gate.judge import read_report, run_gate
    from fairaudit.gate.policy import has_rules, load_policy
    from fairaudit.render.gate_report import gate_markdown, junit_xml, print_gate

    rules = load_policy(policy)
    if not has_rules(rules):
        raise UsageError(
            "the gate has no rules, so it would pass anything: add rules such as max-wer-gap-pct = 40 to [gate] in "
            "fairaudit.toml (or [tool.fairaudit.gate] in pyproject.toml), "
            "or give --policy FILE (see examples/ci/fairaudit.toml)"
        )
    baseline_is_report = baseline is not None and baseline.suffix.lower() == ".json"
    before = read_report(baseline) if baseline is not None and baseline_is_report else None
    comparison = None
    if Path(source).suffix.lower() == ".json" and "://" not in source:
        if json_out or html:
            raise UsageError("--json and --html need a log to audit; the input is already an audit report")
        if baseline is not None and not baseline_is_report:
            raise UsageError("a baseline log needs the new log too: gate the new log, not its audit report")
        report = read_report(Path(source))
        _check_outputs([junit, markdown], [Path(source), baseline, policy, _config_file()])
    else:
        cli_values = {"methods": method or None, "by": by or None, "holdout": holdout, "seed": seed}
        _check_outputs([junit, markdown, json_out, html], [baseline, policy, _config_file()])
        result = _audit_result(
            source,
            cli_values,
            column,
            embeddings,
            None,
            [junit, markdown, json_out, html],
            quiet,
            engine=engine,
            scheduler=scheduler,
            blocksize=blocksize,
            config_file=policy,
        )
        _write_reports(result, json_out=json_out, html=html)
        report = json.loads(result.to_json())
        if baseline is not None:
            comparison = _gate_comparison(source, baseline, before, result, column, embeddings, policy)
    outcome = run_gate(report, rules, before, comparison)
    if junit:
        with _writing(junit):
            write_atomically(junit, junit_xml(outcome, report))
    if markdown:
        with _writing(markdown):
            write_atomically(markdown, gate_markdown(outcome, report))
    if not quiet:
        print_gate(outcome, _stdout_console())
    else:  # -q: no table, but the outcome is never silent
        typer.echo(f"gate: {outcome.outcome.upper()} (exit code {outcome.exit_code})")
    raise typer.Exit(outcome.exit_code)


@app.command(cls=_PlainHelpCommand)
def validate(
    log: Path = typer.Argument(..., metavar="LOG", help="Utterance log to check."),
    column: Optional[list[str]] = typer.Option(
        None, "--column", metavar="CANONICAL=ACTUAL", help="Rename a column: canonical=actual (repeatable)."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", metavar="FILE", help="Embeddings file to check with the log."
    ),
    normalize: str = typer.Option("default", "--normalize", metavar=NORMALIZE_METAVAR, help=NORMALIZE_HELP),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="REF.trn", help=REFERENCE_HELP),
    speaker_pattern: Optional[str] = typer.Option(
        None, "--speaker-pattern", metavar="REGEX", help=SPEAKER_PATTERN_HELP
    ),
) -> None:
    """Check a log against the schema and sanity rules without auditing; exit 2 on the first problem."""
    from fairaudit.api import load_log
    from fairaudit.engines.speaker_table import build_speaker_table

    data = load_log(
        log,
        columns=parse_columns(column),
        embeddings=embeddings,
        normalize=normalize,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    speakers = build_speaker_table(data)
    console = _stdout_console(plain=True)
    console.print(
        f"{log}: valid. {data.n_utterances:,} utterances, {len(speakers):,} speakers, "
        f"error counts from the '{data.error_form}' form."
    )
    total_words = int(speakers.ref_words.sum())
    overall = speakers.errors.sum() / total_words if total_words else float("nan")
    console.print(
        f"Overall pooled WER {100 * overall:.2f}% "
        f"({int(speakers.errors.sum()):,} errors / {total_words:,} reference words)."
    )
    if data.metadata_columns:
        console.print("Metadata columns: " + ", ".join(data.metadata_columns))
    if speakers.embeddings is not None:
        console.print(f"Embeddings: {speakers.embeddings.shape[1]} dimensions.")
    for note in data.notes:
        console.print(f"note: {note}")
    conflicts = {k: v for k, v in speakers.conflicts.items() if v}
    if conflicts:
        console.print(
            "Speakers with conflicting metadata (the most frequent value is used): "
            + ", ".join(f"{k}: {v:,}" for k, v in conflicts.items())
        )


@app.command(cls=_PlainHelpCommand)
def score(
    log: Path = typer.Argument(..., metavar="LOG", help="Log with reference and hypothesis text columns."),
    out: Path = typer.Option(
        ..., "--output", "-o", metavar="FILE", help="Where to write the scored log (.csv, .tsv, .csv.gz or .parquet)."
    ),
    column: Optional[list[str]] = typer.Option(
        None,
        "--column",
        metavar="CANONICAL=ACTUAL",
        help="Rename a column: canonical=actual, e.g. reference=sentence (repeatable).",
    ),
    normalize: str = typer.Option("default", "--normalize", metavar=NORMALIZE_METAVAR, help=NORMALIZE_HELP),
) -> None:
    """Score reference/hypothesis text with jiwer: add substitutions, deletions, insertions, ref_words and errors."""
    from fairaudit.io.scored_log import score_log_file

    _check_output(out, [log])
    rows = score_log_file(log, out, columns=parse_columns(column), normalize=normalize)
    _stdout_console(plain=True).print(f"Scored {rows:,} utterances -> {out}")


@app.command(cls=_PlainHelpCommand)
def synth(
    out: Optional[Path] = typer.Option(
        None,
        "--output",
        "-o",
        metavar="FILE",
        help=(
            "Log file to write (.csv, .csv.gz, .tsv or .parquet); ground truth goes to <stem>.truth.json beside it. "
            "Required unless --plant list."
        ),
    ),
    speakers: int = typer.Option(2000, "--speakers", metavar="N", help="Number of speakers."),
    effect: float = typer.Option(
        0.3,
        "--effect",
        metavar="X",
        help="Planted relative WER increase (0.3 = 30% higher mean WER in each planted cohort).",
    ),
    plant: Optional[list[str]] = typer.Option(
        None,
        "--plant",
        metavar="SHAPE",
        # the names come from the generator's shape registry, never from a list here
        help="Cohort shape to plant (repeatable; shapes of different families combine): "
        + ", ".join(__import__("fairaudit.synth.generator", fromlist=["SHAPES"]).SHAPES)
        + "; the old names "
        + ", ".join(__import__("fairaudit.synth.generator", fromlist=["LEGACY_ALIASES"]).LEGACY_ALIASES)
        + " (the default, all three); 'none' for a null log; 'list' describes each shape.",
    ),
    seed: int = typer.Option(
        0,
        "--seed",
        metavar="N",
        help=(
            "Random seed; the same seed writes identical files. "
            "Shape instances (sizes, places, cuts, clusters) vary with it."
        ),
    ),
    embeddings: str = typer.Option(
        "file",
        "--embeddings",
        metavar="file|inline|none",
        help="Where speaker embeddings go: 'file' (<stem>.embeddings.parquet), 'inline' (emb_* columns) or 'none'.",
    ),
    embedding_dim: int = typer.Option(32, "--embedding-dim", metavar="N", help="Dimension of the speaker embeddings."),
    geometry: str = typer.Option(
        "auto",
        "--geometry",
        metavar="auto|classic|varied",
        help=(
            "Embedding geometry: 'classic' (10 well separated clusters), 'varied' (12-16 overlapping clusters that "
            "vary with the seed) or 'auto' (classic when only the old names are planted)."
        ),
    ),
    force: bool = typer.Option(
        False, "--force", help="Overwrite an existing <stem>.truth.json or <stem>.embeddings.parquet."
    ),
) -> None:
    """Write a realistic synthetic log with planted, known disparities (and the ground truth)."""
    from fairaudit.synth.generator import GEOMETRIES, PLANTABLE, plant_help, synth_paths, synthesize, write_synth

    chosen = list(plant) if plant else list(PLANTABLE)
    if "list" in chosen:
        typer.echo(plant_help())  # raw lines: no wrapping or highlighting
        return
    if chosen == ["none"]:
        chosen = []
    if geometry not in ("auto", *GEOMETRIES):
        raise UsageError(f"--geometry takes auto, {', '.join(GEOMETRIES)}")
    if out is None:
        raise UsageError("synth needs --output FILE (or --plant list)")
    try:
        paths = synth_paths(out, embeddings=embeddings == "file")
        existing = [str(p) for key, p in paths.items() if key != "log" and p is not None and p.exists()]
        if existing and not force:
            raise UsageError(f"refusing to overwrite {', '.join(existing)}: remove it or use --force")
        synthetic = synthesize(
            speakers,
            effect=effect,
            plant=chosen,
            seed=seed,
            embeddings=embeddings,
            embedding_dim=embedding_dim,
            embedding_geometry=None if geometry == "auto" else geometry,
        )
        paths = write_synth(out, synthetic, force=force)
    except (ValueError, FileExistsError) as error:  # unknown shape, bad format, a file appeared meanwhile
        raise UsageError(str(error)) from error
    _stdout_console(plain=True).print("Wrote " + ", ".join(f"{kind} {path}" for kind, path in paths.items() if path))


@app.command(cls=_PlainHelpCommand)
def export(
    audit_json: Path = typer.Argument(..., metavar="AUDIT_JSON", help="An audit report written by --json."),
    log: Path = typer.Argument(..., metavar="LOG", help="The training (or evaluation) log to export: " + LOG_HELP),
    out: Path = typer.Option(..., "--output", "-o", metavar="DIR", help="Folder for the export files (created)."),
    method: Optional[str] = typer.Option(
        None,
        "--method",
        "-m",
        metavar="KEY",
        help="Method whose bottom cohort the weights and target/protect lists are for (its key in the report, "
        "e.g. geo-tree or attribute:accent). Default: the first with a 'disparity' verdict.",
    ),
    target_share: Optional[float] = typer.Option(
        None,
        "--target-share",
        metavar="X",
        help="The bottom cohort's share of reference words after oversampling (e.g. 0.3). Default: its share "
        "of speakers, so that its speakers weigh as much as the others. Weights are never below 1.",
    ),
    column: Optional[list[str]] = typer.Option(
        None, "--column", metavar="CANONICAL=ACTUAL", help="Rename a column: canonical=actual (repeatable)."
    ),
    embeddings: Optional[Path] = typer.Option(
        None, "--embeddings", metavar="FILE", help="Speaker embeddings (for embedding-kmeans cohorts)."
    ),
    table_format: str = typer.Option("csv", "--format", metavar="csv|parquet", help="Format of the two tables."),
    reference: Optional[Path] = REFERENCE_OPTION,
    speaker_pattern: Optional[str] = SPEAKER_PATTERN_OPTION,
) -> None:
    """Export an audit's cohorts for training: groups, oversampling weights, target/protect lists, manifests.

    Writes speakers and utterances tables (each method's cohort, group id and bottom flag; weight and
    role), target_utterances.txt and protect_utterances.txt (bottom cohort vs the rest, for EWC
    fine-tuning), and NeMo and Lhotse manifests with the weights. CONTAINS SPEAKER AND UTTERANCE IDS:
    training data, not for publication.
    """
    from fairaudit.api import load_log
    from fairaudit.engines.speaker_table import build_speaker_table
    from fairaudit.export.training import build_export
    from fairaudit.export.writers import write_export
    from fairaudit.pipeline.stored import read_cohort_report

    if table_format not in ("csv", "parquet"):
        raise UsageError("--format takes csv or parquet")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--output {out} exists and is not a folder")
    for source in (audit_json, log, embeddings, reference):
        if source is not None and out.resolve() in (Path(source).resolve(), *Path(source).resolve().parents):
            raise UsageError(f"--output {out} would write into the input {source}: choose another folder")
    report, where = read_cohort_report(audit_json)
    data = load_log(
        log,
        columns=parse_columns(column),
        embeddings=embeddings,
        reference=reference,
        speaker_pattern=speaker_pattern,
    )
    export_ = build_export(report, where, data, build_speaker_table(data), method, target_share)
    written = write_export(export_, data, out, table_format)
    console = _stdout_console(plain=True)
    bottom = export_.utterances["role"].eq("target").sum()
    if export_.factor > 1:
        console.print(
            f"{export_.method}: {bottom:,} bottom-cohort utterances weighted x{export_.factor:.3g} "
            f"(their share of reference words becomes {100 * export_.target_share:.1f}%)"
        )
    else:
        console.print(f"{export_.method}: {bottom:,} bottom-cohort utterances; weights are all 1 (see the note)")
    for note in export_.notes:
        console.print(f"note: {note}")
    console.print("Wrote " + ", ".join(str(p) for p in written) + " (they contain speaker and utterance ids)")


@app.command(cls=_PlainHelpCommand)
def embed(
    audio: Path = typer.Argument(
        ...,
        metavar="AUDIO",
        help="A folder of audio files (.wav, .flac, .ogg; sub-folders searched too) or a NeMo manifest "
        "(.json/.jsonl lines with audio_filepath and speaker_id or speaker).",
    ),
    out: Path = typer.Option(
        ..., "--output", "-o", metavar="FILE.parquet", help="The embeddings file to write, for audit --embeddings."
    ),
    per: str = typer.Option(
        "speaker",
        "--per",
        metavar="speaker|utterance",
        help="speaker (default): one vector per speaker, the mean of its utterances' unit vectors, renormalised; "
        "utterance: one vector per file, keyed by utterance_id (the file name without suffix, or the manifest's "
        "audio_filepath).",
    ),
    speaker_pattern: Optional[str] = typer.Option(
        None,
        "--speaker-pattern",
        metavar="REGEX",
        help="Regular expression whose first group is the speaker, matched against each file's path under the "
        "folder (default '^([^/]+)/': the first sub-folder, as in speaker/file.wav) or against a manifest's "
        "audio_filepath when a line has no speaker key. A file it does not match is an error.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Speaker embeddings from audio (resemblyzer's GE2E model, on the CPU; needs pip install 'fairaudit[embed]').

    Writes a Parquet file that audit --embeddings reads (speaker_id or utterance_id, emb_0..emb_255).
    CONTAINS SPEAKER IDS: an input for audits, not a report for publication.
    """
    from fairaudit.embed.audio_files import check_unique_utterances, find_audio
    from fairaudit.embed.encoder import embed_files
    from fairaudit.io.outputs import replace_atomically

    if per not in ("speaker", "utterance"):
        raise UsageError("--per takes speaker or utterance")
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--output {out} must end in .parquet (the embeddings file is Parquet)")
    if out.exists() and out.is_dir():
        raise UsageError(f"--output {out} is a folder; give a file name ending in .parquet")
    if out.resolve() == audio.resolve() or audio.resolve() in out.resolve().parents:
        raise UsageError(f"--output {out} would write into the input {audio}: choose a path outside it")
    files = find_audio(audio, speaker_pattern)
    if per == "utterance":
        check_unique_utterances(files)
    with _progress_bars(err_console.is_terminal and not quiet) as bars:
        embedded = embed_files(files, progress=bars)
    frame = embedded.per_speaker() if per == "speaker" else embedded.per_utterance()
    with _writing(out):
        replace_atomically(out, lambda temporary: frame.to_parquet(temporary, index=False))
    console = _stdout_console(plain=True)
    for note in embedded.notes:
        console.print(f"note: {note}")
    speakers = len({f.speaker_id for f in embedded.files})
    console.print(
        f"Embedded {len(embedded.files):,} audio files of {speakers:,} speakers "
        f"({embedded.speech_seconds.sum():,.0f} s of speech) -> {out}: {len(frame):,} rows of 256-dimensional "
        f"vectors, one per {per} (it contains {per} ids)"
    )


@app.command(cls=_PlainHelpCommand)
def schema(
    name: str = typer.Argument(..., metavar="NAME", help="utterance_log, embeddings, demographics or audit_report."),
) -> None:
    """Print one of fairaudit's JSON schemas."""
    from fairaudit.report.schema import SCHEMA_NAMES, load_schema

    if name not in SCHEMA_NAMES:
        raise UsageError(f"unknown schema {name!r}: choose from {', '.join(SCHEMA_NAMES)}")
    typer.echo(json.dumps(load_schema(name), indent=2))


def main() -> None:
    """Console entry point: bad input and usage errors print one line and exit 2, never a traceback."""
    if not os.environ.get("FAIRAUDIT_DEBUG"):
        import warnings

        # Library warnings (numpy casts, matplotlib, scikit-learn) are not messages for the user:
        # every condition that matters is checked and reported in plain words.
        warnings.simplefilter("ignore")
    try:
        code = app(standalone_mode=False)
    except InputError as error:
        _print_error("error:", str(error))
        sys.exit(2)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except Exception as error:  # click usage errors and anything unexpected
        if _is_click_exception(error):
            # typer >= 0.2x vendors click as typer._click (its exceptions derive from
            # typer.TyperException, not click.ClickException): handle both.
            error.show()
            exit_code = getattr(error, "exit_code", None)
            sys.exit(exit_code if isinstance(exit_code, int) else 2)
        if os.environ.get("FAIRAUDIT_DEBUG"):
            raise
        _print_error(
            "internal error:",
            f"{type(error).__name__}: {error} (set FAIRAUDIT_DEBUG=1 for the traceback; please report it)",
        )
        sys.exit(3)
    sys.exit(code if isinstance(code, int) else 0)


class _ShowableError(Protocol):
    """A click usage error (click's own or typer's vendored copy): it prints itself to stderr."""

    def show(self, file: Any = None) -> None: ...


def _is_click_exception(error: BaseException) -> TypeGuard[_ShowableError]:
    """A command-line parsing error from click, or from the copy of click that newer typer vendors."""
    kinds: list[type] = []
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:  # pragma: no cover - typer >= 0.2x no longer needs click installed
        pass
    vendored = getattr(typer, "TyperException", None)  # absent in older typer, which uses click itself
    if isinstance(vendored, type):
        kinds.append(vendored)
    return isinstance(error, tuple(kinds)) and hasattr(error, "show")


def _print_error(prefix: str, message: str) -> None:
    """One line on stderr (never wrapped to the terminal width, never read as rich markup or emoji)."""
    text = " ".join(message.split("\n"))
    err_console.print(f"[bold red]{prefix}[/bold red] {_escape(text)}", highlight=False, soft_wrap=True, emoji=False)


def _escape(text: str) -> str:
    from fairaudit.render.safe_text import terminal

    return terminal(text)


if __name__ == "__main__":  # pragma: no cover
    main()
