"""Plays float32 mono audio through a sounddevice output stream fed from an AudioRing.

Threads. One producer (the synthesis worker) calls `write`, which blocks while the ring
already holds `ahead_seconds` of audio: memory stays flat for any length of text. Any
thread may call the controls (`start`, `pause`, `resume`, `stop`, `close`) and read the
reports (`samples_played`, `audible_position()`, `underruns`, ...), which are plain
attributes written by one thread each. The PortAudio callback only copies from the ring,
zero-fills and counts: no allocation of buffers, no logging, no Qt, and the only lock it
takes is the ring's, held for one block's copy.

Sample rate. The stream is opened at `sample_rate` (24 kHz) when the device accepts it:
PulseAudio, PipeWire and their ALSA `pulse`/`default` devices do, and resample in the
sound server. A device that refuses it is opened at its own default rate instead, and
`write` resamples on the producer thread with a windowed-sinc polyphase filter, so the
callback stays a plain copy. Positions are always reported in `sample_rate` samples.

End of a play. After `end_of_input()` the callback plays the ring dry, then twice the
output latency of silence before it lets PortAudio finish the stream: PortAudio's ALSA
drain (through PulseAudio's plugin, at least) drops what the host still buffers, which
would otherwise cut the last 30 ms or so of speech. `wait_finished()` returns once the last
real sample is audible.

Start-up buffer. A stream's first chunks may come slower than they play even when synthesis
as a whole is faster than real time (see `buffering.StartupBuffer`). So a play holds the
device on silence until the ring holds enough audio not to run dry at the production rate
measured from the chunks' arrivals, within bounds (`start_buffer_seconds` of audio,
`start_wait_seconds` after the first chunk); at once when the input has ended; and again
after running dry mid-play, so a slow patch is one gap rather than a stutter. Chunks that
come faster than real time (a GPU) are played as they come. `first_sample_time` stays the
moment the first real sample reached the callback.

Failures. A device that fails or disappears ends the stream: PortAudio's finished
callback (or a watchdog noticing that callbacks stopped) records one sentence in `error`,
wakes every waiter, and `write`/`try_write` raise `UserError` with it instead of blocking.
"""

from __future__ import annotations

import enum
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from xtts_desktop.audio.buffering import StartupBuffer
from xtts_desktop.audio.ring import AudioRing
from xtts_desktop.errors import UserError

try:
    import sounddevice as sd
except OSError as _import_error:  # the PortAudio shared library is missing
    sd = None  # type: ignore[assignment]
    _SOUNDDEVICE_IMPORT_ERROR: OSError | None = _import_error
else:
    _SOUNDDEVICE_IMPORT_ERROR = None

__all__ = [
    "OutputDevice",
    "PlaybackState",
    "PlaybackStats",
    "Player",
    "list_output_devices",
    "refresh_devices",
]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_RATE = 24000
# Seconds of audio the host buffers. Measured on 2 busy cores (synthesis running) through
# PulseAudio's ALSA plugin: 'high' (35 ms) underran in most plays and 'low' (9 ms) all the
# time, which no PortAudio flag reports; 0.1 s played cleanly every time. Synthesis shares
# the CPU and the GIL with the callback: robustness is worth the 65 ms.
DEFAULT_LATENCY = 0.1
# How often a blocked producer or waiter re-checks its conditions. Nothing in the callback
# signals it (that would take a lock there): a short poll costs nothing measurable.
_POLL_SECONDS = 0.005
# Audio held back at a start, beyond what covers the wait for the next chunk: the host's own
# buffer fills first (the output latency), and callbacks and the producer share the CPU.
_START_MARGIN_SECONDS = 0.15
# The start-up buffer never holds more than this share of the ring: a full ring always plays.
_START_BUFFER_SHARE = 0.75
# Callbacks that stop for this long mean the device is gone. Generous: a PulseAudio null
# sink can hold a freshly started stream for up to 2 s before it asks for audio.
_STALL_SECONDS = 5.0

