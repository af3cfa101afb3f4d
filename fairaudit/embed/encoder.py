"""Speaker embeddings of audio files with resemblyzer's GE2E voice encoder (Wan et al. 2018).

The model (a 3-layer LSTM over 40 mel bands, 256-dimensional output, about 17 MB) ships inside
resemblyzer's PyPI package, so nothing is downloaded at run time. Each file is loaded, resampled
to 16 kHz, volume-normalised and stripped of long silences (resemblyzer's ``preprocess_wav``),
then embedded; a speaker's embedding is the mean of its utterances' unit vectors, renormalised.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fairaudit.embed.audio_files import AudioFile
from fairaudit.engines.speaker_table import unit_mean_vectors
from fairaudit.errors import InputError, UsageError

EXTRA_HINT = (
    "fairaudit embed needs the optional extra: in the fairaudit checkout, pip install '.[embed]' "
    "(resemblyzer and torch; for a "
    "CPU-only torch of about 200 MB instead of several GB, first run: "
    "pip install torch --index-url https://download.pytorch.org/whl/cpu)"
)
SAMPLE_RATE = 16_000
#: Speech left after silence trimming below which a file is left out (one GE2E frame is 10 ms).
MIN_SPEECH_SECONDS = 0.3
EMBEDDING_DIM = 256

Progress = Callable[[str, int], Callable[[int], None]]


@dataclass
class EmbeddedAudio:
    """Per-utterance vectors (unit length) and what was left out, and why."""

    files: list[AudioFile]
    vectors: np.ndarray  # (len(files), 256) float32
    speech_seconds: np.ndarray  # (len(files),)
    notes: list[str] = field(default_factory=list)

    def per_utterance(self) -> pd.DataFrame:
        """utterance_id and emb_0..emb_255: the embeddings file keyed by utterance."""
        frame = pd.DataFrame({"utterance_id": [f.utterance_id for f in self.files]})
        return pd.concat([frame, _vector_columns(self.vectors)], axis=1)

    def per_speaker(self) -> pd.DataFrame:
        """speaker_id, utterances, speech_seconds and emb_0..emb_255 (the mean unit vector, renormalised)."""
        speakers = pd.Series([f.speaker_id for f in self.files], dtype="string")
        codes, names = pd.factorize(speakers, sort=True)
        frame = pd.DataFrame(
            {
                "speaker_id": np.asarray(names, dtype=object),
                "utterances": np.bincount(codes, minlength=len(names)),
                "speech_seconds": np.bincount(codes, weights=self.speech_seconds, minlength=len(names)).round(2),
            }
        )
        return pd.concat([frame, _vector_columns(unit_mean_vectors(self.vectors, codes, len(names)))], axis=1)


def _vector_columns(vectors: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(vectors, columns=[f"emb_{i}" for i in range(vectors.shape[1])])


def _resemblyzer() -> Any:
    """The resemblyzer module, or a UsageError saying how to install it."""
    try:
        with warnings.catch_warnings():  # webrtcvad imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import resemblyzer
    except ImportError as error:
        raise UsageError(f"{EXTRA_HINT}; the import failed with: {error}") from None
    return resemblyzer


def embed_files(files: list[AudioFile], progress: Progress | None = None, source: str | None = None) -> EmbeddedAudio:
    """Embed every file (in order); files with no speech after silence trimming are left out with a note.
    ``source`` (the folder or manifest) is named if no file has speech."""
    resemblyzer = _resemblyzer()
    encoder = resemblyzer.VoiceEncoder("cpu", verbose=False)
    advance = progress("embedding audio", len(files)) if progress else None
    kept, vectors, seconds, silent = [], [], [], []
    for audio in files:
        wav = _speech(resemblyzer, audio)
        if len(wav) < MIN_SPEECH_SECONDS * SAMPLE_RATE:
            silent.append(audio)
        else:
            kept.append(audio)
            vectors.append(encoder.embed_utterance(wav).astype(np.float32))
            seconds.append(len(wav) / SAMPLE_RATE)
        if advance:
            advance(1)
    notes = []
    if silent:
        examples = ", ".join(str(a.path) for a in silent[:3])
        notes.append(
            f"{len(silent)} file(s) had less than {MIN_SPEECH_SECONDS} s of speech after silence trimming and were "
            f"left out (e.g. {examples})"
        )
    if not kept:
        raise InputError(
            "no file has speech to embed (every one is silent or too short after silence trimming)", file=source
        )
    lost = sorted({a.speaker_id for a in silent} - {a.speaker_id for a in kept})
    if lost:
        notes.append(
            f"{len(lost)} speaker(s) have no embeddable audio and are not in the output: {', '.join(lost[:5])}"
        )
    return EmbeddedAudio(kept, np.vstack(vectors), np.asarray(seconds), notes)


def _speech(resemblyzer: Any, audio: AudioFile) -> np.ndarray:
    """The file's samples at 16 kHz, volume-normalised, long silences removed (webrtcvad's voice
    activity detection: silence goes, steady noise may count as speech)."""
    import librosa  # a dependency of resemblyzer

    where = audio.where()
    if not audio.path.is_file():
        raise InputError("no such audio file", **where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns before falling back to audioread
            samples, rate = librosa.load(str(audio.path), sr=None)
    except Exception as error:  # decoders raise many types (soundfile, audioread, EOFError): all mean unreadable
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"can not read this audio file ({detail[:160]}); is it a valid WAV/FLAC/OGG?", **where
        ) from None
    if samples.size == 0:
        return np.zeros(0, dtype=np.float32)
    return np.asarray(resemblyzer.preprocess_wav(samples, source_sr=rate), dtype=np.float32)
