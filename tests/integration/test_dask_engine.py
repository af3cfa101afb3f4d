"""The Dask engine (``--engine dask``): same results as the pandas engine on the same input.

A synthetic log with inline embeddings, text and numeric metadata (a numeric column whose type
differs between files: integers, decimals and an all-empty file; a 0/1 column that is boolean in
another file) and ZIP codes that lost their leading zeros is written once as one file (what the
pandas engine reads) and split into four CSV files and a directory of four Parquet files (what the
Dask engine reads). Speakers straddle the file boundaries. Audit reports must be identical except
``input.path`` and ``input.sha256``; errors in one file must name that file and its line.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

import fairaudit
from fairaudit.engines import dask_engine
from fairaudit.engines.speaker_table import build_speaker_table
from fairaudit.errors import InputError
from fairaudit.io.readers import read_log
from fairaudit.synth.generator import synthesize, write_synth

FAST = {"by": ["accent"], "bootstrap": 40, "permutations": 10}
FAST_CLI = ["--by", "accent", "--bootstrap", "40", "--permutations", "10"]
N_PARTS = 4


def _comparable(report: dict) -> dict:
    """A report without the fields that name the input (path, SHA-256)."""
    report = json.loads(json.dumps(report))
    report["input"].pop("path")
    report["input"].pop("sha256")
    return report


def _split_lines(source: Path, target_dir: Path, cuts: list[int], name: str = "part-{}.csv") -> list[Path]:
    """Write rows [cuts[i], cuts[i+1]) of a CSV file to one file each, every file with the header."""
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    target_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(cuts) - 1):
        path = target_dir / name.format(i)
        path.write_text(lines[0] + "".join(lines[1 + cuts[i] : 1 + cuts[i + 1]]), encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dask_engine")
    write_synth(root / "orig.csv", synthesize(240, seed=3, embeddings="inline", mean_utterances=9))
    frame = pd.read_csv(root / "orig.csv", dtype=str, keep_default_na=False)
    n = len(frame)
    cuts = [0, n // 5, n // 2, 3 * n // 4, n]  # uneven files; speakers straddle the cuts
    snr, flag = [], []
    for i in range(N_PARTS):
        k = cuts[i + 1] - cuts[i]
        snr += {
            0: [str(j % 25) for j in range(k)],
            1: [f"{j % 25}.5" for j in range(k)],
            2: [""] * k,
            3: [str(j % 7) for j in range(k)],
        }[i]
        flag += ["true" if (i == 2 and j % 3 == 0) else str(j % 2) for j in range(k)]
    frame["snr"] = snr  # int64, double, null, int64 per file -> double over the whole log
    frame["flag"] = flag  # 0/1 (int64) in three files, 0/1/true (bool) in one -> bool
    zero = frame["zip_code"].str.startswith("0")
    frame.loc[zero, "zip_code"] = frame.loc[zero, "zip_code"].str[1:]  # repaired, with a note
    full = root / "full.csv"
    frame.to_csv(full, index=False)
    parts = root / "csv"
    _split_lines(full, parts, cuts)

    # Parquet: the same table, typed as the pandas engine reads the CSV, in one file and in four
    table = pa_csv.read_csv(
        full,
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in ("speaker_id", "utterance_id", "zip_code")}
        ),
    )
    pq.write_table(table, root / "full.parquet")
    pq_dir = root / "parquet"
    pq_dir.mkdir()
    for i in range(N_PARTS):
        pq.write_table(table.slice(cuts[i], cuts[i + 1] - cuts[i]), pq_dir / f"part-{i}.parquet")

    # no inline embeddings, and utterance-keyed vectors in an .npy whose id list has no header
    plain = frame.drop(columns=[c for c in frame.columns if c.startswith("emb_")])
    plain.to_csv(root / "plain.csv", index=False)
    _split_lines(root / "plain.csv", root / "plain", cuts)
    rng = np.random.default_rng(0)
    order = rng.permutation(n)
    np.save(root / "utt.npy", rng.normal(size=(n, 6)).astype(np.float32)[order])
    (root / "utt.ids.txt").write_text("\n".join(frame["utterance_id"].to_numpy()[order]) + "\n")
    return {
        "root": root,
        "full": full,
        "parts": parts,
        "full_parquet": root / "full.parquet",
        "pq_dir": pq_dir,
        "plain": root / "plain.csv",
        "plain_dir": root / "plain",
        "utt_npy": root / "utt.npy",
    }


@pytest.fixture(scope="module")
def cluster():
    import distributed  # in the test extra (pyproject.toml)

    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None
    ) as local:
        yield local.scheduler_address


def _cli(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    """The installed console entry point, in a child process (as a user runs it)."""
    return subprocess.run(
        [sys.executable, "-c", "from fairaudit.cli import main; main()", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.cluster
def test_cli_on_a_dask_cluster_gives_the_pandas_engine_report(data, cluster):
    """CSV files and a Parquet directory through --engine dask --scheduler ADDRESS (P2P shuffle)."""
    root = data["root"]
    cases = [("csv/*.csv", data["full"]), ("parquet", data["full_parquet"])]
    for pattern, single in cases:
        expected = json.loads(fairaudit.audit(single, **FAST).to_json())
        assert set(expected["methods"]) == {"geo-tree", "geo-scan", "zip-demographic", "embedding-kmeans", "attribute"}
        out = root / "dask.json"
        run = _cli(
            "audit", pattern, "--engine", "dask", "--scheduler", cluster, *FAST_CLI, "--json", out, "-q", cwd=root
        )
        assert run.returncode == 0, run.stderr
        report = json.loads(out.read_text())
        assert report["input"]["path"] == pattern
        assert report["input"]["utterances"] == expected["input"]["utterances"]
        assert _comparable(report) == _comparable(expected), pattern
    assert any("repaired" in note for note in expected["notes"])


@pytest.mark.cluster
def test_cluster_run_reads_embeddings_on_a_worker_and_prints_nothing_of_dask(data, cluster, monkeypatch):
    """A 15 MB --embeddings file once travelled inside the task graph ("Sending large graph of size
    ..." on the user's stderr); now a worker reads it. Same speaker embeddings as the pandas engine."""
    from fairaudit.api import load_log
    from fairaudit.engines.speaker_table import build_speaker_table

    root = data["root"]
    plain = pd.read_csv(data["plain"], dtype=str, keep_default_na=False)
    speakers = sorted(plain["speaker_id"].unique())
    extra = [f"other-{i}" for i in range(20_000)]  # ids in no log: the file is large, the log small
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(speakers) + len(extra), 192)).astype(np.float32)
    table = pd.DataFrame(vectors, columns=[f"emb_{j}" for j in range(192)])
    table.insert(0, "speaker_id", speakers + extra)
    table.to_parquet(root / "big.embeddings.parquet", index=False)
    assert (root / "big.embeddings.parquet").stat().st_size > 10_000_000
    out = root / "big.json"
    run = _cli(
        "audit",
        "plain/*.csv",
        "--engine",
        "dask",
        "--scheduler",
        cluster,
        "--embeddings",
        "big.embeddings.parquet",
        "--method",
        "embedding-kmeans",
        "--bootstrap",
        "0",
        "--permutations",
        "0",
        "--json",
        out,
        "-q",
        cwd=root,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    report = json.loads(out.read_text())
    monkeypatch.chdir(root)  # the file named as the user wrote it, in notes too
    expected = fairaudit.audit(
        data["plain"], embeddings="big.embeddings.parquet", methods=["embedding-kmeans"], bootstrap=0, permutations=0
    ).to_dict()
    assert report["methods"]["embedding-kmeans"]["cohorts"] == expected["methods"]["embedding-kmeans"]["cohorts"]
    assert report["notes"] == expected["notes"] and any("20000 embeddings" in n for n in report["notes"])
    pandas_table = build_speaker_table(load_log(data["plain"], embeddings=root / "big.embeddings.parquet"))
    assert pandas_table.embeddings is not None and len(pandas_table) == len(speakers)
    # In-process (the test cluster's workers are threads here): the file is read on a worker thread,
    # not by the client's thread, and the speaker embeddings equal the pandas engine's.
    import threading

    from fairaudit.io import embeddings as embedding_files

    callers = []
    real_read = embedding_files.read_embeddings_input

    def spy(path):
        callers.append(threading.current_thread() is threading.main_thread())
        return real_read(path)

    monkeypatch.setattr(embedding_files, "read_embeddings_input", spy)
    sharded = dask_engine.read_log_dask(
        str(root / "plain" / "*.csv"), embeddings="big.embeddings.parquet", scheduler=cluster
    )
    assert callers == [False]
    order = np.argsort(sharded.speaker_table.speaker_ids.astype(str))
    reference = np.argsort(pandas_table.speaker_ids.astype(str))
    np.testing.assert_array_equal(sharded.speaker_table.embeddings[order], pandas_table.embeddings[reference])


@pytest.mark.cluster
def test_bad_row_in_one_file_exits_2_naming_the_file_and_line(data, cluster):
    root = data["root"]
    bad = root / "bad"
    shutil.copytree(data["parts"], bad)
    lines = (bad / "part-2.csv").read_text().splitlines(keepends=True)
    fields = lines[14].split(",")
    fields[2] = "-4"  # errors
    lines[14] = ",".join(fields)
    (bad / "part-2.csv").write_text("".join(lines))
    for extra in (["--scheduler", cluster], []):
        run = _cli("audit", "bad/*.csv", "--engine", "dask", *extra, "-q", cwd=root)
        assert run.returncode == 2, run.stderr
        assert "file bad/part-2.csv, line 15, column 'errors', value '-4'" in run.stderr
        assert "Traceback" not in run.stderr


def test_an_error_in_one_piece_surfaces_after_every_read_has_stopped(data, tmp_path):
    """Dask raises as soon as one piece fails; the others must not still be reading when the error
    reaches the caller: a process that ended with an Arrow read running aborted ("terminate called
    without an active exception", exit 134, about 1 run in 10 of the CLI test above)."""
    bad = tmp_path / "bad"
    shutil.copytree(data["parts"], bad)
    lines = (bad / "part-0.csv").read_text().splitlines(keepends=True)
    fields = lines[3].split(",")
    fields[2] = "-1"  # errors, in the first piece: the other pieces are still queued or being read
    lines[3] = ",".join(fields)
    (bad / "part-0.csv").write_text("".join(lines))
    before = set(threading.enumerate())
    with pytest.raises(InputError, match="non-negative"):
        fairaudit.audit(str(bad / "*.csv"), engine="dask", blocksize=20_000, methods=["attribute"], by=["accent"])
    still_running = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
    assert still_running == []


def test_two_dask_reads_in_two_threads_do_not_share_a_thread_pool(data):
    """Each local read runs on its own pool, shut down when that read ends: a pool kept in Dask's
    process-wide settings was shut down by the first read to finish while the other still used it."""
    from concurrent.futures import ThreadPoolExecutor

    def one(blocksize):
        result = fairaudit.audit(
            str(data["parts"] / "*.csv"), engine="dask", blocksize=blocksize, methods=["attribute"], **FAST
        )
        return json.loads(result.to_json())["methods"]

    expected = one(None)
    with ThreadPoolExecutor(2) as pool:  # different block sizes: the two reads end at different times
        results = list(pool.map(one, [20_000, None]))
    assert results == [expected, expected]


def test_overlapping_reads_keep_the_shuffle_folder_until_the_last_one_ends():
    """Dask takes the shuffle folder from its process-wide settings, so a read that ends first must
    neither delete the folder nor reset the setting while another read is still shuffling into it."""
    import os

    import dask

    from fairaudit.engines.dask_engine import _shuffle_folder

    before = dask.config.get("temporary_directory", None)
    first, second = _shuffle_folder(), _shuffle_folder()
    first.__enter__()
    folder = dask.config.get("temporary_directory")
    second.__enter__()
    assert dask.config.get("temporary_directory") == folder
    first.__exit__(None, None, None)
    assert os.path.isdir(folder) and dask.config.get("temporary_directory") == folder
    second.__exit__(None, None, None)
    assert not os.path.exists(folder)
    assert dask.config.get("temporary_directory", None) == before


def test_python_api_with_a_glob_blocks_and_an_npy_without_id_header(data):
    """fairaudit.audit("dir/*.csv", engine="dask"): local threads, files split into blocks."""
    expected = json.loads(fairaudit.audit(data["plain"], embeddings=data["utt_npy"], **FAST).to_json())
    assert "embedding-kmeans" in expected["methods"]
    result = fairaudit.audit(
        str(data["plain_dir"] / "*.csv"), engine="dask", blocksize="40KB", embeddings=data["utt_npy"], **FAST
    )
    assert _comparable(json.loads(result.to_json())) == _comparable(expected)


def test_remote_urls_are_read_like_local_files(data):
    """An fsspec URL (here the in-memory filesystem): whole remote files (copied and hashed in one
    pass), remote blocks cut at line boundaries and a remote gzip file give the pandas engine's report."""
    import gzip

    import fsspec

    memory = fsspec.filesystem("memory")
    files = sorted(data["plain_dir"].glob("*.csv"))
    for path in files[:-1]:
        memory.pipe(f"/fairaudit-test/{path.name}", path.read_bytes())
    memory.pipe(f"/fairaudit-test/{files[-1].name}.gz", gzip.compress(files[-1].read_bytes(), mtime=0))
    try:
        expected = json.loads(fairaudit.audit(data["plain"], **FAST).to_json())
        for blocksize in (None, "40KB"):
            result = fairaudit.audit("memory://fairaudit-test/*", engine="dask", blocksize=blocksize, **FAST)
            report = json.loads(result.to_json())
            assert _comparable(report) == _comparable(expected), blocksize
            assert report["input"]["utterances"] == expected["input"]["utterances"]
    finally:
        memory.rm("/fairaudit-test", recursive=True)


def test_speaker_table_equals_build_speaker_table(data):
    """The contract: the same table as build_speaker_table(read_log(...)) on the concatenated input."""
    expected = build_speaker_table(read_log(data["full"]))
    from fairaudit.api import load_log

    log = load_log(str(data["parts"]), engine="dask", blocksize=50_000)
    got = log.speaker_table
    pd.testing.assert_frame_equal(got.frame, expected.frame)
    np.testing.assert_array_equal(got.embeddings, expected.embeddings)
    assert got.conflicts == expected.conflicts and got.metadata_columns == expected.metadata_columns
    assert got.frame["snr"].dtype == np.float64 and got.frame["flag"].dtype == bool
    assert log.n_utterances == len(read_log(data["full"]).frame)


def test_input_sha256_of_many_files_is_a_manifest_hash(data):
    """sha256 over "<file sha256>  <path below the common directory>" lines, sorted by path."""
    files = sorted(data["parts"].glob("*.csv"))
    manifest = "".join(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.name}\n" for f in files)
    result = fairaudit.audit(
        str(data["parts"] / "*.csv"), engine="dask", methods=["attribute"], by=["accent"], bootstrap=0, permutations=0
    )
    assert result.input["sha256"] == hashlib.sha256(manifest.encode()).hexdigest()
    single = fairaudit.audit(
        str(files[0]), engine="dask", methods=["attribute"], by=["accent"], bootstrap=0, permutations=0
    )
    assert single.input["sha256"] == hashlib.sha256(files[0].read_bytes()).hexdigest()  # as the pandas engine


def test_errors_across_files_and_blocks(data, tmp_path):
    parts = sorted(data["parts"].glob("*.csv"))
    # the same utterance id in two files
    dup = tmp_path / "dup"
    shutil.copytree(data["parts"], dup)
    first_id = parts[0].read_text().splitlines()[9].split(",")[1]
    lines = (dup / "part-3.csv").read_text().splitlines(keepends=True)
    fields = lines[4].split(",")
    fields[1] = first_id
    lines[4] = ",".join(fields)
    (dup / "part-3.csv").write_text("".join(lines))
    with pytest.raises(InputError) as error:
        fairaudit.audit(str(dup / "*.csv"), engine="dask", methods=["attribute"], by=["accent"])
    assert error.value.file == str(dup / "part-3.csv") and error.value.line == 5
    assert f"the same id is on line 10 of {dup / 'part-0.csv'}" in error.value.message

    # a bad value deep in a large file read in blocks: the line in the whole file
    big = tmp_path / "big.csv"
    lines = data["full"].read_text().splitlines(keepends=True)
    fields = lines[-30].split(",")
    fields[3] = "x7"  # ref_words
    lines[-30] = ",".join(fields)
    big.write_text("".join(lines))
    with pytest.raises(InputError) as error:
        fairaudit.audit(str(big), engine="dask", blocksize=20_000, methods=["attribute"], by=["accent"])
    assert (error.value.file, error.value.line, error.value.value) == (str(big), len(lines) - 29, "x7")

    # a file whose columns differ from the first file's
    odd = tmp_path / "odd"
    shutil.copytree(data["parts"], odd)
    frame = pd.read_csv(odd / "part-1.csv", dtype=str, keep_default_na=False).drop(columns=["device"])
    frame.to_csv(odd / "part-1.csv", index=False)
    with pytest.raises(InputError, match="columns differ from those of") as error:
        fairaudit.audit(str(odd / "*.csv"), engine="dask", methods=["attribute"], by=["accent"])
    assert error.value.file == str(odd / "part-1.csv") and error.value.column == "device"

    with pytest.raises(InputError, match="no files match"):
        fairaudit.audit(str(tmp_path / "nothing-*.csv"), engine="dask", by=["accent"])


def test_usage_errors(data):
    from fairaudit.errors import UsageError

    with pytest.raises(UsageError, match="needs --engine dask"):
        fairaudit.audit(data["full"], scheduler="tcp://127.0.0.1:1", by=["accent"])
    with pytest.raises(UsageError, match="--engine dask"):
        fairaudit.audit(str(data["parts"] / "*.csv"), by=["accent"])  # a glob with the pandas engine
    with pytest.raises(UsageError, match="unknown engine"):
        fairaudit.audit(data["full"], engine="spark", by=["accent"])


def test_pieces_and_partitions_stay_within_a_memory_budget(data, monkeypatch):
    """A log larger than the budget is read in blocks; no task holds more than a block's rows,
    and each speaker partition holds a fraction of the log."""
    budget = 50_000  # bytes of rows held in memory by one task
    seen = {"read": [], "aggregate": []}
    read, aggregate = dask_engine.read_piece, dask_engine.aggregate_partition

    def spy_read(*args):
        frame, summary = read(*args)
        seen["read"].append(int(frame.memory_usage(deep=True).sum()))
        return frame, summary

    def spy_aggregate(part, *args):
        seen["aggregate"].append(int(part.memory_usage(deep=True).sum()))
        return aggregate(part, *args)

    monkeypatch.setattr(dask_engine, "read_piece", spy_read)
    monkeypatch.setattr(dask_engine, "aggregate_partition", spy_aggregate)
    log = dask_engine.read_log_dask(str(data["full"]), blocksize=24_000)
    whole = sum(seen["read"])  # the whole log's rows in memory at once
    assert whole > 8 * budget
    assert len(seen["read"]) >= 8 and max(seen["read"]) < budget
    assert max(seen["aggregate"]) < whole / 4
    pd.testing.assert_frame_equal(log.speaker_table.frame, build_speaker_table(read_log(data["full"])).frame)


def test_importing_fairaudit_does_not_import_dask():
    code = (
        "import sys, fairaudit, fairaudit.cli, fairaudit.engines; "
        "sys.exit(any(m.split('.')[0] in ('dask', 'distributed') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


@pytest.mark.parametrize(
    "pieces",
    [
        (["1", "2"], ["2.5"]),
        (["0", "1"], ["true", ""]),
        (["2020-01-01"], ["2020-01-01 10:00:00"]),
        ([""], ["7"]),
        (["1"], ["abc", "NA"]),
        (["1", "2"], ["true"]),
    ],
)
def test_metadata_type_over_pieces_is_pyarrows_over_the_whole_column(pieces):
    """The type of a metadata column read in pieces is what pyarrow infers on the whole file."""
    whole = "x\n" + "".join(f"{v}\n" if v else '""\n' for part in pieces for v in part)
    expected = (
        pa_csv.read_csv(pa.py_buffer(whole.encode()), convert_options=pa_csv.ConvertOptions(strings_can_be_null=False))
        .column("x")
        .type
    )
    summaries = [{"types": [dask_engine.infer_text_type(sorted(set(p)))], "distinct": [sorted(set(p))]} for p in pieces]
    assert dask_engine.unify_text_types(summaries, 1) == [expected]
    if not pa.types.is_null(expected):
        text = pa.array([v for part in pieces for v in part])
        converted = dask_engine.convert_text(text, expected)
        reference = (
            pa_csv.read_csv(
                pa.py_buffer(whole.encode()),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=False, column_types={"x": expected}),
            )
            .column("x")
            .combine_chunks()
        )
        assert converted.equals(reference)


def test_utterance_level_by_on_dask_says_what_to_do_instead(data):
    """device varies within speakers: its cohorts are utterances, which the Dask engine does not keep."""
    pattern = str(data["plain_dir"] / "*.csv")
    with pytest.raises(fairaudit.errors.UsageError, match="use --engine pandas, or --by-level speaker"):
        fairaudit.audit(pattern, engine="dask", methods=["attribute"], by=["device"], bootstrap=0, permutations=0)
    result = fairaudit.audit(
        pattern, engine="dask", methods=["attribute"], by=["device"], by_level="speaker", bootstrap=0, permutations=0
    )
    assert result.methods["attribute"].cohort_level == "speaker"


@pytest.mark.parametrize(("first_rows_factor", "noted"), [(2, False), (6, True)])
def test_the_implausible_wer_note_is_judged_on_the_whole_log_by_both_engines(tmp_path, first_rows_factor, noted):
    """A note about more errors than words is about the whole log: a Dask read in small blocks
    whose first block alone exceeds 100% must not note it when the log as a whole does not."""
    n = 400
    words = np.full(n, 5)
    errors = np.where(np.arange(n) < n // 4, first_rows_factor * words, 0)  # 50% or 150% overall
    frame = pd.DataFrame(
        {"speaker_id": [f"s{i % 40}" for i in range(n)], "group": [f"g{i % 2}" for i in range(n)]}
    ).assign(errors=errors, ref_words=words)
    path = tmp_path / "log.csv"
    frame.to_csv(path, index=False)
    notes = {}
    for engine, extra in (("pandas", {}), ("dask", {"blocksize": 2_000})):
        result = fairaudit.audit(
            str(path), engine=engine, methods=["attribute"], by=["group"], bootstrap=0, permutations=0, **extra
        )
        notes[engine] = [note for note in result.notes if "more errors than reference words" in note]
    assert notes["pandas"] == notes["dask"]
    assert bool(notes["pandas"]) == noted
