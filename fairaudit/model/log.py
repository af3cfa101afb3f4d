"""The in-memory utterance log: what ingestion produces and the speaker table consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

#: Canonical column names of the utterance log (SPEC section 2).
SPEAKER = "speaker_id"
UTTERANCE = "utterance_id"
ERRORS = "errors"
REF_WORDS = "ref_words"
LATITUDE = "latitude"
LONGITUDE = "longitude"
ZIP_CODE = "zip_code"
#: Word errors by kind, per utterance, when the log has them (S/D/I columns or reference and
#: hypothesis text): the error anatomy of SPEC 10. errors = substitutions + deletions + insertions.
SUBSTITUTIONS, DELETIONS, INSERTIONS = "substitutions", "deletions", "insertions"
ANATOMY = (SUBSTITUTIONS, DELETIONS, INSERTIONS)

#: A 64-bit hash of each utterance's reference text (logs scored from text), so that two systems'
#: logs without utterance ids can still be matched by speaker and reference (``compare``).
REFERENCE_HASH = "reference_hash"

#: Columns that are not metadata once the log is canonical.
RESERVED_COLUMNS = (SPEAKER, UTTERANCE, ERRORS, REF_WORDS, LATITUDE, LONGITUDE, ZIP_CODE, REFERENCE_HASH)


#: What an embeddings file is keyed by: speakers, utterances, or log rows (an inline emb_* column).
EmbeddingKey = Literal["speaker_id", "utterance_id", "row"]


@dataclass
class EmbeddingTable:
    """Embedding vectors keyed by speaker, by utterance, or aligned row-for-row with the log.

    ``key == "row"`` means inline ``emb_*`` columns: ``vectors[i]`` belongs to log row ``i`` and
    ``ids`` is ``None``. Otherwise ``ids[i]`` (a string) is the speaker or utterance id of
    ``vectors[i]``.
    """

    key: EmbeddingKey
    vectors: np.ndarray  # float32/float64, shape (n, d); finite, no all-zero rows
    ids: np.ndarray | None = None
    source: str | None = None  # file name, for messages


@dataclass
class UtteranceLog:
    """A validated utterance log in canonical form.

    ``frame`` has one row per utterance with columns ``speaker_id`` (string), ``errors`` and
    ``ref_words`` (int64, >= 0), and where present ``utterance_id`` (string), ``latitude`` and
    ``longitude`` (float64, NaN when missing), ``zip_code`` (5-digit strings, categorical, missing as NaN), plus
    the metadata columns listed in ``metadata_columns``. The original input file is never changed.
    """

    frame: pd.DataFrame
    metadata_columns: list[str] = field(default_factory=list)
    embeddings: EmbeddingTable | None = None
    path: str | None = None
    sha256: str | None = None
    error_form: str = "errors"  # which of the SPEC's four forms the counts came from
    text_normalization: str | None = None  # the --normalize used when counts were scored from text
    notes: list[str] = field(default_factory=list)  # repairs and warnings to show the user
    #: ZIP codes repaired per column (lost leading zeros), the count behind that note: the Dask
    #: engine adds them up over the pieces of one log.
    zip_repairs: dict[str, int] = field(default_factory=dict)
    #: The speaker column dictionary-encoded once at ingest (issue 12): ``speaker_ids`` sorted,
    #: ``speaker_codes[i]`` the position of row i's speaker in it. None: computed when needed.
    speaker_codes: np.ndarray | None = field(default=None, repr=False)
    speaker_ids: pd.Index | None = field(default=None, repr=False)

    @property
    def n_utterances(self) -> int:
        return len(self.frame)
