"""``fairaudit validate``: check a log against the schema and sanity rules, and summarise it, without auditing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fairaudit.cli.console import stdout_console
from fairaudit.cli.options import (
    ColumnsOption,
    EmbeddingsOption,
    NormalizeOption,
    ReferenceOption,
    SpeakerPatternOption,
    parse_columns,
)
from fairaudit.render.safe_text import strip_controls


def validate(
    log: Annotated[Path, typer.Argument(metavar="LOG", help="Utterance log to check.")],
    column: ColumnsOption = None,
    embeddings: EmbeddingsOption = None,
    normalize: NormalizeOption = "default",
    reference: ReferenceOption = None,
    speaker_pattern: SpeakerPatternOption = None,
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
    console = stdout_console(plain=True)
    console.print(
        f"{strip_controls(log)}: valid. {data.n_utterances:,} utterances, {len(speakers):,} speakers, "
        f"error counts from the '{data.error_form}' form."
    )
    total_words = int(speakers.ref_words.sum())
    errors = int(speakers.errors.sum())
    console.print(
        f"Overall pooled WER {100 * errors / total_words:.2f}% ({errors:,} errors / {total_words:,} reference words)."
        if total_words
        else f"Overall pooled WER undefined: the log has no reference words ({errors:,} errors, all insertions)."
    )
    if data.metadata_columns:
        console.print("Metadata columns: " + ", ".join(strip_controls(c) for c in data.metadata_columns))
    if speakers.embeddings is not None:
        console.print(f"Embeddings: {speakers.embeddings.shape[1]} dimensions.")
    for note in data.notes:
        console.print(f"note: {strip_controls(note)}")
    conflicts = {k: v for k, v in speakers.conflicts.items() if v}
    if conflicts:
        console.print(
            "Speakers with conflicting metadata (the most frequent value is used): "
            + ", ".join(f"{strip_controls(k)}: {v:,}" for k, v in conflicts.items())
        )
