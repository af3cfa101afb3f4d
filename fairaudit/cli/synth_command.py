"""``fairaudit synth``: write a synthetic log with planted, known disparities and its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from fairaudit.cli.console import stdout_console
from fairaudit.errors import UsageError


def synth(
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
            help=(
                "Log file to write (.csv, .csv.gz, .tsv or .parquet); ground truth goes to <stem>.truth.json beside "
                "it. Required unless --plant list."
            ),
        ),
    ] = None,
    speakers: Annotated[int, typer.Option("--speakers", metavar="N", help="Number of speakers.")] = 2000,
    effect: Annotated[
        float,
        typer.Option(
            "--effect",
            metavar="X",
            help="Planted relative WER increase (0.3 = 30% higher mean WER in each planted cohort).",
        ),
    ] = 0.3,
    plant: Annotated[
        Optional[list[str]],
        typer.Option(
            "--plant",
            metavar="SHAPE",
            # the names come from the generator's shape registry, never from a list here
            help="Cohort shape to plant (repeatable; shapes of different families combine): "
            + ", ".join(__import__("fairaudit.synth.generator", fromlist=["SHAPES"]).SHAPES)
            + "; the old names "
            + ", ".join(__import__("fairaudit.synth.generator", fromlist=["LEGACY_ALIASES"]).LEGACY_ALIASES)
            + " (the default, all three); 'none' for a null log; 'list' describes each shape.",
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            metavar="N",
            help=(
                "Random seed; the same seed writes identical files. "
                "Shape instances (sizes, places, cuts, clusters) vary with it."
            ),
        ),
    ] = 0,
    embeddings: Annotated[
        str,
        typer.Option(
            "--embeddings",
            metavar="file|inline|none",
            help="Where speaker embeddings go: 'file' (<stem>.embeddings.parquet), 'inline' (emb_* columns) or 'none'.",
        ),
    ] = "file",
    embedding_dim: Annotated[
        int, typer.Option("--embedding-dim", metavar="N", help="Dimension of the speaker embeddings.")
    ] = 32,
    geometry: Annotated[
        str,
        typer.Option(
            "--geometry",
            metavar="auto|classic|varied",
            help=(
                "Embedding geometry: 'classic' (10 well separated clusters), 'varied' (12-16 overlapping clusters "
                "that vary with the seed) or 'auto' (classic when only the old names are planted)."
            ),
        ),
    ] = "auto",
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Overwrite an existing output file (the log, <stem>.truth.json, <stem>.embeddings.parquet)."
        ),
    ] = False,
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
        existing = [str(p) for p in paths.values() if p is not None and p.exists()]
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
    stdout_console(plain=True).print("Wrote " + ", ".join(f"{kind} {path}" for kind, path in paths.items() if path))
