"""The speaker table: per-speaker outcomes and metadata, the unit every discovery method works on.

Utterances of one speaker are not independent, so discovery, bootstrap and permutation all work on
speakers (SPEC section 3). The engines build it (:mod:`fairaudit.engines.speaker_table`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fairaudit.model.log import ANATOMY, ERRORS, REF_WORDS

#: Per speaker: the sum of the per-utterance WERs and the number of utterances with reference
#: words (for the mean of per-utterance WERs that published work reports, never for WER itself).
UTTERANCE_WER_SUM, SCORED_UTTERANCES = "utterance_wer_sum", "scored_utterances"
#: Per speaker, when the log has the error anatomy: utterances whose hypothesis has no words.
EMPTY_HYPOTHESES = "empty_hypotheses"


@dataclass
class SpeakerTable:
    """One row per speaker, sorted by speaker id.

    ``frame`` is indexed by ``speaker_id`` and holds ``errors``, ``ref_words`` and ``utterances``
    (int64), ``latitude``/``longitude`` (median over the speaker's utterances, NaN if none),
    ``zip_code`` (most frequent) and the most frequent value of every metadata column.
    ``embeddings`` is an (n_speakers, d) array of L2-normalised mean vectors, NaN rows for speakers
    without one. ``conflicts`` counts speakers whose metadata disagreed across utterances.
    """

    frame: pd.DataFrame
    metadata_columns: list[str] = field(default_factory=list)
    embeddings: np.ndarray | None = None
    conflicts: dict[str, int] = field(default_factory=dict)
    #: Utterance-level tables only (``--by`` on a column that varies within speakers): one row per
    #: speaker and value, ``clusters[row]`` the position of its speaker in the speaker table. The
    #: bootstrap resamples whole speakers and the randomisation test keeps each speaker's errors.
    clusters: np.ndarray | None = None

    @property
    def utterance_level(self) -> bool:
        """Whether rows are (speaker, value) groups of utterances rather than speakers."""
        return self.clusters is not None

    @property
    def n_speakers(self) -> int:
        """Distinct speakers (rows of a speaker-level table; distinct clusters of an utterance-level one)."""
        return len(self) if self.clusters is None else len(np.unique(self.clusters))

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def speaker_ids(self) -> np.ndarray:
        return self.frame.index.to_numpy()

    @property
    def errors(self) -> np.ndarray:
        return self.frame[ERRORS].to_numpy(dtype=np.int64)

    @property
    def ref_words(self) -> np.ndarray:
        return self.frame[REF_WORDS].to_numpy(dtype=np.int64)

    @property
    def utterances(self) -> np.ndarray:
        return self.frame["utterances"].to_numpy(dtype=np.int64)

    @property
    def has_anatomy(self) -> bool:
        """Whether substitutions, deletions, insertions and empty hypotheses are known per speaker."""
        return all(kind in self.frame.columns for kind in ANATOMY)

    def has_column(self, name: str) -> bool:
        return name in self.frame.columns and bool(self.frame[name].notna().any())

    def subset(self, positions: np.ndarray) -> SpeakerTable:
        """The table restricted to the speakers at ``positions`` (e.g. a hold-out split)."""
        positions = np.asarray(positions)
        emb = None if self.embeddings is None else self.embeddings[positions]
        return SpeakerTable(
            frame=self.frame.iloc[positions],
            metadata_columns=list(self.metadata_columns),
            embeddings=emb,
            conflicts=dict(self.conflicts),
            clusters=None if self.clusters is None else self.clusters[positions],
        )

    def of_speakers(self, speaker_positions: np.ndarray) -> SpeakerTable:
        """The rows of the speakers at ``speaker_positions`` (positions in the speaker table)."""
        if self.clusters is None:
            return self.subset(speaker_positions)
        return self.subset(np.flatnonzero(np.isin(self.clusters, speaker_positions)))

    def with_outcomes(self, errors: np.ndarray, ref_words: np.ndarray) -> SpeakerTable:
        """A copy with other per-speaker outcomes (used by the permutation test)."""
        frame = self.frame.copy(deep=False)
        frame[ERRORS] = errors
        frame[REF_WORDS] = ref_words
        return SpeakerTable(frame, list(self.metadata_columns), self.embeddings, dict(self.conflicts), self.clusters)
