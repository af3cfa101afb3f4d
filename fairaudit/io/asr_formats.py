"""Evaluation outputs as ASR teams have them (SPEC 11): NeMo manifests and Kaldi data directories.

Each is turned into the columns of an utterance log (speaker_id, utterance_id, reference,
hypothesis, metadata) and then validated exactly like a CSV, with every error naming the file and
the line the utterance came from.

- **NeMo manifest** (``.json`` / ``.jsonl``): one JSON object per line with ``text`` (reference),
  ``pred_text`` (hypothesis), ``audio_filepath`` (utterance id), a speaker key (``speaker_id`` or
  ``speaker``; or ``--column speaker_id=KEY``) and any metadata keys (``duration``, ``accent``...).
  Nested values (lists, objects) are left out, with a note.
- **NIST trn pair** (``hyp.trn`` with ``--reference ref.trn``): lines ``words ... (utterance-id)``.
  The speaker comes from the utterance id by an explicit rule (``--speaker-pattern``, a regular
  expression whose first group is the speaker; by default the part before the first ``-`` or
  ``_``), and an id the rule does not match is an error: SCTK's implicit rule silently merges such
  speakers. Optional words in parentheses, such as ``(%hesitation)``, are left out of both texts.
- **Kaldi data directory**: ``text`` (utterance id, reference words), ``utt2spk`` (utterance id,
  speaker) and the hypotheses in the same ``text`` format in a file named ``hyp``, ``hyp.txt`` or
  ``text.hyp``. An utterance without a hypothesis line counts as an empty hypothesis (a note says
  how many); one without a speaker is an error, never silently dropped. Kaldi's optional
  ``spk2gender`` (speaker, ``m`` or ``f``) becomes the metadata column ``gender`` (``--by gender``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairaudit.errors import InputError
from fairaudit.io.sources import FileFormat, Source, file_sha256

#: NeMo manifest keys and the canonical columns they are (unless --column says otherwise).
NEMO_KEYS = {"text": "reference", "pred_text": "hypothesis", "audio_filepath": "utterance_id", "speaker": "speaker_id"}
#: Names a Kaldi directory's hypothesis file may have, in the order they are looked for.
KALDI_HYPOTHESIS_FILES = ("hyp", "hyp.txt", "text.hyp")


def is_nemo_manifest(path: str | Path) -> bool:
    return Path(path).suffix.lower() in (".json", ".jsonl")


def is_kaldi_directory(path: str | Path) -> bool:
    """A folder with a Kaldi ``text`` file (other folders are not logs for the pandas engine)."""
    return Path(path).is_dir() and (Path(path) / "text").is_file()


@dataclass
class LineSource(Source):
    """A source whose rows come from known lines of a text file: row k is line ``lines[k]``."""

    lines: list[int] = field(default_factory=list)

    def locate(self, row: int, column: str | None) -> tuple[int | None, str | None]:
        return (self.lines[row] if 0 <= row < len(self.lines) else None), None


def text_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of every non-blank line, as UTF-8; InputError naming a bad line."""
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "is not a file", file=str(path))
    raw = path.read_bytes()
    out = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").rstrip("\r")
            if number == 1:
                text = text.removeprefix("\ufeff")  # a byte-order mark, as CSV files may have too
        except UnicodeDecodeError:
            raise InputError("not valid UTF-8 text", file=str(path), line=number) from None
        if text.strip():
            out.append((number, text))
    return out


def _refuse_audit_report(path: Path) -> None:
    """A clear error when a whole-file JSON given as a log is a fairaudit audit report."""
    try:
        whole = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return
    if isinstance(whole, dict) and "methods" in whole and "fairaudit_version" in whole:
        raise InputError(
            "this is a fairaudit audit report, not a log: give it with --cohorts, or to gate or export",
            file=str(path),
        )


