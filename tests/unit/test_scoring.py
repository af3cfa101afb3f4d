"""Tests for fairaudit.text.scoring: hand-computed word error counts and normalisation."""

from __future__ import annotations

import jiwer
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fairaudit.errors import InputError, UsageError
from fairaudit.io.scored_log import score_log_file
from fairaudit.text import scoring
from fairaudit.text.scoring import score_texts


def one(ref: str, hyp: str, normalize: str = "default") -> dict:
    """Score a single pair and return its row as a dict."""
    return score_texts([ref], [hyp], normalize).iloc[0].to_dict()


def counts(s: int, d: int, i: int, n: int) -> dict:
    return {"substitutions": s, "deletions": d, "insertions": i, "ref_words": n, "errors": s + d + i}


@pytest.mark.parametrize(
    "ref, hyp, expected",
    [
        ("the cat sat", "the cat sat down", counts(0, 0, 1, 3)),
        ("the cat sat", "the cat sat", counts(0, 0, 0, 3)),
        ("a b c", "a x c", counts(1, 0, 0, 3)),
        ("a b c", "a c", counts(0, 1, 0, 3)),
        ("a b c d e", "x b d e f", counts(1, 1, 1, 5)),  # a->x, del c, ins f
        ("a b c", "", counts(0, 3, 0, 3)),  # empty hypothesis: all deletions
        ("", "x y", counts(0, 0, 2, 0)),  # empty reference: insertions, ref_words 0
        ("", "", counts(0, 0, 0, 0)),
        ("a b", "   ", counts(0, 2, 0, 2)),  # blank hypothesis is empty
    ],
)
def test_hand_computed_counts(ref, hyp, expected):
    assert one(ref, hyp) == expected


def test_default_normalisation_lowercases_and_strips_punctuation():
    assert one("Hello, World!", "hello world") == counts(0, 0, 0, 2)
    assert one("Don't stop.", "dont stop") == counts(0, 0, 0, 2)  # apostrophes are deleted
    assert one("a well-known fact", "a well known fact") == counts(0, 0, 0, 4)  # hyphen -> space
    assert one("“Quoted” text", "quoted text") == counts(0, 0, 0, 2)


def test_normalisation_none_keeps_case_and_punctuation():
    assert one("Hello, World!", "hello world", "none") == counts(2, 0, 0, 2)
    assert one("Don't stop.", "Don't stop.", "none") == counts(0, 0, 0, 2)


def test_whitespace_is_collapsed_even_without_normalisation():
    assert one("  a   b\tc ", "a b c", "none") == counts(0, 0, 0, 3)
    assert one("a\u00a0b", "a b", "none") == counts(0, 0, 0, 2)  # no-break space


def test_punctuation_only_reference_has_no_words():
    assert one("!!! ...", "hello") == counts(0, 0, 1, 0)
    assert one("!!!", "hello", "none") == counts(1, 0, 0, 1)


def test_output_columns_and_dtypes():
    frame = score_texts(["a b", "c"], ["a", "c d"])
    assert list(frame.columns) == ["substitutions", "deletions", "insertions", "ref_words", "errors"]
    assert all(frame[c].dtype == np.int64 for c in frame.columns)
    assert len(frame) == 2


def test_missing_texts_count_as_empty():
    frame = score_texts(pd.Series(["a b", None]), pd.Series([None, "x"]))
    assert frame.to_dict("records") == [counts(0, 2, 0, 2), counts(0, 0, 1, 0)]


def test_many_pairs_match_jiwer_totals_and_batching(monkeypatch):
    rng = np.random.default_rng(3)
    vocab = ["alpha", "beta", "gamma", "delta", "eps"]
    refs = [" ".join(rng.choice(vocab, rng.integers(1, 8))) for _ in range(500)]
    hyps = [" ".join(rng.choice(vocab, rng.integers(0, 8))) for _ in range(500)]
    monkeypatch.setattr(scoring, "_BATCH", 7)  # force many jiwer calls
    frame = score_texts(refs, hyps)
    nonempty = [k for k, h in enumerate(hyps) if h]
    out = jiwer.process_words([refs[k] for k in nonempty], [hyps[k] for k in nonempty])
    deleted_all = sum(len(r.split()) for r, h in zip(refs, hyps) if not h)
    assert frame.substitutions.sum() == out.substitutions
    assert frame.insertions.sum() == out.insertions
    assert frame.deletions.sum() == out.deletions + deleted_all
    assert frame.ref_words.sum() == sum(len(r.split()) for r in refs)
    # per pair, errors equal jiwer's single-pair edit distance
    for k in range(0, 500, 50):
        if hyps[k]:
            single = jiwer.process_words(refs[k], hyps[k])
            assert frame.errors[k] == single.substitutions + single.deletions + single.insertions


def test_unknown_normalisation_is_a_usage_error():
    with pytest.raises(UsageError):
        score_texts(["a"], ["a"], normalize="aggressive")


