"""Fixed audit, compare and gate runs whose JSON output is pinned, so a refactor cannot change results.

``python tests/integration/pinned/pinned_runs.py`` rewrites the pinned files (do that only for an intended change
of results, and say so in the commit); ``tests/integration/test_pinned_reports.py`` re-runs them and compares.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[2] / "examples" / "synthetic"


def _run(*args: object) -> None:
    from cli_runner import run_main  # tests/ is on sys.path under pytest and in __main__ below

    result = run_main(*args)
    assert result.code in (0, 1), result.stderr


def make_reports(work: Path) -> dict[str, Path]:
    """Run every pinned command in ``work`` and return {pin name: JSON file written}."""
    work.mkdir(parents=True, exist_ok=True)
    log = work / "eval_log.csv.gz"
    shutil.copy(EXAMPLES / "eval_log.csv.gz", log)
    shutil.copy(EXAMPLES / "eval_log.embeddings.parquet", work / "eval_log.embeddings.parquet")
    embeddings = work / "eval_log.embeddings.parquet"
    out = {name: work / f"{name}.json" for name in ("all_methods", "options", "compare", "gate")}

    _run(
        "audit",
        log,
        "--embeddings",
        embeddings,
        "--bootstrap",
        100,
        "--permutations",
        40,
        "--quiet",
        "--json",
        out["all_methods"],
    )

    synth = work / "planted.csv"
    _run(
        "synth",
        "-o",
        synth,
        "--speakers",
        1200,
        "--plant",
        "circle",
        "--plant",
        "zip-quantile",
        "--effect",
        0.5,
        "--seed",
        3,
        "--embeddings",
        "none",
    )
    _run(
        "audit",
        synth,
        "--by",
        "gender",
        "--by",
        "age_group,accent",
        "-m",
        "attribute",
        "-m",
        "geo-scan",
        "-m",
        "zip-demographic",
        "--bottom",
        "worst",
        "--top",
        "best",
        "--holdout",
        0.3,
        "--bootstrap",
        80,
        "--permutations",
        30,
        "--seed",
        7,
        "--quiet",
        "--json",
        out["options"],
    )

    worse = work / "new_model.csv"
    frame = pd.read_csv(log)
    south = frame["latitude"] < 33
    frame.loc[south, "errors"] = frame.loc[south, "errors"] + 1
    frame.to_csv(worse, index=False)
    _run(
        "compare",
        log,
        worse,
        "--cohorts",
        out["all_methods"],
        "--embeddings",
        embeddings,
        "--bootstrap",
        100,
        "--json",
        out["compare"],
    )
    policy = work / "fairaudit.toml"
    example = (EXAMPLES.parent / "ci" / "fairaudit.toml").read_text()
    policy.write_text(
        example.replace("bootstrap = 1000", "bootstrap = 100").replace("permutations = 200", "permutations = 40")
    )
    _run(
        "gate",
        worse,
        "--baseline",
        out["all_methods"],
        "--embeddings",
        embeddings,
        "--quiet",
        "--policy",
        policy,
        "--json",
        out["gate"],
        "--junit",
        work / "gate.xml",
    )
    out["gate_junit"] = work / "gate.xml"
    return out


def normalised(path: Path) -> object:
    """The output with the machine-specific working folder replaced by ``<work>`` (all else must match)."""
    work = str(path.parent)
    if path.suffix == ".xml":
        return path.read_text().replace(work, "<work>").splitlines()
    data = json.loads(path.read_text())

    def scrub(node: object) -> object:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str):
            return node.replace(work, "<work>")
        return node

    return scrub(data)


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(HERE.parents[1]))
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in make_reports(Path(tmp)).items():
            (HERE / f"{name}.json").write_text(json.dumps(normalised(path), indent=1, sort_keys=True) + "\n")
            print("pinned", name)
