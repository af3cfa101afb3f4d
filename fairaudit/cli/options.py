"""Options that two or more commands take, each declared once as an ``Annotated`` type, with their help texts.

A command writes ``column: ColumnsOption = None``: flag, metavar and help come from here, the default from
the command. Options of one command only are declared in that command's module.
"""

from __future__ import annotations

from copy import copy
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.models import OptionInfo

from fairaudit.errors import UsageError
from fairaudit.options import AuditOptions
from fairaudit.text.normalizations import NORMALIZATION_DESCRIPTIONS, NORMALIZATIONS

#: gate audits its input only when it is a log (not an audit report); its audit options say so.
WHEN_AUDITING = "When auditing a log: "


def with_help(option: OptionInfo, text: str) -> OptionInfo:
    """The same option (flags, metavar) with the help text one command needs."""
    variant = copy(option)
    variant.help = text
    return variant


def when_auditing(option: OptionInfo) -> OptionInfo:
    """The option as gate takes it: its help starts "When auditing a log: "."""
    text = option.help or ""
    return with_help(option, WHEN_AUDITING + text[:1].lower() + text[1:])


def audit_option(name: str, *aliases: str) -> Any:
    """The typer option of an audit setting, for ``Annotated[..., audit_option(name)] = None``: flag, metavar
    and help come from :class:`AuditOptions`; the default None lets the configuration file and then the
    model's default apply."""
    info = AuditOptions.field_info(name)
    return typer.Option(info["flag"], *aliases, metavar=info["metavar"], help=info["help"])


def parse_columns(pairs: list[str] | None) -> dict[str, str]:
    """--column canonical=actual pairs -> {canonical: actual}."""
    mapping: dict[str, str] = {}
    for pair in pairs or []:
        canonical, sep, actual = pair.partition("=")
        if not sep or not canonical.strip() or not actual.strip():
            raise UsageError(f"--column takes canonical=actual (e.g. speaker_id=client_id), not {pair!r}")
        mapping[canonical.strip()] = actual.strip()
    return mapping


LOG_HELP = (
    "Utterance log: .csv, .tsv, .csv.gz or .parquet (one row per utterance), a NeMo manifest (.json or .jsonl: "
    "text, pred_text, audio_filepath, speaker) or a Kaldi data directory (text, utt2spk and the hypotheses in hyp). "
    "With --engine dask also a directory or a glob pattern of CSV/Parquet files, quoted ('logs/*.parquet'), local "
    "or a URL (s3://...)."
)
COLUMN_HELP = "Rename a column: canonical=actual, e.g. speaker_id=client_id or reference=sentence (repeatable)."
EMBEDDINGS_HELP = (
    "Embeddings file (.parquet, .csv, or .npy with a .ids.txt sidecar) keyed by speaker_id or utterance_id, "
    "for the embedding-kmeans method."
)
REFERENCE_HELP = (
    "With a NIST trn LOG (hypotheses, lines 'words ... (utterance-id)'): the reference trn of the same utterances."
)
SPEAKER_PATTERN_HELP = (
    "With trn files: regular expression whose first group is the speaker in each utterance id. Default: the "
    "part before the first - or _ ('^(.+?)[-_]'). An id it does not match is an error, never a lost speaker."
)
NORMALIZE_HELP = (
    "Text normalisation of reference and hypothesis before scoring: "
    + "; ".join(f"'{name}' ({what})" for name, what in NORMALIZATION_DESCRIPTIONS.items())
    + ". Recorded in the report."
)
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
COHORTS_HELP = (
    "Measure the log on the cohorts stored in an earlier audit report (written by --json) instead of discovering "
    "new ones: the same regions, windows, census rule, clusters or groups, and the same bottom and top cohorts; "
    "p-values are then for fixed cohorts. Use it to compare two models on the same cohorts."
)
QUIET_HELP = "Do not print tables or progress bars to the terminal."

_COLUMN = typer.Option("--column", metavar="CANONICAL=ACTUAL", help=COLUMN_HELP)
_EMBEDDINGS = typer.Option("--embeddings", metavar="FILE", help=EMBEDDINGS_HELP)
_NORMALIZE = typer.Option("--normalize", metavar="|".join(NORMALIZATIONS), help=NORMALIZE_HELP)
_ENGINE = typer.Option("--engine", metavar="pandas|dask", help=ENGINE_HELP)
_COHORTS = typer.Option("--cohorts", metavar="AUDIT_JSON", help=COHORTS_HELP)

# The log and its companion files (audit, compare, validate, score, export; gate when auditing a log).
ColumnsOption = Annotated[Optional[list[str]], _COLUMN]
EmbeddingsOption = Annotated[Optional[Path], _EMBEDDINGS]
ReferenceOption = Annotated[Optional[Path], typer.Option("--reference", metavar="REF.trn", help=REFERENCE_HELP)]
SpeakerPatternOption = Annotated[
    Optional[str], typer.Option("--speaker-pattern", metavar="REGEX", help=SPEAKER_PATTERN_HELP)
]
#: validate and score: ``= "default"``.
NormalizeOption = Annotated[str, _NORMALIZE]
#: audit: ``= None``, so that the configuration file and then "default" apply.
OptionalNormalizeOption = Annotated[Optional[str], _NORMALIZE]

# Reading the log on Dask (audit, gate).
EngineOption = Annotated[str, _ENGINE]
SchedulerOption = Annotated[Optional[str], typer.Option("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP)]
BlocksizeOption = Annotated[Optional[str], typer.Option("--blocksize", metavar="SIZE", help=BLOCKSIZE_HELP)]

# Audit settings that commands besides audit take (audit, compare; gate takes them when_auditing).
MethodsOption = Annotated[Optional[list[str]], audit_option("methods", "-m")]
ByOption = Annotated[Optional[list[str]], audit_option("by")]
ByLevelOption = Annotated[Optional[str], audit_option("by_level")]
CohortsOption = Annotated[Optional[Path], _COHORTS]
#: compare measures both logs on the cohorts; without a report they are discovered on the baseline.
BaselineCohortsOption = Annotated[
    Optional[Path],
    with_help(_COHORTS, "Cohorts stored in an audit report (--json). Default: discovered on BASELINE_LOG."),
]

# gate: the options of the audit it runs when its input is a log.
GateColumnsOption = Annotated[Optional[list[str]], when_auditing(_COLUMN)]
GateEmbeddingsOption = Annotated[Optional[Path], when_auditing(_EMBEDDINGS)]
GateEngineOption = Annotated[str, when_auditing(_ENGINE)]
GateMethodsOption = Annotated[Optional[list[str]], when_auditing(audit_option("methods", "-m"))]
GateByOption = Annotated[Optional[list[str]], when_auditing(audit_option("by"))]
GateByLevelOption = Annotated[Optional[str], when_auditing(audit_option("by_level"))]

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help=QUIET_HELP)]
