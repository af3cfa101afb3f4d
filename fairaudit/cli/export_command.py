"""``fairaudit export``: an audit's cohorts as training inputs (groups, oversampling weights, lists, manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.console import stdout_console
from fairaudit.cli.options import (
    LOG_HELP,
    ColumnsOption,
    EmbeddingsOption,
    ReferenceOption,
    SpeakerPatternOption,
    parse_columns,
)
from fairaudit.errors import UsageError


def export(
    audit_json: Annotated[Path, typer.Argument(metavar="AUDIT_JSON", help="An audit report written by --json.")],
    log: Annotated[Path, typer.Argument(metavar="LOG", help="The training (or evaluation) log to export: " + LOG_HELP)],
    out: Annotated[Path, typer.Option("--output", "-o", metavar="DIR", help="Folder for the export files (created).")],
    method: Annotated[
        Optional[str],
        typer.Option(
            "--method",
            "-m",
            metavar="KEY",
            help="Method whose bottom cohort the weights and target/protect lists are for (its key in the report, "
            "e.g. geo-tree or attribute:accent). Default: the first with a 'disparity' verdict.",
        ),
    ] = None,
    target_share: Annotated[
        Optional[float],
        typer.Option(
            "--target-share",
            metavar="X",
            help="The bottom cohort's share of reference words after oversampling (e.g. 0.3). Default: its share "
            "of speakers, so that its speakers weigh as much as the others. Weights are never below 1.",
        ),
    ] = None,
    column: ColumnsOption = None,
    embeddings: EmbeddingsOption = None,
    table_format: Annotated[
        str, typer.Option("--format", metavar="csv|parquet", help="Format of the two tables.")
    ] = "csv",
    reference: ReferenceOption = None,
    speaker_pattern: SpeakerPatternOption = None,
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
    console = stdout_console(plain=True)
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
