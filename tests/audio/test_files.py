"""Audio files: round trips, atomic writes that leave nothing behind, and readable errors."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from xtts_desktop.audio.files import (
    AudioFileWriter,
    _save_error,
    read_audio,
    supported_extensions,
    write_audio,
)
from xtts_desktop.errors import UserError

RATE = 24000


def sine(seconds: float, frequency: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.shape[0])))
    return float(np.fft.rfftfreq(samples.shape[0], 1 / rate)[np.argmax(spectrum)])


def leftovers(folder: Path) -> list[str]:
    """Everything in `folder`, hidden temporary files included."""
    return sorted(entry.name for entry in folder.iterdir())


def one_sentence(message: str) -> bool:
    return message.endswith(".") and "\n" not in message and message[0].isupper()


# -- writing --------------------------------------------------------------------------


def test_supported_extensions() -> None:
    readable = supported_extensions()
    writable = supported_extensions(for_writing=True)
    for extension in (".wav", ".flac", ".ogg", ".mp3"):
        assert extension in readable
        assert extension in writable


def test_wav_and_flac_round_trip_as_16_bit_pcm(tmp_path: Path) -> None:
    signal = sine(1.0)
    for name, container in (("a.wav", "WAV"), ("b.flac", "FLAC")):
        target = write_audio(tmp_path / name, signal)
        info = sf.info(target)
        assert (info.format, info.subtype, info.channels) == (container, "PCM_16", 1)
        samples, rate = read_audio(target)
        assert rate == RATE
        assert samples.dtype == np.float32
        assert samples.shape == signal.shape
        assert np.max(np.abs(samples - signal)) <= 1.0 / 32767 + 1e-6


@pytest.mark.parametrize("extension", [".ogg", ".mp3"])
def test_lossy_round_trips_keep_the_sound(tmp_path: Path, extension: str) -> None:
    signal = sine(1.0, frequency=440.0)
    target = write_audio(tmp_path / f"speech{extension}", signal)
    assert sf.info(target).format == {".ogg": "OGG", ".mp3": "MP3"}[extension]
    samples, rate = read_audio(target)
    assert rate == RATE
    assert abs(samples.shape[0] - signal.shape[0]) <= 0.05 * RATE
    assert abs(dominant_frequency(samples, rate) - 440.0) < 5.0
    rms = float(np.sqrt(np.mean(samples**2)))
    assert abs(rms - 0.5 / np.sqrt(2)) < 0.05


def test_samples_past_full_scale_are_clipped_not_wrapped(tmp_path: Path) -> None:
    target = write_audio(tmp_path / "loud.wav", np.array([1.5, -2.0, 0.25], dtype=np.float32))
    samples, _ = read_audio(target)
    np.testing.assert_allclose(samples, [32767 / 32768, -1.0, 0.25], atol=1e-4)


def test_the_writer_streams_to_a_hidden_file_and_renames_when_closed(tmp_path: Path) -> None:
    target = tmp_path / "long.flac"
    with AudioFileWriter(target) as writer:
        for index in range(20):
            writer.write(sine(0.25, frequency=200 + 50 * index))
            assert not target.exists()
            assert leftovers(tmp_path) == [writer.temp_path.name]
            assert writer.temp_path.name.startswith(".long.flac.")
        assert writer.frames_written == 20 * RATE // 4
    assert leftovers(tmp_path) == ["long.flac"]
    assert sf.info(target).frames == 5 * RATE
    assert writer.seconds_written == pytest.approx(5.0)


def test_the_written_file_gets_ordinary_permissions(tmp_path: Path) -> None:
    target = write_audio(tmp_path / "x.wav", sine(0.1))
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_abort_leaves_nothing_and_an_existing_target_untouched(tmp_path: Path) -> None:
    target = tmp_path / "keep.wav"
    write_audio(target, sine(0.5))
    before = target.read_bytes()
    writer = AudioFileWriter(target)
    writer.write(sine(1.0, frequency=880))
    writer.abort()
    writer.abort()  # idempotent
    assert leftovers(tmp_path) == ["keep.wav"]
    assert target.read_bytes() == before


def test_an_exception_inside_the_with_block_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.ogg"
    with pytest.raises(KeyError):
        with AudioFileWriter(target) as writer:
            writer.write(sine(0.2))
            raise KeyError("the synthesis failed")
    assert leftovers(tmp_path) == []


def test_bad_samples_abort_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        with AudioFileWriter(tmp_path / "out.wav") as writer:
            writer.write(sine(0.2))
            writer.write(np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(ValueError, match="mono"):
        with AudioFileWriter(tmp_path / "out.wav") as writer:
            writer.write(np.zeros((10, 2), dtype=np.float32))
    assert leftovers(tmp_path) == []


def test_a_failure_at_the_final_rename_leaves_nothing(tmp_path: Path) -> None:
    # Fails for root too: a folder appears where the file was to go.
    target = tmp_path / "late.wav"
    writer = AudioFileWriter(target)
    writer.write(sine(0.2))
    target.mkdir()
    (target / "inside").write_text("mine")
    with pytest.raises(UserError) as caught:
        writer.close()
    assert one_sentence(str(caught.value))
    assert str(target) in str(caught.value)
    assert leftovers(tmp_path) == ["late.wav"]
    assert (target / "inside").read_text() == "mine"


def test_unwritable_targets_are_one_sentence_user_errors(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    cases = {
        tmp_path / "missing" / "out.wav": "does not exist",
        a_file / "out.wav": "is not a folder",
        tmp_path: "it is a folder",
        tmp_path / "out.xyz": "use a file name ending in",
        tmp_path / "no-extension": "use a file name ending in",
    }
    (tmp_path / "folder.wav").mkdir()
    cases[tmp_path / "folder.wav"] = "it is a folder"
    for target, expected in cases.items():
        with pytest.raises(UserError) as caught:
            write_audio(target, sine(0.1))
        message = str(caught.value)
        assert expected in message, message
        assert one_sentence(message), message
    assert leftovers(tmp_path) == ["a-file", "folder.wav"]
    assert leftovers(tmp_path / "folder.wav") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_folder_is_a_user_error(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(UserError, match="permission denied"):
            write_audio(folder / "out.wav", sine(0.1))
        assert leftovers(folder) == []
    finally:
        folder.chmod(0o700)


# -- reading --------------------------------------------------------------------------


def test_reading_mixes_channels_to_mono_and_keeps_the_rate(tmp_path: Path) -> None:
    left = sine(0.5, 300, rate=44100)
    right = sine(0.5, 500, rate=44100)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    samples, rate = read_audio(path)
    assert rate == 44100
    assert samples.ndim == 1 and samples.dtype == np.float32
    np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-6)


def test_reading_stops_after_max_seconds(tmp_path: Path) -> None:
    path = tmp_path / "long.flac"
    sf.write(path, sine(10.0, rate=16000), 16000, subtype="PCM_16")
    samples, rate = read_audio(path, max_seconds=2.5)
    assert rate == 16000
    assert samples.shape[0] == 40000
    whole, _ = read_audio(path, max_seconds=60)
    assert whole.shape[0] == 160000
    with pytest.raises(ValueError):
        read_audio(path, max_seconds=0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
def test_reads_an_mp3_made_by_ffmpeg(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp3"
    subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=660:sample_rate=44100:duration=3",
            "-ac",
            "2",
            "-b:a",
            "128k",
            str(path),
        ],
        check=True,
        timeout=60,
    )
    samples, rate = read_audio(path, max_seconds=2.0)
    assert rate == 44100
    assert samples.shape[0] == 2 * 44100
    assert abs(dominant_frequency(samples, rate) - 660.0) < 5.0


def _float_wav_bytes(samples: np.ndarray, tmp_path: Path) -> bytes:
    scratch = tmp_path / "scratch.wav"
    sf.write(scratch, samples, RATE, subtype="FLOAT")
    data = scratch.read_bytes()
    scratch.unlink()
    return data


def test_unreadable_inputs_are_one_sentence_user_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    good = _float_wav_bytes(sine(0.5), tmp_path)
    cases: dict[str, tuple[bytes | None, str]] = {
        "random.wav": (rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), "not an audio file"),
        "text.wav": (b"Hello, this is not audio at all.\n" * 20, "not an audio file"),
        "header-cut.wav": (good[:30], "not an audio file"),
        "empty.wav": (b"", "is empty"),
        "no-frames.wav": (_float_wav_bytes(np.zeros(0, dtype=np.float32), tmp_path), "no audio"),
        "nan.wav": (
            _float_wav_bytes(np.array([0.1, np.nan, 0.2], dtype=np.float32), tmp_path),
            "invalid samples",
        ),
        "inf.wav": (
            _float_wav_bytes(np.array([0.1, np.inf], dtype=np.float32), tmp_path),
            "invalid samples",
        ),
    }
    for name, (content, _) in cases.items():
        (tmp_path / name).write_bytes(content or b"")
    (tmp_path / "folder.wav").mkdir()
    cases["folder.wav"] = (None, "is a folder")
    cases["missing.wav"] = (None, "does not exist")
    for name, (_, expected) in cases.items():
        with pytest.raises(UserError) as caught:
            read_audio(tmp_path / name)
        message = str(caught.value)
        assert expected in message, f"{name}: {message}"
        assert str(tmp_path / name) in message
        assert one_sentence(message), message


def test_a_wav_cut_short_in_its_data_gives_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    write_audio(path, sine(1.0))
    data = path.read_bytes()
    path.write_bytes(data[: 44 + 2 * 1000])  # header plus the first 1000 samples
    samples, rate = read_audio(path)
    assert rate == RATE
    assert samples.shape[0] == 1000
    np.testing.assert_allclose(samples, sine(1.0)[:1000], atol=1 / 32767 + 1e-6)


def test_a_named_pipe_is_refused_without_blocking(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.wav"
    os.mkfifo(pipe)
    with pytest.raises(UserError, match="not a regular file"):
        read_audio(pipe)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads unreadable files anyway")
def test_an_unreadable_file_is_a_user_error(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "secret.wav", sine(0.1))
    path.chmod(0)
    try:
        with pytest.raises(UserError, match="permission denied"):
            read_audio(path)
    finally:
        path.chmod(0o600)


def test_os_errors_become_readable_reasons(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    for error, expected in (
        (PermissionError(errno.EACCES, "Permission denied"), "permission denied"),
        (OSError(errno.ENOSPC, "No space left on device"), "the disk is full"),
        (OSError(errno.EROFS, "Read-only file system"), "the disk is read-only"),
        (OSError(errno.EIO, "Input/output error"), "input/output error"),
    ):
        message = str(_save_error(target, error))
        assert message == f"Cannot save to {target}: {expected}."