def test_length_mismatch_is_an_error():
    with pytest.raises(UsageError):
        score_texts(["a", "b"], ["a"])


# --- score_log_file ------------------------------------------------------------------------------


def _text_log(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text(
        "speaker_id,zip_code,sentence,prediction,accent\n"
        "007,02134,The cat sat.,the cat sat down,NA\n"
        '008,12345,"Hello, world",,us\n'
    )
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".csv.gz", ".tsv.gz", ".parquet"])
def test_score_log_file_writes_every_format(tmp_path, suffix):
    path = _text_log(tmp_path)
    before = path.read_bytes()
    out = tmp_path / f"scored{suffix}"
    n = score_log_file(path, out, columns={"reference": "sentence", "hypothesis": "prediction"})
    assert n == 2
    assert path.read_bytes() == before
    if suffix == ".parquet":
        frame = pq.read_table(out).to_pandas()
    else:
        sep = "\t" if ".tsv" in suffix else ","
        frame = pd.read_csv(out, sep=sep, dtype=str, keep_default_na=False)
    assert list(frame.columns) == [
        "speaker_id",
        "zip_code",
        "sentence",
        "prediction",
        "accent",
        "substitutions",
        "deletions",
        "insertions",
        "ref_words",
        "errors",
    ]
    assert frame.speaker_id.tolist() == ["007", "008"]  # ids and ZIPs keep their zeros
    assert frame.zip_code.tolist() == ["02134", "12345"]
    assert frame.accent.tolist() == ["NA", "us"]  # kept exactly as written
    assert [int(v) for v in frame.insertions] == [1, 0]
    assert [int(v) for v in frame.deletions] == [0, 2]
    assert [int(v) for v in frame.errors] == [1, 2]
    assert [int(v) for v in frame.ref_words] == [3, 2]


