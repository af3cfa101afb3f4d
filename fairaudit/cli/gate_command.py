"""``fairaudit gate``: judge an audit (run now on a log, or read from a report) against the CI policy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.audit_command import audit_result, write_reports
from fairaudit.cli.console import stdout_console
from fairaudit.cli.options import (
    BlocksizeOption,
    GateByLevelOption,
    GateByOption,
    GateColumnsOption,
    GateEmbeddingsOption,
    GateEngineOption,
    GateMethodsOption,
    QuietOption,
    ReferenceOption,
    SchedulerOption,
    SpeakerPatternOption,
    audit_option,
    parse_columns,
    when_auditing,
)
from fairaudit.cli.outputs import check_outputs, write_output
from fairaudit.errors import UsageError


def gate(
    source: Annotated[
        str,
        typer.Argument(
            metavar="LOG_OR_AUDIT_JSON",
            help=(
                "An utterance log (audited now, with the options of [tool.fairaudit]; with --engine dask also a "
                "directory or glob pattern) or an audit report written by `fairaudit audit --json`."
            ),
        ),
    ],
    policy: Annotated[
        Optional[Path],
        typer.Option(
            "--policy",
            metavar="FILE",
            help=(
                "Gate policy TOML (a [gate] table). "
                "Default: [gate] in fairaudit.toml or [tool.fairaudit.gate] in pyproject.toml."
            ),
        ),
    ] = None,
    baseline: Annotated[
        Optional[Path],
        typer.Option(
            "--baseline",
            metavar="LOG_OR_AUDIT_JSON",
            help=(
                "The last released model, for the regression rules: its audit report (--json; the new log is "
                "re-measured on its cohorts) or its log (paired when the logs share utterances)."
            ),
        ),
    ] = None,
    junit: Annotated[
        Optional[Path],
        typer.Option(
            "--junit",
            metavar="FILE",
            help="Write JUnit XML: one test case per rule and method, failures carrying the figures.",
        ),
    ] = None,
    markdown: Annotated[
        Optional[Path],
        typer.Option("--markdown", metavar="FILE", help="Write the gate result as a Markdown pull-request comment."),
    ] = None,
    json_out: Annotated[
        Optional[Path],
        typer.Option(
            "--json",
            metavar="FILE",
            help="When auditing a log: also write its audit report as JSON (use it as the next --baseline).",
        ),
    ] = None,
    html: Annotated[
        Optional[Path],
        typer.Option(
            "--html",
            metavar="FILE",
            help="When auditing a log: also write the HTML report, with the gate's outcome and rules first.",
        ),
    ] = None,
    method: GateMethodsOption = None,
    by: GateByOption = None,
    by_level: GateByLevelOption = None,
    column: GateColumnsOption = None,
    embeddings: GateEmbeddingsOption = None,
    reference: ReferenceOption = None,
    speaker_pattern: SpeakerPatternOption = None,
    holdout: Annotated[Optional[float], when_auditing(audit_option("holdout"))] = None,
    seed: Annotated[Optional[int], when_auditing(audit_option("seed"))] = None,
    quiet: QuietOption = False,
    engine: GateEngineOption = "pandas",
    scheduler: SchedulerOption = None,
    blocksize: BlocksizeOption = None,
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
        check_outputs([junit, markdown], [Path(source), baseline, policy, _config_file()])
    else:
        cli_values = {
            "methods": method or None,
            "by": by or None,
            "by_level": by_level,
            "holdout": holdout,
            "seed": seed,
        }
        check_outputs([junit, markdown, json_out, html], [baseline, policy, _config_file(), reference])
        result = audit_result(
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
            reference=reference,
            speaker_pattern=speaker_pattern,
            prefetch=("fairaudit.render.html",) if html else (),
        )
        write_reports(result, json_out=json_out)
        report = json.loads(result.to_json())
        if baseline is not None:
            text_files = {"reference": reference, "speaker_pattern": speaker_pattern}
            comparison = _gate_comparison(source, baseline, before, result, column, embeddings, text_files)
    outcome = run_gate(report, rules, before, comparison)
    if html:  # the audit's report with the gate's outcome first: the CI artifact says why
        from dataclasses import asdict

        from fairaudit.render.html import render_html

        write_output(html, render_html(result, gate=(outcome.outcome, [asdict(row) for row in outcome.results])))
    if junit:
        write_output(junit, junit_xml(outcome, report))
    if markdown:
        write_output(markdown, gate_markdown(outcome, report))
    if not quiet:
        print_gate(outcome, stdout_console())
    else:  # -q: no table, but the outcome is never silent
        typer.echo(f"gate: {outcome.outcome.upper()} (exit code {outcome.exit_code})")
    raise typer.Exit(outcome.exit_code)


def _config_file() -> Path | None:
    """The configuration file the working directory provides (an input no output may replace)."""
    from fairaudit.io.config_file import find_config

    return find_config()[1]


def _gate_comparison(source: str, baseline: Path, before: dict | None, result, column, embeddings, text_files: dict):
    """The change of every figure on the baseline's cohorts: paired against a baseline log, or
    against a baseline audit report by re-measuring the new log on its stored cohorts
    (``text_files``: --reference and --speaker-pattern, for trn logs)."""
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
            "tree_neighbours",
            "max_window_share",
            "demographics",
        )
    }
    if before is None:
        # With --holdout the audit's figures are the held-out speakers': so are the comparison's
        # (cohorts discovered on the baseline's other speakers, both logs measured on the held-out ones).
        holdout = {"holdout": result.parameters["holdout"]} if result.parameters.get("holdout") else {}
        comparison = fairaudit.compare(
            str(baseline),
            source,
            columns=parse_columns(column),
            embeddings=embeddings,
            **text_files,
            **parameters,
            **holdout,
        )
        return comparison.to_dict()
    # A baseline audited with --holdout reports held-out figures: re-measure the new log on the same
    # held-out speakers (the split follows speaker ids and the baseline's seed), not on all of them,
    # whose other half chose the cohorts and so shows their gaps inflated.
    baseline_parameters = before.get("parameters") or {}
    split = (
        {"holdout": baseline_parameters["holdout"], "seed": baseline_parameters.get("seed", 0)}
        if baseline_parameters.get("holdout")
        else {}
    )
    stored = fairaudit.audit(
        source,
        columns=parse_columns(column),
        embeddings=embeddings,
        cohorts=str(baseline),
        **text_files,
        **{**{k: v for k, v in parameters.items() if k != "methods"}, **split},
    )
    return comparison_from_reports(before, json.loads(stored.to_json()))
