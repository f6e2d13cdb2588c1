"""PulseAudio helpers for tests: is it running, record what reached a sink, align recordings.

`make test` (scripts/setup_test_env.sh) starts PulseAudio with a null sink as the default
sink, so audio plays in real time with no sound card, and its monitor can be recorded.

Typical use:

    pytestmark = requires_pulse
    with keep_sink_awake(), Recorder() as recorder:
        ... play something on the default device ...
    recording = recorder.samples()            # float32 mono at recorder.rate
    offset, correlation = align(expected, recording)

A subprocess plays into the sink: record the sink's monitor (`Recorder()`). Audio of this
process: `Recorder(stream=find_sink_input(os.getpid()))` records only that stream, so
sounds from other programs on the same PulseAudio cannot spoil the comparison.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

HEADER_BYTES = 44  # a WAV header, written by parecord before any audio


def _pactl(*args: str, timeout: float = 5.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["pactl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def pulse_available() -> bool:
    """PulseAudio answers and parecord exists."""
    if shutil.which("pactl") is None or shutil.which("parecord") is None:
        return False
    try:
        return _pactl("info").returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def pulse_unavailable_reason() -> str:
    return (
        "PulseAudio is not running (or pactl/parecord are missing): "
        "run the tests with `make test`, which starts it with a null sink"
    )


requires_pulse = pytest.mark.skipif(not pulse_available(), reason=pulse_unavailable_reason())


def default_sink() -> str:
    """The name of PulseAudio's default sink."""
    result = _pactl("get-default-sink")
    if result.returncode != 0 or not result.stdout.strip():
        raise RuntimeError(f"pactl get-default-sink failed: {result.stderr.strip()}")
    return result.stdout.strip()


def sink_inputs() -> list[dict]:
    """PulseAudio's playback streams, as `pactl -f json list sink-inputs` describes them."""
    result = _pactl("-f", "json", "list", "sink-inputs")
    if result.returncode != 0:
        raise RuntimeError(f"pactl list sink-inputs failed: {result.stderr.strip()}")
    return json.loads(result.stdout or "[]")


def find_sink_input(pid: int, timeout: float = 5.0) -> int:
    """The index of the newest playback stream of process `pid` (waits for it to appear)."""
    deadline = time.monotonic() + timeout
    while True:
        matching = [
            int(entry["index"])
            for entry in sink_inputs()
            if entry.get("properties", {}).get("application.process.id") == str(pid)
        ]
        if matching:
            return max(matching)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no PulseAudio playback stream of process {pid}")
        time.sleep(0.02)


def kill_sink_input(index: int) -> None:
    """Make PulseAudio drop a playback stream, as when its device disappears."""
    result = subprocess.run(
        ["pacmd", "kill-sink-input", str(index)],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    if result.returncode != 0 or result.stdout.strip():
        raise RuntimeError(f"pacmd kill-sink-input {index} failed: {result.stdout}{result.stderr}")


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.005) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


