"""Player against a real PulseAudio null sink, recorded and compared with what was written."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.pulse import (
    Recorder,
    active_span,
    align,
    correlation,
    delayed,
    find_sink_input,
    kill_sink_input,
    requires_pulse,
    wait_until,
)
from xtts_desktop.audio.player import (
    OutputDevice,
    PlaybackState,
    Player,
    StreamingResampler,
    list_output_devices,
)
from xtts_desktop.errors import UserError

RATE = 24000


def chirp(seconds: float, rate: int = RATE) -> np.ndarray:
    """A log sweep 150 Hz -> 6 kHz with a slow tremolo: unmistakable at any offset."""
    t = np.arange(int(seconds * rate)) / rate
    start, end = 150.0, 6000.0
    growth = np.log(end / start) / seconds
    phase = 2 * np.pi * start * (np.exp(growth * t) - 1) / growth
    envelope = 0.35 + 0.15 * np.sin(2 * np.pi * 3.0 * t)
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    return (envelope * fade * np.sin(phase)).astype(np.float32)


def tone(seconds: float, frequency: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def wait_callbacks(player: Player, count: int, timeout: float = 5.0) -> None:
    """Wait until the callback has run `count` more times."""
    target = player.callback_count + count
    assert wait_until(lambda: player.callback_count >= target, timeout), "callbacks stopped"


# -- without any device ---------------------------------------------------------------


def test_resampler_matches_an_ideal_sine_and_is_chunk_invariant() -> None:
    for rate_out in (48000, 44100, 16000):
        resampler = StreamingResampler(RATE, rate_out)
        frequency = 1000.0
        source = np.sin(2 * np.pi * frequency * np.arange(RATE) / RATE).astype(np.float32)
        whole = resampler.process(source)
        resampler.reset()
        pieces = [resampler.process(piece) for piece in np.array_split(source, [1, 7, 5000, 5001])]
        np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-6)
        assert abs(whole.shape[0] - rate_out) <= 1
        t = np.arange(whole.shape[0]) / rate_out - resampler.delay_seconds
        ideal = np.sin(2 * np.pi * frequency * t)
        steady = slice(rate_out // 10, -rate_out // 10)
        error = whole[steady] - ideal[steady]
        snr_db = 10 * np.log10(np.mean(ideal[steady] ** 2) / np.mean(error**2))
        assert snr_db > 60, f"{RATE} -> {rate_out} Hz: {snr_db:.1f} dB"


def test_resampler_output_count_predicts_process() -> None:
    resampler = StreamingResampler(RATE, 44100)
    for size in (0, 1, 2, 3, 79, 80, 81, 1000):
        expected = resampler.output_count(size)
        assert resampler.process(np.zeros(size, dtype=np.float32)).shape[0] == expected


def _hooks_free_alsa_config(tmp_path: Path) -> Path:
    """ALSA's own config without the hooks that add the PulseAudio devices: no outputs."""
    source = Path("/usr/share/alsa/alsa.conf")
    if not source.exists():
        pytest.skip("no /usr/share/alsa/alsa.conf to build a device-less ALSA config from")
    text = source.read_text()
    start = text.find("@hooks")
    if start < 0:
        pytest.skip("alsa.conf has no @hooks block")
    depth, index = 0, text.index("[", start)
    while True:
        depth += {"[": 1, "]": -1}.get(text[index], 0)
        if depth == 0:
            break
        index += 1
    config = tmp_path / "alsa.conf"
    config.write_text(text[:start] + text[index + 1 :])
    return config


def test_no_audio_device_at_all_is_a_clear_user_error(tmp_path: Path) -> None:
    program = (
        "import json\n"
        "from xtts_desktop.audio.player import Player, list_output_devices\n"
        "from xtts_desktop.errors import UserError\n"
        "devices = [d.name for d in list_output_devices()]\n"
        "try:\n"
        "    Player()\n"
        "    message = None\n"
        "except UserError as exc:\n"
        "    message = str(exc)\n"
        "print(json.dumps({'devices': devices, 'message': message}))\n"
    )
    environment = dict(os.environ, ALSA_CONFIG_PATH=str(_hooks_free_alsa_config(tmp_path)))
    environment.pop("PULSE_SERVER", None)
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["devices"]:
        pytest.skip(f"this machine has outputs besides ALSA's config: {report['devices']}")
    assert report["message"] is not None
    assert report["message"].startswith("No audio output device was found")
    assert report["message"].count(".") == 1  # one sentence


