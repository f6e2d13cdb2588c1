"""The desktop window (the only package that imports Qt); `create_window` builds it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from xtts_desktop.gui.main_window import MainWindow


def create_window(
    model_dir: str | Path | None = None,
    device: str = "auto",
    precision: str | None = None,
    *,
    loaded: Any = None,
    warm_up: bool = True,
) -> MainWindow:
    """Build the main window (a QApplication must exist). It shows no dialog and is not shown.

    The model loads in the background at once: wait for `window.modelReady` (or
    `window.is_model_ready`); a missing model emits `modelFailed` and the window says how to
    get one. ``loaded`` hands over an already loaded model (tests, a second window).
    """
    from xtts_desktop.gui.main_window import MainWindow

    return MainWindow(model_dir, device, precision, loaded=loaded, warm_up=warm_up)


__all__ = ["create_window"]
