"""``fairaudit embed``: speaker embeddings from audio, written as the Parquet file ``audit --embeddings`` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.console import err_console, progress_bars, stdout_console
from fairaudit.cli.options import QuietOption
from fairaudit.cli.outputs import check_outputs, writing
from fairaudit.errors import UsageError


def embed(
    audio: Annotated[
        Path,
        typer.Argument(
            metavar="AUDIO",
            help="A folder of audio files (.wav, .flac, .ogg; sub-folders searched too) or a NeMo manifest "
            "(.json/.jsonl lines with audio_filepath and speaker_id or speaker).",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE.parquet",
            help="The embeddings file to write, for audit --embeddings.",
        ),
    ],
    per: Annotated[
        str,
        typer.Option(
            "--per",
            metavar="speaker|utterance",
            help="speaker (default): one vector per speaker, the mean of its utterances' unit vectors, renormalised; "
            "utterance: one vector per file, keyed by utterance_id (the file name without suffix, or the manifest's "
            "audio_filepath).",
        ),
    ] = "speaker",
    # Not options.SpeakerPatternOption: this pattern reads the speaker from an audio file's path, not a trn id.
    speaker_pattern: Annotated[
        Optional[str],
        typer.Option(
            "--speaker-pattern",
            metavar="REGEX",
            help="Regular expression whose first group is the speaker, matched against each file's path under the "
            "folder (default '^([^/]+)/': the first sub-folder, as in speaker/file.wav) or against a manifest's "
            "audio_filepath when a line has no speaker key. A file it does not match is an error.",
        ),
    ] = None,
    quiet: QuietOption = False,
) -> None:
    """Speaker embeddings from audio (resemblyzer's GE2E model, on the CPU; needs the embed extra:
    pip install '.[embed]' in the fairaudit checkout).

    Writes a Parquet file that audit --embeddings reads (speaker_id or utterance_id, emb_0..emb_255).
    CONTAINS SPEAKER IDS: an input for audits, not a report for publication.
    """
    from fairaudit.embed.audio_files import check_unique_utterances, find_audio
    from fairaudit.embed.encoder import embed_files
    from fairaudit.io.outputs import write_parquet_atomically

    if per not in ("speaker", "utterance"):
        raise UsageError("--per takes speaker or utterance")
    if out.suffix.lower() != ".parquet":
        raise UsageError(f"--output {out} must end in .parquet (the embeddings file is Parquet)")
    if out.exists() and out.is_dir():
        raise UsageError(f"--output {out} is a folder; give a file name ending in .parquet")
    if out.resolve() == audio.resolve() or audio.resolve() in out.resolve().parents:
        raise UsageError(f"--output {out} would write into the input {audio}: choose a path outside it")
    check_outputs([out], [audio])  # before hours of embedding, not after
    files = find_audio(audio, speaker_pattern)
    if per == "utterance":
        check_unique_utterances(files)
    with progress_bars(err_console.is_terminal and not quiet) as bars:
        embedded = embed_files(files, progress=bars)
    frame = embedded.per_speaker() if per == "speaker" else embedded.per_utterance()
    with writing(out):
        write_parquet_atomically(out, frame)
    console = stdout_console(plain=True)
    for note in embedded.notes:
        console.print(f"note: {note}")
    speakers = len({f.speaker_id for f in embedded.files})
    console.print(
        f"Embedded {len(embedded.files):,} audio files of {speakers:,} speakers "
        f"({embedded.speech_seconds.sum():,.0f} s of speech) -> {out}: {len(frame):,} rows of 256-dimensional "
        f"vectors, one per {per} (it contains {per} ids)"
    )
