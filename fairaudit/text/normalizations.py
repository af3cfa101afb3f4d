"""The text normalisations that scoring offers, declared once (light: the CLI imports it for its help)."""

from __future__ import annotations

#: Name -> what it does, in the words the CLI help and README use. ``fairaudit.text.scoring`` implements them.
NORMALIZATION_DESCRIPTIONS = {
    "default": "Unicode NFKC and zero-width characters deleted (texts that look the same are the same); lower-case; "
    "delete apostrophes; every other run of punctuation becomes a space; collapse whitespace",
    "jiwer": "jiwer's own ToLowerCase, RemovePunctuation, RemoveMultipleSpaces, Strip: punctuation is deleted, "
    "so well-known becomes wellknown",
    "whisper": "OpenAI Whisper's English normaliser: twenty five becomes 25, colour becomes color, contractions are "
    "expanded, filler words such as uh are removed; needs the optional whisper-normalizer package",
    "none": "no change except that words are split on whitespace",
}
NORMALIZATIONS = tuple(NORMALIZATION_DESCRIPTIONS)
#: How to get the optional package the "whisper" normalisation needs.
WHISPER_INSTALL = "pip install whisper-normalizer (or, in the fairaudit checkout, pip install '.[whisper]')"
