"""The Dask engine on a real scheduler (issue 12): one log audited by the pandas engine and by
``--engine dask --scheduler`` on a LocalCluster of 2 single-thread worker processes, in one run.

    python benchmarks/scale.py --sizes 1000000 --speakers 100000      # writes the log (if absent)
    python benchmarks/dask_cluster.py /tmp/fairaudit-bench/indep_1M.csv

Prints each command's wall time, its exit code, how many characters it wrote to stderr (Dask's own
messages must not reach the user) and whether every method's cohorts are identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

METHODS = ["--method", "geo-tree", "--method", "zip-demographic", "--method", "embedding-kmeans"]


def timed_audit(log: Path, embeddings: Path, out: Path, extra: list[str]) -> tuple[float, int, str]:
    """Wall seconds, exit code and stderr of one `fairaudit audit` in a fresh process."""
    start = time.perf_counter()
    done = subprocess.run(
        ["fairaudit", "audit", str(log), "--embeddings", str(embeddings), *METHODS, "-q", *extra, "--json", str(out)],
        capture_output=True,
        text=True,
    )
    return time.perf_counter() - start, done.returncode, done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    args = parser.parse_args()
    import distributed

    embeddings = args.log.with_name(args.log.name.replace(".csv", ".embeddings.parquet"))
    outputs = {name: args.log.with_name(f"{args.log.stem}.{name}.json") for name in ("pandas", "dask")}
    seconds, code, err = timed_audit(args.log, embeddings, outputs["pandas"], [])
    print(f"pandas engine:                  {seconds:6.1f} s  exit {code}  stderr {len(err)} characters")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        seconds, code, err = timed_audit(
            args.log, embeddings, outputs["dask"], ["--engine", "dask", "--scheduler", cluster.scheduler_address]
        )
    print(f"dask, LocalCluster of 2 workers: {seconds:6.1f} s  exit {code}  stderr {len(err)} characters")
    reports = {name: json.loads(path.read_text()) for name, path in outputs.items()}
    same = all(
        reports["pandas"]["methods"][m]["cohorts"] == reports["dask"]["methods"][m]["cohorts"]
        for m in reports["pandas"]["methods"]
    )
    print(f"identical cohorts in every method: {same}")


if __name__ == "__main__":
    main()
