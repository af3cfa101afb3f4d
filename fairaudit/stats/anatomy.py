"""Error anatomy per cohort (SPEC 10): what kind of errors a cohort suffers, beside its pooled WER.

Rates are per reference word, pooled over the cohort (errors of a kind / reference words), so
substitution + deletion + insertion rate = WER. The mean of per-utterance WERs is reported only
for comparison with published work that uses it (Koenecke et al.), and is labelled as such: it
weights a one-word utterance like a forty-word one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fairaudit.model.log import ANATOMY, REF_WORDS
from fairaudit.model.partition import Partition
from fairaudit.model.speakers import EMPTY_HYPOTHESES, SCORED_UTTERANCES, UTTERANCE_WER_SUM, SpeakerTable

#: Per-cohort anatomy columns, in report order.
ANATOMY_FIELDS = ("substitution_rate", "deletion_rate", "insertion_rate", "empty_hypothesis_pct", "mean_utterance_wer")


def cohort_anatomy(partition: Partition, speakers: SpeakerTable) -> pd.DataFrame:
    """One row per cohort (partition order) with :data:`ANATOMY_FIELDS`; NaN where the log lacks them."""
    labels = partition.labels
    keep = labels >= 0
    k = partition.n_cohorts
    frame = speakers.frame

    def total(column: str) -> np.ndarray:
        values = frame[column].to_numpy(dtype=np.float64)[keep]
        return np.bincount(labels[keep], weights=values, minlength=k)

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        return np.divide(numerator, denominator, out=np.full(k, np.nan), where=denominator > 0)

    out = pd.DataFrame({name: np.full(k, np.nan) for name in ANATOMY_FIELDS})
    if UTTERANCE_WER_SUM in frame.columns:
        out["mean_utterance_wer"] = ratio(total(UTTERANCE_WER_SUM), total(SCORED_UTTERANCES))
    if speakers.has_anatomy:
        words = total(REF_WORDS)
        for kind, name in zip(ANATOMY, ANATOMY_FIELDS[:3]):
            out[name] = ratio(total(kind), words)
        out["empty_hypothesis_pct"] = 100.0 * ratio(total(EMPTY_HYPOTHESES), total(SCORED_UTTERANCES))
    return out