@contextlib.contextmanager
def keep_sink_awake(sink: str | None = None, timeout: float = 10.0) -> Iterator[None]:
    """Keep a null sink rendering in small blocks while inside.

    An idle PulseAudio null sink renders in 2 s blocks and only notices a new stream at the
    end of the current block: a stream started then gets no real callbacks for up to 2 s,
    and PulseAudio's ALSA plugin underruns (real sound cards do not do this). A
    low-latency reader on the sink's monitor keeps it ticking every few milliseconds; this
    returns once the reader receives audio, i.e. once the sink has switched.
    """
    sink = sink or default_sink()
    with tempfile.TemporaryDirectory(prefix="xtts-keeper-") as folder:
        # 8 kHz unsigned 8-bit mono: 8 kB a second, a few MB for a long session.
        trickle = Path(folder) / "keeper.raw"
        process = subprocess.Popen(
            [
                "parecord",
                f"--device={sink}.monitor",
                "--latency-msec=10",
                "--rate=8000",
                "--channels=1",
                "--format=u8",
                "--raw",
                str(trickle),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            awake = wait_until(
                lambda: (
                    process.poll() is not None or (trickle.exists() and trickle.stat().st_size > 0)
                ),
                timeout,
            )
            if not awake or process.poll() is not None:
                raise RuntimeError(f"could not keep the PulseAudio sink {sink!r} awake")
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Recorder:
    """Records a sink's monitor (or one playback stream) to a WAV file while inside.

    `rate`/`channels` ask PulseAudio to convert to that format (default: 24 kHz mono float,
    the app's own format). On entry it returns once audio is actually arriving.
    """

    def __init__(
        self,
        sink: str | None = None,
        *,
        stream: int | None = None,
        rate: int = 24000,
        channels: int = 1,
        path: Path | None = None,
    ) -> None:
        self.sink = sink
        self.stream = stream
        self.rate = rate
        self.channels = channels
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if path is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="xtts-recording-")
            path = Path(self._own_dir.name) / "recording.wav"
        self.path = Path(path)
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recorder:
        if self.stream is not None:
            source = f"--monitor-stream={self.stream}"
        else:
            source = f"--device={self.sink or default_sink()}.monitor"
        self._process = subprocess.Popen(
            [
                "parecord",
                source,
                f"--rate={self.rate}",
                f"--channels={self.channels}",
                "--format=float32le",
                "--file-format=wav",
                "--latency-msec=10",
                str(self.path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Live once some audio (silence included) has arrived after the header.
        live_bytes = HEADER_BYTES + 4 * self.channels * self.rate // 50
        if not wait_until(self._arrived(live_bytes), timeout=10.0):
            self._finish()
            raise RuntimeError(f"parecord did not start recording: {self._stderr()}")
        return self

    def _arrived(self, size: int) -> Callable[[], bool]:
        def check() -> bool:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"parecord exited: {self._stderr()}")
            return self.path.exists() and self.path.stat().st_size >= size

        return check

    def _stderr(self) -> str:
        if self._process is None or self._process.stderr is None:
            return ""
        if self._process.poll() is None:
            return "(still running)"
        return self._process.stderr.read().decode(errors="replace").strip()

    def _finish(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        # SIGINT: parecord drains and writes the final WAV header.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __exit__(self, *exc_info: object) -> None:
        self._finish()
        if self._process is not None and self._process.stderr is not None:
            self._process.stderr.close()

    def seconds_recorded(self) -> float:
        """Roughly how much audio has arrived so far (from the file size)."""
        if not self.path.exists():
            return 0.0
        payload = max(0, self.path.stat().st_size - HEADER_BYTES)
        return payload / (4 * self.channels * self.rate)

    def samples(self) -> np.ndarray:
        """The recording as float32, mono (channels averaged). Call after the with-block."""
        data, rate = sf.read(self.path, dtype="float32", always_2d=True)
        if rate != self.rate:
            raise RuntimeError(f"recorded at {rate} Hz, asked for {self.rate} Hz")
        return data.mean(axis=1).astype(np.float32)

    def cleanup(self) -> None:
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None


def cross_correlate(recording: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Correlation of `reference` at every offset inside `recording` (FFT, 'valid' lags)."""
    recording = np.asarray(recording, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.shape[0] > recording.shape[0]:
        raise ValueError("the recording is shorter than the reference")
    size = 1 << int(np.ceil(np.log2(recording.shape[0] + reference.shape[0])))
    spectrum = np.fft.rfft(recording, size) * np.conj(np.fft.rfft(reference, size))
    full = np.fft.irfft(spectrum, size)
    return full[: recording.shape[0] - reference.shape[0] + 1]


@dataclass(frozen=True)
class Alignment:
    """Where a reference signal sits inside a recording."""

    offset: int  # the recording sample where the reference starts (rounded)
    fraction: float  # the rest of the delay, in samples, within [-0.5, 0.5]
    correlation: float  # correlation coefficient once aligned to the fraction

    def reference_as_recorded(self, reference: np.ndarray) -> np.ndarray:
        """`reference` delayed by `fraction`: compare it with recording[offset:offset+n]."""
        return delayed(reference, self.fraction)

    def segment(self, recording: np.ndarray, length: int) -> np.ndarray:
        return recording[self.offset : self.offset + length]


def delayed(signal: np.ndarray, delay: float) -> np.ndarray:
    """`signal` delayed by a fraction of a sample (band-limited, same length)."""
    signal = np.asarray(signal, dtype=np.float64)
    pad = 256  # keeps the FFT's wrap-around away from the signal
    size = signal.shape[0] + 2 * pad
    spectrum = np.fft.rfft(np.pad(signal, pad), size)
    frequencies = np.fft.rfftfreq(size)
    shifted = np.fft.irfft(spectrum * np.exp(-2j * np.pi * frequencies * delay), size)
    return shifted[pad : pad + signal.shape[0]].astype(np.float32)


def below(samples: np.ndarray, cutoff_hz: float = 9000.0, rate: int = 24000) -> np.ndarray:
    """`samples` low-passed at `cutoff_hz` (zero phase), to compare what both sides keep.

    PulseAudio's resampling (24 kHz in, the sink's rate, 24 kHz out of the monitor) attenuates
    the top of the band. Real speech has little there; a random-weight model's noise has most
    of its energy there (measured on the tiny model: 80% above 11 kHz), so comparing its audio
    with a recording of it must leave that band out.
    """
    from scipy.signal import butter, sosfiltfilt

    sos = butter(8, cutoff_hz, fs=rate, output="sos")
    return sosfiltfilt(sos, np.asarray(samples, dtype=np.float64)).astype(np.float32)


def align(reference: np.ndarray, recording: np.ndarray) -> Alignment:
    """Find `reference` in `recording` to a fraction of a sample (PulseAudio resamples)."""
    lags = cross_correlate(recording, reference)
    offset = int(np.argmax(lags))
    fraction = 0.0
    if 0 < offset < lags.shape[0] - 1:
        before, peak, after = lags[offset - 1], lags[offset], lags[offset + 1]
        curvature = before - 2 * peak + after
        if curvature < 0:
            fraction = float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))
    segment = recording[offset : offset + reference.shape[0]]
    return Alignment(offset, fraction, correlation(delayed(reference, fraction), segment))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation coefficient of two equally long signals (0 if one is silent)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a - a.mean()
    b = b - b.mean()
    norm = np.sqrt(np.dot(a, a) * np.dot(b, b))
    return float(np.dot(a, b) / norm) if norm > 0 else 0.0


def active_span(samples: np.ndarray, rate: int, threshold: float = 0.01) -> tuple[int, int]:
    """First and last+1 sample whose 2 ms RMS exceeds `threshold` (0, 0 if none)."""
    window = max(1, rate // 500)
    power = np.convolve(
        np.asarray(samples, dtype=np.float64) ** 2, np.ones(window) / window, mode="same"
    )
    loud = np.flatnonzero(np.sqrt(power) > threshold)
    if loud.size == 0:
        return 0, 0
    return int(loud[0]), int(loud[-1]) + 1


@contextlib.contextmanager
def private_sink(name: str) -> Iterator[str]:
    """A null sink of one's own, kept awake: a process started with PULSE_SINK=name plays
    there, so its recording holds no other test's sound."""
    loaded = _pactl("load-module", "module-null-sink", f"sink_name={name}")
    if loaded.returncode != 0:
        raise RuntimeError(f"cannot create the sink {name}: {loaded.stderr.strip()}")
    module = loaded.stdout.strip()
    try:
        with keep_sink_awake(name):
            yield name
    finally:
        _pactl("unload-module", module)
