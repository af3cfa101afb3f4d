"""``fairaudit audit``, and the audit run and report writing it shares with ``fairaudit gate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.console import err_console, progress_bars, stdout_console
from fairaudit.cli.options import (
    LOG_HELP,
    BlocksizeOption,
    ByLevelOption,
    ByOption,
    CohortsOption,
    ColumnsOption,
    EmbeddingsOption,
    EngineOption,
    MethodsOption,
    OptionalNormalizeOption,
    QuietOption,
    ReferenceOption,
    SchedulerOption,
    SpeakerPatternOption,
    audit_option,
    parse_columns,
)
from fairaudit.cli.outputs import check_outputs, write_output, writing
from fairaudit.engines.threads import import_in_background
from fairaudit.errors import UsageError


def audit(
    log: Annotated[str, typer.Argument(metavar="LOG", help=LOG_HELP)],
    method: MethodsOption = None,
    by: ByOption = None,
    by_level: ByLevelOption = None,
    column: ColumnsOption = None,
    embeddings: EmbeddingsOption = None,
    normalize: OptionalNormalizeOption = None,
    min_speakers: Annotated[Optional[int], audit_option("min_speakers")] = None,
    max_regions: Annotated[Optional[int], audit_option("max_regions")] = None,
    min_gain: Annotated[Optional[str], audit_option("min_gain")] = None,
    tree_neighbours: Annotated[Optional[int], audit_option("tree_neighbours")] = None,
    clusters: Annotated[Optional[str], audit_option("clusters")] = None,
    max_window_share: Annotated[Optional[float], audit_option("max_window_share")] = None,
    bottom: Annotated[Optional[str], audit_option("bottom")] = None,
    bottom_share: Annotated[Optional[float], audit_option("bottom_share")] = None,
    max_bottom_share: Annotated[Optional[float], audit_option("max_bottom_share")] = None,
    top: Annotated[Optional[str], audit_option("top")] = None,
    demographics: Annotated[Optional[Path], audit_option("demographics")] = None,
    holdout: Annotated[Optional[float], audit_option("holdout")] = None,
    bootstrap: Annotated[Optional[int], audit_option("bootstrap")] = None,
    permutations: Annotated[Optional[int], audit_option("permutations")] = None,
    alpha: Annotated[Optional[float], audit_option("alpha")] = None,
    min_report_speakers: Annotated[Optional[int], audit_option("min_report_speakers")] = None,
    adjust: Annotated[Optional[list[str]], audit_option("adjust")] = None,
    target_gap: Annotated[Optional[float], audit_option("target_gap")] = None,
    seed: Annotated[Optional[int], audit_option("seed")] = None,
    json_out: Annotated[
        Optional[Path],
        typer.Option(
            "--json", metavar="FILE", help="Write the audit report as JSON (schema: fairaudit schema audit_report)."
        ),
    ] = None,
    html: Annotated[
        Optional[Path],
        typer.Option(
            "--html", metavar="FILE", help="Write the self-contained HTML report (no network needed to view it)."
        ),
    ] = None,
    markdown: Annotated[
        Optional[Path],
        typer.Option("--markdown", metavar="FILE", help="Write a short Markdown summary for a pull-request comment."),
    ] = None,
    assignments: Annotated[
        Optional[Path],
        typer.Option(
            "--assignments",
            metavar="FILE",
            help=(
                "Write speaker -> cohort per method as CSV (method, speaker_id, cohort_id, cohort, bottom). "
                "Contains speaker ids."
            ),
        ),
    ] = None,
    quiet: QuietOption = False,
    engine: EngineOption = "pandas",
    scheduler: SchedulerOption = None,
    blocksize: BlocksizeOption = None,
    cohorts: CohortsOption = None,
    reference: ReferenceOption = None,
    speaker_pattern: SpeakerPatternOption = None,
) -> None:
    """Find the speaker cohorts with the highest WER and report WER gap, bottom-cohort share and verdicts."""
    from fairaudit.render.terminal import print_audit

    cli_values = {
        "methods": method or None,
        "by": by or None,
        "by_level": by_level,
        "min_speakers": min_speakers,
        "max_regions": max_regions,
        "min_gain": min_gain,
        "tree_neighbours": tree_neighbours,
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
    result = audit_result(
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
        prefetch=("fairaudit.render.html",) if html else (),  # matplotlib and jinja2: 0.25 s
    )
    write_reports(result, json_out, assignments, html, markdown)
    if not quiet:
        print_audit(result, stdout_console())


def _clusters_value(text: str | None) -> int | str | None:
    """--clusters: 'auto' or a whole number."""
    if text is None or text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"--clusters takes 'auto' or a whole number, not {text!r}") from None


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


def audit_result(
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
    prefetch: tuple[str, ...] = (),
):
    """Merge config and command-line options, read the log and run the audit (audit and gate).

    ``prefetch`` names modules the reports will need: they are imported on a background thread
    while the speaker table is built (with scikit-learn when k-means will run)."""
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
    check_outputs(
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
    # Not while the log is parsed: any Python thread running beside pyarrow's parse made the parse
    # itself 2.5-3.5x slower (0.95 s -> 2.6-3.6 s at ten million rows; benchmarks/README.md).
    kmeans = cohorts is None and _has_embeddings(data) and (not opts.methods or "embedding-kmeans" in opts.methods)
    import_in_background(*(("sklearn.cluster",) if kmeans else ()), *prefetch)
    speakers = speaker_table_of(data)
    if cohorts is not None:
        return run_stored_audit(data, speakers, opts, cohorts)
    with progress_bars(err_console.is_terminal and not quiet) as bars:
        return run_audit(data, speakers, opts, progress=bars)


def _has_embeddings(data) -> bool:
    """Whether a loaded log carries embeddings (inline emb_* columns or --embeddings; the Dask
    engine keeps them in its speaker table)."""
    table = getattr(data, "speaker_table", None)
    return data.embeddings is not None or (table is not None and table.embeddings is not None)


def write_reports(result, json_out=None, assignments=None, html=None, markdown=None) -> None:
    """Write the requested report files (before any terminal output: `| head` must not lose them)."""
    if json_out:
        write_output(json_out, result.to_json())
    if assignments:
        from fairaudit.render.assignments import write_assignments

        with writing(assignments):
            write_assignments(result, assignments)
    if html:
        from fairaudit.render.html import render_html

        write_output(html, render_html(result))
    if markdown:
        from fairaudit.render.markdown import render_markdown

        write_output(markdown, render_markdown(result))