# -- with PulseAudio ------------------------------------------------------------------

needs_output = pytest.mark.skipif(
    not list_output_devices(), reason="PortAudio lists no output device"
)


@needs_output
def test_lists_output_devices() -> None:
    devices = list_output_devices()
    assert all(isinstance(device, OutputDevice) for device in devices)
    assert all(device.max_output_channels > 0 for device in devices)
    assert sum(device.is_default for device in devices) <= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        devices[0].name = "changed"  # type: ignore[misc]


@needs_output
def test_unknown_devices_are_user_errors_naming_them() -> None:
    with pytest.raises(UserError, match="no such speaker"):
        Player(device="no such speaker")
    with pytest.raises(UserError, match="9999"):
        Player(device=9999)


@needs_output
def test_device_by_name_and_by_number() -> None:
    device = list_output_devices()[0]
    with Player(device=device.name) as by_name:
        assert by_name.device == device
    with Player(device=str(device.index)) as by_number:
        assert by_number.device == device


@pytest.mark.parametrize("device_rate", [None, 44100], ids=["native-24k", "resampled-44k"])
@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_plays_exactly_what_was_written(device_rate: int | None, record_property) -> None:
    signal = chirp(1.5)
    with Player(device_rate=device_rate) as player:
        player.start()
        wait_callbacks(player, 5)  # PortAudio's ALSA start re-creates the Pulse stream
        with Recorder(stream=find_sink_input(os.getpid())) as recorder:
            assert player.write(signal, timeout=10)
            player.end_of_input()
            assert player.wait_finished(timeout=10)
            # Let the sink pass on the tail (and some silence after it).
            finished_at = recorder.seconds_recorded()
            assert wait_until(lambda: recorder.seconds_recorded() > finished_at + 0.2, 5)
        assert player.state is PlaybackState.FINISHED
        assert player.underruns == 0
        assert abs(player.samples_played - signal.shape[0]) <= 32  # resampler tail
        assert player.audible_position() == player.samples_played
        handoff = player.handoff_latency_ms
        assert handoff is not None and 0 <= handoff < 200
        record_property("handoff_latency_ms", round(handoff, 2))
        record_property("output_latency_ms", round(player.output_latency * 1000, 2))
        print(
            f"\n[{device_rate or RATE} Hz] handoff {handoff:.2f} ms, output latency "
            f"{player.output_latency * 1000:.1f} ms, underruns {player.underruns}"
        )
    recording = recorder.samples()
    recorder.cleanup()
    alignment = align(signal, recording)
    assert alignment.correlation > 0.99, alignment
    expected = alignment.reference_as_recorded(signal)
    heard = alignment.segment(recording, signal.shape[0])
    # No dropout anywhere, the very end included: every 50 ms matches on its own.
    window = RATE // 20
    for start in range(0, signal.shape[0], window):
        local = correlation(expected[start : start + window], heard[start : start + window])
        assert local > 0.9, f"{start / RATE:.2f} s: correlation {local:.3f}"
    # Same length: what sounded begins and ends where the signal does (within 3 ms).
    played_start, played_end = active_span(recording, RATE)
    written_start, written_end = active_span(signal, RATE)
    assert abs((played_start - alignment.offset) - written_start) <= 0.003 * RATE
    assert abs((played_end - played_start) - (written_end - written_start)) <= 0.003 * RATE


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_no_underrun_is_counted_before_the_first_sample_or_at_the_end() -> None:
    with Player() as player:
        player.start()
        wait_callbacks(player, 20)  # started with nothing to play: silence, not underruns
        assert player.underruns == 0
        assert player.samples_played == 0
        assert player.write(tone(0.2))
        player.end_of_input()
        assert player.wait_finished(timeout=5)
        assert player.underruns == 0


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_underruns_are_counted_when_the_producer_falls_behind() -> None:
    with Player() as player:
        player.start()
        assert player.write(tone(0.5))  # more than the start-up margin: plays at once
        assert wait_until(lambda: player.underruns > 0, timeout=3)
        assert player.underruns == 1  # one gap, then it buffers instead of stuttering
        assert player.is_playing and player.is_buffering
        wait_callbacks(player, 20)
        assert player.underruns == 1
        assert player.write(tone(0.1))
        player.end_of_input()  # ended input plays what is left without waiting for more
        assert player.wait_finished(timeout=5)
        assert player.samples_played == tone(0.5).shape[0] + tone(0.1).shape[0]
        assert player.underruns == 1


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_pause_holds_the_position_and_resume_continues() -> None:
    signal = tone(1.0)
    with Player() as player:
        assert player.write(signal)
        player.start()
        assert wait_until(lambda: player.samples_played > RATE // 5, timeout=5)
        player.pause()
        assert player.is_paused and not player.is_playing
        wait_callbacks(player, 3)  # a callback that began before pause() has ended
        held = player.samples_played
        wait_callbacks(player, 20)  # about 170 ms of callbacks playing silence
        assert player.samples_played == held
        assert wait_until(lambda: player.audible_position() == held, timeout=1)
        assert player.underruns == 0
        player.resume()
        assert wait_until(lambda: player.samples_played > held, timeout=2)
        player.end_of_input()
        assert player.wait_finished(timeout=5)
        assert player.samples_played == signal.shape[0]
        assert player.underruns == 0


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_stop_flushes_and_a_later_play_plays_again() -> None:
    with Player() as player:
        assert player.write(chirp(1.5))
        player.start()
        assert wait_until(lambda: player.samples_played > RATE // 5, timeout=5)
        player.stop()
        assert player.state is PlaybackState.STOPPED
        assert player.buffered_seconds == 0
        stopped_at = player.samples_played
        assert 0 < stopped_at < chirp(1.5).shape[0]
        assert not player.wait_finished(timeout=0.1)
        # A new play: the flushed audio never comes back.
        player.start()
        assert player.samples_played == 0
        wait_callbacks(player, 20)
        assert player.samples_played == 0
        assert player.write(tone(0.3))
        player.end_of_input()
        assert player.wait_finished(timeout=5)
        assert player.samples_played == tone(0.3).shape[0]


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_a_finished_play_is_followed_by_a_new_one() -> None:
    with Player() as player:
        for seconds in (0.2, 0.3):
            assert player.write(tone(seconds))
            player.start()
            player.end_of_input()
            assert player.wait_finished(timeout=5)
            assert player.samples_played == tone(seconds).shape[0]
            assert player.handoff_latency_ms is not None


def _blocked_writer(player: Player, seconds: float, **kwargs) -> tuple[threading.Thread, dict]:
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = player.write(tone(seconds), **kwargs)
        except UserError as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_back_pressure_bounds_the_ring_and_stop_releases_the_writer() -> None:
    with Player(ahead_seconds=2.0) as player:
        capacity = player._ring.capacity
        player.start()
        writer, outcome = _blocked_writer(player, 30.0)
        assert wait_until(lambda: player.buffered_seconds > 1.9, timeout=5)
        for _ in range(30):  # a quarter of a second of playing while the writer waits
            wait_callbacks(player, 1)
            assert player._ring.available() <= capacity
            assert player._ring.total_written <= capacity + player.samples_played
            assert writer.is_alive()
        assert player.samples_played > 0
        player.stop()
        writer.join(timeout=2)
        assert not writer.is_alive()
        assert outcome == {"result": False}


@needs_output
def test_a_blocked_write_gives_up_on_cancel_or_timeout() -> None:
    with Player(ahead_seconds=0.5) as player:  # never started: nothing drains the ring
        assert not player.write(tone(1.0), timeout=0.05)
        assert player._ring.free() == 0
        assert player.try_write(tone(0.1)) == 0
        player.stop()
        assert player.try_write(tone(0.1)) == tone(0.1).shape[0]
        cancel = threading.Event()
        writer, outcome = _blocked_writer(player, 1.0, cancelled=cancel.is_set)
        assert wait_until(lambda: player._ring.free() == 0, timeout=2)
        assert writer.is_alive()
        cancel.set()
        writer.join(timeout=2)
        assert outcome == {"result": False}


def _abort(player: Player) -> None:
    player._stream.abort()


def _close(player: Player) -> None:
    player._stream.close()


def _kill(player: Player) -> None:
    kill_sink_input(find_sink_input(os.getpid()))


@pytest.mark.parametrize("failure", [_abort, _close, _kill], ids=["abort", "close", "kill"])
@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_a_device_failure_releases_the_writer_with_an_error(failure) -> None:
    with Player() as player:
        player.start()
        writer, outcome = _blocked_writer(player, 30.0)
        assert wait_until(lambda: player.buffered_seconds > 1.9, timeout=5)
        failure(player)
        writer.join(timeout=3)
        assert not writer.is_alive(), "the writer still waits on a dead device"
        assert "error" in outcome, outcome
        message = str(outcome["error"])
        assert message.startswith("The audio device stopped: ")
        assert player.error == message
        assert player.state is PlaybackState.FAILED
        assert not player.wait_finished(timeout=1)
        with pytest.raises(UserError, match="The audio device stopped"):
            player.try_write(tone(0.1))
        # Play again: start() reopens the device.
        player.start()
        assert player.error is None
        assert player.write(tone(0.2))
        player.end_of_input()
        assert player.wait_finished(timeout=5)
        assert player.samples_played == tone(0.2).shape[0]


def test_align_finds_a_delay_to_a_fraction_of_a_sample() -> None:
    """The helper the recording tests (here, GUI and CLI) rely on."""
    signal = chirp(0.5)
    rng = np.random.default_rng(3)
    recording = rng.normal(0, 0.01, RATE).astype(np.float32)
    recording[1234 : 1234 + signal.shape[0]] += delayed(signal, 0.3)
    alignment = align(signal, recording)
    assert alignment.offset == 1234
    assert alignment.fraction == pytest.approx(0.3, abs=0.1)
    assert alignment.correlation > 0.99
    assert align(signal, rng.normal(0, 0.1, RATE)).correlation < 0.2


# -- the start-up buffer ----------------------------------------------------------------

# (seconds to make it, seconds of audio): like XTTS on this CPU, chunks that double in size
# and each take about as long as they play (slower than real time for the first second),
# then chunks faster than real time.
SLOW_START = [(0.25, 0.15), (0.35, 0.3), (0.55, 0.6), (0.9, 1.0), (0.5, 1.0), (0.5, 1.0)]
# Like a GPU: a small first chunk soon, then chunks far faster than real time.
FAST_START = [(0.1, 0.15), (0.03, 0.3), (0.03, 0.6), (0.03, 1.0), (0.03, 1.0)]


def _paced_play(player: Player, schedule: list[tuple[float, float]]) -> None:
    """Start the player, then write chunks from a thread at the schedule's times (measured
    from the start, so late writes do not push later ones back); wait for the end."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            due = began
            for making, seconds in schedule:
                due += making
                stop.wait(max(0.0, due - time.perf_counter()))  # the engine's compute time
                if stop.is_set() or not player.write(tone(seconds), timeout=10):
                    return
            player.end_of_input()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    player.start()
    began = time.perf_counter()
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    try:
        assert player.wait_finished(timeout=30)
    finally:
        stop.set()
        producer.join(timeout=5)
    assert not errors, errors
    assert player.samples_played == sum(tone(seconds).shape[0] for _, seconds in schedule)


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_a_start_slower_than_real_time_is_buffered_not_stuttered() -> None:
    # The same producer without a start-up buffer runs dry: the schedule is a real test.
    with Player(start_buffer_seconds=0) as unbuffered:
        _paced_play(unbuffered, SLOW_START)
        assert unbuffered.underruns > 0
    with Player() as player:
        _paced_play(player, SLOW_START)
        start_delay = player.handoff_latency_ms / 1000
        print(f"\nslow start: start delay {start_delay * 1000:.0f} ms, "
              f"underruns {player.underruns} (unbuffered {unbuffered.underruns})")  # fmt: skip
        assert player.underruns == 0
        # It waited for more than the first chunk, and no longer than its bound.
        assert SLOW_START[1][0] <= start_delay < 2.0


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_chunks_faster_than_real_time_play_almost_at_once() -> None:
    with Player() as player:
        _paced_play(player, FAST_START)
        start_delay = player.handoff_latency_ms / 1000
        print(f"\nfast start: start delay {start_delay * 1000:.0f} ms, "
              f"underruns {player.underruns}")  # fmt: skip
        assert player.underruns == 0
        assert start_delay < FAST_START[1][0] + 0.15  # the second chunk, plus a callback


@pytest.mark.usefixtures("awake_sink")
@requires_pulse
def test_a_short_input_plays_as_soon_as_it_has_ended() -> None:
    with Player() as player:
        player.start()
        assert player.write(tone(0.1))  # less than the start-up buffer wants
        wait_callbacks(player, 10)
        assert player.is_buffering and player.samples_played == 0
        player.end_of_input()
        assert player.wait_finished(timeout=5)
        assert player.samples_played == tone(0.1).shape[0]
        assert player.underruns == 0
