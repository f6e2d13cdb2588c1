"""Exports that cannot finish: a full disk, a read-only disk or folder, a folder that goes
away mid-export. Each is one sentence (exit 2 on the command line) and leaves no file."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.reliability.conftest import leftovers
from xtts_desktop.audio.files import AudioFileWriter, write_audio
from xtts_desktop.cli import main
from xtts_desktop.engine.stream import GenerationSettings
from xtts_desktop.errors import Cancelled, UserError

RATE = 24000
TEXT = "The export goes on for a while. Then something happens to the disk."


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise, so that FLAC and Vorbis cannot squeeze it into nothing."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, int(seconds * RATE)).astype(np.float32)


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and message[0].isupper()


def cli_error(capsys) -> str:
    lines = [
        line for line in capsys.readouterr().err.splitlines()
        if line.strip() and not line.startswith(("warning:", "note:"))
    ]  # fmt: skip
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize("extension", [".wav", ".flac", ".ogg"])
def test_a_full_disk_stops_the_export_with_a_sentence_and_no_file(small_disk, capfd, extension):
    disk = small_disk("256k")
    target = disk / f"book{extension}"
    with pytest.raises(UserError) as caught:
        with AudioFileWriter(target) as writer:
            for second in range(120):
                writer.write(noise(1.0, seed=second))
    message = str(caught.value)
    assert message == f"Cannot save to {target}: the disk is full."
    assert leftovers(disk) == []
    # libsndfile's callbacks raised nothing: no traceback reached stderr.
    assert "Traceback" not in capfd.readouterr().err
    # The disk is usable again: a short file fits.
    write_audio(disk / f"short{extension}", noise(0.5))
    assert leftovers(disk) == [f"short{extension}"]


def test_say_onto_a_full_disk_exits_2_and_leaves_no_file(small_disk, tiny_model_dir, capsys):
    disk = small_disk("16k")
    out = disk / "speech.wav"
    code = main(
        ["say", TEXT, "--model-dir", str(tiny_model_dir), "--device", "cpu",
         "--precision", "fp32", "--max-tokens", "30", "--no-play", "--out", str(out)]
    )  # fmt: skip
    assert code == 2
    assert cli_error(capsys) == f"error: Cannot save to {out}: the disk is full."
    assert leftovers(disk) == []


def test_a_read_only_disk(small_disk, tiny_model_dir, capsys):
    disk = small_disk("1m", read_only=True)
    with pytest.raises(UserError) as caught:
        write_audio(disk / "out.wav", noise(0.2))
    assert str(caught.value) == f"Cannot save to {disk / 'out.wav'}: the disk is read-only."
    code = main(
        ["say", "Hello.", "--model-dir", str(tiny_model_dir), "--device", "cpu",
         "--no-play", "--out", str(disk / "out.wav")]
    )  # fmt: skip
    assert code == 2
    assert f"the folder {disk} is not writable" in cli_error(capsys)
    assert leftovers(disk) == []


def test_an_immutable_folder_refuses_even_root(immutable, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    immutable(folder)
    with pytest.raises(UserError) as caught:
        write_audio(folder / "out.flac", noise(0.2))
    assert str(caught.value) == f"Cannot save to {folder / 'out.flac'}: permission denied."
    assert leftovers(folder) == []


def test_a_read_only_folder_held_to_its_permissions(run_without_override, tmp_path, tiny_model_dir):
    """chmod 555, as a user would make it; run where root's override is dropped."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    code = f"""
import json, numpy as np
from xtts_desktop.audio.files import write_audio
from xtts_desktop.cli import main
from xtts_desktop.errors import UserError
try:
    write_audio({str(folder / "a.wav")!r}, np.zeros(2400, np.float32))
    message = None
except UserError as error:
    message = str(error)
code = main(["say", "Hi.", "--model-dir", {str(tiny_model_dir)!r}, "--device", "cpu",
             "--no-play", "--out", {str(folder / "b.wav")!r}])
print(json.dumps({{"message": message, "code": code}}))
"""
    try:
        report = run_without_override(code)
    finally:
        folder.chmod(0o755)
    assert report["message"] == f"Cannot save to {folder / 'a.wav'}: permission denied."
    assert report["code"] == 2
    assert leftovers(folder) == []


def _export(synthesizer, voice, settings, target: Path, on_first_chunk) -> None:
    """The export path the window and `say --out` share: engine chunks into the writer."""
    with AudioFileWriter(target, synthesizer.sample_rate) as writer:
        for number, chunk in enumerate(synthesizer.stream(TEXT, voice, "en", settings)):
            writer.write(chunk.samples)
            if number == 0:
                on_first_chunk()


@pytest.mark.parametrize("how", ["deleted", "renamed", "replaced"])
def test_the_folder_goes_away_mid_export(synthesizer, builtin_voice, tiny_model, tmp_path, how):
    settings = GenerationSettings.from_model(tiny_model, seed=1, max_tokens_per_segment=20)
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "chapter.wav"

    def pull_the_folder() -> None:
        if how == "deleted":
            shutil.rmtree(folder)
        elif how == "renamed":
            folder.rename(tmp_path / "moved")
        else:
            folder.rename(tmp_path / "old")
            folder.mkdir()

    with pytest.raises(UserError) as caught:
        _export(synthesizer, builtin_voice, settings, target, pull_the_folder)
    assert str(caught.value) == (
        f"Cannot save to {target}: the folder {folder} was moved or deleted during the export."
    )
    # No partial file anywhere: not at the target, not in the folder wherever it went.
    assert [p for p in leftovers(tmp_path) if Path(p).suffix or Path(p).name.startswith(".")] == []
    # The engine is free and the next export works.
    folder.mkdir(exist_ok=True)
    _export(synthesizer, builtin_voice, settings, target, lambda: None)
    assert soundfile.info(target).frames > 0


def test_a_cancelled_export_leaves_no_file(synthesizer, builtin_voice, tiny_model, tmp_path):
    settings = GenerationSettings.from_model(tiny_model, seed=1, max_tokens_per_segment=20)
    cancel = threading.Event()
    target = tmp_path / "cancelled.ogg"
    with pytest.raises(Cancelled):
        with AudioFileWriter(target) as writer:
            for chunk in synthesizer.stream(TEXT, builtin_voice, "en", settings, cancel=cancel):
                writer.write(chunk.samples)
                cancel.set()
    assert leftovers(tmp_path) == []
