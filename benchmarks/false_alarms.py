"""False alarms of every default discovery method on null logs (SPEC 8 calibration bar).

Each null log (``fairaudit synth`` with nothing planted) is audited with every method that runs by
default and the default options (``--bottom auto``, ``--top rest``, 200 permutations); the
permutation test re-runs both discovery stages (cells, then the bottom-cohort union) on every
shuffle. A false alarm is the verdict ``disparity`` at alpha 0.05. Bar: at most 5%.

    python benchmarks/false_alarms.py --seeds 1000      # as recorded in benchmarks/README.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import NULL_METHODS, NULL_SEED0, Rate, judge_rate, null_task, run_tasks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1000, help="null logs (default 1000)")
    parser.add_argument("--speakers", type=int, default=2000, help="speakers per log (default 2000)")
    parser.add_argument("--permutations", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--first-seed", type=int, default=NULL_SEED0, help=f"first null log's seed (default {NULL_SEED0})"
    )
    parser.add_argument("--methods", nargs="*", default=list(NULL_METHODS), help="only these methods (default: all)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    methods = tuple(args.methods)
    calls = [(args.first_seed + i, args.speakers, args.permutations, methods) for i in range(args.seeds)]
    nulls = run_tasks(null_task, calls, workers=args.workers, label="null")
    print(
        f"\n{args.seeds} null logs of {args.speakers} speakers, {args.permutations} permutations, "
        f"{time.perf_counter() - start:.0f} s"
    )
    print("| method | false alarms at 5% [95% CI] | bar <= 5% |\n|---|---|---|")
    for method in methods:
        rate = Rate.of(sum(r["verdict"][method] == "disparity" for r in nulls), len(nulls))
        print(f"| {method} | {rate.text()} | {judge_rate(rate, None, 0.05)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
