"""The Baseten Truss: model/model.py imported by path, load() and predict() on the tiny model."""

from __future__ import annotations

import importlib.util
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from xtts_desktop.engine.stream import GenerationSettings
from xtts_desktop.engine.voices import Voice, VoiceLibrary, resolve_voice
from xtts_desktop.errors import UserError
from xtts_desktop.server import s16le_to_float

ROOT = Path(__file__).resolve().parents[2]
TRUSS = ROOT / "packaging" / "truss"


def import_truss_model():
    spec = importlib.util.spec_from_file_location("truss_xtts_model", TRUSS / "model" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def truss_model(tiny_model_dir, tmp_path_factory, builtin_voice):
    """Model built as Truss builds it (data_dir, config, secrets), on the tiny model."""
    module = import_truss_model()
    data_dir = tmp_path_factory.mktemp("truss-data")
    # A saved voice shipped in data/voices is usable by name.
    VoiceLibrary(data_dir / "voices").save(
        Voice(
            "Shipped Voice", builtin_voice.gpt_cond_latent, builtin_voice.speaker_embedding, "saved"
        )
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(module.MODEL_DIR_VARIABLE, str(tiny_model_dir))
        patch.setenv(module.DEVICE_VARIABLE, "cpu")
        patch.setenv(module.PRECISION_VARIABLE, "fp32")
        model = module.Model(data_dir=data_dir, config={"model_metadata": {}}, secrets={})
        model.load()
    return model


def test_predict_streams_s16le_bytes(truss_model, synthesizer, tiny_model):
    output = truss_model.predict({"text": "Hello there.", "greedy": True})
    # A generator: Truss streams what it yields, chunk by chunk.
    assert isinstance(output, Iterator) and not isinstance(output, bytes | list)
    chunks = list(output)
    assert len(chunks) > 1
    assert all(isinstance(chunk, bytes) and len(chunk) % 2 == 0 for chunk in chunks)
    audio = s16le_to_float(b"".join(chunks))
    assert np.sqrt(np.mean(audio**2)) > 1e-3

    # The same engine: greedy output equals the project's synthesizer on the same weights.
    voice = resolve_voice(tiny_model, VoiceLibrary(Path("unused")), None)
    settings = GenerationSettings.from_model(tiny_model, greedy=True)
    expected = np.concatenate(
        [c.samples for c in synthesizer.stream("Hello there.", voice, "en", settings)]
    )
    assert len(audio) == len(expected)
    assert np.max(np.abs(audio - np.clip(expected, -1, 1))) <= 0.51 / 32767 + 1e-7


def test_predict_uses_saved_voices_and_options(truss_model):
    chunks = list(
        truss_model.predict(
            {"text": "Shipped.", "voice": "Shipped Voice", "chunk_size": 10, "seed": 3}
        )
    )
    assert sum(len(chunk) for chunk in chunks) > 0


def test_bad_input_is_refused_before_streaming(truss_model):
    # Raised by predict() itself, not later while Truss iterates: a 400, not a broken stream.
    with pytest.raises(UserError, match="Unknown language 'xx'"):
        truss_model.predict({"text": "Hi.", "language": "xx"})
    with pytest.raises(UserError, match='no "text" field'):
        truss_model.predict({})
    with pytest.raises(UserError, match="Unknown voice"):
        truss_model.predict({"text": "Hi.", "voice": "Nobody"})


def test_a_closed_stream_frees_the_engine(truss_model):
    long_text = " ".join(f"Part {n} of a long reading." for n in range(40))
    stream = truss_model.predict({"text": long_text})
    assert len(next(stream)) > 0
    stream.close()  # what Truss does when the client goes away
    finished = threading.Event()

    def again() -> None:
        list(truss_model.predict({"text": "Next request."}))
        finished.set()

    worker = threading.Thread(target=again, daemon=True)
    worker.start()
    # A stream left holding the engine's lock would block here for ever.
    assert finished.wait(timeout=120)


def _requirement_pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*(.*)$", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2).replace(" ", "")
    return pins


def test_config_pins_agree_with_the_project():
    yaml = pytest.importorskip("yaml")
    tomllib = pytest.importorskip("tomllib")
    config = yaml.safe_load((TRUSS / "config.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    truss_pins = _requirement_pins(config["requirements"])
    project_pins = _requirement_pins(project["dependencies"])
    for name in ("torch", "torchaudio", "torchcodec", "coqui-tts", "transformers"):
        assert truss_pins[name] == project_pins[name], name
    for name, spec in truss_pins.items():
        if name in project_pins:
            assert spec == project_pins[name], name
    assert config["resources"]["use_gpu"] is True and config["resources"]["accelerator"]
    assert re.fullmatch(r"py3\d+", config["python_version"])
    assert config["model_class_name"] == "Model"
