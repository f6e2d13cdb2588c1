"""Baseten Truss: XTTS Desktop's streaming engine behind Truss's POST /predict, as raw PCM.

The request is the JSON `xtts-desktop serve` takes ({"text", "language"?, "voice"?,
"chunk_size"?, "speed"?, "seed"?, "greedy"?}) and the answer the same bytes: signed 16-bit
little-endian PCM, 24 kHz, mono, each chunk yielded as soon as the engine makes it, so the
reference tutorial's client (requests with stream=True, iter_content, ffplay -f s16le -ar
24000 -ac 1 -) plays it unchanged.

Where the model comes from, first found wins: $XTTS_DESKTOP_MODEL_DIR; model_metadata.model_dir
in config.yaml; the Truss's data/xtts_v2 folder; else coqui/XTTS-v2 from Hugging Face
(model_metadata.hf_revision pins a commit; the secret hf_access_token is used if set).
Saved voices (.safetensors files made by `xtts-desktop voices export`) in data/voices are
usable by name.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MODEL_DIR_VARIABLE = "XTTS_DESKTOP_MODEL_DIR"
DEVICE_VARIABLE = "XTTS_DESKTOP_DEVICE"
PRECISION_VARIABLE = "XTTS_DESKTOP_PRECISION"
HF_REPO = "coqui/XTTS-v2"
MODEL_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")


def _bad_request(message: str) -> Exception:
    """A 400 with the message under Truss (which passes fastapi's HTTPException through)."""
    try:
        from fastapi import HTTPException
    except ImportError:  # outside a Truss server (tests, a plain Python shell)
        from xtts_desktop.errors import UserError

        return UserError(message)
    return HTTPException(status_code=400, detail=message)


class Model:
    """Truss's model class: load() once per replica, predict() per request."""

    def __init__(self, **kwargs: Any) -> None:
        data_dir = kwargs.get("data_dir")
        self._data_dir = Path(data_dir) if data_dir else None
        config = kwargs.get("config") or {}
        self._metadata: dict[str, Any] = dict(config.get("model_metadata") or {})
        self._secrets = kwargs.get("secrets")
        self._synthesizer: Any = None
        self._library: Any = None

    # ----- load -----------------------------------------------------------------------------

    def _secret(self, name: str) -> str | None:
        if self._secrets is None:
            return None
        try:
            value = self._secrets[name]
        except Exception:  # Truss's resolver raises its own kinds for a missing secret
            return None
        return str(value) if value else None

    def _model_dir(self) -> Path:
        explicit = os.environ.get(MODEL_DIR_VARIABLE) or self._metadata.get("model_dir")
        if explicit:
            return Path(explicit)
        if self._data_dir is not None:
            bundled = self._data_dir / "xtts_v2"
            if all((bundled / name).is_file() for name in MODEL_FILES):
                return bundled
        from huggingface_hub import snapshot_download

        logger.info("downloading %s from Hugging Face", HF_REPO)
        return Path(
            snapshot_download(
                HF_REPO,
                revision=self._metadata.get("hf_revision"),
                allow_patterns=list(MODEL_FILES),
                token=self._secret("hf_access_token"),
            )
        )

    def load(self) -> None:
        from xtts_desktop.engine.model import load_model
        from xtts_desktop.engine.stream import Synthesizer
        from xtts_desktop.engine.voices import VoiceLibrary, builtin_voices

        device = os.environ.get(DEVICE_VARIABLE) or self._metadata.get("device") or "auto"
        precision = os.environ.get(PRECISION_VARIABLE) or self._metadata.get("precision") or "auto"
        loaded = load_model(self._model_dir(), device=device, precision=precision)
        synthesizer = Synthesizer(loaded)
        voices_dir = self._data_dir / "voices" if self._data_dir is not None else None
        self._library = VoiceLibrary(voices_dir or Path(self._metadata.get("voices_dir", "voices")))
        builtins = builtin_voices(loaded)
        if builtins:
            # The first request should be as fast as the second (CUDA kernels, allocator).
            synthesizer.warm_up(next(iter(builtins.values())))
        self._synthesizer = synthesizer
        logger.info("XTTS loaded from %s on %s", loaded.model_dir, loaded.describe())

    # ----- predict --------------------------------------------------------------------------

    def predict(self, model_input: Any) -> Iterator[bytes]:
        """Check the request now (a bad one is a 400, not a broken stream); stream the PCM."""
        from xtts_desktop.errors import UserError
        from xtts_desktop.server import parse_request

        if self._synthesizer is None:
            raise RuntimeError("predict() before load()")
        try:
            request = parse_request(model_input, self._synthesizer, self._library)
        except UserError as error:
            raise _bad_request(error.message) from None
        return self._pcm(request)

    def _pcm(self, request: Any) -> Iterator[bytes]:
        from xtts_desktop.server import float_to_s16le

        chunks = self._synthesizer.stream_segments(
            request.segments, request.voice, request.language, request.settings
        )
        # When Truss stops reading (the client went away) this generator is closed, which
        # closes the engine's at its current chunk and releases the model for the next request.
        with contextlib.closing(chunks):
            for chunk in chunks:
                if len(chunk.samples):
                    yield float_to_s16le(chunk.samples)
