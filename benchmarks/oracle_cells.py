"""How good are a method's cells, apart from the choice of the bottom cohort? (issue 9)

For planted logs of ``fairaudit synth``, the "oracle" F1 is that of the best union a selection could
make from the method's cells if it knew the truth: every cell whose speakers are mostly planted.
Next to it, the F1 of the bottom cohort the default audit actually chooses. A low oracle means the
cells are the limit; a high oracle with a low actual F1 means the selection is.

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
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="audit options (JSON values)")
    args = parser.parse_args()
    extra = {k: json.loads(v) if v not in ("auto",) else v for k, v in (item.split("=", 1) for item in args.set)}
    for shape in args.shapes:
        oracle, actual = [], []
        for seed in range(args.seeds):
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
            actual.append(f1(set(ids[rows["bottom"].astype(bool)]), planted))
        print(
            f"{shape} / {args.method} ({args.speakers} speakers, +{args.effect:.0%}, {extra or 'defaults'}): "
            f"oracle F1 {np.mean(oracle):.2f}, actual {np.mean(actual):.2f}; per seed oracle "
            f"{[round(x, 2) for x in oracle]}"
        )


if __name__ == "__main__":
    main()