def read_nemo_manifest(
    path: str | Path, text_keys: dict[str, str] | None = None, speaker_pattern: str | None = None
) -> tuple[pd.DataFrame, LineSource, list[str]]:
    """The manifest's entries as log columns, a source mapping rows to lines, and notes.
    ``text_keys``: key -> "reference" or "hypothesis" for keys that ``--column`` names, checked on
    every line like ``text`` and ``pred_text``. ``speaker_pattern``: for lines without a speaker key,
    the speaker is taken from ``audio_filepath`` by this expression (as ``fairaudit embed`` does)."""
    path = Path(path)
    records, lines = [], []
    for number, text in text_lines(path):
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as error:
            _refuse_audit_report(path)
            message = f"not a valid JSON line ({error.msg})"
            raise InputError(message, file=str(path), line=number, value=text[:80]) from None
        except RecursionError:
            raise InputError("this JSON line is nested too deeply", file=str(path), line=number) from None
        if not isinstance(entry, dict):
            raise InputError("each line of a NeMo manifest must be a JSON object", file=str(path), line=number)
        records.append(entry)
        lines.append(number)
    if not records:
        raise InputError("the manifest has no entries (one JSON object per line expected)", file=str(path))
    _require_text_keys(records, lines, path, {**NEMO_TEXT_KEYS, **(text_keys or {})})
    _require_scalar_ids(records, lines, path)
    if speaker_pattern:
        _speakers_from_paths(records, lines, path, speaker_pattern)
    frame = pd.DataFrame.from_records(records)
    nested = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, (list, dict))).any()]
    notes = (
        [f"left out manifest keys with nested values (lists or objects): {', '.join(map(str, nested))}"]
        if nested
        else []
    )
    frame = frame.drop(columns=nested)
    renames = {key: name for key, name in NEMO_KEYS.items() if key in frame.columns and name not in frame.columns}
    frame = frame.rename(columns=renames)
    source = LineSource(path, str(path), FileFormat("nemo"), header=list(frame.columns), lines=lines)
    return frame, source, notes


#: Manifest keys holding words: a line without one that other lines have would silently score as
#: an empty reference or hypothesis (every word deleted or inserted), so it is an error instead.
NEMO_TEXT_KEYS = {"text": "reference", "pred_text": "hypothesis"}


#: Manifest keys that identify a speaker or an utterance: a list, an object or true/false there is
#: an error on its line (a nested value would otherwise drop the key from every line).
NEMO_ID_KEYS = ("speaker", "speaker_id", "audio_filepath", "utterance_id")


def _speakers_from_paths(records: list[dict], lines: list[int], path: Path, speaker_pattern: str) -> None:
    """Give every line without "speaker" or "speaker_id" the speaker that ``speaker_pattern`` finds in
    its audio_filepath; a line where it finds none is an error naming it."""
    pattern = compile_speaker_pattern(speaker_pattern)
    key = "speaker_id" if any("speaker_id" in record for record in records) else "speaker"
    for record, number in zip(records, lines):
        if record.get(key) not in (None, ""):
            continue
        speaker = speaker_in(pattern, str(record.get("audio_filepath") or ""))
        if not speaker:
            raise InputError(
                f"the speaker pattern {speaker_pattern!r} finds no speaker in this line's audio_filepath",
                file=str(path),
                line=number,
                column="audio_filepath",
                value=record.get("audio_filepath"),
            )
        record[key] = speaker


def _require_scalar_ids(records: list[dict], lines: list[int], path: Path) -> None:
    for record, number in zip(records, lines):
        for key in NEMO_ID_KEYS:
            value = record.get(key)
            if isinstance(value, (list, dict, bool)):
                raise InputError(
                    f"{key!r} must be a text or a number on every line; this line has {json.dumps(value)[:60]}",
                    file=str(path),
                    line=number,
                    column=key,
                    value=json.dumps(value)[:80],
                )


def _require_text_keys(records: list[dict], lines: list[int], path: Path, keys: dict[str, str]) -> None:
    """InputError naming the first line that lacks (or has null for) a text key other lines have
    (``keys``: key -> its role, reference or hypothesis)."""
    for key, role in keys.items():
        present = [isinstance(entry.get(key), str) for entry in records]
        if any(present) and not all(present):
            index = present.index(False)
            value = records[index].get(key)
            what = "missing" if key not in records[index] else "null" if value is None else "not a JSON string"
            raise InputError(
                f"the {role} key {key!r} is {what} on this line but text on others; write "
                f'"{key}": "" if the {role} really is empty',
                file=str(path),
                line=lines[index],
                column=key,
                value=None if what == "missing" else ("null" if value is None else value),
            )


