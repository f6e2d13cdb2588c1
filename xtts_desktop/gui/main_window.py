"""The main window: text, transport, voices, latency panel, export; wired to the worker."""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSize, Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from xtts_desktop import config
from xtts_desktop.errors import UserError
from xtts_desktop.gui.background import BackgroundTasks
from xtts_desktop.gui.icons import icon
from xtts_desktop.gui.jobs import (
    ChunkSpan,
    CloneRequest,
    EngineChoice,
    ExportRequest,
    JobControl,
    JobResult,
    JobStats,
    ModelInfo,
    PlayJob,
    PlayRequest,
    SegmentSpan,
    TextRange,
)
from xtts_desktop.gui.widgets.latency_panel import LatencyPanel, LatencyReading
from xtts_desktop.gui.widgets.message_bar import MessageBar
from xtts_desktop.gui.widgets.text_view import TextView, classify_files, local_files
from xtts_desktop.gui.widgets.voice_picker import VoicePicker
from xtts_desktop.gui.worker import CLONE_NEEDS_LOCAL, SynthesisWorker, WorkerHost

logger = logging.getLogger(__name__)

APP_TITLE = "XTTS Desktop"
# The panel refreshes at 25 Hz: smooth enough for a highlight, cheap for the GUI thread.
REFRESH_MS = 40
SAVE_DELAY_MS = 400
# Changing voice, language, speed or output while playing restarts the sentence being heard,
# once the control has been still for this long.
RESTART_DELAY_MS = 350
EXPORT_SUFFIXES = (".wav", ".flac", ".ogg")
EXPORT_FILTERS = "WAV audio (*.wav);;FLAC audio (*.flac);;Ogg Vorbis audio (*.ogg)"
DOCUMENT_FILTERS = (
    "Documents (*.txt *.md *.markdown *.html *.htm *.epub);;Text (*.txt);;"
    "Markdown (*.md *.markdown);;HTML (*.html *.htm);;EPUB (*.epub);;All files (*)"
)
AUDIO_FILTERS = "Audio (*.wav *.flac *.ogg *.oga *.opus *.mp3 *.m4a *.aiff *.aif);;All files (*)"


# Windows not closed yet: at interpreter exit their threads are stopped before Qt can
# destroy a running QThread (which aborts the process).
_OPEN_WINDOWS: weakref.WeakSet[MainWindow] = weakref.WeakSet()


@atexit.register
def _shut_down_open_windows() -> None:
    for window in list(_OPEN_WINDOWS):
        try:
            window.shutdown()
        except RuntimeError:  # its C++ side is already gone, and with it the thread
            pass


def _read_document(path: Path) -> str:
    """Runs on a pool thread: another module extracts the text (markup dropped, size limits)."""
    try:
        from xtts_desktop.documents import read_document
    except ImportError as error:
        raise UserError(
            f"Opening documents is not available in this installation ({error})."
        ) from None
    return read_document(path)


