"""The window without a model, its settings (kept, corrupt), and keys that must not misfire."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLabel, QSlider, QTextEdit, QToolButton

from tests.gui.conftest import MODEL_TIMEOUT_MS
from xtts_desktop import config


def test_without_a_model_the_window_opens_and_says_how_to_get_one(make_window, qtbot, tmp_path):
    missing = tmp_path / "no-model-here"
    window = make_window(model_dir=missing, device="cpu")
    with qtbot.waitSignal(window.modelFailed, timeout=MODEL_TIMEOUT_MS) as failed:
        pass
    message = failed.args[0]
    assert str(missing) in message and "xtts-desktop download" in message
    assert window.message_bar.text() == message  # shown in the window, not a dialog
    assert window.findChild(QLabel, "modelStateLabel").text() == "No model"
    play = window.findChild(QToolButton, "playButton")
    assert not play.isEnabled()
    assert not window.findChild(QToolButton, "exportButton").isEnabled()
    # Play by keyboard does nothing but say why.
    window.start_reading()
    assert window.play_job is None
    # Help > Get XTTS v2 shows the same advice again, with the way to the download dialog.
    window.message_bar.dismiss()
    window.show_model_setup()
    assert window.message_bar.text() == message
    assert window.message_bar.action_button.text() == "Get XTTS v2…"


def test_a_model_folder_chosen_in_the_dialog_loads_in_the_window(
    make_window, qtbot, tmp_path, tiny_model_dir, monkeypatch
):
    """No model, then "Get XTTS v2…" > "Use a model folder...": the worker loads it, Play works."""
    import shutil

    from PySide6.QtWidgets import QFileDialog

    window = make_window(model_dir=tmp_path / "no-model-here", device="cpu")
    with qtbot.waitSignal(window.modelFailed, timeout=MODEL_TIMEOUT_MS):
        pass
    folder = tmp_path / "chosen"
    shutil.copytree(tiny_model_dir, folder)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    qtbot.mouseClick(window.message_bar.action_button, Qt.MouseButton.LeftButton)
    dialog = window.model_dialog
    assert dialog is not None and dialog.isVisible()
    with qtbot.waitSignal(window.modelReady, timeout=MODEL_TIMEOUT_MS):
        qtbot.mouseClick(dialog.folder_button, Qt.MouseButton.LeftButton)
    assert window.findChild(QToolButton, "playButton").isEnabled()
    assert window.settings.model_dir == str(folder)
    assert window.message_bar.text() == ""


def test_space_types_into_the_text_instead_of_playing(make_window, qtbot, tmp_path):
    window = make_window(model_dir=tmp_path / "none", device="cpu")
    window.show()
    qtbot.waitExposed(window)
    text = window.findChild(QTextEdit, "textEdit")
    text.setFocus()
    qtbot.waitUntil(text.hasFocus)
    qtbot.keyClicks(text, "a b")
    assert text.toPlainText() == "a b"
    assert window.play_job is None


def test_settings_persist_across_two_windows(make_window, qtbot, tmp_path):
    first = make_window(model_dir=tmp_path / "none", device="cpu")
    languages = first.findChild(QComboBox, "languageCombo")
    assert languages.count() == 17
    languages.setCurrentIndex(languages.findText("German"))
    first.findChild(QSlider, "speedSlider").setValue(150)
    first.resize(640, 470)
    first.close()
    saved = json.loads(config.settings_path().read_text(encoding="utf-8"))
    assert saved["language"] == "de" and saved["speed"] == 1.5

    second = make_window(model_dir=tmp_path / "none", device="cpu")
    assert second.findChild(QComboBox, "languageCombo").currentText() == "German"
    assert second.findChild(QSlider, "speedSlider").value() == 150
    assert second.current_speed() == 1.5
    assert (second.width(), second.height()) == (640, 470)


def test_a_corrupt_settings_file_is_moved_aside_with_a_message(make_window, qtbot, tmp_path):
    path = config.settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"language": "fr", "speed": ', encoding="utf-8")
    window = make_window(model_dir=tmp_path / "none", device="cpu")
    assert "unreadable" in window.message_bar.text()
    assert window.message_bar.isVisibleTo(window)
    aside = list(path.parent.glob("settings.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text(encoding="utf-8").startswith('{"language"')
    # Defaults, not the half-written values.
    assert window.findChild(QComboBox, "languageCombo").currentData() == "en"
    assert window.current_speed() == 1.0
    window.findChild(QComboBox, "languageCombo").setCurrentIndex(2)
    window.close()
    assert json.loads(path.read_text(encoding="utf-8"))["language"] == "fr"


def test_keyboard_shortcuts_reach_their_actions(make_window, qtbot, tmp_path):
    window = make_window(model_dir=tmp_path / "none", device="cpu")
    window.show()
    qtbot.waitExposed(window)
    text = window.findChild(QTextEdit, "textEdit")
    text.setPlainText("One sentence.")
    text.setFocus()
    qtbot.waitUntil(text.hasFocus)
    names = ["read_action", "open_action", "export_action", "next_action", "previous_action"]
    fired = []
    for name in names:
        action = getattr(window, name)
        action.triggered.disconnect()  # only record: no file dialogs, no model needed
        action.setEnabled(True)
        action.triggered.connect(lambda *_, name=name: fired.append(name))
    control = Qt.KeyboardModifier.ControlModifier
    alt = Qt.KeyboardModifier.AltModifier
    qtbot.keyClick(text, Qt.Key.Key_Return, control)
    qtbot.keyClick(text, Qt.Key.Key_O, control)
    qtbot.keyClick(text, Qt.Key.Key_E, control)
    qtbot.keyClick(text, Qt.Key.Key_Right, alt)
    qtbot.keyClick(text, Qt.Key.Key_Left, alt)
    assert fired == [
        "read_action",
        "open_action",
        "export_action",
        "next_action",
        "previous_action",
    ]
    assert text.toPlainText() == "One sentence."  # Ctrl+Enter read, it did not type a newline


def test_voice_menu_renames_and_removes_a_saved_voice(make_window, qtbot, tmp_path, monkeypatch):
    import torch
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    from xtts_desktop.engine.voices import Voice, VoiceLibrary

    library = VoiceLibrary(config.voices_dir())
    latent, embedding = torch.zeros(1, 4, 64), torch.zeros(1, 512, 1)
    library.save(Voice("Grandma", latent, embedding, "saved"))
    window = make_window(model_dir=tmp_path / "none", device="cpu")
    picker = window.findChild(QComboBox, "speakerCombo")
    assert picker.saved_names == ("Grandma",)
    assert picker.select_voice("Grandma") and window.rename_voice_action.isEnabled()

    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("Nana", True)))
    window.rename_voice_action.trigger()
    assert picker.saved_names == ("Nana",) and picker.current_voice() == "Nana"
    assert library.names() == ["Nana"] and window.settings.voice == "Nana"

    # A name that is taken: one sentence in the window, nothing changed.
    library.save(Voice("Other", latent, embedding, "saved"))
    monkeypatch.setattr(QInputDialog, "getText", staticmethod(lambda *a, **k: ("other", True)))
    window.rename_voice_action.trigger()
    assert "already exists" in window.message_bar.text()
    assert sorted(library.names()) == ["Nana", "Other"]

    yes = QMessageBox.StandardButton.Yes
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: yes))
    window.remove_voice_action.trigger()
    assert library.names() == ["Other"] and picker.saved_names == ("Other",)
