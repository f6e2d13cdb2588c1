"""The test bed: random-weight XTTS models built once per cache, isolated user folders per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

CACHE_ROOT = Path(
    os.environ.get("XTTS_DESKTOP_TEST_CACHE") or Path.home() / ".cache" / "xtts-desktop-tests"
)


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Each test gets its own settings, data and log folders: nothing of the user's is touched."""
    base = tmp_path_factory.mktemp("user")
    for name in ("CONFIG", "DATA", "LOG"):
        path = base / name.lower()
        monkeypatch.setenv(f"XTTS_DESKTOP_{name}_DIR", str(path))
    monkeypatch.setenv("XTTS_DESKTOP_CACHE_DIR", str(CACHE_ROOT))
    monkeypatch.delenv("XTTS_DESKTOP_MODEL_DIR", raising=False)
    return base


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A tiny random-weight XTTS v2 folder (built on first use, then cached)."""
    from xtts_desktop.engine.random_model import cached_random_model

    return cached_random_model(CACHE_ROOT, "tiny")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from xtts_desktop.engine.model import load_model

    return load_model(tiny_model_dir, device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def synthesizer(tiny_model):
    from xtts_desktop.engine.stream import Synthesizer

    return Synthesizer(tiny_model)


@pytest.fixture(scope="session")
def builtin_voice(tiny_model):
    from xtts_desktop.engine.voices import builtin_voices

    return next(iter(builtin_voices(tiny_model).values()))


@pytest.fixture(scope="session")
def speech_sample(tmp_path_factory) -> Path:
    """About six seconds of real (synthetic) speech made by espeak-ng, to clone from."""
    import shutil
    import subprocess

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (make test installs it)")
    path = tmp_path_factory.mktemp("samples") / "speaker.wav"
    subprocess.run(
        [
            "espeak-ng", "-w", str(path), "-s", "150",
            "The quick brown fox jumps over the lazy dog. She sells sea shells by the sea shore, "
            "and the shells she sells are surely sea shells.",
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def awake_sink():
    """Keeps the default null sink rendering in small blocks for the whole session (an idle
    null sink holds a new stream for up to 2 s, which would inflate time to first audio)."""
    from tests.pulse import keep_sink_awake, pulse_available

    if not pulse_available():
        pytest.skip("PulseAudio is not running: run the tests with `make test`")
    with keep_sink_awake():
        yield
