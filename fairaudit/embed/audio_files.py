"""Which audio files to embed, and whose voice each one is: a folder of audio or a NeMo manifest.

- **A folder** (searched recursively for ``AUDIO_SUFFIXES``): the utterance id is the file name
  without its suffix (as in LibriSpeech, VCTK and Kaldi ids); the speaker comes from the file's path
  relative to the folder by an explicit rule, ``--speaker-pattern`` (a regular expression whose
  first group is the speaker), by default the first folder under the root (``p225/p225_001.wav``
  or ``19/198/19-198-0001.flac``). A file the rule does not match is an error, never a guess.
- **A NeMo manifest** (``.json`` / ``.jsonl``): ``audio_filepath`` (relative paths are read from the
  manifest's folder) is the utterance id, as in ``fairaudit audit manifest.json``; the speaker is
  ``speaker_id`` or ``speaker``, else taken from ``audio_filepath`` by ``--speaker-pattern``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fairaudit.errors import InputError
from fairaudit.io.asr_formats import compile_speaker_pattern, speaker_in, text_lines

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
#: Default rule for a folder: the first folder under the root is the speaker.
FOLDER_SPEAKER_PATTERN = r"^([^/]+)/"
MANIFEST_SPEAKER_KEYS = ("speaker_id", "speaker")


@dataclass(frozen=True)
class AudioFile:
    """One utterance's audio and whose voice it is; ``manifest`` and ``line`` say where it was listed
    (None for a file found in a folder)."""

    path: Path
    utterance_id: str
    speaker_id: str
    manifest: Path | None = None
    line: int | None = None

    def where(self) -> dict:
        """Where to point an error about this file: the manifest line that lists it, or the file."""
        if self.manifest is None:
            return {"file": str(self.path)}
        return {"file": str(self.manifest), "line": self.line, "column": "audio_filepath", "value": str(self.path)}


def find_audio(source: str | Path, speaker_pattern: str | None = None) -> list[AudioFile]:
    """The audio files of a folder or a NeMo manifest, each with its utterance and speaker ids."""
    source = Path(source)
    if source.is_dir():
        return _folder_files(source, speaker_pattern)
    if source.is_file() and source.suffix.lower() in (".json", ".jsonl"):
        return _manifest_files(source, speaker_pattern)
    if not source.exists():
        raise InputError("no such file or folder", file=str(source))
    raise InputError(
        "give a folder of audio files (" + ", ".join(AUDIO_SUFFIXES) + ") or a NeMo manifest (.json or .jsonl)",
        file=str(source),
    )


def _folder_files(root: Path, speaker_pattern: str | None) -> list[AudioFile]:
    pattern_text = speaker_pattern or FOLDER_SPEAKER_PATTERN
    pattern = compile_speaker_pattern(pattern_text)
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise InputError(
            "no audio files in this folder (looked for " + ", ".join(AUDIO_SUFFIXES) + " in it and its sub-folders)",
            file=str(root),
        )
    files: list[AudioFile] = []
    for path in paths:
        relative = path.relative_to(root).as_posix()
        speaker = speaker_in(pattern, relative)
        if not speaker:
            raise InputError(
                f"the speaker pattern {pattern_text!r} finds no speaker in this file's path under the folder; give "
                "--speaker-pattern REGEX (its first group is the speaker, matched against paths such as "
                "'speaker/file.wav')",
                file=str(path),
                value=relative,
            )
        files.append(AudioFile(path, path.stem, speaker))
    return files


def _manifest_files(manifest: Path, speaker_pattern: str | None) -> list[AudioFile]:
    """Entries read as ``fairaudit audit`` reads the manifest: same lines, same speaker key, same errors."""
    pattern = compile_speaker_pattern(speaker_pattern) if speaker_pattern else None
    entries = []
    for number, text in text_lines(manifest):
        try:
            entry = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(
                f"not a valid JSON line ({error.msg})", file=str(manifest), line=number, value=text[:80]
            ) from None
        if not isinstance(entry, dict):
            raise InputError("each line of a NeMo manifest must be a JSON object", file=str(manifest), line=number)
        entries.append((number, entry))
    if not entries:
        raise InputError("the manifest has no entries (one JSON object per line expected)", file=str(manifest))
    # As in the audit: "speaker" is the speaker only when no line has "speaker_id".
    key = "speaker_id" if any("speaker_id" in entry for _, entry in entries) else "speaker"
    files = []
    for number, entry in entries:
        audio = entry.get("audio_filepath")
        if not isinstance(audio, str) or not audio:
            raise InputError(
                "each line needs an audio_filepath (the audio file of the utterance)",
                file=str(manifest),
                line=number,
                column="audio_filepath",
            )
        value = entry.get(key)
        speaker = "" if value is None or isinstance(value, (list, dict, bool)) else str(value).strip()
        if not speaker and pattern is not None:
            speaker = speaker_in(pattern, audio)
        if not speaker:
            hint = (
                f"the speaker pattern {speaker_pattern!r} finds no speaker in audio_filepath"
                if pattern is not None
                else f"no {key} on this line; add one, or give --speaker-pattern REGEX to take the speaker from "
                "audio_filepath"
            )
            raise InputError(hint, file=str(manifest), line=number, column=key, value=audio)
        path = Path(audio) if Path(audio).is_absolute() else manifest.parent / audio
        files.append(AudioFile(path, audio, speaker, manifest, number))
    check_unique_utterances(files)  # a file listed twice would count twice in its speaker's mean
    return files


def check_unique_utterances(files: list[AudioFile]) -> None:
    """Refuse two entries with one utterance id (a manifest always; a folder when vectors are keyed by
    utterance, since its ids are file names without suffix)."""
    seen: dict[str, AudioFile] = {}
    for audio in files:
        first = seen.setdefault(audio.utterance_id, audio)
        if first is not audio:
            raise InputError(
                f"two entries have the utterance id {audio.utterance_id!r} ({first.path} and {audio.path}): a manifest "
                "must list each audio_filepath once, and with --per utterance the file names (without suffix) in a "
                "folder must be unique",
                **audio.where(),
            )
