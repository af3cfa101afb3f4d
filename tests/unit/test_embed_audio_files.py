"""Which audio files ``fairaudit embed`` reads and whose voice each is: explicit rules, clear errors.

These need neither the embed extra nor audio: only file names, manifests and the CLI's checks.
"""

from __future__ import annotations

import json
import sys

import pytest
from cli_runner import run_main

from fairaudit.embed.audio_files import check_unique_utterances, find_audio
from fairaudit.errors import InputError


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_a_folder_speaker_is_its_first_sub_folder(tmp_path):
    touch(tmp_path / "p225" / "p225_001.wav")
    touch(tmp_path / "19" / "198" / "19-198-0001.flac")
    touch(tmp_path / "19" / "notes.txt")
    files = {f.utterance_id: f.speaker_id for f in find_audio(tmp_path)}
    assert files == {"p225_001": "p225", "19-198-0001": "19"}


def test_a_speaker_pattern_takes_the_speaker_from_the_path(tmp_path):
    touch(tmp_path / "spkA_utt1.wav")
    touch(tmp_path / "spkB_utt2.wav")
    files = find_audio(tmp_path, r"^([^_]+)_")
    assert [(f.utterance_id, f.speaker_id) for f in files] == [("spkA_utt1", "spkA"), ("spkB_utt2", "spkB")]


def test_a_file_the_rule_does_not_match_is_an_error_naming_it(tmp_path):
    touch(tmp_path / "spk1" / "a.wav")
    touch(tmp_path / "loose.wav")
    with pytest.raises(InputError) as error:
        find_audio(tmp_path)
    assert error.value.file.endswith("loose.wav") and "--speaker-pattern" in error.value.message


def test_a_folder_without_audio_is_an_error(tmp_path):
    touch(tmp_path / "readme.txt")
    with pytest.raises(InputError, match="no audio files"):
        find_audio(tmp_path)


def write_manifest(path, lines):
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    return path


def test_a_manifest_gives_speakers_by_key_or_by_pattern(tmp_path):
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"audio_filepath": "a/1.wav", "speaker": "s1", "text": "x"}, {"audio_filepath": "b/2.wav", "speaker": 7},
         {"audio_filepath": "/data/c/3.wav"}],
    )  # fmt: skip
    with pytest.raises(InputError) as error:
        find_audio(manifest)
    assert (error.value.line, error.value.column) == (3, "speaker")
    files = find_audio(manifest, r"/data/([^/]+)/")
    assert [(f.speaker_id, f.line) for f in files] == [("s1", 1), ("7", 2), ("c", 3)]
    assert files[0].path == tmp_path / "a" / "1.wav" and files[0].utterance_id == "a/1.wav"


def test_the_speaker_key_is_the_audits(tmp_path):
    """As ``fairaudit audit`` reads a manifest: "speaker" counts only when no line has "speaker_id"."""
    manifest = write_manifest(
        tmp_path / "m.jsonl",
        [{"audio_filepath": "1.wav", "speaker_id": "s1"}, {"audio_filepath": "2.wav", "speaker": "s2"}],
    )
    with pytest.raises(InputError) as error:
        find_audio(manifest)
    assert (error.value.line, error.value.column) == (2, "speaker_id")
    nested = write_manifest(tmp_path / "n.jsonl", [{"audio_filepath": "1.wav", "speaker_id": {"name": "s1"}}])
    with pytest.raises(InputError, match="no speaker_id on this line"):
        find_audio(nested)


def test_manifest_lines_that_are_not_entries_are_named(tmp_path):
    listed_twice = write_manifest(
        tmp_path / "twice.jsonl",
        [{"audio_filepath": "1.wav", "speaker": "a"}, {"audio_filepath": "1.wav", "speaker": "a"}],
    )
    with pytest.raises(InputError, match="list each audio_filepath once") as error:
        find_audio(listed_twice)
    assert error.value.line == 2
    (tmp_path / "array.jsonl").write_text('{"audio_filepath": "1.wav", "speaker": "a"}\n[1, 2]\n')
    with pytest.raises(InputError, match="must be a JSON object") as error:
        find_audio(tmp_path / "array.jsonl")
    assert error.value.line == 2
    (tmp_path / "latin1.jsonl").write_bytes('{"audio_filepath": "1.wav", "speaker": "José"}\n'.encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8") as error:
        find_audio(tmp_path / "latin1.jsonl")
    assert error.value.line == 1


def test_a_broken_manifest_line_is_named(tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text('{"audio_filepath": "a.wav", "speaker": "s"}\n{"audio_filepath": \n')
    with pytest.raises(InputError) as error:
        find_audio(manifest)
    assert error.value.line == 2 and "JSON" in error.value.message


def test_utterance_ids_must_be_unique_only_per_utterance(tmp_path):
    touch(tmp_path / "s1" / "clip1.wav")
    touch(tmp_path / "s2" / "clip1.wav")
    files = find_audio(tmp_path)
    assert len(files) == 2
    with pytest.raises(InputError, match="utterance id 'clip1'"):
        check_unique_utterances(files)


def test_the_cli_refuses_bad_output_and_missing_input_with_exit_2(tmp_path):
    touch(tmp_path / "audio" / "s1" / "a.wav")
    run = run_main("embed", str(tmp_path / "audio"), "-o", str(tmp_path / "emb.csv"))
    assert run.code == 2 and ".parquet" in run.stderr
    run = run_main("embed", str(tmp_path / "nowhere"), "-o", str(tmp_path / "emb.parquet"))
    assert run.code == 2 and "no such file or folder" in run.stderr
    run = run_main("embed", str(tmp_path / "audio"), "-o", str(tmp_path / "audio" / "emb.parquet"))
    assert run.code == 2 and "would write into the input" in run.stderr


def test_without_the_extra_the_error_says_how_to_install_it(tmp_path, monkeypatch):
    touch(tmp_path / "audio" / "s1" / "a.wav")
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # import resemblyzer now raises ImportError
    run = run_main("embed", str(tmp_path / "audio"), "-o", str(tmp_path / "emb.parquet"))
    assert run.code == 2 and "pip install '.[embed]'" in run.stderr
    assert not (tmp_path / "emb.parquet").exists()
    # The output is checked before any audio is read or the model loaded (not after hours of embedding).
    run = run_main("embed", str(tmp_path / "audio"), "-o", str(tmp_path / "missing" / "emb.parquet"))
    assert run.code == 2 and "does not exist" in run.stderr
