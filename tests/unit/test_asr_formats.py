"""NeMo manifests and Kaldi directories read into the same log as the equivalent CSV (issue 15)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from cli_runner import run_main

from fairaudit.errors import InputError
from fairaudit.io.readers import read_log

UTTERANCES = [  # speaker, utterance, reference, hypothesis, accent, duration
    ("s1", "u1", "the cat sat on the mat", "the cat sat on a mat", "us", 2.5),
    ("s1", "u2", "hello there", "", "us", 1.0),  # an empty hypothesis
    ("007", "u3", "a dog ran far away", "a dog ran away today", "indian", 3.25),
    ("007", "u4", "one two three", "one two three", "indian", 1.75),
]
COMPARED = ["speaker_id", "utterance_id", "errors", "ref_words", "substitutions", "deletions", "insertions", "accent"]


def equivalent_csv(tmp_path) -> pd.DataFrame:
    frame = pd.DataFrame(
        UTTERANCES, columns=["speaker_id", "utterance_id", "reference", "hypothesis", "accent", "duration"]
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    return read_log(tmp_path / "log.csv").frame


def write_manifest(path, entries) -> None:
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


def test_nemo_manifest_reads_as_the_equivalent_csv(tmp_path):
    entries = [
        {"audio_filepath": u, "text": r, "pred_text": h, "speaker": s, "accent": a, "duration": d, "words": [1]}
        for s, u, r, h, a, d in UTTERANCES
    ]
    write_manifest(tmp_path / "manifest.jsonl", entries)
    log = read_log(tmp_path / "manifest.jsonl")
    expected = equivalent_csv(tmp_path)
    pd.testing.assert_frame_equal(log.frame[COMPARED].reset_index(drop=True), expected[COMPARED], check_dtype=False)
    assert log.frame["duration"].tolist() == [2.5, 1.0, 3.25, 1.75]
    assert log.error_form == "text" and log.sha256 and log.path.endswith("manifest.jsonl")
    assert any("words" in note for note in log.notes)  # the nested key is left out, and said so


def test_nemo_manifest_errors_name_the_line(tmp_path):
    path = tmp_path / "manifest.json"
    write_manifest(path, [{"audio_filepath": "u1", "text": "a b", "pred_text": "a", "speaker": "s1"}])
    path.write_text(path.read_text() + "\n" + '{"audio_filepath": "u2", "text": "c", "pred_text": "c"}\n')
    with pytest.raises(InputError) as caught:
        read_log(path)
    assert (caught.value.line, caught.value.column) == (3, "speaker_id")  # the blank line 2 is counted
    path.write_text('{"audio_filepath": "u1", "text": "a", "pred_text": "a", "speaker": "s"}\n{"text": "oops\n')
    run = run_main("validate", path)
    assert run.code == 2 and f"file {path}, line 2" in run.stderr and "not a valid JSON line" in run.stderr


@pytest.mark.parametrize(("key", "value", "shown"), [("pred_text", None, "missing"), ("text", "null", "null")])
def test_a_manifest_line_without_its_text_is_an_error_not_an_empty_text(tmp_path, key, value, shown):
    """A line that lacks the hypothesis (or reference) other lines have would score as every word
    deleted (or inserted): a wrong WER, silently. It is an error naming the line and key; an empty
    string stays a legitimately empty text."""
    entries = [{"audio_filepath": u, "text": r, "pred_text": h, "speaker": s} for s, u, r, h, _, _ in UTTERANCES]
    if value is None:
        del entries[2][key]
    else:
        entries[2][key] = None
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, entries)
    run = run_main("audit", path, "--by", "speaker_id", "--bootstrap", "0", "--permutations", "0")
    assert run.code == 2, run.stdout
    assert f"file {path}, line 3, column {key!r}" in run.stderr and shown in run.stderr
    assert f'"{key}": ""' in run.stderr  # says how to write a really empty text
    assert "Traceback" not in run.stderr


def test_a_text_key_named_by_column_is_checked_on_every_line_too(tmp_path):
    """With --column hypothesis=asr, a line without "asr" is an error as for pred_text; a number
    where text belongs is named as such, not as null."""
    entries = [{"audio_filepath": u, "text": r, "asr": h, "speaker": s} for s, u, r, h, _, _ in UTTERANCES]
    del entries[1]["asr"]
    path = tmp_path / "manifest.jsonl"
    write_manifest(path, entries)
    run = run_main("validate", path, "--column", "hypothesis=asr")
    assert run.code == 2 and f"file {path}, line 2, column 'asr'" in run.stderr and "hypothesis key" in run.stderr
    entries[1]["asr"] = 5
    write_manifest(path, entries)
    run = run_main("validate", path, "--column", "hypothesis=asr")
    assert run.code == 2 and "not a JSON string" in run.stderr


def write_kaldi(directory, hyp_name="hyp", drop_hypothesis=None, drop_speaker=None) -> None:
    directory.mkdir()
    (directory / "text").write_text("".join(f"{u} {r}\n" for _, u, r, _, _, _ in UTTERANCES))
    (directory / "utt2spk").write_text("".join(f"{u} {s}\n" for s, u, *_ in UTTERANCES if u != drop_speaker))
    (directory / hyp_name).write_text("".join(f"{u} {h}\n" for _, u, _, h, _, _ in UTTERANCES if u != drop_hypothesis))


def test_kaldi_directory_reads_as_the_equivalent_csv(tmp_path):
    write_kaldi(tmp_path / "decode", hyp_name="text.hyp")
    log = read_log(tmp_path / "decode")
    expected = equivalent_csv(tmp_path)
    columns = [c for c in COMPARED if c != "accent"]
    pd.testing.assert_frame_equal(log.frame[columns].reset_index(drop=True), expected[columns], check_dtype=False)
    assert log.sha256 and not log.notes


def test_kaldi_missing_hypothesis_is_empty_and_missing_speaker_is_an_error(tmp_path):
    write_kaldi(tmp_path / "a", drop_hypothesis="u3")
    log = read_log(tmp_path / "a")
    assert log.frame.set_index("utterance_id").loc["u3", "deletions"] == 5  # all five reference words
    assert any("1 utterance(s) of text have no line in hyp" in note for note in log.notes)
    write_kaldi(tmp_path / "b", drop_speaker="u2")
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "b")
    assert caught.value.file.endswith("text") and caught.value.line == 2 and caught.value.value == "u2"


def test_kaldi_directory_without_hypotheses_says_which_files(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "text").write_text("u1 a b\n")
    run = run_main("audit", tmp_path / "d", "--by", "accent")
    assert run.code == 2 and "hyp or hyp.txt or text.hyp" in run.stderr


def test_audit_runs_on_a_manifest(tmp_path):
    entries = [
        {
            "audio_filepath": f"{s}-{i}",
            "text": "a b c d",
            "pred_text": "a b c" if s % 3 else "a x",
            "speaker": f"s{s}",
            "accent": "x" if s % 3 else "y",
        }
        for s in range(90)
        for i in range(3)
    ]
    write_manifest(tmp_path / "m.jsonl", entries)
    run = run_main(
        "audit",
        tmp_path / "m.jsonl",
        "--by",
        "accent",
        "--bootstrap",
        50,
        "--permutations",
        20,
        "-q",
        "--json",
        tmp_path / "r.json",
    )
    assert run.code == 0, run.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["input"]["speakers"] == 90 and report["methods"]["attribute"]["bottom_cohorts"] == ["y"]


def write_trn(path, pairs) -> None:
    path.write_text("".join(f"{words} ({utterance})\n" for utterance, words in pairs))


def test_trn_pair_reads_as_the_equivalent_csv_with_an_explicit_speaker_rule(tmp_path):
    ids = {"u1": "s1-u1", "u2": "s1-u2", "u3": "007_u3", "u4": "007_u4"}
    write_trn(tmp_path / "ref.trn", [(ids[u], r) for _, u, r, _, _, _ in UTTERANCES])
    write_trn(tmp_path / "hyp.trn", [(ids[u], h) for _, u, _, h, _, _ in UTTERANCES if h])  # u2: no line
    log = read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn")
    expected = equivalent_csv(tmp_path)
    columns = ["speaker_id", "errors", "ref_words", "substitutions", "deletions", "insertions"]
    pd.testing.assert_frame_equal(log.frame[columns].reset_index(drop=True), expected[columns], check_dtype=False)
    assert any("^(.+?)[-_]" in note for note in log.notes)
    assert any("1 reference utterance(s) have no hypothesis line" in note for note in log.notes)
    # An explicit rule changes who the speakers are; an id it does not match is an error on its line.
    by_suffix = read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn", speaker_pattern=r"[-_](u\d)$")
    assert sorted(by_suffix.frame["speaker_id"].unique()) == ["u1", "u2", "u3", "u4"]
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn", speaker_pattern=r"^(s\d)-")
    assert (caught.value.line, caught.value.value) == (3, "007_u3")


def test_trn_errors_name_the_line_and_say_what_is_needed(tmp_path):
    write_trn(tmp_path / "ref.trn", [("a-1", "x y")])
    (tmp_path / "hyp.trn").write_text("x y (a-1)\nno id at all\n")
    run = run_main("validate", tmp_path / "hyp.trn", "--reference", tmp_path / "ref.trn")
    assert run.code == 2 and "line 2" in run.stderr and "(utterance-id)" in run.stderr
    run = run_main("validate", tmp_path / "ref.trn")
    assert run.code == 2 and "--reference REF.trn" in run.stderr


def test_trn_optional_words_are_left_out_and_utt2spk_lines_have_one_speaker(tmp_path):
    write_trn(tmp_path / "ref.trn", [("a-1", "the (%hesitation) cat sat")])
    write_trn(tmp_path / "hyp.trn", [("a-1", "the cat (uh) sat")])
    log = read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn")
    assert log.frame[["errors", "ref_words"]].values.tolist() == [[0, 3]]
    write_kaldi(tmp_path / "k")
    (tmp_path / "k" / "utt2spk").write_text("u1 s1\nu2 s1 extra\nu3 007\nu4 007\n")
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "k")
    assert caught.value.file.endswith("utt2spk") and caught.value.line == 2


def test_gate_reads_a_trn_pair_with_speaker_embeddings_and_a_trn_baseline(tmp_path):
    """The README says gate reads trn files; it had no --reference. A trn pair has no metadata, so
    the cohorts come from speaker embeddings; the baseline is another system's trn on the same ids."""
    import numpy as np

    rng = np.random.default_rng(4)
    words = "the quick brown fox jumps over the lazy dog again".split()
    references, baseline, new, embedding_rows = [], [], [], []
    for speaker in range(80):
        group = speaker % 2
        centre = [5.0 * (d == group) for d in range(4)]  # two voices pointing different ways
        embedding_rows.append(
            {"speaker_id": f"spk{speaker:02d}", **{f"emb_{d}": rng.normal(centre[d], 1) for d in range(4)}}
        )
        for utterance in range(4):
            uid = f"spk{speaker:02d}_u{utterance}"
            references.append((uid, " ".join(words)))
            drop = 1 + group * 2  # group 1 loses three words, group 0 one
            baseline.append((uid, " ".join(words[drop:])))
            new.append((uid, " ".join(words[drop:])))
    write_trn(tmp_path / "ref.trn", references)
    write_trn(tmp_path / "base.trn", baseline)
    write_trn(tmp_path / "new.trn", new)
    pd.DataFrame(embedding_rows).to_parquet(tmp_path / "speakers.parquet")
    (tmp_path / "policy.toml").write_text(
        "clusters = 2\npermutations = 0\nbootstrap = 50\n[gate]\nmax-wer-gap-pct = 1000\nmax-gap-increase-points = 1\n"
    )
    run = run_main(
        "gate", tmp_path / "new.trn", "--reference", tmp_path / "ref.trn", "--speaker-pattern", r"^(spk\d+)_",
        "--embeddings", tmp_path / "speakers.parquet", "--baseline", tmp_path / "base.trn",
        "--policy", tmp_path / "policy.toml", "--json", tmp_path / "gate_audit.json",
    )  # fmt: skip
    assert run.code == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "gate_audit.json").read_text())
    assert report["input"]["speakers"] == 80 and report["methods"]["embedding-kmeans"]["wer_gap_pct"] > 100


