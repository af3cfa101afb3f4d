"""``fairaudit score LOG -o OUT``: a log with per-utterance S, D, I, ref_words and errors added.

The scoring itself is :func:`fairaudit.text.scoring.score_texts`; this module reads and writes files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from fairaudit.errors import InputError
from fairaudit.io import sources
from fairaudit.io.asr_formats import is_nemo_manifest, read_nemo_manifest
from fairaudit.io.outputs import is_same_file, replace_atomically
from fairaudit.text.scoring import SCORE_COLUMNS, check_normalize, score_texts


def score_log_file(
    path: str | Path,
    out_path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    normalize: str = "default",
) -> int:
    """Write the log with S, D, I, ref_words, errors added (or replaced); return the row count.

    Every input column is kept exactly as read (all as text, so ``007`` and ``02134`` survive).
    The output format follows ``out_path``'s extension; the input file is never written to.
    """

    check_normalize(normalize)
    out_fmt = sources.format_of(out_path)
    if is_same_file(path, out_path):
        raise InputError(
            "the output file is the input file; choose another output path so the input is kept",
            file=str(out_path),
        )
    if is_nemo_manifest(path):  # text and pred_text become reference and hypothesis columns
        frame, _, _ = read_nemo_manifest(path)
        table = pa.Table.from_pandas(frame.astype("string"), preserve_index=False)
        src_name = str(path)
    else:
        src = sources.source_for(path)
        table, _ = sources.read_table(src, columns=columns, all_strings=True)
        src_name = src.name
    ref_col, hyp_col = (sources.mapped_name(name, columns) for name in ("reference", "hypothesis"))
    missing = [c for c in (ref_col, hyp_col) if c not in table.column_names]
    if missing:
        raise InputError(
            "scoring needs a reference and a hypothesis text column; missing "
            + ", ".join(repr(c) for c in missing)
            + " (rename with --column reference=NAME --column hypothesis=NAME)",
            file=src_name,
            column=missing[0],
        )
    scores = score_texts(table.column(ref_col), table.column(hyp_col), normalize)
    for name in SCORE_COLUMNS:
        arr = pa.array(scores[name].to_numpy(), type=pa.int64())
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, arr)
        else:
            table = table.append_column(name, arr)
    replace_atomically(out_path, lambda temporary: sources.write_table(table, temporary, out_fmt))
    return table.num_rows
