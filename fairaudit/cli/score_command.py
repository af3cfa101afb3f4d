"""``fairaudit score``: add the error counts (substitutions, deletions, ...) to a log of reference and hypothesis."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fairaudit.cli.console import stdout_console
from fairaudit.cli.options import ColumnsOption, NormalizeOption, parse_columns
from fairaudit.cli.outputs import check_output


def score(
    log: Annotated[
        Path,
        typer.Argument(
            metavar="LOG",
            help=(
                "Log with reference and hypothesis text columns (CSV, TSV, Parquet), or a NeMo manifest "
                "(text and pred_text)."
            ),
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help="Where to write the scored log (.csv, .tsv, .csv.gz or .parquet).",
        ),
    ],
    column: ColumnsOption = None,
    normalize: NormalizeOption = "default",
) -> None:
    """Score reference/hypothesis text with jiwer: add substitutions, deletions, insertions, ref_words and errors."""
    from fairaudit.io.scored_log import score_log_file

    check_output(out, [log])
    rows = score_log_file(log, out, columns=parse_columns(column), normalize=normalize)
    stdout_console(plain=True).print(f"Scored {rows:,} utterances -> {out}")
