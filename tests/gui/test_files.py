"""Files in and out of the window: voice samples dropped, documents dropped, audio exported."""

from __future__ import annotations

import os

import pytest
import soundfile as sf
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QLabel, QProgressBar, QPushButton, QToolButton

from tests.gui.conftest import AUDIO_TIMEOUT_MS, SignalLog, drop_files
from xtts_desktop import config
from xtts_desktop.engine.voices import VoiceLibrary


def test_dropping_a_sample_on_the_text_makes_a_voice_and_keeps_the_text(
    ready_window, qtbot, speech_sample, tmp_path
):
    window = ready_window
    text = window.text_view
    text.setPlainText("Keep this text as it is.")
    picker = window.findChild(QComboBox, "speakerCombo")
    builtin = picker.current_voice()
    finished = SignalLog(window.worker.jobFinished)

    assert drop_files(text.viewport(), [speech_sample])
    qtbot.waitUntil(lambda: picker.current_voice() == speech_sample.stem, timeout=AUDIO_TIMEOUT_MS)
    assert builtin != speech_sample.stem
    assert text.toPlainText() == "Keep this text as it is."  # the path was never pasted
    assert speech_sample.stem in picker.saved_names
    assert VoiceLibrary(config.voices_dir()).find(speech_sample.stem) is not None
    # The log records on the worker thread, which may lag the window's own slot a moment.
    qtbot.waitUntil(lambda: bool(finished.args()))
    assert finished.args()[-1][1].kind == "clone"
    assert window.settings.voice == speech_sample.stem

    # The same file again: a second voice with a name of its own, selected.
    assert drop_files(text.viewport(), [speech_sample])
    second = f"{speech_sample.stem} 2"
    qtbot.waitUntil(lambda: picker.current_voice() == second, timeout=AUDIO_TIMEOUT_MS)
    assert set(picker.saved_names) == {speech_sample.stem, second}

    # Not audio, though named .wav, dropped anywhere on the window: one sentence, no voice.
    fake = tmp_path / "not-a-recording.wav"
    fake.write_text("hello, I am text", encoding="utf-8")
    failed = SignalLog(window.worker.jobFailed)
    drop_files(window.findChild(QLabel, "latencyLabel"), [fake])
    qtbot.waitUntil(lambda: bool(failed.args()), timeout=AUDIO_TIMEOUT_MS)
    message = failed.args()[0][1]
    assert "not-a-recording.wav" in message and "\n" not in message
    qtbot.waitUntil(lambda: window.message_bar.text() == message)
    assert set(picker.saved_names) == {speech_sample.stem, second}
    assert text.toPlainText() == "Keep this text as it is."


def test_dropping_a_text_file_opens_it(ready_window, qtbot, tmp_path):
    pytest.importorskip("xtts_desktop.documents", reason="documents.py is another issue's")
    document = tmp_path / "chapter.txt"
    document.write_text("Chapter one.\n\nIt was a bright cold day in April.", encoding="utf-8")
    window = ready_window
    window.text_view.setPlainText("old text")
    assert drop_files(window.text_view.viewport(), [document])
    qtbot.waitUntil(lambda: "bright cold day" in window.text_view.toPlainText(), timeout=20_000)
    assert "old text" not in window.text_view.toPlainText()
    assert str(document) not in window.text_view.toPlainText()
    assert "chapter.txt" in window.windowTitle()
    assert window.settings.last_folder == str(tmp_path)


def test_export_writes_the_audio_of_the_text_and_cancel_leaves_nothing(
    ready_window, qtbot, tmp_path, monkeypatch
):
    window = ready_window
    folder = tmp_path / "exports"
    folder.mkdir()
    target = folder / "speech.wav"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *args, **kwargs: (str(target), "WAV audio (*.wav)")),
    )
    window.text_view.setPlainText("Hello there. Good morning.")
    finished = SignalLog(window.worker.jobFinished)
    progress = window.findChild(QProgressBar, "exportProgress")
    cancel = window.findChild(QPushButton, "exportCancelButton")
    play = window.findChild(QToolButton, "playButton")

    qtbot.mouseClick(window.findChild(QToolButton, "exportButton"), Qt.MouseButton.LeftButton)
    assert progress.isVisibleTo(window) and cancel.isVisibleTo(window)
    assert not play.isEnabled()  # one job at a time; the rest of the window stays usable
    assert not window.text_view.isReadOnly()
    qtbot.waitUntil(lambda: bool(finished.args()), timeout=AUDIO_TIMEOUT_MS)
    result = finished.args()[0][1]
    assert result.kind == "export" and result.path == target
    info = sf.info(str(target))
    assert info.samplerate == 24000 and info.channels == 1
    assert info.frames == result.stats.audio_samples > 0  # all the audio the text made
    assert result.stats.segments_done == result.stats.segments == 2
    qtbot.waitUntil(lambda: not progress.isVisibleTo(window))
    assert play.isEnabled()
    assert window.worker.player is None  # rendered without playing
    assert "Saved" in window.statusBar().currentMessage()

    cancelled_target = folder / "cancelled.flac"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *args, **kwargs: (str(cancelled_target), "FLAC audio (*.flac)")),
    )
    window.text_view.setPlainText(
        "This one is long. It has several sentences. Nobody will hear the end of it. "
        "Because it is cancelled. Long before that."
    )
    stats = SignalLog(window.worker.statsUpdated)
    cancelled = SignalLog(window.worker.jobCancelled)
    qtbot.mouseClick(window.findChild(QToolButton, "exportButton"), Qt.MouseButton.LeftButton)
    job_id = window.export_job[0]
    qtbot.waitUntil(
        lambda: any(args[0] == job_id for args in stats.args()), timeout=AUDIO_TIMEOUT_MS
    )
    qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: cancelled.args() == [(job_id,)], timeout=AUDIO_TIMEOUT_MS)
    qtbot.waitUntil(lambda: window.export_job is None)
    assert not cancelled_target.exists()
    assert sorted(os.listdir(folder)) == ["speech.wav"]  # no temporary file left either
    assert not progress.isVisibleTo(window)
