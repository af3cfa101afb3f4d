"""Word-level scoring of reference/hypothesis text: substitutions, deletions, insertions per pair.

Normalisation (``normalize="default"``, applied identically to reference and hypothesis):

0. Unicode NFKC, and invisible format characters (zero-width space, joiners) deleted, so texts
   that look the same are the same (a decomposed "é" equals the composed one);
1. lower-case (Unicode-aware);
2. apostrophes (``'``, ``’``, ``‘``, `````) are deleted, so ``don't`` becomes ``dont``;
3. every other run of Unicode punctuation (category P: ``.,;:!?"()-`` ...) becomes one space, so
   ``well-known`` becomes ``well known`` and ``end.Start`` becomes ``end start``;
4. whitespace (including Unicode spaces) is collapsed to single spaces and trimmed.

The other choices are declared in ``fairaudit.text.normalizations``: "jiwer" (punctuation deleted),
"whisper" (Whisper's English normaliser, applied once per distinct text). Words are then the
space-separated tokens. ``normalize="none"`` skips steps 1-3 (words are still
split on whitespace). Counts come from jiwer's minimum-edit-distance word alignment. An empty
hypothesis is all deletions; an empty reference (jiwer refuses those) has ``ref_words = 0`` and
``errors = insertions = number of hypothesis words``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jiwer
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fairaudit.errors import UsageError
from fairaudit.text.normalizations import NORMALIZATIONS, WHISPER_INSTALL

SCORE_COLUMNS = ("substitutions", "deletions", "insertions", "ref_words", "errors")
_BATCH = 20_000  # pairs per jiwer call: bounds the memory of jiwer's alignment objects
_SPLIT = jiwer.Compose([jiwer.ReduceToListOfListOfWords()])


def check_normalize(normalize: str) -> str:
    """Return the normalisation name if known, else raise a UsageError listing the choices."""
    if normalize not in NORMALIZATIONS:
        raise UsageError(
            f"unknown normalisation {normalize!r}; choose one of: {', '.join(NORMALIZATIONS)}",
            value=normalize,
        )
    if normalize == "whisper":
        whisper_normalizer()  # fail before reading a large log, not after
    return normalize


# --- normalisation steps: each one Arrow array -> Arrow array, vectorised ----------------------

Step = Callable[[pa.Array], pa.Array]


def lowercase(arr: pa.Array) -> pa.Array:
    return pc.utf8_lower(arr)


def delete_apostrophes(arr: pa.Array) -> pa.Array:
    """don't -> dont (straight, curly and backtick apostrophes)."""
    return pc.replace_substring_regex(arr, pattern="['’‘`]", replacement="")


def unicode_compatibility(arr: pa.Array) -> pa.Array:
    """One spelling per character: Unicode NFKC (a decomposed e + accent is é, ﬁ is fi, ２ is 2) and
    invisible format characters (zero-width space, joiners, byte-order mark) deleted, so texts that
    look the same compare equal."""
    return pc.replace_substring_regex(pc.utf8_normalize(arr, form="NFKC"), pattern=r"\p{Cf}+", replacement="")


def punctuation_to_space(arr: pa.Array) -> pa.Array:
    """Every run of Unicode punctuation becomes a space: well-known -> well known."""
    return pc.replace_substring_regex(arr, pattern=r"\pP+", replacement=" ")


def delete_punctuation(arr: pa.Array) -> pa.Array:
    """Every Unicode punctuation character is deleted, as jiwer's RemovePunctuation: well-known -> wellknown."""
    return pc.replace_substring_regex(arr, pattern=r"\pP+", replacement="")


def whisper_english(arr: pa.Array) -> pa.Array:
    """OpenAI Whisper's English normaliser, once per distinct text (pure Python, about 0.1 ms a text)."""
    normalizer = whisper_normalizer()
    encoded = pc.dictionary_encode(arr)
    distinct = encoded.dictionary.to_pylist()
    normalized = pa.array([normalizer(text) for text in distinct], pa.string())
    return normalized.take(encoded.indices)


