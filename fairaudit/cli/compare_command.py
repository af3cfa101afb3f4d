"""``fairaudit compare``: two models' logs measured on the same cohorts, with the change of every figure."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.console import stdout_console
from fairaudit.cli.options import (
    BaselineCohortsOption,
    ByLevelOption,
    ByOption,
    ColumnsOption,
    EmbeddingsOption,
    MethodsOption,
    QuietOption,
    ReferenceOption,
    SpeakerPatternOption,
    parse_columns,
)
from fairaudit.cli.outputs import check_outputs, write_output


def compare(
    baseline: Annotated[
        Path, typer.Argument(metavar="BASELINE_LOG", help="Utterance log of the released (baseline) model.")
    ],
    new: Annotated[
        Path, typer.Argument(metavar="NEW_LOG", help="Utterance log of the new model, ideally on the same utterances.")
    ],
    cohorts: BaselineCohortsOption = None,
    method: MethodsOption = None,
    by: ByOption = None,
    by_level: ByLevelOption = None,
    column: ColumnsOption = None,
    embeddings: EmbeddingsOption = None,
    reference: ReferenceOption = None,
    speaker_pattern: SpeakerPatternOption = None,
    pairing: Annotated[
        str,
        typer.Option(
            "--pairing",
            metavar="auto|paired|unpaired",
            help=(
                "auto (default): paired when the logs share utterance_ids (one speaker bootstrap for both, "
                "narrower intervals); unpaired: independent bootstraps."
            ),
        ),
    ] = "auto",
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            metavar="N",
            help="Speaker bootstrap replicates for the 95% intervals of each change. Default 1000.",
        ),
    ] = 1000,
    min_report_speakers: Annotated[
        int,
        typer.Option(
            "--min-report-speakers", metavar="N", help="Cohorts with fewer speakers are suppressed. Default 10."
        ),
    ] = 10,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Random seed. Default 0.")] = 0,
    holdout: Annotated[
        Optional[float],
        typer.Option(
            "--holdout",
            metavar="X",
            help=(
                "Discover the cohorts on the baseline's other speakers and measure both logs on this fraction of "
                "speakers held out (chosen by speaker id and --seed, as audit --holdout). Default: none."
            ),
        ),
    ] = None,
    json_out: Annotated[
        Optional[Path],
        typer.Option(
            "--json", metavar="FILE", help="Write the comparison as JSON (schema: fairaudit schema compare_report)."
        ),
    ] = None,
    markdown: Annotated[
        Optional[Path], typer.Option("--markdown", metavar="FILE", help="Write a Markdown pull-request comment.")
    ] = None,
    html: Annotated[
        Optional[Path],
        typer.Option(
            "--html", metavar="FILE", help="Write the self-contained HTML comparison (no network needed to view it)."
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Compare two models on the same cohorts: each cohort's WER before and after, the change with a paired
    95% interval, and a verdict (worse, better, no evidence)."""
    import fairaudit
    from fairaudit.render.comparison import comparison_html, comparison_markdown, print_comparison

    check_outputs([json_out, markdown, html], [baseline, new, cohorts, embeddings, reference])
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
        **({"by_level": by_level} if by_level else {}),
        bootstrap=bootstrap,
        min_report_speakers=min_report_speakers,
        seed=seed,
        holdout=holdout,
    )
    data = comparison.to_dict()
    if json_out:
        write_output(json_out, comparison.to_json())
    if markdown:
        write_output(markdown, comparison_markdown(data))
    if html:
        write_output(html, comparison_html(data))
    if not quiet:
        print_comparison(data, stdout_console())
