"""The streaming protocol shared by `xtts-desktop serve`, the Truss and the remote engine.

POST /predict takes JSON {"text", "language"?, "voice"?, "chunk_size"?, "speed"?, "seed"?,
"greedy"?} and answers with raw PCM: signed 16-bit little-endian, 24 kHz, mono, each chunk
sent as soon as the engine makes it (the protocol of the reference tutorial's endpoint).
This module holds what every side needs without an HTTP framework: checking a request into
a synthesis job (before any byte is streamed) and converting float audio to and from s16le.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from xtts_desktop.errors import UserError

if TYPE_CHECKING:
    from xtts_desktop.engine.stream import GenerationSettings, Synthesizer
    from xtts_desktop.engine.text import Segment
    from xtts_desktop.engine.voices import Voice, VoiceLibrary

SAMPLE_RATE = 24000
CHANNELS = 1
SAMPLE_WIDTH = 2  # bytes: signed 16-bit
# Not audio/L16: RFC 2586 makes L16 big-endian, and these samples are little-endian.
MEDIA_TYPE = "application/octet-stream"
FORMAT_HEADERS = {
    "X-Audio-Format": "s16le",
    "X-Sample-Rate": str(SAMPLE_RATE),
    "X-Channels": str(CHANNELS),
}

DEFAULT_LANGUAGE = "en"
# GPT tokens per chunk ("chunk_size" of the reference tutorial): one token is 46 ms of audio.
MIN_CHUNK_SIZE = 5
MAX_CHUNK_SIZE = 200
# One request reads at most this much text (a long book is several requests).
MAX_TEXT_CHARS = 100_000
REQUEST_FIELDS = ("text", "language", "voice", "chunk_size", "speed", "seed", "greedy")


@dataclass(frozen=True)
class SynthesisRequest:
    """A checked request: everything the engine needs, resolved before the response starts."""

    text: str
    language: str
    voice: Voice
    segments: tuple[Segment, ...]
    settings: GenerationSettings


def _whole_number(value: Any, name: str, low: int, high: int, unit: str = "") -> int:
    """An int from an int, an integral float or a string of digits (the reference client
    sends chunk_size as int(...), others send "20"); bools are refused."""
    number: float | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value.strip())
    suffix = f" {unit}" if unit else ""
    if number is None or not low <= number <= high:
        raise UserError(f"{name} must be a whole number between {low} and {high}{suffix}.")
    return int(number)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{name} must be a number.")
    number = float(value)
    if not math.isfinite(number):
        raise UserError(f"{name} must be a finite number.")
    return number


def parse_request(
    payload: Any,
    synthesizer: Synthesizer,
    library: VoiceLibrary,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> SynthesisRequest:
    """Check a /predict body; raise UserError with one sentence for anything wrong.

    Everything that can fail for a reason the client can fix fails here: the language, the
    voice, the segmentation of the text and the generation settings.
    """
    from xtts_desktop.engine import text as text_module
    from xtts_desktop.engine.stream import GenerationSettings
    from xtts_desktop.engine.voices import resolve_voice

    if not isinstance(payload, Mapping):
        raise UserError('The request body must be a JSON object with a "text" field.')
    unknown = sorted(str(key) for key in payload if key not in REQUEST_FIELDS)
    if unknown:
        raise UserError(
            f"Unknown field {', '.join(repr(k) for k in unknown)}; "
            f"the fields are: {', '.join(REQUEST_FIELDS)}."
        )
    text = payload.get("text")
    if text is None:
        raise UserError('The request has no "text" field: give the text to read.')
    if not isinstance(text, str):
        raise UserError('"text" must be a string.')
    if not text.strip():
        raise UserError("There is nothing to read: the text is empty.")
    if len(text) > max_text_chars:
        raise UserError(
            f"The text is too long ({len(text)} characters); send at most {max_text_chars} "
            "characters per request."
        )
    language = payload.get("language")
    if language is None:
        language = DEFAULT_LANGUAGE
    if not isinstance(language, str):
        raise UserError('"language" must be a language code such as "en".')
    language = text_module.normalize_language(language)
    text_module.check_language_support(language)

    voice_name = payload.get("voice")
    if voice_name is not None and not isinstance(voice_name, str):
        raise UserError('"voice" must be the name of a built-in speaker or a saved voice.')
    loaded = synthesizer.loaded
    voice = resolve_voice(loaded, library, voice_name or None)
    voice.check_compatible(loaded.width)

    overrides: dict[str, Any] = {}
    if payload.get("speed") is not None:
        overrides["speed"] = _number(payload["speed"], '"speed"')
    if payload.get("chunk_size") is not None:
        chunk = _whole_number(
            payload["chunk_size"], '"chunk_size"', MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, "GPT tokens"
        )
        overrides["chunk_tokens"] = chunk
        overrides["first_chunk_tokens"] = min(chunk, GenerationSettings.first_chunk_tokens)
    if payload.get("seed") is not None:
        overrides["seed"] = _whole_number(payload["seed"], '"seed"', 0, 2**63 - 1)
    if payload.get("greedy") is not None:
        if not isinstance(payload["greedy"], bool):
            raise UserError('"greedy" must be true or false.')
        overrides["greedy"] = payload["greedy"]
    settings = GenerationSettings.from_model(loaded, **overrides)
    segments = synthesizer.segments(text, language)
    return SynthesisRequest(text, language, voice, tuple(segments), settings)


def voice_names(synthesizer: Synthesizer, library: VoiceLibrary) -> dict[str, list[str]]:
    """{"builtin": [...], "saved": [...]}, as `xtts-desktop voices list --json` prints it."""
    from xtts_desktop.engine.voices import builtin_voices

    return {
        "builtin": list(builtin_voices(synthesizer.loaded)),
        "saved": library.names(),
    }


# ----- PCM ------------------------------------------------------------------------------------


def float_to_s16le(samples: np.ndarray) -> bytes:
    """Float audio in [-1, 1] to signed 16-bit little-endian bytes (clipped, rounded)."""
    scaled = np.rint(np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0) * 32767.0)
    return scaled.astype("<i2").tobytes()


def s16le_to_float(data: bytes | bytearray | memoryview) -> np.ndarray:
    """The inverse of float_to_s16le (within half a step): float32 samples in [-1, 1]."""
    if len(data) % SAMPLE_WIDTH:
        raise ValueError("s16le data must have an even number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32767.0)


class PcmDecoder:
    """s16le bytes arriving in pieces of any length -> float32 samples.

    A network read can end in the middle of a sample: its first byte is kept until the next
    piece brings the second.
    """

    def __init__(self) -> None:
        self._pending = b""
        self.bytes_seen = 0

    def feed(self, data: bytes) -> np.ndarray:
        self.bytes_seen += len(data)
        if self._pending:
            data = self._pending + data
        usable = len(data) - len(data) % SAMPLE_WIDTH
        self._pending = bytes(data[usable:])
        return s16le_to_float(memoryview(data)[:usable])

    @property
    def has_partial_sample(self) -> bool:
        return bool(self._pending)
