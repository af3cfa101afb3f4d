"""Is the Indian-accent gap on the Artie Bias Corpus explained by gender or age? (SPEC 10, issue 14)

Joins the corpus (Common Voice clips with accent, gender and age tags; ../shared/data, see its
README) with one commercial recogniser's transcripts, audits by accent, and adjusts the gap for
the speakers' gender and age. Run from the repository root:

    python examples/real/artie_adjusted.py [SYSTEM]

SYSTEM is a file name in predictions/ without .tsv (default amazon-en-US-dec-9-2019).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

import fairaudit
from fairaudit.render.terminal import adjusted_line

ARTIE = Path(__file__).resolve().parents[3] / "shared" / "data" / "artie-bias-corpus"


def read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)


def artie_log(system: str) -> pd.DataFrame:
    """One row per clip: speaker, clip, accent, gender, age, reference and the system's hypothesis."""
    corpus = read_tsv(ARTIE / "artie-bias-corpus.tsv")
    predictions = read_tsv(ARTIE / "predictions" / f"{system}.tsv")
    corpus["stem"] = corpus["path"].str.rsplit(".", n=1).str[0]
    predictions["stem"] = predictions["path"].str.rsplit(".", n=1).str[0]
    joined = corpus.merge(predictions[["stem", "prediction"]], on="stem", validate="one_to_one")
    return joined.rename(
        columns={"client_id": "speaker_id", "path": "utterance_id", "sentence": "reference", "prediction": "hypothesis"}
    )[["speaker_id", "utterance_id", "accent", "gender", "age", "reference", "hypothesis"]]


def main(system: str = "amazon-en-US-dec-9-2019") -> None:
    result = fairaudit.audit(
        artie_log(system),
        methods=["attribute"],
        by=["accent"],
        adjust=["gender", "age"],
        target_gap=25,
        min_speakers=20,
        seed=0,
    )
    method = result.methods["attribute"]
    figures = method.discovery
    print(
        f"{system}: WER gap {figures.wer_gap_pct:.1f}% between {', '.join(figures.bottom)} "
        f"(WER {100 * figures.bottom_wer:.1f}%) and the rest (WER {100 * figures.top_wer:.1f}%); {method.verdict}"
    )
    print(adjusted_line(figures))
    bottom = figures.cohorts[figures.cohorts["id"].isin(figures.bottom)].iloc[0]
    print(
        f"error anatomy of {bottom['id']}: substitutions {100 * bottom['substitution_rate']:.1f}%, "
        f"deletions {100 * bottom['deletion_rate']:.1f}%, insertions {100 * bottom['insertion_rate']:.1f}% "
        f"of reference words; empty hypotheses {bottom['empty_hypothesis_pct']:.1f}% of clips; "
        f"mean of per-clip WERs {100 * bottom['mean_utterance_wer']:.1f}% (not the WER)"
    )
    print(f"detectable bottom-vs-rest gap at 80% power: {figures.detectable_gap_pct:.0f}%")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except (fairaudit.errors.UsageError, fairaudit.errors.InputError, FileNotFoundError) as error:
        # e.g. --adjust without statsmodels, or the corpus not beside the repository
        sys.exit(f"error: {error}")
