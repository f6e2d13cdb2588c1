"""The application shell: an unexpected error in a slot is logged with its traceback, not fatal."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
from PySide6.QtCore import QTimer

from xtts_desktop import config
from xtts_desktop.gui import app


@pytest.mark.qt_no_exception_capture
def test_an_error_in_a_slot_is_logged_with_its_traceback(qtbot):
    root = logging.getLogger()
    handlers_before = list(root.handlers)
    hook_before = sys.excepthook
    thread_hook_before = threading.excepthook
    try:
        path = app.setup_logging()
        hook = app.install_exception_hooks(show_dialog=False)
        assert sys.excepthook is hook and path == config.log_dir() / "xtts-desktop.log"
        ran = []

        def broken_slot() -> None:
            ran.append(True)
            raise RuntimeError("a bug in a slot")

        QTimer.singleShot(0, broken_slot)
        qtbot.waitUntil(lambda: bool(ran))
        for handler in root.handlers:
            handler.flush()
        qtbot.waitUntil(lambda: "a bug in a slot" in path.read_text(encoding="utf-8"))
        logged = path.read_text(encoding="utf-8")
        assert "Traceback" in logged and "broken_slot" in logged
        assert "CRITICAL" in logged
    finally:
        sys.excepthook = hook_before
        threading.excepthook = thread_hook_before
        for handler in list(root.handlers):
            if handler not in handlers_before:
                root.removeHandler(handler)
                handler.close()