class MainWindow(QMainWindow):
    """The XTTS Desktop window. Build it with `xtts_desktop.gui.create_window`."""

    modelReady = Signal()
    modelFailed = Signal(str)
    playStateChanged = Signal(str)  # "idle", "starting", "playing", "paused"
    documentOpened = Signal(str)  # the path

    def __init__(
        self,
        model_dir: str | Path | None = None,
        device: str = "auto",
        precision: str | None = None,
        *,
        loaded: Any = None,
        warm_up: bool = True,
    ) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_TITLE)
        self.setWindowIcon(icon("xtts-desktop"))
        self.setAcceptDrops(True)

        loaded_settings = config.load_settings()
        self.settings = loaded_settings.settings
        self.settings_problem = loaded_settings.problem
        model_dir = model_dir or self.settings.model_dir or None
        device = device if device and device != "auto" else (self.settings.device or "auto")
        precision = precision or self.settings.precision or "auto"
        # The local engine's device and precision: given to create_window, else the settings'.
        self.device, self.precision = device, precision

        self.control = JobControl()
        self.worker = SynthesisWorker(
            self.control,
            model_dir,
            device,
            precision,
            warm_up=warm_up,
            loaded=loaded,
            engine=self._engine_choice(str(model_dir) if model_dir else None),
        )
        self.host = WorkerHost(self.worker, self)
        self.tasks = BackgroundTasks(self)

        self.model_info: ModelInfo | None = None
        self.model_error: str | None = None
        self.model_dialog: Any = None  # the "Get XTTS v2" dialog, once opened
        self.preferences_dialog: Any = None  # the Preferences dialog, once opened
        self.play_job: PlayJob | None = None
        self.export_job: tuple[int, Path] | None = None
        self.clone_jobs: dict[int, tuple[Path, ...]] = {}
        self._play_state = "idle"
        self._last_segments: tuple[str, tuple[SegmentSpan, ...]] | None = None
        self._shut_down = False
        self._settings_error_shown = False

        self._build_actions()
        self._build_ui()
        self._build_menus()
        self._build_shortcuts()
        self._connect_worker()

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self._refresh)
        self._save_timer = QTimer(self)
        self._save_timer.setSingleShot(True)
        self._save_timer.setInterval(SAVE_DELAY_MS)
        self._save_timer.timeout.connect(self.save_settings)
        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.setInterval(RESTART_DELAY_MS)
        self._restart_timer.timeout.connect(self._restart_current_segment)

        self._apply_settings()
        if self.settings_problem:
            self.message_bar.show_message(self.settings_problem, "warning")
        self._update_actions()
        _OPEN_WINDOWS.add(self)
        self.host.start()

    # ----- construction -----------------------------------------------------------------

    def _action(
        self, text: str, slot, icon_name: str | None = None, tip: str | None = None
    ) -> QAction:
        action = QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if tip:
            action.setToolTip(tip)
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action(
            "&Open…",
            self.open_document_dialog,
            "open",
            "Open a text, Markdown, HTML or EPUB document (Ctrl+O)",
        )
        self.open_action.setShortcut(QKeySequence("Ctrl+O"))
        self.export_action = self._action(
            "&Export audio…",
            self.export_audio_dialog,
            "export",
            "Save the text (or the selection) as WAV, FLAC or OGG (Ctrl+E)",
        )
        self.export_action.setShortcut(QKeySequence("Ctrl+E"))
        self.quit_action = self._action("&Quit", self.close)
        self.quit_action.setShortcut(QKeySequence("Ctrl+Q"))

        self.play_action = self._action(
            "Play",
            self.toggle_play_pause,
            "play",
            "Play, pause or resume (Space outside the text; Ctrl+Enter reads from the cursor)",
        )
        self.stop_action = self._action("Stop", self.stop, "stop", "Stop reading (Esc)")
        self.previous_action = self._action(
            "Previous sentence", self.previous_sentence, "previous", "Back one sentence (Alt+Left)"
        )
        self.previous_action.setShortcut(QKeySequence("Alt+Left"))
        self.next_action = self._action(
            "Next sentence", self.next_sentence, "next", "Forward one sentence (Alt+Right)"
        )
        self.next_action.setShortcut(QKeySequence("Alt+Right"))
        self.read_action = self._action(
            "Read from cursor or selection", lambda: self.start_reading("auto")
        )
        self.read_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.read_all_action = self._action("Read all", lambda: self.start_reading("all"))
        self.read_cursor_action = self._action(
            "Read from the cursor", lambda: self.start_reading("cursor")
        )
        self.read_selection_action = self._action(
            "Read the selection", lambda: self.start_reading("selection")
        )

        self.clone_action = self._action(
            "Clone from sample…",
            self.clone_from_sample_dialog,
            "clone",
            "Make a voice from about 6 seconds of recorded speech (or drop the file anywhere)",
        )
        self.rename_voice_action = self._action("Rename…", self.rename_voice)
        self.remove_voice_action = self._action("Remove", self.remove_voice)
        self.import_voice_action = self._action("Import voice file…", self.import_voice)
        self.export_voice_action = self._action("Export voice file…", self.export_voice)

        self.preferences_action = self._action(
            "&Preferences…",
            self.open_preferences,
            None,
            "The engine (this computer or a server), device and precision",
        )
        self.preferences_action.setShortcut(QKeySequence("Ctrl+,"))
        self.preferences_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.model_setup_action = self._action("Get XTTS v2…", self.open_model_dialog)
        self.log_folder_action = self._action("Open the log folder", self.open_log_folder)
        self.about_action = self._action("About XTTS Desktop", self.show_about)

    def _build_ui(self) -> None:
        toolbar = QToolBar("Playback", self)
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(22, 22))
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
        self.addToolBar(toolbar)
        self.toolbar = toolbar
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.export_action)
        toolbar.addSeparator()
        toolbar.addAction(self.previous_action)
        toolbar.addAction(self.play_action)
        toolbar.addAction(self.stop_action)
        toolbar.addAction(self.next_action)
        toolbar.addSeparator()
        self.previous_action.setIconText("Back")
        self.next_action.setIconText("Next")
        self.export_action.setIconText("Export")
        self.open_action.setIconText("Open")

        controls = QWidget()
        grid = QHBoxLayout(controls)
        grid.setContentsMargins(6, 0, 6, 0)
        grid.setSpacing(8)
        self.voice_picker = VoicePicker()
        self.voice_picker.voiceChosen.connect(self._on_voice_chosen)
        self.clone_button = QPushButton(icon("clone"), "Clone…")
        self.clone_button.setObjectName("cloneVoiceButton")
        self.clone_button.setToolTip(self.clone_action.toolTip())
        self.clone_button.clicked.connect(self.clone_from_sample_dialog)
        self.language_combo = QComboBox()
        self.language_combo.setObjectName("languageCombo")
        self.language_combo.setToolTip("The language of the text")
        from xtts_desktop.engine.text import LANGUAGES

        for code, name in LANGUAGES.items():
            self.language_combo.addItem(name, code)
        self.language_combo.currentIndexChanged.connect(self._on_language_changed)
        self.speed_slider = QSlider(Qt.Orientation.Horizontal)
        self.speed_slider.setObjectName("speedSlider")
        self.speed_slider.setRange(50, 200)
        self.speed_slider.setSingleStep(5)
        self.speed_slider.setPageStep(25)
        self.speed_slider.setValue(100)
        self.speed_slider.setFixedWidth(110)
        self.speed_slider.setToolTip("Speaking speed, 0.5× to 2×")
        self.speed_label = QLabel("1.00×")
        self.speed_label.setObjectName("speedLabel")
        self.speed_label.setMinimumWidth(
            self.speed_label.fontMetrics().horizontalAdvance("2.00×") + 4
        )
        self.speed_slider.valueChanged.connect(self._on_speed_changed)
        grid.addWidget(self._caption("Voice"))
        grid.addWidget(self.voice_picker)
        grid.addWidget(self.clone_button)
        grid.addSpacing(10)
        grid.addWidget(self._caption("Language"))
        grid.addWidget(self.language_combo)
        grid.addSpacing(10)
        grid.addWidget(self._caption("Speed"))
        grid.addWidget(self.speed_slider)
        grid.addWidget(self.speed_label)
        toolbar.addWidget(controls)

        for action, name in (
            (self.play_action, "playButton"),
            (self.stop_action, "stopButton"),
            (self.export_action, "exportButton"),
            (self.open_action, "openButton"),
            (self.previous_action, "previousButton"),
            (self.next_action, "nextButton"),
        ):
            toolbar.widgetForAction(action).setObjectName(name)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(10, 8, 10, 6)
        layout.setSpacing(8)
        self.message_bar = MessageBar()
        layout.addWidget(self.message_bar)
        self.text_view = TextView()
        self.text_view.filesDropped.connect(self.handle_files)
        self.text_view.clickedAt.connect(self._on_text_clicked)
        self.text_view.textChanged.connect(self._on_text_changed)
        layout.addWidget(self.text_view, 1)

        bottom = QHBoxLayout()
        bottom.setSpacing(12)
        self.latency_panel = LatencyPanel()
        self.latency_label = self.latency_panel.label
        bottom.addWidget(self.latency_panel, 1)
        output_box = QVBoxLayout()
        output_box.setSpacing(2)
        output_box.addWidget(self._caption("Output device"))
        self.output_combo = QComboBox()
        self.output_combo.setObjectName("outputDeviceCombo")
        self.output_combo.setToolTip("Where the speech is played")
        self.output_combo.setMinimumWidth(200)
        self.output_combo.addItem("System default", "")
        self.output_combo.currentIndexChanged.connect(self._on_output_changed)
        output_box.addWidget(self.output_combo)
        output_box.addStretch(1)
        bottom.addLayout(output_box)
        layout.addLayout(bottom)
        self.setCentralWidget(central)

        status = self.statusBar()
        status.setObjectName("statusBar")
        self.export_progress = QProgressBar()
        self.export_progress.setObjectName("exportProgress")
        self.export_progress.setFixedWidth(180)
        self.export_progress.setRange(0, 100)
        self.export_progress.setFormat("Exporting %p%")
        self.export_cancel_button = QPushButton("Cancel")
        self.export_cancel_button.setObjectName("exportCancelButton")
        self.export_cancel_button.clicked.connect(self.cancel_export)
        self.export_progress.hide()
        self.export_cancel_button.hide()
        self.model_state_label = QLabel("Starting…")
        self.model_state_label.setObjectName("modelStateLabel")
        status.addPermanentWidget(self.export_progress)
        status.addPermanentWidget(self.export_cancel_button)
        status.addPermanentWidget(self.model_state_label)

    @staticmethod
    def _caption(text: str) -> QLabel:
        label = QLabel(text)
        label.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Preferred)
        label.setStyleSheet("color: palette(placeholder-text);")
        return label

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addAction(self.open_action)
        file_menu.addAction(self.export_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = bar.addMenu("&Edit")
        edit_menu.addAction(self.preferences_action)
        play_menu = bar.addMenu("&Playback")
        for action in (self.play_action, self.stop_action):
            play_menu.addAction(action)
        play_menu.addSeparator()
        for action in (
            self.read_action,
            self.read_all_action,
            self.read_cursor_action,
            self.read_selection_action,
        ):
            play_menu.addAction(action)
        play_menu.addSeparator()
        play_menu.addAction(self.previous_action)
        play_menu.addAction(self.next_action)
        voice_menu = bar.addMenu("&Voice")
        voice_menu.addAction(self.clone_action)
        voice_menu.addSeparator()
        voice_menu.addAction(self.rename_voice_action)
        voice_menu.addAction(self.remove_voice_action)
        voice_menu.addSeparator()
        voice_menu.addAction(self.import_voice_action)
        voice_menu.addAction(self.export_voice_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.model_setup_action)
        help_menu.addAction(self.log_folder_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _build_shortcuts(self) -> None:
        # Space and Esc as window shortcuts: a focused text area takes Space as typing
        # (QTextEdit claims printable keys through ShortcutOverride), as it should.
        self.space_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Space), self)
        self.space_shortcut.activated.connect(self._on_space)
        self.escape_shortcut = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        self.escape_shortcut.activated.connect(self.stop)

    def _connect_worker(self) -> None:
        worker = self.worker
        worker.modelStatus.connect(self._on_model_status)
        worker.modelReady.connect(self._on_model_ready)
        worker.modelFailed.connect(self._on_model_failed)
        worker.outputDevicesListed.connect(self._on_output_devices)
        worker.segmentsPlanned.connect(self._on_segments_planned)
        worker.playbackStarted.connect(self._on_playback_started)
        worker.chunkQueued.connect(self._on_chunk_queued)
        worker.statsUpdated.connect(self._on_stats)
        worker.jobFinished.connect(self._on_job_finished)
        worker.jobCancelled.connect(self._on_job_cancelled)
        worker.jobFailed.connect(self._on_job_failed)

    # ----- settings ---------------------------------------------------------------------

    def _apply_settings(self) -> None:
        s = self.settings
        if s.window_geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.window_geometry.encode("ascii", "ignore")))
        else:
            self.resize(1060, 700)
        from xtts_desktop.engine.text import normalize_language

        try:
            language = normalize_language(s.language)
        except UserError:
            language = "en"
        row = self.language_combo.findData(language)
        self.language_combo.blockSignals(True)
        self.language_combo.setCurrentIndex(max(0, row))
        self.language_combo.blockSignals(False)
        self.speed_slider.blockSignals(True)
        self.speed_slider.setValue(round(s.speed * 100))
        self.speed_slider.blockSignals(False)
        self.speed_label.setText(f"{s.speed:.2f}×")
        self._refresh_voices(select=s.voice)

    def _schedule_save(self) -> None:
        if not self._shut_down:
            self._save_timer.start()

    def save_settings(self) -> None:
        """Write the settings now (a small atomic write: fine on the GUI thread)."""
        try:
            config.save_settings(self.settings)
        except OSError as error:
            logger.warning("saving the settings failed: %s", error)
            if not self._settings_error_shown:
                self._settings_error_shown = True
                self.show_error(f"The settings could not be saved ({error}).")

    def _update_setting(self, **changes: Any) -> None:
        self.settings = self.settings.replace(**changes)
        self._schedule_save()

    # ----- small helpers ----------------------------------------------------------------

    @property
    def is_model_ready(self) -> bool:
        return self.model_info is not None

    @property
    def play_state(self) -> str:
        return self._play_state

    def current_language(self) -> str:
        return self.language_combo.currentData() or "en"

    def current_speed(self) -> float:
        return self.speed_slider.value() / 100.0

    def current_output_device(self) -> str:
        return self.output_combo.currentData() or ""

    def show_status(self, text: str, timeout_ms: int = 6000) -> None:
        self.statusBar().showMessage(text, timeout_ms)

    def show_error(self, text: str) -> None:
        """A problem for the person: inline, never a modal dialog, never a traceback."""
        self.message_bar.show_message(text, "error")
        self.statusBar().showMessage(text, 10000)

    def _set_play_state(self, state: str) -> None:
        if state != self._play_state:
            self._play_state = state
            self.playStateChanged.emit(state)
        self._update_actions()

    def _update_actions(self) -> None:
        ready = self.is_model_ready
        exporting = self.export_job is not None
        state = self._play_state
        self.play_action.setEnabled(ready and not exporting)
        for action in (
            self.read_action,
            self.read_all_action,
            self.read_cursor_action,
            self.read_selection_action,
        ):
            action.setEnabled(ready and not exporting)
        self.stop_action.setEnabled(state != "idle")
        self.previous_action.setEnabled(ready and not exporting)
        self.next_action.setEnabled(ready and not exporting)
        self.export_action.setEnabled(ready and not exporting)
        if state == "playing" or state == "starting":
            self.play_action.setText("Pause")
            self.play_action.setIcon(icon("pause"))
        elif state == "paused":
            self.play_action.setText("Resume")
            self.play_action.setIcon(icon("play"))
        else:
            self.play_action.setText("Play")
            self.play_action.setIcon(icon("play"))
        # The Voice menu edits this computer's library: not the voices a server lists.
        local = not self.uses_server
        saved = self.voice_picker.current_kind() == "saved" and local
        self.rename_voice_action.setEnabled(saved)
        self.remove_voice_action.setEnabled(saved)
        self.export_voice_action.setEnabled(saved)
        self.import_voice_action.setEnabled(local)
        self.clone_button.setToolTip(
            self.clone_action.toolTip() if local else CLONE_NEEDS_LOCAL.replace("`", "")
        )

    def _engine_label(self) -> str:
        info = self.model_info
        return f"{info.device_label} {info.precision}".strip() if info else ""

    @property
    def uses_server(self) -> bool:
        """Whether the chosen engine is a server (connected or not)."""
        return self.settings.engine == "server"

    def _engine_choice(self, model_dir: str | None = None) -> EngineChoice:
        s = self.settings
        if self.uses_server:
            return EngineChoice("server", server_url=s.server_url, api_key=s.server_api_key)
        return EngineChoice("local", model_dir, self.device, self.precision)

    # ----- preferences ------------------------------------------------------------------

    def open_preferences(self):
        """Edit > Preferences…: a window-modal dialog that does not block the event loop."""
        from xtts_desktop.gui.preferences import Preferences, PreferencesDialog

        preferences = Preferences.from_settings(self.settings)
        if self.preferences_dialog is None:
            self.preferences_dialog = PreferencesDialog(preferences, self)
            self.preferences_dialog.applied.connect(self.apply_preferences)
        else:
            self.preferences_dialog.set_preferences(preferences)
        self.preferences_dialog.open()
        return self.preferences_dialog

    @Slot(object)
    def apply_preferences(self, preferences: Any) -> None:
        """Keep the preferences; switch the worker's engine when its choice changed (or the
        last attempt failed): the current play or export is cancelled first."""
        old = self.settings
        old_local = (self.device, self.precision)
        self.settings = old.replace(
            engine=preferences.engine,
            server_url=preferences.server_url,
            server_api_key=preferences.server_api_key,
            device=preferences.device,
            precision=preferences.precision,
        )
        self.save_settings()
        self.device, self.precision = preferences.device, preferences.precision
        if self.uses_server:
            changed = (
                old.engine != "server"
                or old.server_url != preferences.server_url
                or old.server_api_key != preferences.server_api_key
            )
        else:
            changed = old.engine == "server" or (self.device, self.precision) != old_local
        if not (changed or self.model_error):
            return
        self.stop()
        if self.export_job is not None:
            self.cancel_export()
        self._switch_engine(self._engine_choice())

    def _switch_engine(self, choice: EngineChoice) -> None:
        self.model_info = None
        self.model_error = None
        self.message_bar.dismiss()
        self.model_state_label.setText(
            "Connecting to the server…" if choice.is_server else "Loading model…"
        )
        self.model_state_label.setToolTip("")
        self._refresh_voices()
        self.latency_panel.show_idle("")
        self._update_actions()
        self.host.configure(choice)

    # ----- model ------------------------------------------------------------------------

    @Slot(str)
    def _on_model_status(self, text: str) -> None:
        self.model_state_label.setText(text)

    @Slot(object)
    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model_info = info
        self.model_error = None
        label = info.description if info.is_server else f"Ready: {info.description}"
        if info.is_random_weights:
            label += " (test model: it speaks noise)"
        self.model_state_label.setText(label)
        self.model_state_label.setToolTip(
            f"{len(info.builtin_voices)} built-in and {len(info.saved_voices)} saved voices "
            "on the server; Edit > Preferences to change it."
            if info.is_server
            else info.device_name
        )
        if info.warning:
            self.message_bar.show_message(info.warning, "info")
        self._refresh_voices()
        self.latency_panel.show_idle(self._engine_label())
        self._update_actions()
        self.modelReady.emit()

    @Slot(str)
    def _on_model_failed(self, message: str) -> None:
        self.model_error = message
        self.model_state_label.setToolTip(message)
        if self.uses_server:
            self.model_state_label.setText("No server")
            self.message_bar.show_message(
                message, "error", action=("Preferences…", self.open_preferences)
            )
        else:
            self.model_state_label.setText("No model")
            self.show_model_setup()
        self._update_actions()
        self.modelFailed.emit(message)

    def show_model_setup(self) -> None:
        """Says in the window how to get a model, with a button to the "Get XTTS v2" dialog."""
        from xtts_desktop.engine.model import HOW_TO_GET_A_MODEL

        message = self.model_error or f"To get the XTTS v2 model, {HOW_TO_GET_A_MODEL}."
        self.message_bar.show_message(
            message,
            "error" if self.model_error else "info",
            action=("Get XTTS v2…", self.open_model_dialog),
        )

    def open_model_dialog(self) -> None:
        """The licence, the download with its progress, or "Use a model folder..."; never
        modal over a running job, and the model loads in the worker once it is there."""
        from xtts_desktop.gui.download_dialog import DownloadDialog

        if self.model_dialog is not None and self.model_dialog.isVisible():
            self.model_dialog.raise_()
            return
        self.model_dialog = DownloadDialog(self, message=self.model_error)
        self.model_dialog.modelReady.connect(self._use_model_folder)
        self.model_dialog.open()

    @Slot(str)
    def _use_model_folder(self, model_dir: str) -> None:
        """A model folder chosen or downloaded: the local engine reads with it from now on."""
        self.stop()
        if self.export_job is not None:
            self.cancel_export()
        self.settings = self.settings.replace(model_dir=model_dir, engine="local")
        self.save_settings()
        self._switch_engine(self._engine_choice(model_dir))

    @Slot(object)
    def _on_output_devices(self, devices: list) -> None:
        wanted = self.settings.output_device
        self.output_combo.blockSignals(True)
        self.output_combo.clear()
        self.output_combo.addItem("System default", "")
        for device in devices:
            label = f"{device.name} ({device.hostapi})" + (
                " — default" if device.is_default else ""
            )
            self.output_combo.addItem(label, device.name)
        row = self.output_combo.findData(wanted) if wanted else 0
        if row < 0:
            self.show_status(
                f"The output device '{wanted}' is not available; using the system default."
            )
            row = 0
        self.output_combo.setCurrentIndex(row)
        self.output_combo.blockSignals(False)

    # ----- voices -----------------------------------------------------------------------

    def _library(self):
        from xtts_desktop.engine.voices import VoiceLibrary

        return VoiceLibrary(config.voices_dir())

    def _refresh_voices(self, select: str | None = None) -> None:
        info = self.model_info
        if self.uses_server:
            # The server's voices, as it listed them when the window connected.
            saved = list(info.saved_voices) if info is not None and info.is_server else []
        else:
            # Listing reads only the small header of each voice file: cheap enough here.
            try:
                saved = self._library().names()
            except OSError as error:
                logger.warning("listing the saved voices failed: %s", error)
                saved = []
        builtin = info.builtin_voices if info else ()
        self.voice_picker.set_voices(builtin, saved, select=select or self.settings.voice or None)
        self._update_actions()

    @Slot(str)
    def _on_voice_chosen(self, name: str) -> None:
        self._update_setting(voice=name)
        self._update_actions()
        self._restart_soon()

    def _on_language_changed(self, _row: int) -> None:
        self._update_setting(language=self.current_language())
        self._restart_soon()

    def _on_speed_changed(self, value: int) -> None:
        speed = value / 100.0
        self.speed_label.setText(f"{speed:.2f}×")
        self._update_setting(speed=speed)
        self._restart_soon()

    def _on_output_changed(self, _row: int) -> None:
        self._update_setting(output_device=self.current_output_device())
        self._restart_soon()

    def clone_from_sample_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Clone a voice from a sample", self.settings.last_folder, AUDIO_FILTERS
        )
        if paths:
            self._update_setting(last_folder=str(Path(paths[0]).parent))
            self.clone_from_files([Path(p) for p in paths])

    def clone_from_files(self, paths: list[Path]) -> int | None:
        """Clone one voice from the samples in the worker; returns the job id."""
        if self.uses_server:
            self.show_error(CLONE_NEEDS_LOCAL)
            return None
        if self.model_error:
            self.show_error(self.model_error)
            return None
        self.stop()
        job_id = self.control.new_job()
        self.clone_jobs[job_id] = tuple(paths)
        names = ", ".join(p.name for p in paths)
        self.show_status(f"Making a voice from {names}…", 0)
        self.host.clone(CloneRequest(job_id, tuple(paths)))
        return job_id

    def _selected_saved_voice(self) -> str | None:
        if self.voice_picker.current_kind() != "saved":
            self.show_status("Choose one of your saved voices first.")
            return None
        return self.voice_picker.current_voice()

    def rename_voice(self) -> None:
        old = self._selected_saved_voice()
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename voice", "New name:", text=old)
        if not ok or not new.strip() or new.strip() == old:
            return
        try:
            self._library().rename(old, new)
        except UserError as error:
            self.show_error(error.message)
            return
        self._refresh_voices(select=new.strip())
        self._update_setting(voice=new.strip())
        self.show_status(f"Renamed the voice '{old}' to '{new.strip()}'.")

    def remove_voice(self) -> None:
        name = self._selected_saved_voice()
        if name is None:
            return
        answer = QMessageBox.question(self, "Remove voice", f"Remove the saved voice '{name}'?")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self._library().remove(name)
        except UserError as error:
            self.show_error(error.message)
            return
        self._refresh_voices(select="")
        self.show_status(f"Removed the voice '{name}'.")

    def import_voice(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Import a voice file",
            self.settings.last_folder,
            "XTTS Desktop voices (*.safetensors)",
        )
        if not path:
            return
        try:
            voice = self._library().import_file(Path(path))
        except UserError as error:
            self.show_error(error.message)
            return
        self._refresh_voices(select=voice.name)
        self._update_setting(voice=voice.name, last_folder=str(Path(path).parent))
        self.show_status(f"Imported the voice '{voice.name}'.")

    def export_voice(self) -> None:
        name = self._selected_saved_voice()
        if name is None:
            return
        start = Path(self.settings.last_folder or Path.home()) / f"{name}.safetensors"
        path, _ = QFileDialog.getSaveFileName(
            self, "Export the voice", str(start), "XTTS Desktop voices (*.safetensors)"
        )
        if not path:
            return
        target = Path(path) if Path(path).suffix == ".safetensors" else Path(path + ".safetensors")
        try:
            self._library().export_file(name, target)
        except (UserError, OSError) as error:
            self.show_error(
                getattr(error, "message", None) or f"The voice could not be exported ({error})."
            )
            return
        self._update_setting(last_folder=str(target.parent))
        self.show_status(f"Exported the voice '{name}' to {target}.")

    # ----- files ------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event) -> None:  # noqa: N802 (Qt override)
        if local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802 (Qt override)
        files = local_files(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.handle_files(files)
        else:
            super().dropEvent(event)

    @Slot(object)
    def handle_files(self, paths: list[Path]) -> None:
        """Dropped or pasted files: audio makes a voice, a document opens; never a dialog."""
        audio, documents, other = classify_files(paths)
        if audio:
            self.clone_from_files(audio)
        elif documents:
            self.open_document(documents[0])
        elif other:
            self.show_error(
                f"{other[0].name} is neither a voice sample (WAV, FLAC, OGG, MP3…) nor a document "
                "(TXT, Markdown, HTML, EPUB)."
            )

    def open_document_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a document", self.settings.last_folder, DOCUMENT_FILTERS
        )
        if path:
            self.open_document(Path(path))

    def open_document(self, path: Path) -> None:
        """Read the document on a pool thread; its text replaces the window's when it arrives."""
        path = Path(path)
        self.show_status(f"Opening {path.name}…", 0)
        self.tasks.submit(
            lambda: _read_document(path),
            lambda text: self._on_document_read(path, text),
            lambda message: self.show_error(message),
        )

    def _on_document_read(self, path: Path, text: str) -> None:
        self.stop()
        self.text_view.setPlainText(text)
        self.text_view.move_cursor_to(0)
        self.setWindowTitle(f"{path.name} — {APP_TITLE}")
        self._update_setting(last_folder=str(path.parent))
        self.show_status(f"Opened {path.name} ({len(text):,} characters).")
        self.documentOpened.emit(str(path))

    def export_audio_dialog(self) -> None:
        if not self.is_model_ready or self.export_job is not None:
            return
        text, span = self._text_and_span("selection_or_all")
        if not text.strip():
            self.show_error("There is nothing to export: the text is empty.")
            return
        folder = Path(self.settings.last_folder) if self.settings.last_folder else Path.home()
        path, chosen_filter = QFileDialog.getSaveFileName(
            self, "Export audio", str(folder / "speech.wav"), EXPORT_FILTERS
        )
        if not path:
            return
        target = Path(path)
        if not target.suffix:
            suffix = next((s for s in EXPORT_SUFFIXES if s[1:] in chosen_filter.lower()), ".wav")
            target = target.with_name(target.name + suffix)
        if target.suffix.lower() not in EXPORT_SUFFIXES:
            self.show_error(f"{target.name}: choose a .wav, .flac or .ogg file name.")
            return
        self._update_setting(last_folder=str(target.parent))
        self.export_to(target, text, span)

    def export_to(self, path: Path, text: str | None = None, span: TextRange | None = None) -> int:
        """Render the text (or a span of it) to ``path`` in the worker; returns the job id."""
        if text is None:
            text, span = self._text_and_span("selection_or_all")
        self.stop()
        job_id = self.control.new_job()
        self.export_job = (job_id, Path(path))
        request = ExportRequest(
            job_id,
            text,
            self.current_language(),
            self.voice_picker.current_voice(),
            self.current_speed(),
            Path(path),
            span or TextRange(),
        )
        self.export_progress.setValue(0)
        self.export_progress.setFormat("Exporting %p%")
        self.export_progress.show()
        self.export_cancel_button.setEnabled(True)
        self.export_cancel_button.show()
        self.show_status(f"Exporting to {Path(path).name}…", 0)
        self._update_actions()
        self.host.export(request)
        return job_id

    def cancel_export(self) -> None:
        if self.export_job is None:
            return
        self.control.cancel(self.export_job[0])
        self.export_progress.setFormat("Cancelling…")
        self.export_cancel_button.setEnabled(False)

    def _end_export(self) -> None:
        self.export_job = None
        self.export_progress.hide()
        self.export_cancel_button.hide()
        self._update_actions()

    def open_log_folder(self) -> None:
        folder = config.log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    def show_about(self) -> None:
        QMessageBox.about(
            self,
            "About XTTS Desktop",
            "<b>XTTS Desktop</b><br>Reads text aloud with Coqui XTTS v2, streaming from your own "
            "GPU.<br><br>The XTTS v2 weights are under the Coqui Public Model License "
            "(non-commercial use).",
        )

    # ----- reading ----------------------------------------------------------------------

    def _text_and_span(self, mode: str) -> tuple[str, TextRange]:
        """What a job reads for ``mode``: "all", "cursor", "selection", "selection_or_all",
        or "auto" (the selection, else from the cursor, else everything)."""
        text = self.text_view.toPlainText()
        selection = self.text_view.selection_range()
        if (
            mode in ("selection", "selection_or_all", "auto")
            and selection
            and selection[0] < selection[1]
        ):
            return text, TextRange(selection[0], selection[1], selection[0])
        cursor = self.text_view.cursor_index()
        if mode == "cursor" or (mode == "auto" and cursor < len(text.rstrip())):
            return text, TextRange(0, None, cursor)
        return text, TextRange()

    def start_reading(self, mode: str = "auto") -> int | None:
        """Read the selection, from the cursor, or all of it ("auto": selection, else cursor
        unless it sits at the end, else all). Returns the job id."""
        pressed_at = time.perf_counter()
        if not self.is_model_ready:
            waiting = (
                "Connecting to the server; Play works once it answers."
                if self.uses_server
                else "The model is still loading; Play works once it is ready."
            )
            self.show_error(self.model_error or waiting)
            return None
        if self.export_job is not None:
            self.show_status("Wait for the export to finish, or cancel it.")
            return None
        if mode == "selection" and not self.text_view.selection_range():
            self.show_status("Select some text first.")
            return None
        text, span = self._text_and_span(mode)
        if not text.strip():
            self.show_error("There is nothing to read: the text is empty.")
            return None
        return self._start_play(text, span, pressed_at)

    def _start_play(self, text: str, span: TextRange, pressed_at: float | None = None) -> int:
        pressed_at = time.perf_counter() if pressed_at is None else pressed_at
        self._cancel_play()
        job_id = self.control.new_job()
        request = PlayRequest(
            job_id,
            text,
            self.current_language(),
            self.voice_picker.current_voice(),
            self.current_speed(),
            self.current_output_device(),
            span,
            pressed_at,
        )
        self.play_job = PlayJob(request)
        self.latency_panel.plot.clear()
        self.latency_panel.show_reading(LatencyReading(engine=self._engine_label()))
        self.host.play(request)
        self._refresh_timer.start()
        self._set_play_state("starting")
        return job_id

    def _cancel_play(self) -> None:
        """Cancel the current play at once: its job id goes stale and the audio stops."""
        job = self.play_job
        if job is None:
            return
        self.control.cancel(job.job_id)
        # Stop whichever player the worker uses now (it may not have told us yet).
        player = self.worker.player
        if player is not None:
            player.stop()
        self.play_job = None
        self._restart_timer.stop()
        self.text_view.clear_highlight()

    def stop(self) -> None:
        if self.play_job is None:
            return
        self._cancel_play()
        self._refresh_timer.stop()
        self._set_play_state("idle")
        self.show_status("Stopped.", 3000)

    def toggle_play_pause(self) -> None:
        job = self.play_job
        player = job.player if job is not None else None
        if job is None or job.text_changed:
            self.start_reading("auto")  # new text: Play reads it, cancelling the old job
        elif player is None:
            return  # starting: the next press pauses
        elif self._play_state == "paused":
            player.resume()
            self._set_play_state("playing")
        else:
            player.pause()
            self._set_play_state("paused")

    def _on_space(self) -> None:
        if self.text_view.hasFocus():
            return
        self.toggle_play_pause()

    def _audible_segment(self, job: PlayJob) -> int | None:
        player = job.player
        if player is not None and player.first_sample_time is not None:
            chunk = job.chunk_at(player.audible_position())
            if chunk is not None:
                return chunk.segment_index
        return None

    def _current_segment(self, job: PlayJob) -> int | None:
        """The segment being heard, else the first one the job reads."""
        audible = self._audible_segment(job)
        if audible is not None:
            return audible
        first = job.segment_at_char(job.request.span.from_char)
        return first.index if first is not None else (0 if job.segments else None)

    def jump_to_segment(self, index: int) -> int | None:
        """Restart the current play at segment ``index`` of its plan."""
        job = self.play_job
        if job is None or job.text_changed or not (0 <= index < len(job.segments)):
            return None
        request = job.request
        span = TextRange(request.span.start, request.span.end, job.segments[index].start)
        return self._start_play(request.text, span)

    def previous_sentence(self) -> None:
        self._step_sentence(-1)

    def next_sentence(self) -> None:
        self._step_sentence(+1)

    def _step_sentence(self, step: int) -> None:
        job = self.play_job
        if job is not None and job.segments and not job.text_changed:
            current = self._current_segment(job)
            target = (current if current is not None else 0) + step
            if 0 <= target < len(job.segments):
                self.jump_to_segment(target)
            elif step < 0:
                self.jump_to_segment(0)
            return
        # Not playing: move the cursor by the sentences of the last play of this text.
        if not self._last_segments or self._last_segments[0] != self.text_view.toPlainText():
            return
        segments = self._last_segments[1]
        cursor = self.text_view.cursor_index()
        containing = max((s.index for s in segments if s.start <= cursor), default=-1)
        if step > 0:
            target = containing + 1
        elif containing >= 0 and cursor > segments[containing].start:
            target = containing  # first back to the start of this sentence
        else:
            target = containing - 1
        if 0 <= target < len(segments):
            self.text_view.move_cursor_to(segments[target].start)

    @Slot(int)
    def _on_text_clicked(self, index: int) -> None:
        job = self.play_job
        if job is None or job.text_changed or not job.segments:
            return
        target = job.segment_at_char(index)
        if target is None or index < target.start:
            return  # between sentences or past the end: only the cursor moves
        if target.index != self._current_segment(job):
            self.jump_to_segment(target.index)

    def _on_text_changed(self) -> None:
        job = self.play_job
        if job is not None and not job.text_changed:
            job.text_changed = True
            self.text_view.clear_highlight()

    def _restart_soon(self) -> None:
        if self.play_job is not None and not self._shut_down:
            self._restart_timer.start()

    def _restart_current_segment(self) -> None:
        job = self.play_job
        if job is None or job.text_changed or not job.segments:
            return
        current = self._current_segment(job)
        if current is not None:
            self.jump_to_segment(current)

    # ----- worker reports ---------------------------------------------------------------

    def _current_play(self, job_id: int) -> PlayJob | None:
        job = self.play_job
        return job if job is not None and job.job_id == job_id else None

    @Slot(int, object, int)
    def _on_segments_planned(
        self, job_id: int, segments: tuple[SegmentSpan, ...], _first: int
    ) -> None:
        job = self._current_play(job_id)
        if job is not None:
            job.segments = segments
            self._last_segments = (job.request.text, segments)

    @Slot(int, object)
    def _on_playback_started(self, job_id: int, player: Any) -> None:
        job = self._current_play(job_id)
        if job is None:
            return
        job.player = player
        self.latency_panel.plot.capacity_s = player.capacity_seconds
        self._set_play_state("playing")

    @Slot(int, object)
    def _on_chunk_queued(self, job_id: int, chunk: ChunkSpan) -> None:
        job = self._current_play(job_id)
        if job is not None:
            job.add_chunk(chunk)

    @Slot(int, object)
    def _on_stats(self, job_id: int, stats: JobStats) -> None:
        job = self._current_play(job_id)
        if job is not None:
            job.stats = stats
            return
        if self.export_job is not None and self.export_job[0] == job_id and stats.segments:
            self.export_progress.setValue(round(100 * stats.segments_done / stats.segments))

    @Slot(int, object)
    def _on_job_finished(self, job_id: int, result: JobResult) -> None:
        if result.kind == "play":
            job = self._current_play(job_id)
            if job is not None:
                job.synthesis_done = True
                job.stats = result.stats
        elif (
            result.kind == "export" and self.export_job is not None and self.export_job[0] == job_id
        ):
            self._end_export()
            seconds = result.stats.audio_seconds if result.stats else 0.0
            self.show_status(f"Saved {seconds:.1f} s of audio to {result.path}.", 10000)
        elif result.kind == "clone" and self.clone_jobs.pop(job_id, None) is not None:
            name = result.voice_name or ""
            self._refresh_voices(select=name)
            self.voice_picker.select_voice(name)
            self._update_setting(voice=name)
            self.show_status(
                f"The new voice '{name}' is ready (rename it from the Voice menu).", 10000
            )

    @Slot(int)
    def _on_job_cancelled(self, job_id: int) -> None:
        if self.export_job is not None and self.export_job[0] == job_id:
            self._end_export()
            self.show_status("Export cancelled; no file was written.")
        elif self.clone_jobs.pop(job_id, None) is not None:
            self.show_status("Cloning cancelled.")

    @Slot(int, str)
    def _on_job_failed(self, job_id: int, message: str) -> None:
        if self._current_play(job_id) is not None:
            self.play_job = None
            self.text_view.clear_highlight()
            self._refresh_timer.stop()
            self._set_play_state("idle")
            self.show_error(message)
        elif self.export_job is not None and self.export_job[0] == job_id:
            self._end_export()
            self.show_error(message)
        elif self.clone_jobs.pop(job_id, None) is not None:
            self.show_status("", 1)
            self.show_error(message)

    # ----- the 25 Hz refresh ------------------------------------------------------------

    def _refresh(self) -> None:
        from xtts_desktop.audio.player import PlaybackState

        job = self.play_job
        if job is None:
            self._refresh_timer.stop()
            return
        player = job.player
        stats = job.stats
        if player is None:
            self.latency_panel.show_reading(
                LatencyReading(rtf=stats.rtf if stats else None, engine=self._engine_label())
            )
            return
        position = player.audible_position()
        first_sample = player.first_sample_time
        audible = player.first_audible_time
        if audible is not None and time.perf_counter() >= audible and not job.text_changed:
            chunk = job.chunk_at(position)
            if chunk is not None:
                self.text_view.set_highlight(chunk.start, chunk.end)
        reading = LatencyReading(
            time_to_first_audio_ms=(first_sample - job.request.pressed_at) * 1000
            if first_sample
            else None,
            output_latency_ms=player.output_latency * 1000,
            rtf=stats.rtf if stats else None,
            buffered_seconds=player.buffered_seconds,
            underruns=player.underruns,
            engine=self._engine_label(),
        )
        self.latency_panel.show_reading(reading)
        self.latency_panel.plot.add(reading.buffered_seconds, reading.underruns)

        state = player.state
        if state is PlaybackState.FAILED:
            # The device is gone: the worker stops making audio nobody can hear.
            self.control.cancel(job.job_id)
            self.play_job = None
            self.text_view.clear_highlight()
            self._refresh_timer.stop()
            self._set_play_state("idle")
            self.show_error(player.error or "The audio device stopped.")
            return
        drained = state in (
            PlaybackState.FINISHED,
            PlaybackState.STOPPED,
            PlaybackState.CLOSED,
        ) or (player.input_ended and not player.is_playing and not player.is_paused)
        if job.synthesis_done and drained and position >= player.samples_played:
            self.play_job = None
            self.text_view.clear_highlight()
            self._refresh_timer.stop()
            self._set_play_state("idle")
            self.show_status("Finished reading.", 4000)
        elif self._play_state == "playing" and player.is_paused:
            self._set_play_state("paused")

    # ----- shutdown ---------------------------------------------------------------------

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt override)
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Cancel the job, stop the audio, stop and wait for the thread, save settings. Once."""
        if self._shut_down:
            return
        self._shut_down = True
        for timer in (self._refresh_timer, self._save_timer, self._restart_timer):
            timer.stop()
        geometry = bytes(self.saveGeometry().toBase64().data()).decode("ascii")
        self.settings = self.settings.replace(window_geometry=geometry)
        self.save_settings()
        self.hide()
        if self.model_dialog is not None:
            self.model_dialog.shutdown()
        if self.preferences_dialog is not None:
            self.preferences_dialog.shutdown()
        self.play_job = None
        self.tasks.shutdown()
        self.host.shutdown()