def test_kaldi_spk2gender_is_the_gender_column_for_by_gender(tmp_path):
    """Without it a Kaldi directory has no metadata, so the README's `audit exp/decode_dev` had no
    method to run; spk2gender is Kaldi's own per-speaker file."""
    directory = tmp_path / "decode"
    directory.mkdir()
    text, utt2spk, hyp, spk2gender = [], [], [], []
    for speaker in range(60):
        gender = "f" if speaker % 2 else "m"
        spk2gender.append(f"spk{speaker} {gender}\n")
        for utterance in range(3):
            uid = f"spk{speaker}-u{utterance}"
            text.append(f"{uid} one two three four five\n")
            utt2spk.append(f"{uid} spk{speaker}\n")
            hyp.append(f"{uid} one two three {'four five' if gender == 'm' else ''}\n")
    for name, lines in {"text": text, "utt2spk": utt2spk, "hyp": hyp, "spk2gender": spk2gender}.items():
        (directory / name).write_text("".join(lines))
    log = read_log(directory)
    assert log.frame.groupby("gender")["speaker_id"].nunique().to_dict() == {"f": 30, "m": 30}
    run = run_main(
        "audit", directory, "--by", "gender", "--bootstrap", 0, "--permutations", 0, "--json", tmp_path / "a.json"
    )
    assert run.code == 0, run.stderr
    method = json.loads((tmp_path / "a.json").read_text())["methods"]["attribute"]
    assert method["bottom_cohorts"] == ["f"] and method["bottom_wer"] == pytest.approx(0.4)


