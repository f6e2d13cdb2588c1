"""What people paste and drop on the window when it is not what we hoped: one message each."""

from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QFileDialog, QToolButton

from tests.gui.conftest import AUDIO_TIMEOUT_MS, drop_files


def test_nothing_speakable_says_so_instead_of_silence(ready_window, qtbot):
    window = ready_window
    window.text_view.setPlainText("!!! ... 🙂 —")
    window.start_reading()
    qtbot.waitUntil(
        lambda: "nothing to read" in window.message_bar.text(), timeout=AUDIO_TIMEOUT_MS
    )
    assert "\n" not in window.message_bar.text()
    assert window.findChild(QToolButton, "playButton").isEnabled()


def test_a_broken_document_dropped_is_one_message_and_the_text_stays(ready_window, qtbot, tmp_path):
    window = ready_window
    window.text_view.setPlainText("Keep me.")
    book = tmp_path / "novel.epub"
    book.write_bytes(os.urandom(4096))
    assert drop_files(window.text_view.viewport(), [book]) in (True, False)
    qtbot.waitUntil(lambda: "novel.epub" in window.message_bar.text(), timeout=20_000)
    assert "\n" not in window.message_bar.text()
    assert window.text_view.toPlainText() == "Keep me."
    picker = window.findChild(QComboBox, "speakerCombo")
    assert list(picker.saved_names) == []  # not taken for a voice sample either


def test_an_export_that_cannot_be_written_leaves_nothing(
    ready_window, qtbot, tmp_path, monkeypatch
):
    window = ready_window
    blocker = tmp_path / "a-file-not-a-folder"
    blocker.write_text("in the way")
    target = blocker / "speech.wav"
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *args, **kwargs: (str(target), "WAV audio (*.wav)")),
    )
    window.text_view.setPlainText("Hello there.")
    qtbot.mouseClick(window.findChild(QToolButton, "exportButton"), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(
        lambda: "speech.wav" in window.message_bar.text() or "Cannot" in window.message_bar.text(),
        timeout=AUDIO_TIMEOUT_MS,
    )
    assert "\n" not in window.message_bar.text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file-not-a-folder"]
    qtbot.waitUntil(
        lambda: window.findChild(QToolButton, "playButton").isEnabled(), timeout=AUDIO_TIMEOUT_MS
    )
