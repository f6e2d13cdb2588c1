"""Playing for real into the PulseAudio null sink: heard, stopped, replaced, highlighted, closed."""

from __future__ import annotations

import re
import time

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QLabel, QTextEdit, QToolButton

from tests.gui.conftest import AUDIO_TIMEOUT_MS, MODEL_TIMEOUT_MS, SignalLog, loudest_window_rms
from tests.pulse import Recorder, requires_pulse
from xtts_desktop.audio.player import PlaybackState

pytestmark = requires_pulse

LONG_TEXT = (
    "Good morning to you all. The weather is lovely today. "
    "We will read a little more. And then we stop."
)
RATE = 24000


def _click(qtbot, window, name: str) -> None:
    button = window.findChild(QToolButton, name)
    assert button is not None and button.isEnabled(), name
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_paste_play_is_heard_shows_latency_and_stop_silences_it(
    make_window, qtbot, tiny_model_dir, awake_sink
):
    # The real start-up path: load the model folder in the worker, warm up, then Ready.
    window = make_window(model_dir=tiny_model_dir, device="cpu")
    state = window.findChild(QLabel, "modelStateLabel")
    qtbot.waitUntil(lambda: window.is_model_ready, timeout=MODEL_TIMEOUT_MS)
    assert state.text().startswith("Ready: CPU")
    window.worker.generation_overrides = {"first_chunk_tokens": 4, "chunk_tokens": 8}

    text = window.findChild(QTextEdit, "textEdit")
    QApplication.clipboard().setText(LONG_TEXT)
    text.setFocus()
    text.paste()
    assert text.toPlainText() == LONG_TEXT

    # The sink's monitor: what reached the "speaker" (ALSA's pulse plugin re-creates its
    # stream after an underrun, so one stream cannot be followed on this slow machine).
    with Recorder() as recorder:
        _click(qtbot, window, "playButton")
        job = window.play_job
        assert job is not None
        qtbot.waitUntil(lambda: job.player is not None, timeout=AUDIO_TIMEOUT_MS)
        player = job.player
        qtbot.waitUntil(lambda: player.samples_played >= RATE // 2, timeout=AUDIO_TIMEOUT_MS)
        label = window.findChild(QLabel, "latencyLabel").text()
        assert re.search(r"First audio \d+ ms \(\+ device \d+ ms\) · RTF \d+\.\d\d", label), label
        assert "underrun" in label and f"CPU {window.model_info.precision}" in label
        assert not job.synthesis_done, "the text must still be playing when Stop is pressed"

        cancelled = SignalLog(window.worker.jobCancelled)
        mark = recorder.seconds_recorded()
        _click(qtbot, window, "stopButton")
        played_at_stop = player.samples_played
        qtbot.waitUntil(lambda: cancelled.args() == [(job.job_id,)], timeout=AUDIO_TIMEOUT_MS)
        assert player.state is PlaybackState.STOPPED and player.buffered_seconds == 0
        qtbot.waitUntil(lambda: recorder.seconds_recorded() >= mark + 1.0, timeout=10_000)
        # Nothing more was handed to the device (a stale write may only open a new, silent,
        # never started play, which resets the count).
        assert player.samples_played <= played_at_stop
        assert not player.is_playing
    recording = recorder.samples()
    recorder.cleanup()
    heard = recording[: int(mark * RATE)]
    after_stop = recording[int((mark + 0.3) * RATE) :]
    # The tiny random model hums at about 0.012 RMS; the null sink's silence is exact zeros.
    assert loudest_window_rms(heard, RATE) > 3e-3
    assert len(after_stop) > RATE // 2
    assert float(np.max(np.abs(after_stop))) < 5e-4
    assert window.play_state == "idle" and window.text_view.highlight is None


def test_play_on_new_text_never_plays_the_old_job(ready_window, qtbot, awake_sink):
    window = ready_window
    written = SignalLog(window.worker.chunkWritten)
    cancelled = SignalLog(window.worker.jobCancelled)
    highlights = []
    window.text_view.highlightChanged.connect(
        lambda start, end: highlights.append((time.perf_counter(), start, end))
    )
    text = window.findChild(QTextEdit, "textEdit")
    text.setPlainText(LONG_TEXT)
    _click(qtbot, window, "playButton")
    old = window.play_job
    qtbot.waitUntil(
        lambda: (
            any(span.job_id == old.job_id for _, span in written.args())
            and old.player is not None
            and old.player.samples_played > 0
        ),
        timeout=AUDIO_TIMEOUT_MS,
    )

    new_text = "Something else entirely. Read this instead."
    switched_at = time.perf_counter()
    text.setPlainText(new_text)
    _click(qtbot, window, "playButton")  # Play on edited text reads the new text
    new = window.play_job
    qtbot.waitUntil(lambda: cancelled.args() == [(old.job_id,)], timeout=AUDIO_TIMEOUT_MS)
    assert new is not None and new.job_id != old.job_id and new.request.text == new_text
    qtbot.waitUntil(
        lambda: (
            new.player is not None
            and new.player.first_sample_time is not None
            and any(start >= 0 for t, start, _ in highlights if t > switched_at)
        ),
        timeout=AUDIO_TIMEOUT_MS,
    )
    # No chunk of the old job reached the player after the switch...
    # The log records on the worker thread, which may lag the window's own slots a moment.
    qtbot.waitUntil(lambda: any(span.job_id == new.job_id for _, span in written.args()))
    spans_written = [span for _, span in written.args()]
    assert all(s.written_at < switched_at for s in spans_written if s.job_id == old.job_id)
    assert any(s.job_id == new.job_id for s in spans_written)
    # ...the play the device hears began after it (the ring was flushed)...
    assert new.player.first_sample_time > switched_at
    # ...and every sentence highlighted since is one of the new text's.
    spans = {(segment.start, segment.end) for segment in new.segments}
    later = [(start, end) for t, start, end in highlights if t > switched_at and start >= 0]
    assert later and all(span in spans for span in later)


def test_highlight_follows_what_is_heard(ready_window, qtbot, awake_sink):
    window = ready_window
    text = "Hello there. Good morning to you."
    window.text_view.setPlainText(text)
    queued = SignalLog(window.worker.chunkQueued)
    moments = []

    def on_highlight(start: int, end: int) -> None:
        job = window.play_job
        position = job.player.audible_position() if job and job.player else -1
        moments.append((time.perf_counter(), start, end, position))

    window.text_view.highlightChanged.connect(on_highlight)
    _click(qtbot, window, "playButton")
    job = window.play_job
    qtbot.waitUntil(lambda: len(job.segments) == 2, timeout=AUDIO_TIMEOUT_MS)
    first, second = ((s.start, s.end) for s in job.segments)
    assert text[slice(*first)] == "Hello there." and text[slice(*second)] == "Good morning to you."
    qtbot.waitUntil(
        lambda: any((start, end) == second for _, start, end, _ in moments),
        timeout=AUDIO_TIMEOUT_MS,
    )
    assert moments[0][1:3] == first
    switch_time, _, _, switch_position = next(m for m in moments if m[1:3] == second)
    qtbot.waitUntil(lambda: any(span.segment_index == 1 for _, span in queued.args()))
    second_chunks = [(t, span) for t, (_, span) in queued.calls if span.segment_index == 1]
    first_queued_at, first_chunk = min(second_chunks, key=lambda item: item[1].stream_offset)
    # It moved once the player reached the second sentence's audio, not when it was made.
    assert switch_position >= first_chunk.stream_offset
    assert switch_time >= first_queued_at
    # And it is cleared when the reading ends.
    qtbot.waitUntil(lambda: window.play_state == "idle", timeout=AUDIO_TIMEOUT_MS)
    assert moments[-1][1:3] == (-1, -1) and window.text_view.highlight is None
    assert "Finished" in window.statusBar().currentMessage()


def test_closing_mid_play_stops_everything(ready_window, qtbot, qtlog, awake_sink):
    window = ready_window
    window.text_view.setPlainText(LONG_TEXT)
    _click(qtbot, window, "playButton")
    job = window.play_job
    qtbot.waitUntil(
        lambda: job.player is not None and job.player.samples_played > 0, timeout=AUDIO_TIMEOUT_MS
    )
    assert not job.synthesis_done
    player, thread = job.player, window.host.thread
    began = time.monotonic()
    window.close()
    assert time.monotonic() - began < 20
    assert thread.isFinished()
    assert player.state is PlaybackState.CLOSED
    window.deleteLater()
    qtbot.waitUntil(lambda: not window.isVisible())
    assert not [r for r in qtlog.records if "QThread" in r.message]


def test_clicking_another_sentence_while_playing_jumps_there(ready_window, qtbot, awake_sink):
    window = ready_window
    window.show()
    qtbot.waitExposed(window)
    view = window.text_view
    view.setPlainText(LONG_TEXT)
    highlights = []
    view.highlightChanged.connect(lambda start, end: highlights.append((start, end)))
    _click(qtbot, window, "playButton")
    first_job = window.play_job
    qtbot.waitUntil(
        lambda: bool(highlights) and len(first_job.segments) == 4, timeout=AUDIO_TIMEOUT_MS
    )
    third = first_job.segments[2]
    assert LONG_TEXT[third.start : third.end] == "We will read a little more."

    cursor = view.textCursor()
    cursor.setPosition(LONG_TEXT.index("little"))
    qtbot.mouseClick(
        view.viewport(), Qt.MouseButton.LeftButton, pos=view.cursorRect(cursor).center()
    )
    jumped = window.play_job
    assert jumped is not None and jumped.job_id != first_job.job_id
    assert third.start <= jumped.request.span.from_char < third.end
    highlights.clear()
    qtbot.waitUntil(lambda: bool(highlights), timeout=AUDIO_TIMEOUT_MS)
    assert highlights[0] == (third.start, third.end)  # not back at the first sentence

    # Alt+Right: on to the next sentence, again from what is being heard.
    fourth = first_job.segments[3]
    qtbot.keyClick(view, Qt.Key.Key_Right, Qt.KeyboardModifier.AltModifier)
    stepped = window.play_job
    assert stepped.job_id != jumped.job_id and stepped.request.span.from_char == fourth.start
    qtbot.waitUntil(lambda: highlights[-1] == (fourth.start, fourth.end), timeout=AUDIO_TIMEOUT_MS)
    window.stop()
