"""Voice samples nobody should hand us, through the command line: one sentence and exit 2
for each, files that are odd but fine are cloned, and the app goes on working."""

from __future__ import annotations

import json
import math
import os
import resource
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile

from xtts_desktop.cli import main, read_samples

RATE = 16000


@pytest.fixture(scope="module")
def speech(speech_sample) -> tuple[np.ndarray, int]:
    samples, rate = soundfile.read(speech_sample, dtype="float32")
    return samples, rate


def at_rate(speech: tuple[np.ndarray, int], rate: int) -> np.ndarray:
    """The espeak speech at another rate (linear interpolation: plenty for a voice sample)."""
    samples, source = speech
    count = int(len(samples) * rate / source)
    return np.interp(np.arange(count) * source / rate, np.arange(len(samples)), samples).astype(
        np.float32
    )


def model_args(tiny_model_dir: Path) -> list[str]:
    return ["--model-dir", str(tiny_model_dir), "--device", "cpu", "--precision", "fp32"]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [
        line for line in err.splitlines()
        if line.strip() and not line.startswith(("warning:", "note:"))
    ]  # fmt: skip
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and lines[0].endswith("."), lines[0]
    return lines[0]


def saved_voices(capsys, tiny_model_dir: Path) -> list[str]:
    assert main(["voices", "--json", *model_args(tiny_model_dir)]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])["saved"]