_NO_PORTAUDIO = (
    "Audio output needs the PortAudio library, which was not found: "
    "install it (on Debian or Ubuntu: apt install libportaudio2)."
)
_NO_DEVICE = (
    "No audio output device was found: connect speakers or headphones, "
    "or check that the sound server (PulseAudio or PipeWire) is running."
)


@dataclass(frozen=True)
class OutputDevice:
    """An audio output PortAudio offers: what the device picker shows and `Player` opens."""

    index: int
    name: str
    hostapi: str
    default_samplerate: float
    max_output_channels: int
    is_default: bool

    def __str__(self) -> str:
        return f"{self.index}: {self.name} ({self.hostapi})"


class PlaybackState(enum.Enum):
    IDLE = "idle"  # open, not started (audio written now waits for start())
    PLAYING = "playing"
    PAUSED = "paused"
    FINISHED = "finished"  # end_of_input() was called and everything was played
    STOPPED = "stopped"  # stop() flushed what was left
    FAILED = "failed"  # the device stopped; `error` says why
    CLOSED = "closed"


@dataclass(frozen=True)
class PlaybackStats:
    """One consistent-enough snapshot of the player's reports, for a latency panel or a log."""

    state: PlaybackState
    samples_played: int
    audible_position: int
    buffered_seconds: float
    underruns: int
    handoff_latency_ms: float | None
    output_latency_ms: float
    error: str | None


def _require_sounddevice() -> Any:
    if sd is None:
        logger.error("sounddevice could not load PortAudio: %s", _SOUNDDEVICE_IMPORT_ERROR)
        raise UserError(_NO_PORTAUDIO)
    return sd


def list_output_devices() -> list[OutputDevice]:
    """Every device with at least one output channel, as PortAudio saw them at start-up.

    Returns an empty list when PortAudio finds none (or is not installed).
    """
    if sd is None:
        return []
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
        default_output = sd.default.device[1]
    except sd.PortAudioError as exc:
        logger.warning("PortAudio could not list the audio devices: %s", exc)
        return []
    if not isinstance(default_output, int) or default_output < 0:
        default_output = -1
    result = []
    for info in devices:
        if info["max_output_channels"] <= 0:
            continue
        result.append(
            OutputDevice(
                index=int(info["index"]),
                name=str(info["name"]),
                hostapi=str(hostapis[info["hostapi"]]["name"]),
                default_samplerate=float(info["default_samplerate"]),
                max_output_channels=int(info["max_output_channels"]),
                is_default=int(info["index"]) == default_output,
            )
        )
    return result


def refresh_devices() -> None:
    """Ask PortAudio to look for devices again (plugged in since start-up).

    PortAudio only enumerates devices when it initialises: this re-initialises it, which
    is only allowed while no stream is open (close every Player first).
    """
    module = _require_sounddevice()
    module._terminate()
    module._initialize()


