"""A synthesis job cancelled, abandoned or failed mid-way leaves the Synthesizer as it was:
the next stream starts at once and gives exactly the audio a fresh one gives."""

from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest

from xtts_desktop.engine.stream import GenerationSettings, StreamStats
from xtts_desktop.errors import Cancelled, UserError

SHORT = "A short sentence for the engine."
LONG = " ".join(
    f"Sentence {number} of a text that is never read to its end." for number in range(30)
)


@pytest.fixture(scope="module")
def greedy(tiny_model) -> GenerationSettings:
    return GenerationSettings.from_model(tiny_model, greedy=True, max_tokens_per_segment=30)


def audio(synthesizer, voice, settings, text: str = SHORT) -> np.ndarray:
    return np.concatenate(
        [chunk.samples for chunk in synthesizer.stream(text, voice, "en", settings)]
    )


def in_thread(function, timeout: float = 60.0):
    """Run `function` in another thread (as the worker or the server would) with a deadline."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001 - handed back to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), "the synthesizer is still held by an earlier job"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_interrupted_jobs_leave_the_synthesizer_as_it_was(synthesizer, builtin_voice, greedy):
    reference = audio(synthesizer, builtin_voice, greedy)

    # 1. Cancelled between chunks; the consumer goes on iterating and gets Cancelled.
    cancel = threading.Event()
    stats = StreamStats()
    with pytest.raises(Cancelled):
        for number, _ in enumerate(
            synthesizer.stream(LONG, builtin_voice, "en", greedy, cancel=cancel, stats=stats)
        ):
            if number == 1:
                cancel.set()
                tokens_when_cancelled = stats.tokens
    assert stats.tokens <= tokens_when_cancelled + 1
    assert np.array_equal(in_thread(lambda: audio(synthesizer, builtin_voice, greedy)), reference)

    # 2. Cancelled from another thread while a thread streams.
    cancel = threading.Event()
    stats = StreamStats()
    first_chunk = threading.Event()

    def stream_until_cancelled() -> str:
        try:
            for _ in synthesizer.stream(LONG, builtin_voice, "en", greedy, cancel, stats):
                first_chunk.set()
        except Cancelled:
            return "cancelled"
        return "finished"

    worker = threading.Thread(target=lambda: results.append(stream_until_cancelled()))
    results: list[str] = []
    worker.start()
    assert first_chunk.wait(timeout=60)
    cancel.set()
    tokens_when_cancelled = stats.tokens
    worker.join(timeout=10)
    assert results == ["cancelled"]
    assert stats.tokens <= tokens_when_cancelled + 1
    assert np.array_equal(in_thread(lambda: audio(synthesizer, builtin_voice, greedy)), reference)

    # 3. Abandoned: the consumer takes one chunk and drops the stream without closing it.
    stream = synthesizer.stream(LONG, builtin_voice, "en", greedy)
    next(stream)
    del stream
    assert np.array_equal(in_thread(lambda: audio(synthesizer, builtin_voice, greedy)), reference)

    # 4. The consumer fails mid-way (a full disk while exporting, say).
    def failing_consumer() -> None:
        for number, _ in enumerate(synthesizer.stream(LONG, builtin_voice, "en", greedy)):
            if number == 2:
                raise OSError("No space left on device")

    with pytest.raises(OSError):
        failing_consumer()
    assert np.array_equal(in_thread(lambda: audio(synthesizer, builtin_voice, greedy)), reference)


def test_the_command_line_closes_its_stream_when_it_fails_mid_way(
    synthesizer, builtin_voice, greedy, small_disk
):
    """The consumer fails mid-stream (a full disk) while its caller still holds the stream:
    the CLI closes it on the way out, so the next stream starts at once."""
    from xtts_desktop import cli

    disk = small_disk("16k")
    stats = StreamStats()
    cancel = threading.Event()
    segments = synthesizer.segments(LONG, "en")
    progress = cli._Progress(len(segments), enabled=False)
    args = argparse.Namespace(no_play=True, output_device=None)
    # The test keeps `chunks` (and the exception, with the failing frames) alive throughout.
    chunks = cli._local_audio(
        synthesizer, segments, builtin_voice, "en", greedy, cancel, stats, progress
    )
    with pytest.raises(UserError) as caught:
        cli._play_and_write(args, chunks, stats, cancel, disk / "speech.wav")
    assert str(caught.value).endswith("the disk is full.")
    assert stats.audio_samples > 0 and stats.finished_at is None  # it failed mid-stream

    first_chunk = threading.Event()

    def next_stream() -> None:
        for _ in synthesizer.stream(SHORT, builtin_voice, "en", greedy):
            first_chunk.set()

    thread = threading.Thread(target=next_stream, daemon=True)
    thread.start()
    started = first_chunk.wait(timeout=30)
    chunks.close()  # a no-op when the CLI closed it; else frees the synthesizer for later tests
    thread.join(timeout=60)
    assert started, "the next stream waited for the synthesizer: the failed one kept it"
