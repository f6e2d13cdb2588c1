"""The application: QApplication, the log file, the exception hook, main() for `xtts-desktop`."""

from __future__ import annotations

import logging
import logging.handlers
import signal
import sys
import threading
import traceback
from pathlib import Path
from types import TracebackType

from xtts_desktop import config
from xtts_desktop.errors import UserError

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "xtts-desktop.log"


def log_file() -> Path:
    return config.log_dir() / LOG_FILE_NAME


def setup_logging(level: int = logging.INFO) -> Path | None:
    """Log to the user log dir (rotated) and warnings to stderr; returns the log file."""
    root = logging.getLogger()
    root.setLevel(level)
    path: Path | None = log_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    except OSError as error:
        path = None
        print(f"xtts-desktop: cannot write the log file ({error})", file=sys.stderr)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("xtts-desktop: %(levelname)s: %(message)s"))
    root.addHandler(console)
    return path


class ExceptionHook:
    """sys.excepthook: logs the traceback to the log file and tells the person in a dialog.

    One dialog at a time (an error inside a repeating timer must not stack dialogs); a
    UserError shows its sentence without a traceback.
    """

    def __init__(self, show_dialog: bool = True) -> None:
        self.show_dialog = show_dialog
        self._dialog_open = False
        self.previous = sys.excepthook

    def __call__(
        self,
        exc_type: type[BaseException],
        exc: BaseException,
        tb: TracebackType | None,
    ) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self.previous(exc_type, exc, tb)
            return
        if isinstance(exc, UserError):
            logger.warning("%s", exc.message)
            self._dialog("XTTS Desktop", exc.message, None)
            return
        logger.critical("unexpected error", exc_info=(exc_type, exc, tb))
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        self._dialog(
            "XTTS Desktop: unexpected error",
            f"Something went wrong: {exc_type.__name__}: {exc}\n\n"
            f"The details are in {log_file()}. The window keeps running; if it misbehaves, "
            "save your text and restart it.",
            details,
        )

    def _dialog(self, title: str, text: str, details: str | None) -> None:
        if not self.show_dialog or self._dialog_open:
            return
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QApplication, QMessageBox

        if (
            QApplication.instance() is None
            or threading.current_thread() is not threading.main_thread()
        ):
            return
        box = QMessageBox(QMessageBox.Icon.Critical, title, text)
        if details:
            box.setDetailedText(details)
        self._dialog_open = True
        box.finished.connect(self._dialog_closed)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()  # window-modal but not a nested event loop

    def _dialog_closed(self, _result: int) -> None:
        self._dialog_open = False


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    logger.critical(
        "unexpected error in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def install_exception_hooks(show_dialog: bool = True) -> ExceptionHook:
    hook = ExceptionHook(show_dialog=show_dialog)
    sys.excepthook = hook
    threading.excepthook = _thread_hook
    return hook


def _first_run_offer(window) -> None:
    from xtts_desktop.engine.model import locate_model

    location = locate_model(window.settings.model_dir or None)
    if not location.path.exists() and window.model_dialog is None:
        window.open_model_dialog()


def main(model_dir: str | None = None, device: str = "auto") -> int:
    """Open the window; returns the exit code (`xtts-desktop` without a subcommand)."""
    if not logging.getLogger().handlers:  # the command line has set up the log file already
        setup_logging()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from xtts_desktop.gui import create_window
    from xtts_desktop.gui.icons import icon
    from xtts_desktop.gui.worker import wait_for_abandoned_threads

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("XTTS Desktop")
    app.setOrganizationName(config.APP_AUTHOR)
    app.setDesktopFileName("xtts-desktop")
    app.setWindowIcon(icon("xtts-desktop"))
    install_exception_hooks()
    try:
        window = create_window(model_dir=model_dir, device=device)
    except UserError as error:
        print(f"xtts-desktop: {error.message}", file=sys.stderr)
        return error.exit_code
    app.aboutToQuit.connect(window.shutdown)
    # Ctrl+C in the terminal closes the window cleanly; the timer lets Python see the signal.
    signal.signal(signal.SIGINT, lambda *_: window.close())
    wake = QTimer()
    wake.timeout.connect(lambda: None)
    wake.start(250)
    window.show()
    # First run: no model anywhere yet, so offer the download at once (never in tests, which
    # build the window with create_window and show no dialog).
    window.modelFailed.connect(lambda _message: _first_run_offer(window))
    code = app.exec()
    wake.stop()
    window.shutdown()
    wait_for_abandoned_threads()
    logger.info("exited with code %d", code)
    return int(code)