def _add_entry(entries: dict[str, tuple[int, str]], utterance: str, number: int, words: str, path: Path) -> None:
    """Record an utterance's line and words; a repeated utterance id is an error naming both lines."""
    if utterance in entries:
        raise InputError(
            f"utterance id {utterance!r} appears twice (first on line {entries[utterance][0]})",
            file=str(path),
            line=number,
            value=utterance,
        )
    entries[utterance] = (number, words)


def _kaldi_table(path: Path) -> dict[str, tuple[int, str]]:
    """utterance id -> (line number, rest of the line) of a Kaldi ``text``-style file."""
    entries: dict[str, tuple[int, str]] = {}
    for number, text in text_lines(path):
        parts = text.split(maxsplit=1)
        _add_entry(entries, parts[0], number, parts[1] if len(parts) > 1 else "", path)
    return entries


def read_kaldi_directory(path: str | Path) -> tuple[pd.DataFrame, LineSource, list[str]]:
    """A Kaldi data directory (text, utt2spk, hypotheses) as log columns, by the lines of ``text``."""
    directory = Path(path)
    hypothesis_file = next((directory / n for n in KALDI_HYPOTHESIS_FILES if (directory / n).is_file()), None)
    if hypothesis_file is None:
        raise InputError(
            "a Kaldi directory needs the hypotheses in a file named "
            + " or ".join(KALDI_HYPOTHESIS_FILES)
            + " (same format as text: utterance id, then the words)",
            file=str(directory),
        )
    references = _kaldi_table(directory / "text")
    speakers = _kaldi_table(directory / "utt2spk")
    hypotheses = _kaldi_table(hypothesis_file)
    genders = _kaldi_table(directory / "spk2gender") if (directory / "spk2gender").is_file() else None
    rows, lines = [], []
    for utterance, (number, words) in references.items():
        speaker = speakers.get(utterance)
        if speaker is None or not speaker[1].strip():
            raise InputError(
                f"utterance {utterance!r} has no speaker in utt2spk; every utterance of text needs one",
                file=str(directory / "text"),
                line=number,
                value=utterance,
            )
        if len(speaker[1].split()) > 1:
            raise InputError(
                "a utt2spk line is an utterance id and one speaker id; this one has more words",
                file=str(directory / "utt2spk"),
                line=speaker[0],
                value=speaker[1],
            )
        hypothesis = hypotheses.get(utterance, (0, ""))[1]
        speaker_id = speaker[1].strip()
        row: dict[str, str | None] = {
            "speaker_id": speaker_id,
            "utterance_id": utterance,
            "reference": words,
            "hypothesis": hypothesis,
        }
        if genders is not None:
            gender = genders.get(speaker_id, (0, ""))[1].strip()
            row["gender"] = gender or None  # a speaker missing from spk2gender has no gender value
        rows.append(row)
        lines.append(number)
    if not rows:
        raise InputError("text has no utterances", file=str(directory / "text"))
    notes = []
    missing = sum(u not in hypotheses for u in references)
    if missing:
        notes.append(
            f"{missing} utterance(s) of text have no line in {hypothesis_file.name}: scored as empty hypotheses"
        )
    extra = sum(u not in references for u in hypotheses)
    if extra:
        notes.append(f"{extra} line(s) of {hypothesis_file.name} are for utterances not in text: left out")
    source = LineSource(directory / "text", str(directory / "text"), FileFormat("kaldi"), lines=lines)
    source.header = ["speaker_id", "utterance_id", "reference", "hypothesis"] + (["gender"] if genders else [])
    return pd.DataFrame(rows), source, notes


def directory_sha256(directory: str | Path) -> str:
    """SHA-256 over the Kaldi files read (name and content hash of each), for the report's provenance."""
    digest = hashlib.sha256()
    for name in ("text", "utt2spk", "spk2gender", *KALDI_HYPOTHESIS_FILES):
        path = Path(directory) / name
        if path.is_file():
            digest.update(f"{file_sha256(path)}  {name}\n".encode())
    return digest.hexdigest()