#: Each named normalisation (declared with its description in ``fairaudit.text.normalizations``)
#: as its list of steps; every one ends by collapsing whitespace (:func:`normalize_texts`).
STEPS: dict[str, tuple[Step, ...]] = {
    "default": (unicode_compatibility, lowercase, delete_apostrophes, punctuation_to_space),
    "jiwer": (lowercase, delete_punctuation),
    "whisper": (whisper_english,),
    "none": (),
}


def normalize_texts(texts: Sequence[str] | pa.Array | pa.ChunkedArray, normalize: str = "default") -> pa.Array:
    """Normalise texts (vectorised in Arrow) to single-space-separated words; missing becomes ""."""
    check_normalize(normalize)
    arr = _to_string_array(texts)
    for step in STEPS[normalize]:
        arr = step(arr)
    arr = pc.replace_substring_regex(arr, pattern=r"[\s\p{Z}]+", replacement=" ")
    return pc.utf8_trim(arr, characters=" ")


def whisper_normalizer():
    """Whisper's English text normaliser, or a UsageError saying how to install it."""
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError:
        raise UsageError(
            f"--normalize whisper needs the whisper-normalizer package, which is not installed; {WHISPER_INSTALL}",
            value="whisper",
        ) from None
    return EnglishTextNormalizer()


def word_counts(normalized: pa.Array) -> np.ndarray:
    """Number of words in each normalised (single-spaced, trimmed) text."""
    spaces = pc.count_substring(normalized, pattern=" ").to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(normalized), 0).to_numpy(zero_copy_only=False)
    return np.where(empty, 0, spaces.astype(np.int64) + 1)


def score_texts(references: Sequence[str], hypotheses: Sequence[str], normalize: str = "default") -> pd.DataFrame:
    """Score reference/hypothesis pairs: one row per pair with S, D, I, ref_words, errors (int64)."""
    refs = normalize_texts(references, normalize)
    hyps = normalize_texts(hypotheses, normalize)
    if len(refs) != len(hyps):
        raise UsageError(f"{len(refs)} references but {len(hyps)} hypotheses: they must pair up")
    n = len(refs)
    ref_words = word_counts(refs)
    hyp_words = word_counts(hyps)
    sub = np.zeros(n, np.int64)
    dele = np.where(hyp_words == 0, ref_words, 0).astype(np.int64)
    ins = np.where(ref_words == 0, hyp_words, 0).astype(np.int64)
    both = np.flatnonzero((ref_words > 0) & (hyp_words > 0))
    if len(both):
        s, d, i = _align_counts(refs.take(pa.array(both)), hyps.take(pa.array(both)))
        sub[both], dele[both], ins[both] = s, d, i
    return pd.DataFrame(
        {
            "substitutions": sub,
            "deletions": dele,
            "insertions": ins,
            "ref_words": ref_words.astype(np.int64),
            "errors": sub + dele + ins,
        }
    )


def _align_counts(refs: pa.Array, hyps: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pair S, D, I from jiwer's alignments, in batches (all texts non-empty)."""
    n = len(refs)
    sub, dele, ins = (np.zeros(n, np.int64) for _ in range(3))
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        out = jiwer.process_words(
            refs.slice(start, stop - start).to_pylist(),
            hyps.slice(start, stop - start).to_pylist(),
            reference_transform=_SPLIT,
            hypothesis_transform=_SPLIT,
        )
        for k, chunks in enumerate(out.alignments, start):
            s = d = i = 0
            for c in chunks:
                kind = c.type
                if kind == "substitute":
                    s += c.ref_end_idx - c.ref_start_idx
                elif kind == "delete":
                    d += c.ref_end_idx - c.ref_start_idx
                elif kind == "insert":
                    i += c.hyp_end_idx - c.hyp_start_idx
            sub[k], dele[k], ins[k] = s, d, i
    return sub, dele, ins


def _to_string_array(texts) -> pa.Array:
    """Coerce a sequence/Series/Arrow array of texts to an Arrow string array, nulls as ""."""
    if isinstance(texts, pa.ChunkedArray):
        arr = texts.combine_chunks()
    elif isinstance(texts, pa.Array):
        arr = texts
    elif isinstance(texts, pd.Series):
        arr = pa.array(texts.astype(object).where(texts.notna(), None).tolist(), type=pa.string())
    else:
        arr = pa.array([None if t is None else str(t) for t in texts], type=pa.string())
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    return pc.fill_null(arr, "")