def hostile_samples(folder: Path, speech: tuple[np.ndarray, int]) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the one-line message must say)."""
    good = folder / "scratch.wav"
    soundfile.write(good, at_rate(speech, RATE), RATE, subtype="PCM_16")
    wav = good.read_bytes()
    good.unlink()
    rng = np.random.default_rng(6)
    cases: dict[str, tuple[bytes | None, str]] = {
        "random.wav": (rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes(), "not an audio file"),
        "truncated.wav": (wav[:40], "not an audio file"),
        "notes.wav": (b"Dear diary, this is text.\n" * 100, "not an audio file"),
        "empty.wav": (b"", "is empty"),
    }
    paths = {}
    for name, (content, expected) in cases.items():
        (folder / name).write_bytes(content)
        paths[name] = (folder / name, expected)
    for name, value in (("nan.wav", np.nan), ("inf.wav", np.inf)):
        samples = at_rate(speech, RATE).copy()
        samples[len(samples) // 2] = value
        soundfile.write(folder / name, samples, RATE, subtype="FLOAT")
        paths[name] = (folder / name, "invalid samples")
    # A header claiming ten million samples a second: no real file does.
    absurd = folder / "absurd-rate.wav"
    soundfile.write(absurd, at_rate(speech, RATE), 10_000_000, subtype="PCM_16")
    paths["absurd-rate.wav"] = (absurd, "10000000 Hz")
    low = folder / "2khz.wav"
    soundfile.write(low, at_rate(speech, 2000), 2000, subtype="PCM_16")
    paths["2khz.wav"] = (low, "at least 8000 Hz")
    silent = folder / "silent.wav"
    soundfile.write(silent, np.zeros(RATE * 6, dtype=np.float32), RATE, subtype="PCM_16")
    paths["silent.wav"] = (silent, "silent")
    (folder / "folder.wav").mkdir()
    paths["folder.wav"] = (folder / "folder.wav", "is a folder")
    paths["missing.wav"] = (folder / "missing.wav", "does not exist")
    return paths


def test_hostile_samples_are_one_line_each_and_a_good_one_still_clones(
    tmp_path, speech, speech_sample, tiny_model_dir, capsys
):
    cases = hostile_samples(tmp_path, speech)
    for name, (path, expected) in cases.items():
        code = main(["voices", "add", "Hostile", str(path), *model_args(tiny_model_dir)])
        line = error_line(capsys)
        assert code == 2, f"{name}: {line}"
        assert expected in line, f"{name}: {line}"
    # The same refusals through `say --voice-sample`, before any synthesis.
    for name in ("random.wav", "nan.wav", "folder.wav"):
        path, expected = cases[name]
        out = tmp_path / "never.wav"
        code = main(
            ["say", "Hi.", "--voice-sample", str(path), "--no-play", "--out", str(out),
             *model_args(tiny_model_dir)]
        )  # fmt: skip
        assert code == 2 and expected in error_line(capsys), name
        assert not out.exists()
    # Nothing was saved, and the app still clones a good sample.
    assert saved_voices(capsys, tiny_model_dir) == []
    assert main(["voices", "add", "Good", str(speech_sample), *model_args(tiny_model_dir)]) == 0
    capsys.readouterr()
    assert saved_voices(capsys, tiny_model_dir) == ["Good"]


@pytest.mark.parametrize(
    ("name", "rate", "channels"),
    [("8khz", 8000, 1), ("96khz", 96000, 1), ("8-channels", 48000, 8), ("odd-rate", 44101, 1)],
)
def test_unusual_but_real_samples_are_cloned(
    tmp_path, speech, tiny_model_dir, capsys, name, rate, channels
):
    samples = at_rate(speech, rate)
    if channels > 1:
        # Speech in every channel, a little quieter in each next one.
        samples = samples[:, None] * np.linspace(1.0, 0.3, channels, dtype=np.float32)[None, :]
    path = tmp_path / f"{name}.wav"
    soundfile.write(path, samples, rate, subtype="PCM_16")
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    code = main(["voices", "add", name, str(path), *model_args(tiny_model_dir)])
    growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
    assert code == 0, capsys.readouterr().err
    capsys.readouterr()
    assert saved_voices(capsys, tiny_model_dir) == [name]
    # 44101 Hz once made torchaudio build a 17 GB resampling kernel.
    assert growth < 500e6, f"the peak memory grew by {growth / 1e6:.0f} MB"


def _write_hour(path: Path, speech: tuple[np.ndarray, int], seconds: int) -> None:
    """An hour of PCM_16 mono speech written block by block (never whole in memory)."""
    block = at_rate(speech, RATE)
    with soundfile.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as handle:
        for _ in range(math.ceil(seconds * RATE / len(block))):
            handle.write(block)


def test_an_hour_long_sample_is_trimmed_not_loaded(tmp_path, speech, tiny_model_dir, capsys):
    path = tmp_path / "hour.wav"
    _write_hour(path, speech, 3600)
    info = soundfile.info(path)
    assert info.duration >= 3600 and path.stat().st_size > 110e6
    tracemalloc.start()
    try:
        [sample] = read_samples([str(path)])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The first 30 s as float32 is 1.9 MB; the whole hour would be 230 MB.
    assert len(sample.samples) == 30 * RATE
    assert peak < 8e6, f"reading the sample took {peak / 1e6:.1f} MB"
    assert main(["voices", "add", "Marathon", str(path), *model_args(tiny_model_dir)]) == 0
    capsys.readouterr()
    assert saved_voices(capsys, tiny_model_dir) == ["Marathon"]


def test_an_unreadable_sample_and_document(run_without_override, tmp_path, speech, tiny_model_dir):
    """chmod 000, with root's override dropped (as root, tests that just chmod are skipped)."""
    sample = tmp_path / "private.wav"
    soundfile.write(sample, at_rate(speech, RATE), RATE, subtype="PCM_16")
    document = tmp_path / "private.txt"
    document.write_text("Secret words.", encoding="utf-8")
    for path in (sample, document):
        path.chmod(0)
    code = f"""
import json
from xtts_desktop.cli import main
from xtts_desktop.documents import read_document
from xtts_desktop.errors import UserError
add = main(["voices", "add", "Private", {str(sample)!r}, "--model-dir", {str(tiny_model_dir)!r},
            "--device", "cpu"])
try:
    read_document({str(document)!r})
    document = None
except UserError as error:
    document = str(error)
print(json.dumps({{"add": add, "document": document}}))
"""
    try:
        report = run_without_override(code)
    finally:
        for path in (sample, document):
            path.chmod(0o644)
    assert report["add"] == 2
    assert report["document"] == "private.txt cannot be read: permission denied."
    assert not list((Path(os.environ["XTTS_DESKTOP_DATA_DIR"])).rglob("*.safetensors"))