#: Default rule for the speaker of a trn utterance id: everything before the first "-" or "_".
TRN_SPEAKER_PATTERN = r"^(.+?)[-_]"
#: SCTK's optional words, such as (%hesitation) or (uh): left out of both texts (SCTK lets them
#: match or be missed at no cost; leaving them out never counts an error for them).
_OPTIONAL_WORD = re.compile(r"\([^()\s]*\)")
_TRN_LINE = re.compile(r"^(.*)\(([^()]*)\)\s*$")


def is_trn(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".trn"


def _trn_table(path: Path) -> dict[str, tuple[int, str]]:
    """utterance id -> (line number, words) of a NIST trn file."""
    entries: dict[str, tuple[int, str]] = {}
    for number, text in text_lines(path):
        match = _TRN_LINE.match(text)
        if match is None or not match.group(2).strip():
            raise InputError(
                "a trn line must end with the utterance id in parentheses: words ... (utterance-id)",
                file=str(path),
                line=number,
                value=text[:80],
            )
        words = [word for word in match.group(1).split() if not _OPTIONAL_WORD.fullmatch(word)]
        _add_entry(entries, match.group(2).strip(), number, " ".join(words), path)
    return entries


def compile_speaker_pattern(text: str) -> re.Pattern[str]:
    """A --speaker-pattern as a compiled expression; an invalid one is an InputError."""
    try:
        pattern = re.compile(text)
    except re.error as error:
        raise InputError(f"--speaker-pattern is not a valid regular expression ({error})", value=text) from None
    if not pattern.groups and re.escape(text) == text:  # fixed text: every id it matches is one "speaker"
        raise InputError(
            "--speaker-pattern without a group that matches fixed text gives every utterance the same speaker; "
            "put the speaker part in a group, e.g. '^(spk[0-9]+)_'",
            value=text,
        )
    return pattern


def speaker_in(pattern: re.Pattern[str], text: str) -> str:
    """The speaker a --speaker-pattern finds in ``text``: its first group (the whole match without
    groups); "" when it finds none."""
    match = pattern.search(text)
    if match is None:
        return ""
    return (match.group(1) if pattern.groups else match.group(0)) or ""


def read_trn_pair(
    hypothesis: str | Path, reference: str | Path, speaker_pattern: str | None = None
) -> tuple[pd.DataFrame, LineSource, list[str]]:
    """A hypothesis trn and its reference trn as log columns, by the lines of the reference."""
    pattern_text = speaker_pattern or TRN_SPEAKER_PATTERN
    pattern = compile_speaker_pattern(pattern_text)
    references = _trn_table(Path(reference))
    hypotheses = _trn_table(Path(hypothesis))
    rows, lines = [], []
    for utterance, (number, words) in references.items():
        speaker = speaker_in(pattern, utterance)
        if not speaker:
            raise InputError(
                f"the speaker pattern {pattern_text!r} finds no speaker in this utterance id; give "
                "--speaker-pattern REGEX (its first group is the speaker)",
                file=str(reference),
                line=number,
                value=utterance,
            )
        rows.append(
            {
                "speaker_id": speaker,
                "utterance_id": utterance,
                "reference": words,
                "hypothesis": hypotheses.get(utterance, (0, ""))[1],
            }
        )
        lines.append(number)
    if not rows:
        raise InputError("the reference trn has no utterances", file=str(reference))
    speakers = len({row["speaker_id"] for row in rows})
    if speakers == 1 and len(rows) > 1 and not pattern.groups:
        raise InputError(
            f"the speaker pattern {pattern_text!r} has no group and gives every utterance the same speaker "
            f"{rows[0]['speaker_id']!r}; put the speaker part of the ids in a group, e.g. '^(spk[0-9]+)_'",
            file=str(reference),
            value=pattern_text,
        )
    notes = [f"speakers from the utterance ids by the pattern {pattern_text!r}: {speakers:,} speakers"]
    missing = sum(u not in hypotheses for u in references)
    if missing:
        notes.append(f"{missing} reference utterance(s) have no hypothesis line: scored as empty hypotheses")
    extra = sum(u not in references for u in hypotheses)
    if extra:
        notes.append(f"{extra} hypothesis line(s) are for utterances not in the reference: left out")
    source = LineSource(Path(reference), str(reference), FileFormat("trn"), lines=lines)
    source.header = ["speaker_id", "utterance_id", "reference", "hypothesis"]
    return pd.DataFrame(rows), source, notes
