"""Cost of the analysis stages that grow with speakers (issue 12): the bootstrap and each method's
permutation test, timed alone on the speaker table of a `scale.py` log.

    python benchmarks/scale.py --sizes 1000000                    # makes /tmp/fairaudit-bench/indep_1M.csv
    python benchmarks/stage_costs.py /tmp/fairaudit-bench/indep_1M.csv
    python benchmarks/stage_costs.py /tmp/fairaudit-bench/indep_10M_1000000spk.csv --replicates 200

Prints wall seconds, peak resident memory and a checksum per stage: the checksum (sum of the
bootstrap WERs, or of the null statistics) must not change when a stage is only made faster.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from fairaudit.api import load_log
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.methods.geo_scan import GeoScan
from fairaudit.methods.geo_tree import GeoTree
from fairaudit.methods.zip_demographic import ZipDemographic
from fairaudit.stats.metrics import Selection
from fairaudit.stats.resampling import bootstrap_partitions, permutation_blocks
from fairaudit.stats.selection import SelectionRule


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", help="a log written by benchmarks/scale.py")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates (default 1000)")
    parser.add_argument("--permutations", type=int, default=200, help="permutations per method (default 200)")
    args = parser.parse_args()
    speakers = build_speaker_table(load_log(args.log))
    n = len(speakers)
    print(f"{args.log}: {n:,} speakers")

    # The bootstrap over four partitions of the sizes the default audit makes (16, 6, 2, 24 cohorts).
    rng = np.random.default_rng(0)
    designs = []
    for k in (16, 6, 2, 24):
        indicator = np.zeros((n, k))
        indicator[np.arange(n), rng.integers(0, k, n)] = 1
        bottom, top = np.zeros((1, k), bool), np.ones((1, k), bool)
        bottom[0, 0], top[0, 0] = True, False
        designs.append((indicator, Selection(bottom=bottom, top=top)))
    start = time.perf_counter()
    boots = bootstrap_partitions(
        designs, speakers.errors, speakers.ref_words, args.replicates, np.random.default_rng(1)
    )
    checksum = sum(float(np.nansum(b["wer"])) for b in boots)
    print(
        f"bootstrap, {args.replicates} replicates: {time.perf_counter() - start:.2f} s, "
        f"peak {peak_gib():.2f} GiB, checksum {checksum:.10g}"
    )

    rule = SelectionRule(min_speakers=30)
    for method in (GeoTree(), GeoScan(), ZipDemographic()):
        method.fit(speakers)
        start = time.perf_counter()
        parts = [
            method.null_gaps(speakers, block, rule)
            for block in permutation_blocks(method.partition_.assigned, n, args.permutations, np.random.default_rng(0))
        ]
        null = np.concatenate(parts)
        print(
            f"{method.name}: {args.permutations} permutations {time.perf_counter() - start:.2f} s, "
            f"peak {peak_gib():.2f} GiB, checksum {np.nansum(null):.10g}"
        )


if __name__ == "__main__":
    main()
