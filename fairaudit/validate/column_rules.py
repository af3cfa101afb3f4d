"""The utterance log's column names and rules (SPEC 2): canonical columns, text columns, error forms."""

from __future__ import annotations

from fairaudit.model import log as logs
from fairaudit.model.log import DELETIONS, INSERTIONS, SUBSTITUTIONS

WER, REFERENCE, HYPOTHESIS = "wer", "reference", "hypothesis"


#: Every canonical column name of the utterance log (SPEC section 2).
CANONICAL_COLUMNS = (
    logs.SPEAKER,
    logs.UTTERANCE,
    logs.ERRORS,
    logs.REF_WORDS,
    SUBSTITUTIONS,
    DELETIONS,
    INSERTIONS,
    WER,
    REFERENCE,
    HYPOTHESIS,
    logs.LATITUDE,
    logs.LONGITUDE,
    logs.ZIP_CODE,
)


#: Columns always read as text, never guessed as numbers ("007" stays "007", "02134" keeps its 0).
STRING_COLUMNS = (
    logs.SPEAKER,
    logs.UTTERANCE,
    logs.ZIP_CODE,
    REFERENCE,
    HYPOTHESIS,
    # counts and rates too: pyarrow's CSV reader would read "0x10" as 16; they are parsed
    # here, strictly (plain decimal numbers only), by count_column and float_column
    logs.ERRORS,
    logs.REF_WORDS,
    "substitutions",
    "deletions",
    "insertions",
    "wer",
)


#: The four forms of error information, in order of preference (the first complete one is used).
ERROR_FORMS: dict[str, tuple[str, ...]] = {
    "errors": (logs.ERRORS, logs.REF_WORDS),
    "sdi": (SUBSTITUTIONS, DELETIONS, INSERTIONS, logs.REF_WORDS),
    "wer": (WER, logs.REF_WORDS),
    "text": (REFERENCE, HYPOTHESIS),
}


#: Columns that carry error information: never metadata.
ERROR_COLUMNS = (logs.ERRORS, logs.REF_WORDS, SUBSTITUTIONS, DELETIONS, INSERTIONS, WER, REFERENCE, HYPOTHESIS)


def has_anatomy(present: set[str] | frozenset[str]) -> bool:
    """Whether a log with these canonical columns gives substitutions, deletions and insertions
    per utterance: it has all three count columns, or reference and hypothesis text to score."""
    return set(ERROR_FORMS["sdi"]) <= present or set(ERROR_FORMS["text"]) <= present