def _resolve_device(device: int | str | None) -> OutputDevice:
    devices = list_output_devices()
    if not devices:
        raise UserError(_NO_PORTAUDIO if sd is None else _NO_DEVICE)
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if device is None:
        for candidate in devices:
            if candidate.is_default:
                return candidate
        logger.info("PortAudio names no default output device; using %s", devices[0])
        return devices[0]
    if isinstance(device, int):
        for candidate in devices:
            if candidate.index == device:
                return candidate
        raise UserError(
            f"There is no audio output device number {device}; "
            f"the outputs are: {', '.join(str(d) for d in devices)}."
        )
    wanted = device.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == wanted]
    if len(exact) == 1:
        return exact[0]
    partial = exact or [d for d in devices if wanted in d.name.casefold()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise UserError(
            f"No audio output device is called '{device}'; "
            f"the outputs are: {', '.join(str(d) for d in devices)}."
        )
    raise UserError(
        f"'{device}' matches several audio output devices "
        f"({', '.join(str(d) for d in partial)}): give its number instead."
    )


class StreamingResampler:
    """Windowed-sinc polyphase resampler for a rational rate ratio, fed chunk by chunk.

    Runs on the producer thread (never in the callback). Chunked output equals the output
    of one call on the whole signal; `flush()` returns the filter's tail at the end.
    """

    def __init__(self, rate_in: int, rate_out: int, taps_per_phase: int = 32) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError("sample rates must be positive")
        divisor = math.gcd(int(rate_in), int(rate_out))
        self.rate_in = int(rate_in)
        self.rate_out = int(rate_out)
        self.up = self.rate_out // divisor
        self.down = self.rate_in // divisor
        self.taps = int(taps_per_phase)
        length = self.taps * self.up
        # Cut-off below the lower Nyquist frequency, in cycles per upsampled sample.
        cutoff = 0.5 / max(self.up, self.down) * 0.94
        centre = np.arange(length) - (length - 1) / 2.0
        prototype = 2.0 * cutoff * np.sinc(2.0 * cutoff * centre) * np.kaiser(length, 9.0)
        prototype *= self.up / prototype.sum()  # zero-stuffing lost a factor `up` of gain
        # phases[p, i] = prototype[p + up * i]: the taps that meet real input samples.
        self._phases = prototype.reshape(self.taps, self.up).T.astype(np.float32).copy()
        self._tap_offsets = np.arange(self.taps, dtype=np.int64)
        self.reset()

    @property
    def delay_seconds(self) -> float:
        """The filter's group delay."""
        return (self.taps * self.up - 1) / 2.0 / (self.rate_in * self.up)

    def reset(self) -> None:
        """Forget all input: the next chunk starts a new signal."""
        self._history = np.zeros(self.taps - 1, dtype=np.float32)
        self._inputs_seen = 0
        self._outputs_made = 0

    def output_count(self, input_count: int) -> int:
        """How many samples `process` returns for the next `input_count` input samples."""
        total_inputs = self._inputs_seen + input_count
        # Output m needs input index floor(m * down / up) < total_inputs.
        return -((-total_inputs * self.up) // self.down) - self._outputs_made

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk of the signal."""
        data = np.asarray(chunk, dtype=np.float32).reshape(-1)
        count = self.output_count(data.shape[0])
        buffer = np.concatenate((self._history, data))
        first_input = self._inputs_seen - (self.taps - 1)  # input index of buffer[0]
        result = np.empty(count, dtype=np.float32)
        block = 8192  # bounds the (block x taps) gather below
        for start in range(0, count, block):
            outputs = np.arange(
                self._outputs_made + start,
                self._outputs_made + min(count, start + block),
                dtype=np.int64,
            )
            positions = outputs * self.down
            bases = positions // self.up - first_input
            phases = positions % self.up
            gathered = buffer[bases[:, None] - self._tap_offsets[None, :]]
            result[start : start + outputs.shape[0]] = np.einsum(
                "ij,ij->i", gathered, self._phases[phases]
            )
        self._outputs_made += count
        self._inputs_seen += data.shape[0]
        self._history = buffer[buffer.shape[0] - (self.taps - 1) :].copy()
        return result

    def flush(self) -> np.ndarray:
        """The outputs still inside the filter at the end of the signal; then reset."""
        tail = self.process(np.zeros(self.taps // 2, dtype=np.float32))
        self.reset()
        return tail


class Player:
    """A sounddevice output stream over an AudioRing, with back-pressure and reports.

    One play: `write(...)` (any number of times, from one producer thread), `start()`
    (before or after the first write), then `end_of_input()`; `wait_finished()` returns
    once the last sample was handed to the device. `stop()` flushes and ends the play;
    the next `write`/`start` after a stop or a finish begins a new play, resetting the
    reports.
    """

    def __init__(
        self,
        device: int | str | None = None,
        sample_rate: int = DEFAULT_SAMPLE_RATE,
        blocksize: int = 0,
        ahead_seconds: float = 2.0,
        latency: str | float = DEFAULT_LATENCY,
        device_rate: int | None = None,
        start_buffer_seconds: float = 1.5,
        start_wait_seconds: float = 2.0,
    ) -> None:
        """Open (but do not start) the output.

        device: a PortAudio device index, a name (or a unique part of one), or None for the
        default output. blocksize: frames per callback, 0 lets the host choose.
        ahead_seconds: how much audio `write` may queue before it blocks. device_rate: force
        the stream's rate (resampling in `write`); None uses `sample_rate` when accepted.
        start_buffer_seconds, start_wait_seconds: the most audio a start (or a re-buffer
        after running dry) holds back, and the longest it waits after its first chunk;
        0 plays whatever is there at once.
        """
        module = _require_sounddevice()
        if ahead_seconds <= 0:
            raise ValueError("ahead_seconds must be positive")
        self.sample_rate = int(sample_rate)
        self.device = _resolve_device(device)
        self._blocksize = int(blocksize)
        self._latency = latency
        self.device_rate, self.channels = self._choose_format(module, device_rate)
        self._resampler = (
            StreamingResampler(self.sample_rate, self.device_rate)
            if self.device_rate != self.sample_rate
            else None
        )
        self._ring = AudioRing(max(1, int(round(ahead_seconds * self.device_rate))))
        self._startup = StartupBuffer(
            max_seconds=min(start_buffer_seconds, _START_BUFFER_SHARE * ahead_seconds),
            max_wait_seconds=start_wait_seconds,
        )
        self._lock = threading.RLock()  # controls, and ring writes against stop()'s flush
        self._wake = threading.Condition()  # wakes blocked writers and waiters
        self._generation = 0  # bumped by stop(): a blocked write of an older play gives up
        self._state = PlaybackState.IDLE
        self.error: str | None = None
        self._intentional_stop = False
        self._stream: Any = None
        self._reset_play()
        self._attach_stream(module)
        self._padding_samples = int((2.0 * self.output_latency + 0.05) * self.device_rate)
        logger.info(
            "audio output %s: %d Hz, %d channel(s), %.1f ms output latency%s",
            self.device,
            self.device_rate,
            self.channels,
            self.output_latency * 1000.0,
            f", resampling from {self.sample_rate} Hz" if self._resampler else "",
        )

    # -- opening ------------------------------------------------------------------------

    def _choose_format(self, module: Any, device_rate: int | None) -> tuple[int, int]:
        rates = [device_rate] if device_rate else [self.sample_rate]
        if not device_rate and int(self.device.default_samplerate) != self.sample_rate:
            rates.append(int(self.device.default_samplerate))
        channel_options = [1] + ([2] if self.device.max_output_channels >= 2 else [])
        problems = []
        for rate in rates:
            for channels in channel_options:
                try:
                    module.check_output_settings(
                        device=self.device.index,
                        samplerate=rate,
                        channels=channels,
                        dtype="float32",
                    )
                except (module.PortAudioError, ValueError) as exc:
                    problems.append(f"{rate} Hz x{channels}: {exc}")
                    continue
                if rate != self.sample_rate and not device_rate:
                    logger.info(
                        "%s refuses %d Hz; opening it at %d Hz and resampling",
                        self.device,
                        self.sample_rate,
                        rate,
                    )
                return int(rate), channels
        logger.error("no usable format on %s: %s", self.device, "; ".join(problems))
        raise UserError(
            f"The audio device '{self.device.name}' accepts neither {self.sample_rate} Hz "
            f"nor its own rate for float32 output."
        )

    def _attach_stream(self, module: Any) -> None:
        """Open the output stream; the start-up buffer's margin covers its output latency."""
        self._stream = self._open_stream(module)
        self._startup.margin_seconds = self.output_latency + _START_MARGIN_SECONDS

    def _open_stream(self, module: Any) -> Any:
        try:
            return module.OutputStream(
                device=self.device.index,
                samplerate=self.device_rate,
                channels=self.channels,
                dtype="float32",
                blocksize=self._blocksize,
                latency=self._latency,
                callback=self._callback,
                finished_callback=self._on_stream_finished,
            )
        except (module.PortAudioError, ValueError) as exc:
            logger.error("opening %s failed: %s", self.device, exc)
            raise UserError(
                f"The audio device '{self.device.name}' could not be opened ({exc})."
            ) from exc

    def _reset_play(self) -> None:
        """Forget the last play's reports. Only while the callback is not running."""
        self._paused = False
        self._input_ended = False
        self._drained = False
        self._holding = True  # the start-up buffer: silence until it is safe to play
        self._production_began = False  # set by the play's first start() or write
        self._padding_left = 0
        self._device_samples_played = 0
        self._underruns = 0
        self._portaudio_underflows = 0
        self._callback_count = 0
        self._callback_error: BaseException | None = None
        self._clock: tuple[int, float, float] | None = None
        self.first_write_time: float | None = None
        self.first_sample_time: float | None = None
        self._first_sample_delay = 0.0
        self._last_callback_time = time.perf_counter()
        self.finished_time: float | None = None
        if self._resampler is not None:
            self._resampler.reset()

    # -- the PortAudio callback (its own thread) ----------------------------------------

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        try:
            now = time.perf_counter()
            self._last_callback_time = now
            self._callback_count += 1
            if status.output_underflow:
                self._portaudio_underflows += 1
            if self._drained:
                # Trailing silence: PortAudio's ALSA drain (PulseAudio's plugin at least)
                # drops what the host still buffers, so the cut must fall on silence.
                outdata.fill(0.0)
                self._padding_left -= frames
                if self._padding_left <= 0:
                    raise sd.CallbackStop
                return
            if self._paused:
                outdata.fill(0.0)
                return
            if self._holding:
                # The flag before the ring, as below: ended input plays (or ends) at once.
                if not (
                    self._input_ended
                    or self._startup.ready(now, self._ring.available() / self.device_rate)
                ):
                    outdata.fill(0.0)
                    return
                self._holding = False
            out = outdata[:, 0]
            count = self._ring.read_into(out)
            if count < frames:
                out[count:] = 0.0
            if self.channels > 1:
                outdata[:, 1:] = outdata[:, :1]
            if count:
                played = self._device_samples_played
                self._device_samples_played = played + count
                delay = time_info.outputBufferDacTime - time_info.currentTime
                if not 0.0 < delay < 1.0:  # some host APIs report no DAC time
                    delay = self._stream_latency
                self._clock = (played, now, delay)
                if self.first_sample_time is None:
                    self._first_sample_delay = delay
                    self.first_sample_time = now
            if count < frames:
                # Read the flag before the ring: end_of_input() is only called after the
                # last write, so an empty ring seen after the flag is the true end.
                if self._input_ended and self._ring.available() == 0:
                    self._padding_left = self._padding_samples - (frames - count)
                    self._drained = True
                    if self._padding_left <= 0:
                        raise sd.CallbackStop
                    return
                if self.first_sample_time is not None:
                    # One gap, then buffer again rather than stutter through a slow patch.
                    self._underruns += 1
                    self._holding = True
                    self._startup.ran_dry(now)
        except sd.CallbackStop:
            raise
        except BaseException as exc:  # noqa: BLE001 - kept for the finished callback
            self._callback_error = exc
            raise sd.CallbackAbort from None

    def _on_stream_finished(self) -> None:
        """PortAudio's finished callback: a drained play, a stop() of ours, or a failure."""
        with self._wake:
            if self._intentional_stop:
                pass
            elif self._drained:
                self.finished_time = time.perf_counter()
                self._state = PlaybackState.FINISHED
            else:
                detail = (
                    f"the audio callback failed ({self._callback_error!r})"
                    if self._callback_error is not None
                    else "the output stream ended unexpectedly"
                )
                self._fail_locked(detail)
            self._wake.notify_all()

    def _fail_locked(self, detail: str) -> None:
        if self._state in (PlaybackState.FAILED, PlaybackState.CLOSED):
            return
        self.error = f"The audio device stopped: {detail}."
        self._state = PlaybackState.FAILED
        logger.error("%s (%s)", self.error, self.device)

    def _check_stall(self) -> None:
        """Fail if the device stopped asking for audio without telling PortAudio."""
        if self._state not in (PlaybackState.PLAYING, PlaybackState.PAUSED) or self._drained:
            return
        silent_for = time.perf_counter() - self._last_callback_time
        if silent_for > _STALL_SECONDS:
            with self._wake:
                self._fail_locked(f"it has not asked for audio for {silent_for:.0f} seconds")
                self._wake.notify_all()

    # -- producer -----------------------------------------------------------------------

    def _begin_play_if_done_locked(self) -> None:
        if self._state not in (PlaybackState.FINISHED, PlaybackState.STOPPED) and not (
            self._drained and self._state is PlaybackState.PLAYING
        ):
            return
        if self._drained:
            # Stopping a stream drops what the host still buffers: let the last play's
            # final samples be heard first (at most the output latency).
            remaining = self._audible_end_time() - time.perf_counter()
            if 0 < remaining < 1.0:
                time.sleep(remaining)
        self._stop_stream_locked(abort=False)
        self._reset_play()
        self._state = PlaybackState.IDLE

    def try_write(self, samples: np.ndarray) -> int:
        """Queue what fits now without blocking; returns how many input samples were taken.

        Raises UserError if the device has stopped; returns 0 once the player is closed.
        """
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            if self._state is PlaybackState.CLOSED:
                return 0
            if self._state is PlaybackState.FAILED:
                raise UserError(self.error or "The audio device stopped.")
            self._begin_play_if_done_locked()
            arrived_at = self._production_begins_locked()
            taken = self._write_locked(data)
            self._chunk_arrived_locked(arrived_at, data.shape[0])
            return taken

    def _production_begins_locked(self) -> float:
        """The play's first start() or write: the start-up buffer measures its rate from now."""
        now = time.perf_counter()
        if not self._production_began:
            self._production_began = True
            self._startup.began(now)
        return now

    def _chunk_arrived_locked(self, arrived_at: float, input_samples: int) -> None:
        self._startup.arrived(
            arrived_at,
            input_samples / self.sample_rate,
            self._ring.available() / self.device_rate,
        )

    def _write_locked(self, data: np.ndarray) -> int:
        free = self._ring.free()
        if self._resampler is None:
            taken = data[:free]
            converted = taken
        else:
            count = min(data.shape[0], (free * self._resampler.down) // self._resampler.up)
            while count > 0 and self._resampler.output_count(count) > free:
                count -= 1
            while count < data.shape[0] and self._resampler.output_count(count + 1) <= free:
                count += 1
            taken = data[:count]
            converted = self._resampler.process(taken) if count else taken
        if converted.shape[0] == 0:
            return 0
        written = self._ring.write(converted)
        if written != converted.shape[0]:  # only the producer writes: cannot happen
            raise RuntimeError(f"ring took {written} of {converted.shape[0]} samples")
        if self.first_write_time is None:
            self.first_write_time = time.perf_counter()
        return taken.shape[0]

    def write(
        self,
        samples: np.ndarray,
        timeout: float | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> bool:
        """Queue all of `samples`, waiting while the ring holds `ahead_seconds` already.

        Returns True once everything is queued; False if `cancelled()` became true, the
        timeout passed, or stop()/close() ended the play meanwhile (part may be queued).
        Raises UserError (the same sentence as `error`) if the device stopped.
        """
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._state is PlaybackState.CLOSED:
                return False
            self._begin_play_if_done_locked()
            generation = self._generation
            arrived_at = self._production_begins_locked()
        position = 0
        announced = False
        while True:
            with self._lock:
                if self._generation != generation or self._state is PlaybackState.CLOSED:
                    return False
                if self._state is PlaybackState.FAILED:
                    raise UserError(self.error or "The audio device stopped.")
                position += self._write_locked(data[position:])
                if not announced:
                    announced = True
                    self._chunk_arrived_locked(arrived_at, data.shape[0])
            if position >= data.shape[0]:
                return True
            if cancelled is not None and cancelled():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                logger.warning("write timed out with %d samples left", data.shape[0] - position)
                return False
            self._check_stall()
            with self._wake:
                self._wake.wait(_POLL_SECONDS)

    def end_of_input(self) -> None:
        """The producer has no more audio for this play: finish once the ring drains."""
        if self._resampler is not None:
            with self._lock:
                tail = self._resampler.flush() if self._resampler._inputs_seen else None
            if tail is not None and tail.shape[0]:
                with self._lock:
                    written = self._ring.write(tail)  # a few ms: drop what does not fit
                if written < tail.shape[0]:
                    logger.debug("dropped %d samples of resampler tail", tail.shape[0] - written)
        self._input_ended = True

    # -- controls -----------------------------------------------------------------------

    def start(self) -> None:
        """Start (or resume) output. After a failure it reopens the device."""
        module = _require_sounddevice()
        with self._lock:
            state = self._state
            if state is PlaybackState.CLOSED:
                raise RuntimeError("start() on a closed Player")
            if state is PlaybackState.PAUSED:
                self._resume_locked()
                return
            if state is PlaybackState.PLAYING and not self._drained:
                return
            if state is PlaybackState.FAILED:
                self._reopen_locked(module)
            else:
                self._begin_play_if_done_locked()
            self._production_begins_locked()
            self._intentional_stop = False
            self._last_callback_time = time.perf_counter()
            try:
                self._stream.start()
            except module.PortAudioError as exc:
                with self._wake:
                    self._fail_locked(f"it could not start ({exc})")
                    self._wake.notify_all()
                raise UserError(self.error or "The audio device stopped.") from exc
            self._state = PlaybackState.PLAYING

    def _reopen_locked(self, module: Any) -> None:
        self._stop_stream_locked(abort=True)
        try:
            if not self._stream.closed:
                self._stream.close()
        except module.PortAudioError as exc:
            logger.debug("closing the failed stream: %s", exc)
        self.error = None
        self._ring.clear()
        self._reset_play()
        self._attach_stream(module)
        self._state = PlaybackState.IDLE

    def _stop_stream_locked(self, abort: bool) -> None:
        stream = self._stream
        if stream is None or stream.closed:  # closed under us: nothing left to stop
            return
        self._intentional_stop = True
        try:
            if not stream.stopped:
                stream.abort() if abort else stream.stop()
        except Exception as exc:  # noqa: BLE001 - a dead or closed stream: nothing to stop
            logger.debug("stopping the stream: %s", exc)

    def pause(self) -> None:
        """Hold playback where it is; the stream keeps running and plays silence."""
        with self._lock:
            if self._state is PlaybackState.PLAYING:
                self._paused = True
                self._state = PlaybackState.PAUSED

    def resume(self) -> None:
        """Continue after pause()."""
        with self._lock:
            if self._state is PlaybackState.PAUSED:
                self._resume_locked()

    def _resume_locked(self) -> None:
        self._state = PlaybackState.PLAYING
        self._paused = False

    def stop(self) -> None:
        """Cut the output, drop all queued audio and end this play; wakes blocked writers."""
        with self._lock:
            if self._state is PlaybackState.CLOSED:
                return
            self._generation += 1
            self._stop_stream_locked(abort=True)
            self._ring.clear()
            self._paused = False
            if self._resampler is not None:
                self._resampler.reset()
            if self._state is not PlaybackState.FAILED:
                self._state = PlaybackState.STOPPED
        with self._wake:
            self._wake.notify_all()

    def close(self) -> None:
        """Stop and release the device. Idempotent."""
        with self._lock:
            if self._state is PlaybackState.CLOSED:
                return
            self.stop()
            try:
                if self._stream is not None and not self._stream.closed:
                    self._stream.close()
            except Exception as exc:  # noqa: BLE001 - already gone with its device
                logger.debug("closing the stream: %s", exc)
            self._state = PlaybackState.CLOSED
        with self._wake:
            self._wake.notify_all()

    def __enter__(self) -> Player:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until the play finished (True), or failed, was stopped or timed out (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self._state
            if state is PlaybackState.FINISHED or (
                self._drained and state is PlaybackState.PLAYING
            ):
                # The callback saw the end once the last block left for the device: wait
                # out the output delay too, so that closing now cuts nothing audible.
                remaining = self._audible_end_time() - time.perf_counter()
                if remaining <= 0:
                    return True
                if deadline is not None and time.monotonic() + remaining > deadline:
                    return False
                time.sleep(remaining)
                return True
            if state in (PlaybackState.FAILED, PlaybackState.STOPPED, PlaybackState.CLOSED):
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._check_stall()
            with self._wake:
                self._wake.wait(_POLL_SECONDS)

    # -- reports (any thread) -----------------------------------------------------------

    @property
    def state(self) -> PlaybackState:
        return self._state

    @property
    def is_playing(self) -> bool:
        """Started, not paused, not finished, stopped or failed."""
        return self._state is PlaybackState.PLAYING and not self._drained

    @property
    def is_paused(self) -> bool:
        return self._state is PlaybackState.PAUSED

    @property
    def is_finished(self) -> bool:
        return self._state is PlaybackState.FINISHED

    @property
    def input_ended(self) -> bool:
        return self._input_ended

    @property
    def _stream_latency(self) -> float:
        stream = self._stream
        return float(stream.latency) if stream is not None else 0.0

    @property
    def output_latency(self) -> float:
        """The stream's output latency as PortAudio reports it, in seconds."""
        return self._stream_latency

    def _to_source_samples(self, device_samples: float) -> int:
        if self.device_rate == self.sample_rate:
            return int(device_samples)
        return int(device_samples * self.sample_rate / self.device_rate)

    @property
    def samples_played(self) -> int:
        """Samples of this play handed to the device (in `sample_rate` samples)."""
        return self._to_source_samples(self._device_samples_played)

    def audible_position(self) -> int:
        """The sample of this play being heard now: samples_played less the output delay.

        Interpolated from the last callback that delivered audio, never negative and never
        past `samples_played` (pauses and the end of a play hold it there).
        """
        clock = self._clock
        played = self._device_samples_played
        if clock is None:
            return 0
        played_before, callback_time, delay = clock
        position = played_before + (time.perf_counter() - callback_time - delay) * self.device_rate
        return self._to_source_samples(min(max(position, 0.0), float(played)))

    def _audible_end_time(self) -> float:
        """perf_counter() time at which the last sample handed over so far is heard."""
        clock = self._clock
        if clock is None:
            return 0.0
        played_before, callback_time, delay = clock
        return (
            callback_time + delay + (self._device_samples_played - played_before) / self.device_rate
        )

    @property
    def is_buffering(self) -> bool:
        """Holding the device on silence until enough audio is queued (start or re-buffer)."""
        return self._holding and self._state is PlaybackState.PLAYING and not self._drained

    @property
    def underruns(self) -> int:
        """Times this play ran out of audio mid-play (each a gap: it then buffers again)."""
        return self._underruns

    @property
    def portaudio_underflows(self) -> int:
        """Callbacks flagged `output_underflow` by PortAudio (host-side glitches)."""
        return self._portaudio_underflows

    @property
    def callback_count(self) -> int:
        """Callbacks since this play began (paused ones included)."""
        return self._callback_count

    @property
    def buffered_seconds(self) -> float:
        """Audio queued in the ring and not yet handed to the device."""
        return self._ring.available() / self.device_rate

    @property
    def capacity_seconds(self) -> float:
        return self._ring.capacity / self.device_rate

    @property
    def handoff_latency_ms(self) -> float | None:
        """From the first samples of this play entering the ring to the callback taking them.

        Includes any time spent waiting for start() when audio was written first.
        """
        written, taken = self.first_write_time, self.first_sample_time
        if written is None or taken is None:
            return None
        return max(0.0, (taken - written) * 1000.0)

    @property
    def first_audible_time(self) -> float | None:
        """perf_counter() estimate of when the first sample of this play reaches the DAC."""
        taken = self.first_sample_time
        return None if taken is None else taken + self._first_sample_delay

    def stats(self) -> PlaybackStats:
        return PlaybackStats(
            state=self._state,
            samples_played=self.samples_played,
            audible_position=self.audible_position(),
            buffered_seconds=self.buffered_seconds,
            underruns=self._underruns,
            handoff_latency_ms=self.handoff_latency_ms,
            output_latency_ms=self.output_latency * 1000.0,
            error=self.error,
        )
