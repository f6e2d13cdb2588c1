"""Edit > Preferences for this computer: device and precision reload the model and persist."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QLabel

from tests.gui.conftest import MODEL_TIMEOUT_MS, SignalLog
from xtts_desktop import config
from xtts_desktop.engine.model import DEVICES, PRECISIONS


def _choose(combo, value: str) -> None:
    row = combo.findData(value)
    assert row >= 0, value
    combo.setCurrentIndex(row)


def test_precision_applied_reloads_the_model_in_the_worker_and_is_kept(ready_window, qtbot):
    window = ready_window
    assert window.model_info.precision == "fp32"
    menu_action = next(
        a for a in window.findChildren(QAction) if a.text().replace("&", "") == "Preferences…"
    )
    menu_action.trigger()
    dialog = window.preferences_dialog
    assert dialog is not None and dialog.isVisible()
    combo_values = [dialog.device_combo.itemData(i) for i in range(dialog.device_combo.count())]
    assert tuple(combo_values) == DEVICES
    assert dialog.precision_combo.count() == len(PRECISIONS)

    statuses = SignalLog(window.worker.modelStatus)
    _choose(dialog.device_combo, "cpu")
    _choose(dialog.precision_combo, "bf16")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    qtbot.waitUntil(
        lambda: window.model_info is not None and window.model_info.precision == "bf16",
        timeout=MODEL_TIMEOUT_MS,
    )
    assert "Loading model…" in [args[0] for args in statuses.args()]
    assert window.worker.loaded.precision == "bf16"
    state = window.findChild(QLabel, "modelStateLabel").text()
    assert state.startswith("Ready: CPU") and state.endswith("bf16 (test model: it speaks noise)")
    saved = config.load_settings().settings
    assert (saved.device, saved.precision, saved.engine) == ("cpu", "bf16", "local")

    # A precision this computer cannot run: said in the dialog, which stays open; the model
    # in use is kept.
    dialog = window.open_preferences()
    assert dialog.precision_combo.currentData() == "bf16"
    _choose(dialog.precision_combo, "fp16")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible()
    assert dialog.error_label.text().startswith("fp16 needs a CUDA GPU")
    assert window.is_model_ready and window.worker.loaded.precision == "bf16"
    assert config.load_settings().settings.precision == "bf16"
    dialog.reject()
    assert not dialog.isVisible()

    # Unchanged preferences do not reload anything.
    loaded = window.worker.loaded
    dialog = window.open_preferences()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert window.is_model_ready and window.worker.loaded is loaded


def test_a_new_window_opens_with_the_saved_preferences(make_window, qtbot, tiny_model_dir):
    config.save_settings(
        config.Settings(device="cpu", precision="bf16", model_dir=str(tiny_model_dir))
    )
    window = make_window(warm_up=False)
    qtbot.waitUntil(lambda: window.is_model_ready, timeout=MODEL_TIMEOUT_MS)
    assert window.model_info.precision == "bf16"
    dialog = window.open_preferences()
    preferences = dialog.preferences()
    assert (preferences.engine, preferences.device, preferences.precision) == (
        "local",
        "cpu",
        "bf16",
    )
    dialog.reject()
