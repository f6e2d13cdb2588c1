"""The "Get XTTS v2" dialog: licence, download with progress and Cancel, or a model folder."""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from xtts_desktop import config, download
from xtts_desktop.errors import Cancelled, UserError

logger = logging.getLogger(__name__)

# A job gets a progress callback and the cancel event, and returns the model folder.
JobFunction = Callable[[Callable[[Any], None], threading.Event], Path]

PROGRESS_STEPS = 1000  # QProgressBar holds an int: permille, not bytes (the model is ~1.9 GB)


class _Job(QObject):
    """Runs one function in the dialog's worker QThread; every signal leaves from that thread."""

    progressed = Signal(object)  # download.DownloadProgress
    succeeded = Signal(str)
    failed = Signal(str)
    cancelled = Signal(str)
    done = Signal()

    def __init__(self, function: JobFunction, cancel: threading.Event) -> None:
        super().__init__()
        self.function = function
        self.cancel = cancel

    @Slot()
    def run(self) -> None:
        try:
            folder = self.function(self.progressed.emit, self.cancel)
        except Cancelled as error:
            self.cancelled.emit(str(error) or "Cancelled.")
        except UserError as error:
            self.failed.emit(error.message)
        except Exception as error:
            logger.exception("the model setup job failed")
            self.failed.emit(
                f"Something went wrong ({type(error).__name__}: {error}); details are in "
                f"{config.log_dir() / 'xtts-desktop.log'}."
            )
        else:
            self.succeeded.emit(str(folder))
        self.done.emit()


