"""``fairaudit embed`` end to end on speech synthesised by espeak-ng in three voices (SPEC 11).

Same-voice clips must land closer together than clips of different voices, the speaker file must
be the mean of its utterances' unit vectors and readable by ``--embeddings``, and a NeMo manifest
must go through embed and audit. Needs Debian's espeak-ng and the embed extra; CI installs both
(.ci/run), and without them these tests skip with a reason naming the install command.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from cli_runner import run_main
from scipy.io import wavfile

from fairaudit.io.embeddings import read_embeddings

pytestmark = pytest.mark.audio

VOICES = {"us_male": "en-us+m3", "us_female": "en-us+f3", "scottish": "en-gb-scotland+m7"}
SENTENCES = (
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "She can scoop these things into three red bags, and we will go meet her.",
)


def require_speech_tools() -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip(
            "needs espeak-ng to synthesise speech: apt-get install -y espeak-ng "
            "(CI's .ci/run does this, so CI runs this test)"
        )
    require_extra()


def require_extra() -> None:
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip(
            "needs the embed extra: pip install '.[embed]' in this checkout (CI's .ci/run installs it with a CPU build "
            "of torch, so CI runs this test)"
        )


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> Path:
    """voices/<voice>/<voice>_<n>.wav: three sentences in each of three voices."""
    require_speech_tools()
    root = tmp_path_factory.mktemp("speech") / "voices"
    for name, voice in VOICES.items():
        (root / name).mkdir(parents=True)
        for number, sentence in enumerate(SENTENCES, start=1):
            target = root / name / f"{name}_{number}.wav"
            subprocess.run(["espeak-ng", "-v", voice, "-w", str(target), sentence], check=True, capture_output=True)
    return root


def embed(*args: object) -> None:
    run = run_main("embed", *map(str, args), "--quiet")
    assert run.code == 0, run.stderr


def test_same_voice_clips_cluster_and_different_voices_apart(speech, tmp_path):
    out = tmp_path / "utterances.parquet"
    embed(speech, "-o", out, "--per", "utterance")
    frame = pd.read_parquet(out)
    vectors = frame.filter(like="emb_").to_numpy(dtype=np.float64)
    voice = frame["utterance_id"].str.rsplit("_", n=1).str[0].to_numpy()
    assert vectors.shape == (9, 256) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    similarity = vectors @ vectors.T
    same = voice[:, None] == voice[None, :]
    np.fill_diagonal(similarity, -np.inf)
    nearest = similarity.argmax(axis=1)
    assert (voice[nearest] == voice).all(), "a clip's nearest neighbour is another voice"
    within = similarity[same & np.isfinite(similarity)]
    between = similarity[~same]
    assert within.min() > between.max(), (within.min(), between.max())


def test_the_speaker_file_is_the_renormalised_mean_and_audit_reads_it(speech, tmp_path):
    embed(speech, "-o", tmp_path / "speakers.parquet")
    embed(speech, "-o", tmp_path / "utterances.parquet", "--per", "utterance")
    speakers = pd.read_parquet(tmp_path / "speakers.parquet").set_index("speaker_id")
    utterances = pd.read_parquet(tmp_path / "utterances.parquet")
    assert sorted(speakers.index) == sorted(VOICES) and (speakers["utterances"] == 3).all()
    for name in VOICES:
        rows = utterances[utterances["utterance_id"].str.startswith(name + "_")].filter(like="emb_").to_numpy()
        mean = rows.astype(np.float64).mean(axis=0)
        expected = mean / np.linalg.norm(mean)
        assert np.allclose(speakers.loc[name].filter(like="emb_").to_numpy(dtype=np.float64), expected, atol=1e-5)
    table = read_embeddings(tmp_path / "speakers.parquet")
    assert table.key == "speaker_id" and table.vectors.shape == (3, 256)


def test_a_nemo_manifest_goes_through_embed_audit_and_export(speech, tmp_path):
    manifest = tmp_path / "eval.jsonl"
    lines = []
    for name in VOICES:
        for number, sentence in enumerate(SENTENCES, start=1):
            hypothesis = sentence.lower().replace("the ", "a ", 1)
            audio = Path(shutil.copy(speech / name / f"{name}_{number}.wav", tmp_path / f"{name}_{number}.wav"))
            lines.append({"audio_filepath": audio.name, "speaker_id": name, "text": sentence, "pred_text": hypothesis})
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    embed(manifest, "-o", tmp_path / "speakers.parquet")
    run = run_main(
        "audit", manifest, "--embeddings", tmp_path / "speakers.parquet", "--method", "embedding-kmeans",
        "--min-speakers", "1", "--min-report-speakers", "1", "--clusters", "2",
        "--max-bottom-share", "0.7",
        "--bootstrap", "0", "--permutations", "0", "--json", tmp_path / "audit.json", "--quiet",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "audit.json").read_text(encoding="utf-8"))
    assert report["methods"]["embedding-kmeans"]["assigned_speakers"] == 3
    run = run_main(
        "export", tmp_path / "audit.json", manifest, "-o", tmp_path / "export",
        "--embeddings", tmp_path / "speakers.parquet", "--method", "embedding-kmeans",
    )  # fmt: skip
    assert run.code == 0, run.stderr
    weights = pd.read_csv(tmp_path / "export" / "utterances.csv")
    assert len(weights) == 9 and (weights["weight"] >= 1).all()


def test_silent_files_are_left_out_with_a_note(speech, tmp_path):
    folder = tmp_path / "audio"
    shutil.copytree(speech / "us_male", folder / "us_male")
    (folder / "quiet").mkdir()
    wavfile.write(folder / "quiet" / "quiet_1.wav", 16_000, np.zeros(16_000, dtype=np.int16))
    run = run_main("embed", folder, "-o", tmp_path / "speakers.parquet", "--quiet")
    assert run.code == 0, run.stderr
    assert "1 file(s) had less than 0.3 s of speech" in run.stdout and "quiet_1.wav" in run.stdout
    assert "1 speaker(s) have no embeddable audio and are not in the output: quiet" in run.stdout
    assert list(pd.read_parquet(tmp_path / "speakers.parquet")["speaker_id"]) == ["us_male"]


def test_an_unreadable_audio_file_is_exit_2_naming_it(tmp_path):
    require_extra()
    (tmp_path / "audio" / "s1").mkdir(parents=True)
    (tmp_path / "audio" / "s1" / "broken.wav").write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    run = run_main("embed", tmp_path / "audio", "-o", tmp_path / "emb.parquet", "--quiet")
    assert run.code == 2 and "broken.wav" in run.stderr and "can not read this audio file" in run.stderr
    assert "Traceback" not in run.stderr and not (tmp_path / "emb.parquet").exists()
