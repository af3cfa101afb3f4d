"""How good are a method's cells, apart from the choice of the bottom cohort? (issue 9)

For planted logs of ``fairaudit synth``, the "oracle" F1 is that of the best union a selection could
make from the method's cells if it knew the truth: every cell whose speakers are mostly planted.
"best j" is the best F1 over the unions SPEC 5's ``--bottom auto`` can choose from (the j worst
cells by pooled WER, any j): the loss from "best j" to "actual" is the rule's choice of j alone.
Next to them, the F1 of the bottom cohort the default audit actually chooses. A low oracle means
the cells are the limit; a high oracle with a low actual F1 means the selection is.

Logs are split by the planted cohort's own signal: z is the standardised sum of geo-scan's robust
speaker scores over the planted speakers (its expected value grows with the square root of the
cohort's effective size); below about 4, noise windows of the same size score as high.

    python benchmarks/oracle_cells.py --shapes circle box state --method geo-tree
    python benchmarks/oracle_cells.py --shapes circle --method geo-tree --set max_regions=64 min_gain=0
    python benchmarks/oracle_cells.py --shapes emb-merge emb-split --method embedding-kmeans
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import f1  # noqa: E402

import fairaudit  # noqa: E402
from fairaudit.synth.generator import synthesize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--speakers", type=int, default=2000)
    parser.add_argument("--effect", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="audit options (JSON values)")
    args = parser.parse_args()
    extra = {k: json.loads(v) if v not in ("auto",) else v for k, v in (item.split("=", 1) for item in args.set)}
    for shape in args.shapes:
        oracle, prefix, actual, signal = [], [], [], []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            synth = synthesize(args.speakers, effect=args.effect, plant=[shape], seed=seed)
            planted = set(synth.truth["planted"][shape]["speaker_ids"])
            result = fairaudit.audit(
                synth.log,
                methods=[args.method],
                embeddings=synth.embeddings if args.method == "embedding-kmeans" else None,
                bootstrap=0,
                permutations=0,
                seed=seed,
                **extra,
            )
            rows = result.assignments()
            rows = rows[rows["method"] == args.method]
            ids = rows["speaker_id"].astype(str)
            in_planted = ids.isin(planted)
            share = in_planted.groupby(rows["cohort_id"]).mean()
            mostly = set(share.index[share > 0.5])
            oracle.append(f1(set(ids[rows["cohort_id"].isin(mostly)]), planted))
            prefix.append(_best_prefix_f1(result, args.method, rows, ids, planted))
            actual.append(f1(set(ids[rows["bottom"].astype(bool)]), planted))
            signal.append(_planted_z(synth))
        z = np.array(signal)
        strong = z >= STRONG_Z
        print(
            f"{shape} / {args.method} ({args.speakers} speakers, +{args.effect:.0%}, {extra or 'defaults'}): "
            f"oracle F1 {np.mean(oracle):.2f}, best j {np.mean(prefix):.2f}, actual {np.mean(actual):.2f}; "
            f"logs with planted z >= {STRONG_Z:g}: {strong.sum()}/{len(z)}, oracle {_mean(oracle, strong)}, "
            f"best j {_mean(prefix, strong)}, actual {_mean(actual, strong)}; z < {STRONG_Z:g}: actual "
            f"{_mean(actual, ~strong)}"
        )


STRONG_Z = 4.0


def _mean(values: list[float], mask: np.ndarray) -> str:
    """Mean of the masked values, or '-' when none."""
    chosen = np.asarray(values)[mask]
    return f"{chosen.mean():.2f}" if len(chosen) else "-"


def _best_prefix_f1(result, method: str, rows, ids, planted: set[str]) -> float:
    """Best F1 over the unions of the j worst eligible cells (by pooled WER), j = 1, 2, ..."""
    cohorts = result.to_frame()
    cohorts = cohorts[(cohorts["method"] == method) & cohorts["eligible"].astype(bool)]
    ranked = cohorts.sort_values("wer", ascending=False)["id"].tolist()
    best, chosen = 0.0, []
    for cohort in ranked:
        chosen.append(cohort)
        best = max(best, f1(set(ids[rows["cohort_id"].isin(chosen)]), planted))
    return best


def _planted_z(synth) -> float:
    """geo-scan's standardised robust score of the planted speakers (their signal against noise)."""
    from fairaudit.methods.geo_scan import _speaker_scores, _standardise
    from fairaudit.stats.metrics import negative_binomial_alpha

    speakers = synth.speakers
    errors = speakers["errors"].to_numpy(np.float64)
    words = speakers["ref_words"].to_numpy(np.float64)
    rate = errors.sum() / words.sum()
    scores = _speaker_scores(errors, words, rate, negative_binomial_alpha(errors, words, rate, 0))
    mask = speakers["planted"].to_numpy(bool)
    size = mask.sum()
    return float(_standardise(scores[mask].sum() - size * scores.mean(), size, scores.var(), len(scores)))


if __name__ == "__main__":
    main()
