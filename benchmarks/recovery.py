"""Planted-cohort recovery of every discovery method on every planted shape (SPEC 8, issue 9).

For each shape of ``fairaudit synth`` (``fairaudit.synth.generator.SHAPES``), each log size / effect and
each seed, a log is generated with that one shape planted (its position, size and geometry vary
with the seed), and every method the shape targets is audited twice with default options and no
hint of the planted share:

* ``new``: the two-stage discovery (cells, then ``--bottom auto``: the union of the worst cells
  with the largest size-weighted gain, ``--top rest``);
* ``old``: the single-worst-cell rule of the previous release (``--bottom worst --top best``,
  ``--clusters 10``), for comparison.

The score is speaker-level F1 of the bottom cohort (speakers marked ``bottom`` in the
assignments) against the planted speakers. Bars (SPEC 8): mean F1 >= 0.9 at 5,000 speakers /
+50% with every shape >= 0.7; mean F1 >= 0.75 at 2,000 speakers / +30%.

    python benchmarks/recovery.py                 # 10 seeds, both sizes (see README for time)
    python benchmarks/recovery.py --seeds 3       # quicker
    python benchmarks/recovery.py --json out.json # every per-seed figure
    python benchmarks/recovery.py --synth mean_utterances=200   # another data regime (any synthesize() setting)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from calibration import f1, run_tasks  # noqa: E402

import fairaudit  # noqa: E402
from fairaudit.synth.generator import SHAPES, synthesize  # noqa: E402

SIZES = ((2000, 0.3), (5000, 0.5))
#: "old": the release before issue 9 (single worst cell, best cell as top, k = 10 clusters, and
#: geo-tree splitting on each speaker's own WER).
RULES = {
    "new": {},
    "old": {"bottom": "worst", "top": "best", "clusters": 10, "tree_neighbours": 1},
}
BARS = {(5000, 0.5): (0.9, 0.7), (2000, 0.3): (0.75, None)}  # (mean bar, every-shape bar)


def recovery_task(
    shape: str,
    n_speakers: int,
    effect: float,
    seed: int,
    methods: tuple[str, ...] = (),
    extra: dict | None = None,
    rules: tuple[str, ...] = tuple(RULES),
    synth_options: dict | None = None,
) -> list[dict]:
    """F1 of each target method's bottom cohort, under the new and the old rule, on one log
    (``synth_options``: other generator settings, e.g. ``base_wer`` or ``mean_utterances``)."""
    synth = synthesize(n_speakers, effect=effect, plant=[shape], seed=seed, **(synth_options or {}))
    planted = set(synth.truth["planted"][shape]["speaker_ids"])
    rows = []
    for method in SHAPES[shape].targets:
        if methods and method not in methods:
            continue
        for rule in rules:
            options = {**RULES[rule], **(extra or {})}
            start = time.perf_counter()
            result = fairaudit.audit(
                synth.log,
                methods=[method],
                embeddings=synth.embeddings if method == "embedding-kmeans" else None,
                bootstrap=0,
                permutations=0,
                seed=seed,
                **options,
            )
            assignments = result.assignments()
            bottom = assignments[(assignments["method"] == method) & assignments["bottom"].astype(bool)]
            rows.append(
                {
                    "shape": shape,
                    "method": method,
                    "rule": rule,
                    "n_speakers": n_speakers,
                    "effect": effect,
                    "seed": seed,
                    "f1": f1(set(bottom["speaker_id"].astype(str)), planted),
                    "planted": len(planted),
                    "found": len(bottom),
                    "seconds": time.perf_counter() - start,
                }
            )
    return rows


def table(rows: list[dict], n_speakers: int, effect: float) -> tuple[str, dict]:
    """Markdown table per (shape, method): new mean/min, old mean/min; and the overall means."""
    groups: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    shares: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["n_speakers"] == n_speakers and row["effect"] == effect:
            groups[(row["shape"], row["method"])][row["rule"]].append(row["f1"])
            if row["rule"] == "new":
                shares[row["shape"]].append(100 * row["planted"] / n_speakers)
    lines = [
        f"#### {n_speakers:,} speakers, +{effect:.0%} WER",
        "",
        "| shape | method | planted share % | new: mean F1 | new: min | old rule: mean F1 | old: min |",
        "|---|---|---|---|---|---|---|",
    ]
    means = {"new": [], "old": []}
    for (shape, method), by_rule in sorted(
        groups.items(), key=lambda item: (list(SHAPES).index(item[0][0]), item[0][1])
    ):
        new, old = by_rule["new"], by_rule["old"] or [float("nan")]
        means["new"].append(np.mean(new))
        means["old"].append(np.mean(old))
        lines.append(
            f"| {shape} | {method} | {np.mean(shares[shape]):.1f} | {np.mean(new):.3f} | {np.min(new):.2f} | "
            f"{np.mean(old):.3f} | {np.min(old):.2f} |"
        )
    summary = {rule: float(np.mean(values)) for rule, values in means.items()}
    summary["new_min_shape_mean"] = float(np.min(means["new"]))
    lines.append(f"| **all** | | | **{summary['new']:.3f}** | | **{summary['old']:.3f}** | |")
    return "\n".join(lines), summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per shape and size (default 10)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="first seed (default 0; another range checks a change on unseen logs)"
    )
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), help="shapes to plant (default: all)")
    parser.add_argument("--sizes", nargs="*", default=[f"{n}:{e}" for n, e in SIZES], help="N:EFFECT pairs")
    parser.add_argument("--methods", nargs="*", default=[], help="only these methods (default: every target)")
    parser.add_argument("--rules", nargs="*", default=list(RULES), help="selection rules to run (new, old)")
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra audit options for every audit, e.g. min_gain=0 (values parsed as JSON)",
    )
    parser.add_argument(
        "--synth",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="generator settings for every log, e.g. base_wer=0.15 mean_utterances=8 (values parsed as JSON)",
    )
    parser.add_argument("--json", metavar="FILE", help="write every per-seed result to this JSON file")
    args = parser.parse_args(argv)
    extra = _key_values(args.set)
    synth_options = _key_values(args.synth)
    sizes = [(int(n), float(e)) for n, e in (pair.split(":") for pair in args.sizes)]
    calls = [
        (shape, n, e, seed, tuple(args.methods), extra, tuple(args.rules), synth_options)
        for n, e in sizes
        for shape in args.shapes
        for seed in range(args.first_seed, args.first_seed + args.seeds)
    ]
    start = time.perf_counter()
    chunks = run_tasks(_task_dict, calls, workers=args.workers, label="recovery")
    rows = [row for chunk in chunks for row in chunk["rows"]]
    print(f"\n{len(calls)} logs, {len(rows)} audits in {time.perf_counter() - start:.0f} s\n")
    for n, e in sizes:
        text, summary = table(rows, n, e)
        print(text + "\n")
        bar = BARS.get((n, e))
        if bar:
            ok = summary["new"] >= bar[0] and (bar[1] is None or summary["new_min_shape_mean"] >= bar[1])
            every = f", every shape's mean >= {bar[1]}" if bar[1] is not None else ""
            print(
                f"bar at {n:,} / +{e:.0%}: mean F1 >= {bar[0]}{every} -> {'PASS' if ok else 'MISS'} "
                f"(mean {summary['new']:.3f}, lowest shape mean {summary['new_min_shape_mean']:.3f})\n"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


def _key_values(items: list[str]) -> dict:
    """KEY=VALUE arguments as a dict, values parsed as JSON."""
    return {key: json.loads(value) for key, value in (item.split("=", 1) for item in items)}


def _task_dict(*args: object) -> dict:
    """Picklable wrapper for the process pool."""
    return {"rows": recovery_task(*args)}  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