class DownloadDialog(QDialog):
    """Get XTTS v2: agree to the licence and download it, or point at a folder already on disk.

    ``modelReady(model_dir)`` is emitted once the folder is downloaded (or checked) and
    recorded in config_dir()/model.json; the dialog then accepts. ``failed(message)`` is
    emitted for each failure, which the dialog also shows; the user may try again.
    """

    modelReady = Signal(str)
    failed = Signal(str)

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        target_dir: str | Path | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get XTTS v2")
        self.setModal(True)
        self.setMinimumWidth(560)
        self.target_dir = Path(target_dir) if target_dir else None
        self._thread: QThread | None = None
        self._job: _Job | None = None
        self._cancel = threading.Event()
        self._close_when_idle = False
        self._succeeded = False
        # The last finished thread and job, kept until the next job: never destroyed running.
        self._finished: tuple[QThread, _Job] | None = None
        self.last_progress: Any = None
        self.model_dir: str | None = None

        intro = QLabel(
            (html.escape(message) + "<br><br>" if message else "")
            + "XTTS Desktop speaks with Coqui's XTTS v2 model (about 1.9 GB). Download it from "
            "the Hugging Face Hub, or use a folder that already holds its files."
        )
        intro.setWordWrap(True)
        intro.setTextFormat(Qt.TextFormat.RichText)

        licence_box = QGroupBox(download.LICENSE_NAME)
        summary = QLabel(download.LICENSE_SUMMARY)
        summary.setWordWrap(True)
        self.license_link = QLabel(
            f'<a href="{download.LICENSE_URL}">Read the licence ({download.LICENSE_URL})</a>'
            f' · <a href="{download.LICENSE_MIRROR_URL}">a copy</a>'
        )
        self.license_link.setTextFormat(Qt.TextFormat.RichText)
        self.license_link.setOpenExternalLinks(True)
        self.agree_box = QCheckBox(
            "I agree to the Coqui Public Model License: non-commercial use only"
        )
        self.agree_box.setChecked(download.has_agreed())
        licence_layout = QVBoxLayout(licence_box)
        licence_layout.addWidget(summary)
        licence_layout.addWidget(self.license_link)
        licence_layout.addWidget(self.agree_box)

        where = self.target_dir or download.default_download_dir()
        self.location_label = QLabel(
            f"Saved in {where}" + ("" if self.target_dir else " (the Hugging Face cache, shared)")
        )
        self.location_label.setWordWrap(True)
        self.location_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, PROGRESS_STEPS)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(True)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.folder_button = QPushButton("Use a model folder…")
        self.folder_button.setToolTip(
            "Point at XTTS v2 files already on disk (checked, not copied)"
        )
        self.download_button = QPushButton("Download")
        self.download_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        buttons = QHBoxLayout()
        buttons.addWidget(self.folder_button)
        buttons.addStretch(1)
        buttons.addWidget(self.download_button)
        buttons.addWidget(self.cancel_button)

        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(licence_box)
        layout.addWidget(self.location_label)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status_label)
        layout.addLayout(buttons)

        self.agree_box.toggled.connect(self._update_buttons)
        self.download_button.clicked.connect(self.start_download)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.folder_button.clicked.connect(self.choose_folder)
        self._update_buttons()

    # ----- state ------------------------------------------------------------------------

    def is_busy(self) -> bool:
        return self._thread is not None

    def _update_buttons(self) -> None:
        busy = self.is_busy()
        self.download_button.setEnabled(not busy and self.agree_box.isChecked())
        self.agree_box.setEnabled(not busy)
        self.folder_button.setEnabled(not busy)
        self.cancel_button.setEnabled(not (busy and self._cancel.is_set()))

    def _show_status(self, text: str, error: bool = False) -> None:
        self.status_label.setStyleSheet("color: #a11;" if error else "")
        self.status_label.setText(text)

    # ----- actions ----------------------------------------------------------------------

    @Slot()
    def start_download(self) -> None:
        if self.is_busy() or not self.agree_box.isChecked():
            return
        target = self.target_dir
        agreed_before = download.has_agreed()

        def job(progress: Callable[[Any], None], cancel: threading.Event) -> Path:
            if not agreed_before:
                # Ticked in this dialog: recorded here, in the worker, before any request.
                download.record_agreement()
            return download.download_model(target, progress=progress, cancel=cancel).model_dir

        self.progress_bar.setValue(0)
        self._show_status("Asking the Hugging Face Hub for XTTS v2…")
        self._run(job)

    @Slot()
    def choose_folder(self) -> None:
        if self.is_busy():
            return
        start = str(self.target_dir or Path.home())
        chosen = QFileDialog.getExistingDirectory(
            self, "Choose the folder that holds XTTS v2", start
        )
        if not chosen:
            return
        self.use_folder(chosen)

    def use_folder(self, folder: str | Path) -> None:
        """Check a folder of XTTS v2 files in the worker and record it (nothing is copied)."""

        def job(progress: Callable[[Any], None], cancel: threading.Event) -> Path:
            return download.use_model_folder(folder)

        self._show_status(f"Checking {folder}…")
        self._run(job)

    def cancel(self) -> None:
        """Ask the running job to stop (between two blocks); the partial file is kept."""
        if self.is_busy():
            self._cancel.set()
            self._show_status("Cancelling…")
            self._update_buttons()

    @Slot()
    def _on_cancel_clicked(self) -> None:
        if self.is_busy():
            self.cancel()
        else:
            self.reject()

    def _run(self, function: JobFunction) -> None:
        self._cancel = threading.Event()
        self._succeeded = False
        thread = QThread()
        thread.setObjectName("model-setup")
        job = _Job(function, self._cancel)
        job.moveToThread(thread)
        thread.started.connect(job.run)
        job.progressed.connect(self._on_progress)
        job.succeeded.connect(self._on_succeeded)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        # Direct: QThread.quit is thread-safe, and a GUI thread waiting in shutdown() could not
        # deliver a queued call.
        job.done.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        thread.finished.connect(self._on_thread_finished)
        self._thread, self._job = thread, job
        self._update_buttons()
        thread.start()

    # ----- results (GUI thread) ---------------------------------------------------------

    @Slot(object)
    def _on_progress(self, progress: Any) -> None:
        self.last_progress = progress
        self.progress_bar.setValue(int(progress.fraction * PROGRESS_STEPS))
        if not self._cancel.is_set():
            self._show_status(
                f"{download.format_progress(progress)} — {progress.filename} "
                f"({progress.file_index} of {progress.file_count})"
            )

    @Slot(str)
    def _on_succeeded(self, folder: str) -> None:
        self.progress_bar.setValue(PROGRESS_STEPS)
        self._show_status(f"XTTS v2 is ready in {folder}.")
        self.model_dir = folder
        self._succeeded = True
        self.modelReady.emit(folder)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._show_status(message, error=True)
        self.download_button.setText("Try again")
        self.failed.emit(message)

    @Slot(str)
    def _on_cancelled(self, message: str) -> None:
        self._show_status(message)
        self.download_button.setText("Resume download")

    @Slot()
    def _on_thread_finished(self) -> None:
        thread, job = self._thread, self._job
        self._thread = self._job = None
        if thread is not None and job is not None:
            thread.wait()
            self._finished = (thread, job)
        self._update_buttons()
        if self._close_when_idle:
            self._close_when_idle = False
            super().reject()
        elif self._succeeded:
            self.accept()

    # ----- closing ----------------------------------------------------------------------

    def reject(self) -> None:
        """Escape, the close button or Cancel when idle; while busy: cancel, close when stopped."""
        if self.is_busy():
            self._close_when_idle = True
            self.cancel()
            return
        super().reject()

    def closeEvent(self, event: Any) -> None:  # noqa: N802 (Qt's name)
        if self.is_busy():
            event.ignore()
            self.reject()
            return
        super().closeEvent(event)

    def shutdown(self, timeout_s: float = 40.0) -> bool:
        """Cancel and wait for the worker (for an application that is quitting); idempotent."""
        thread = self._thread
        if thread is None:
            return True
        self._cancel.set()
        finished = thread.wait(int(timeout_s * 1000))
        if not finished:
            logger.error("the model download did not stop within %.0f s", timeout_s)
        return finished
