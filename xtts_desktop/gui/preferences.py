"""The Preferences dialog: which engine reads (this computer or a server), device, precision."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from xtts_desktop.config import Settings
from xtts_desktop.errors import UserError
from xtts_desktop.gui.background import BackgroundTasks

LOCAL = "local"
SERVER = "server"

DEVICE_LABELS = {
    "auto": "Automatic (the GPU when there is one)",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}
PRECISION_LABELS = {
    "auto": "Automatic (the fastest that keeps the sound)",
    "fp32": "fp32 (full precision)",
    "int8": "int8 (weight-only GPT, CPU)",
    "bf16": "bf16",
    "fp16": "fp16 (GPU)",
}


@dataclass(frozen=True)
class Preferences:
    """What the dialog edits; the window keeps it in its Settings."""

    engine: str = LOCAL  # LOCAL or SERVER
    server_url: str = ""
    server_api_key: str = ""
    device: str = "auto"
    precision: str = "auto"

    @classmethod
    def from_settings(cls, settings: Settings) -> Preferences:
        from xtts_desktop.engine.model import DEVICES, PRECISIONS

        return cls(
            engine=SERVER if settings.engine == SERVER else LOCAL,
            server_url=settings.server_url,
            server_api_key=settings.server_api_key,
            device=settings.device if settings.device in DEVICES else "auto",
            precision=settings.precision if settings.precision in PRECISIONS else "auto",
        )

    def check(self) -> None:
        """Raise UserError with one sentence when the choice cannot work here: a device this
        computer lacks, a precision that device cannot run, a server address that is not one."""
        if self.engine != SERVER:
            from xtts_desktop.engine.model import choose_device, choose_precision

            choose_precision(self.precision, choose_device(self.device).torch_device)
            return
        if not self.server_url.strip():
            raise UserError("Give the server's address, like http://192.168.1.20:8080.")
        from xtts_desktop.remote import RemoteEngine

        RemoteEngine(self.server_url, self.server_api_key or None)


class PreferencesDialog(QDialog):
    """Engine, server address and key (with a connection test), device and precision.

    ``applied(Preferences)`` is emitted when OK is pressed with valid values; a bad address
    is said inline and the dialog stays open. The connection test runs on a pool thread and
    its answer is shown inline; the GUI thread never waits on the network.
    """

    applied = Signal(object)  # Preferences
    connectionTested = Signal(bool, str)  # succeeded, the sentence shown

    def __init__(self, preferences: Preferences, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from xtts_desktop.engine.model import DEVICES, PRECISIONS

        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences")
        self.setMinimumWidth(520)
        # The test's per-request limit: long enough for a server across a LAN or the internet.
        self.probe_timeout_s = 5.0
        self._tasks = BackgroundTasks(self)
        self._test_token: int | None = None

        self.local_radio = QRadioButton("This computer")
        self.local_radio.setObjectName("engineLocalRadio")
        self.server_radio = QRadioButton("A server (xtts-desktop serve, or a Truss)")
        self.server_radio.setObjectName("engineServerRadio")
        group = QButtonGroup(self)
        group.addButton(self.local_radio)
        group.addButton(self.server_radio)
        engine_box = QGroupBox("Engine")
        engine_layout = QVBoxLayout(engine_box)
        engine_layout.addWidget(self.local_radio)
        engine_layout.addWidget(self.server_radio)

        self.local_box = QGroupBox("This computer")
        local_form = QFormLayout(self.local_box)
        self.device_combo = QComboBox()
        self.device_combo.setObjectName("deviceCombo")
        for device in DEVICES:
            self.device_combo.addItem(DEVICE_LABELS.get(device, device), device)
        self.precision_combo = QComboBox()
        self.precision_combo.setObjectName("precisionCombo")
        for precision in PRECISIONS:
            self.precision_combo.addItem(PRECISION_LABELS.get(precision, precision), precision)
        local_form.addRow("Device", self.device_combo)
        local_form.addRow("Precision", self.precision_combo)

        self.server_box = QGroupBox("Server")
        server_form = QFormLayout(self.server_box)
        self.url_edit = QLineEdit()
        self.url_edit.setObjectName("serverUrlEdit")
        self.url_edit.setPlaceholderText("http://192.168.1.20:8080")
        self.key_edit = QLineEdit()
        self.key_edit.setObjectName("serverKeyEdit")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("none")
        self.test_button = QPushButton("Test connection")
        self.test_button.setObjectName("testConnectionButton")
        self.test_button.clicked.connect(self.test_connection)
        test_row = QHBoxLayout()
        test_row.addWidget(self.test_button)
        test_row.addStretch(1)
        self.test_label = QLabel()
        self.test_label.setObjectName("connectionResultLabel")
        self.test_label.setWordWrap(True)
        server_form.addRow("Address", self.url_edit)
        server_form.addRow("API key", self.key_edit)
        server_form.addRow(test_row)
        server_form.addRow(self.test_label)

        self.error_label = QLabel()
        self.error_label.setObjectName("preferencesErrorLabel")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #a01818;")
        self.error_label.hide()

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.ok_button = buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setObjectName("preferencesOkButton")

        layout = QVBoxLayout(self)
        layout.addWidget(engine_box)
        layout.addWidget(self.local_box)
        layout.addWidget(self.server_box)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        layout.addWidget(buttons)

        self.local_radio.toggled.connect(self._update_enabled)
        self.url_edit.textEdited.connect(self._forget_test)
        self.key_edit.textEdited.connect(self._forget_test)
        self.set_preferences(preferences)

    # ----- values ---------------------------------------------------------------------------

    def set_preferences(self, preferences: Preferences) -> None:
        (self.server_radio if preferences.engine == SERVER else self.local_radio).setChecked(True)
        self.device_combo.setCurrentIndex(max(0, self.device_combo.findData(preferences.device)))
        self.precision_combo.setCurrentIndex(
            max(0, self.precision_combo.findData(preferences.precision))
        )
        self.url_edit.setText(preferences.server_url)
        self.key_edit.setText(preferences.server_api_key)
        self._forget_test()
        self.error_label.hide()
        self._update_enabled()

    def preferences(self) -> Preferences:
        return Preferences(
            engine=SERVER if self.server_radio.isChecked() else LOCAL,
            server_url=self.url_edit.text().strip(),
            server_api_key=self.key_edit.text().strip(),
            device=self.device_combo.currentData() or "auto",
            precision=self.precision_combo.currentData() or "auto",
        )

    def _update_enabled(self) -> None:
        server = self.server_radio.isChecked()
        self.server_box.setEnabled(server)
        self.local_box.setEnabled(not server)
        self.error_label.hide()

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.show()

    # ----- the connection test ----------------------------------------------------------------

    @property
    def testing(self) -> bool:
        return self._test_token is not None

    def test_connection(self) -> None:
        """Ask the server for its health and voices on a pool thread; the answer shows inline."""
        from xtts_desktop.gui.worker import probe_server

        url, key = self.url_edit.text().strip(), self.key_edit.text().strip()
        if not url:
            self._show_test(False, "Give the server's address, like http://192.168.1.20:8080.")
            return
        timeout = self.probe_timeout_s
        self.test_button.setEnabled(False)
        self.test_label.setStyleSheet("")
        self.test_label.setText(f"Connecting to {url}…")
        self._test_token = self._tasks.submit(
            lambda: probe_server(url, key, timeout),
            lambda probe: self._show_test(True, probe.summary()),
            lambda message: self._show_test(False, message),
        )

    def _show_test(self, succeeded: bool, message: str) -> None:
        self._test_token = None
        self.test_button.setEnabled(True)
        self.test_label.setStyleSheet("color: #1d6b2a;" if succeeded else "color: #a01818;")
        self.test_label.setText(message)
        self.connectionTested.emit(succeeded, message)

    def _forget_test(self) -> None:
        """The address or key changed: an answer still on its way is about the old one."""
        self._tasks.forget()
        self._test_token = None
        self.test_button.setEnabled(True)
        self.test_label.setText("")

    # ----- closing ----------------------------------------------------------------------------

    def accept(self) -> None:
        preferences = self.preferences()
        try:
            preferences.check()
        except UserError as error:
            self.show_error(error.message)
            return
        self.error_label.hide()
        self._forget_test()
        super().accept()
        self.applied.emit(preferences)

    def reject(self) -> None:
        self._forget_test()
        super().reject()

    def shutdown(self, timeout_s: float = 15.0) -> None:
        """For a closing application: no callback runs after this, a running test is waited for."""
        self._tasks.shutdown(timeout_s)