def test_score_log_file_replaces_existing_score_columns(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("reference,hypothesis,errors\nA b,a b,9\n")
    out = tmp_path / "out.csv"
    score_log_file(path, out, normalize="none")
    frame = pd.read_csv(out)
    assert list(frame.columns) == [
        "reference",
        "hypothesis",
        "errors",
        "substitutions",
        "deletions",
        "insertions",
        "ref_words",
    ]
    assert frame.errors.tolist() == [1]


def test_score_log_file_refuses_to_overwrite_input(tmp_path):
    path = _text_log(tmp_path)
    before = path.read_bytes()
    with pytest.raises(InputError) as info:
        score_log_file(path, tmp_path / "." / "log.csv", columns={"reference": "sentence", "hypothesis": "prediction"})
    assert "input" in info.value.message
    assert path.read_bytes() == before


def test_score_log_file_needs_text_columns(tmp_path):
    path = _text_log(tmp_path)
    with pytest.raises(InputError) as info:
        score_log_file(path, tmp_path / "out.csv")
    assert info.value.column == "reference"
    assert not (tmp_path / "out.csv").exists()


def test_score_log_file_unknown_output_extension(tmp_path):
    path = _text_log(tmp_path)
    with pytest.raises(InputError) as info:
        score_log_file(path, tmp_path / "out.xlsx", columns={"reference": "sentence", "hypothesis": "prediction"})
    assert info.value.file.endswith("out.xlsx")


def test_jiwer_normalisation_equals_jiwers_own_transforms():
    """--normalize jiwer gives exactly what jiwer's standard transforms give (computed by jiwer here)."""
    import jiwer

    from fairaudit.text.scoring import normalize_texts

    texts = ["Well-known, isn't it?", "  Hello...   WORLD!! ", "end.Start", "«quoted» — dash", "don’t", ""]
    transform = jiwer.Compose(
        [jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()]
    )
    assert normalize_texts(texts, "jiwer").to_pylist() == [transform(t) for t in texts]


def test_the_normalisation_used_is_recorded_in_the_report():
    import fairaudit

    frame = pd.DataFrame(
        {
            "speaker_id": ["a", "a", "b", "c"],
            "grp": ["x", "x", "y", "y"],
            "reference": ["well-known x", "y z", "q", "r"],
            "hypothesis": ["wellknown x", "y", "q", "r"],
        }
    )
    options = dict(by=["grp"], min_speakers=1, min_report_speakers=0, bootstrap=0, permutations=0)
    by_jiwer = fairaudit.audit(frame, normalize="jiwer", **options).to_dict()
    by_default = fairaudit.audit(frame, **options).to_dict()
    assert by_jiwer["input"]["text_normalization"] == "jiwer" and by_default["input"]["text_normalization"] == "default"
    # jiwer deletes the hyphen (wellknown = wellknown: 0 errors); the default splits it (well known vs wellknown).
    errors = {
        name: sum(c["errors"] for c in report["methods"]["attribute"]["cohorts"])
        for name, report in (("jiwer", by_jiwer), ("default", by_default))
    }
    assert errors == {"jiwer": 1, "default": 3}
    counts = fairaudit.audit(frame.drop(columns=["reference", "hypothesis"]).assign(errors=1, ref_words=2), **options)
    assert counts.to_dict()["input"]["text_normalization"] is None


def test_whisper_normalisation_equals_whispers_own_normaliser():
    """--normalize whisper gives, text for text, what Whisper's English normaliser gives (called here directly)."""
    pytest.importorskip("whisper_normalizer", reason="needs whisper-normalizer (pip install whisper-normalizer)")
    from whisper_normalizer.english import EnglishTextNormalizer

    from fairaudit.text.scoring import normalize_texts

    texts = [
        "Mr. Smith has twenty five colours",
        "uh hello",
        "Mr. Smith has twenty five colours",
        "",
        None,
        "It's $3.50!",
    ]
    expected = [EnglishTextNormalizer()(t or "") for t in texts]
    assert normalize_texts(texts, "whisper").to_pylist() == expected
    assert expected[0] == "mister smith has 25 colors"  # the normaliser really ran (numbers, spelling, title)


def test_whisper_normalisation_changes_the_scores_and_is_recorded():
    pytest.importorskip("whisper_normalizer", reason="needs whisper-normalizer (pip install whisper-normalizer)")
    import fairaudit

    frame = pd.DataFrame(
        {
            "speaker_id": ["a", "b"],
            "grp": ["x", "y"],
            "reference": ["the colour is twenty five", "uh hi there"],
            "hypothesis": ["the color is 25", "hi there"],
        }
    )
    options = dict(by=["grp"], min_speakers=1, min_report_speakers=0, bootstrap=0, permutations=0)
    whisper = fairaudit.audit(frame, normalize="whisper", **options).to_dict()
    default = fairaudit.audit(frame, **options).to_dict()
    assert whisper["input"]["text_normalization"] == "whisper"
    # Whisper's rules make both pairs identical; the default counts colour/color, twenty five/25 and uh.
    total = {
        name: sum(c["errors"] for c in report["methods"]["attribute"]["cohorts"])
        for name, report in (("whisper", whisper), ("default", default))
    }
    assert total == {"whisper": 0, "default": 4}


def test_whisper_normalisation_without_the_package_says_how_to_install(monkeypatch):
    import builtins

    from fairaudit.errors import UsageError
    from fairaudit.text.scoring import check_normalize

    real_import = builtins.__import__

    def no_whisper(name, *args, **kwargs):
        if name.startswith("whisper_normalizer"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_whisper)
    with pytest.raises(UsageError, match=r"pip install whisper-normalizer .*pip install '\.\[whisper\]'"):
        check_normalize("whisper")


def test_every_declared_normalisation_has_its_steps_and_each_step_does_one_thing():
    import pyarrow as pa

    from fairaudit.text.normalizations import NORMALIZATIONS
    from fairaudit.text.scoring import STEPS, delete_apostrophes, delete_punctuation, lowercase, punctuation_to_space

    assert set(STEPS) == set(NORMALIZATIONS)
    text = pa.array(["Don't STOP well-known"])
    assert lowercase(text).to_pylist() == ["don't stop well-known"]
    assert delete_apostrophes(text).to_pylist() == ["Dont STOP well-known"]
    assert punctuation_to_space(text).to_pylist() == ["Don t STOP well known"]
    assert delete_punctuation(text).to_pylist() == ["Dont STOP wellknown"]


def test_texts_that_look_the_same_score_as_the_same():
    """NFC vs NFD accents, a zero-width space and a ligature counted as substitutions (100% WER)."""
    references = ["caf\u00e9 na\u00efve", "ab cd", "fine day"]
    hypotheses = ["cafe\u0301 nai\u0308ve", "a\u200bb cd", "\ufb01ne day"]
    scored = score_texts(references, hypotheses)
    assert scored["errors"].tolist() == [0, 0, 0] and scored["ref_words"].tolist() == [2, 2, 2]
    assert score_texts(references, hypotheses, normalize="none")["errors"].sum() > 0  # "none" is none


def test_score_reads_a_nemo_manifest(tmp_path):
    """audit, validate and compare read manifests; score said "unknown file type"."""
    import json

    from cli_runner import run_main

    lines = [
        {"audio_filepath": f"a{i}.wav", "speaker": "s1", "text": "hello big world", "pred_text": "hello world"}
        for i in range(3)
    ]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    run = run_main("score", tmp_path / "m.jsonl", "-o", tmp_path / "scored.csv")
    assert run.code == 0, run.stderr
    scored = pd.read_csv(tmp_path / "scored.csv")
    assert scored["deletions"].tolist() == [1, 1, 1] and scored["ref_words"].tolist() == [3, 3, 3]
    assert scored["speaker_id"].tolist() == ["s1"] * 3
