"""Reproduces the Qt growth RELIABILITY.md names for the window's Play/Stop: a QToolButton
keeps 144 bytes every time its default action changes, and each change gets slower.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/qt_toolbutton_growth.py

No app code: a bare QToolButton with a default action; a QAction on its own and one in a
menu for comparison. Memory is malloc's bytes in use (tests/memory.py).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PySide6 import __version__ as pyside_version  # noqa: E402
from PySide6.QtGui import QAction  # noqa: E402
from PySide6.QtWidgets import QApplication, QMenu, QToolButton  # noqa: E402

from tests.memory import in_use_bytes  # noqa: E402

CHANGES = 5000
BATCHES = 4


def per_change(action: QAction) -> list[tuple[float, float]]:
    """(bytes kept, microseconds) per change of the action's text, batch by batch."""
    results = []
    for _ in range(BATCHES):
        before = in_use_bytes()
        started = time.perf_counter()
        for number in range(CHANGES):
            action.setText(f"text {number % 2}")
        elapsed = time.perf_counter() - started
        results.append(((in_use_bytes() - before) / CHANGES, elapsed / CHANGES * 1e6))
    return results


def main() -> None:
    app = QApplication.instance() or QApplication([])
    bare = QAction("bare")
    menu = QMenu()
    in_menu = QAction("in a menu", menu)
    menu.addAction(in_menu)
    button = QToolButton()
    on_button = QAction("on a tool button", button)
    button.setDefaultAction(on_button)
    print(f"PySide6 {pyside_version}; {BATCHES} batches of {CHANGES} text changes each")
    for name, action in (("bare", bare), ("in a menu", in_menu), ("tool button", on_button)):
        batches = per_change(action)
        kept = ", ".join(f"{b:.1f}" for b, _ in batches)
        speed = ", ".join(f"{us:.0f}" for _, us in batches)
        print(f"{name:12s} bytes kept per change: {kept}; microseconds per change: {speed}")
    del app


if __name__ == "__main__":
    main()