@pytest.mark.parametrize(("value", "shown"), [(["x"], '["x"]'), (True, "true"), ({"id": 1}, '{"id": 1}')])
def test_a_manifest_speaker_that_is_a_list_object_or_boolean_is_an_error_on_its_line(tmp_path, value, shown):
    """One line's "speaker": ["x"] dropped the speaker key from every line ("speaker_id is missing",
    no line named), and "speaker": true was a speaker."""
    lines = [
        {"audio_filepath": "a.wav", "speaker": "s1", "text": "a b", "pred_text": "a"},
        {"audio_filepath": "b.wav", "speaker": value, "text": "a b", "pred_text": "a"},
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "m.jsonl")
    assert caught.value.line == 2 and caught.value.value == shown


def test_a_manifest_without_speakers_takes_them_from_audio_paths_with_speaker_pattern(tmp_path):
    """--speaker-pattern was silently ignored for manifests (embed honoured it, audit did not)."""
    lines = [
        {"audio_filepath": f"data/{speaker}/u{i}.wav", "text": "a b", "pred_text": "a"}
        for speaker in ("alice", "bob")
        for i in range(2)
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    log = read_log(tmp_path / "m.jsonl", speaker_pattern=r"data/([^/]+)/")
    assert sorted(log.frame["speaker_id"].unique()) == ["alice", "bob"]
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "m.jsonl", speaker_pattern=r"^(carol)/")
    assert caught.value.line == 1


def test_a_manifest_with_a_byte_order_mark_reads(tmp_path):
    """A BOM was accepted in CSV but made a manifest's first line "not a valid JSON line"."""
    line = json.dumps({"audio_filepath": "a.wav", "speaker": "s1", "text": "a b", "pred_text": "a"})
    (tmp_path / "m.jsonl").write_bytes(b"\xef\xbb\xbf" + line.encode() + b"\n")
    assert read_log(tmp_path / "m.jsonl").frame["deletions"].tolist() == [1]


@pytest.mark.parametrize("pattern", ["spk", "^spk"])
def test_a_groupless_pattern_that_merges_every_speaker_is_refused_and_kaldi_takes_no_pattern(tmp_path, pattern):
    """`--speaker-pattern spk` (no group) made every utterance speaker "spk": 1 speaker, silently."""
    write_trn(tmp_path / "ref.trn", [("spk1_a", "x y"), ("spk2_b", "x y")])
    write_trn(tmp_path / "hyp.trn", [("spk1_a", "x y"), ("spk2_b", "x")])
    with pytest.raises(InputError) as caught:
        read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn", speaker_pattern=pattern)
    assert "same speaker" in caught.value.message
    log = read_log(tmp_path / "hyp.trn", reference=tmp_path / "ref.trn", speaker_pattern=r"spk\d")  # the whole match
    assert sorted(log.frame["speaker_id"].unique()) == ["spk1", "spk2"]
    write_kaldi(tmp_path / "decode")
    run = run_main("validate", tmp_path / "decode", "--speaker-pattern", "^(s)")
    assert run.code == 2 and "utt2spk" in run.stderr
