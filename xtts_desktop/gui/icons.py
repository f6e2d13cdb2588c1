"""Toolbar and window icons: our own SVGs from resources/icons, Qt's standard icons when absent."""

from __future__ import annotations

import functools
from pathlib import Path

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QStyle

# resources/ sits beside the package in a checkout; an installed wheel may not carry it.
RESOURCES_DIR = Path(__file__).resolve().parents[2] / "resources"
ICONS_DIR = RESOURCES_DIR / "icons"

_FALLBACKS = {
    "play": QStyle.StandardPixmap.SP_MediaPlay,
    "pause": QStyle.StandardPixmap.SP_MediaPause,
    "stop": QStyle.StandardPixmap.SP_MediaStop,
    "previous": QStyle.StandardPixmap.SP_MediaSkipBackward,
    "next": QStyle.StandardPixmap.SP_MediaSkipForward,
    "open": QStyle.StandardPixmap.SP_DialogOpenButton,
    "export": QStyle.StandardPixmap.SP_DialogSaveButton,
    "clone": QStyle.StandardPixmap.SP_FileDialogNewFolder,
    "xtts-desktop": QStyle.StandardPixmap.SP_MediaVolume,
}


@functools.cache
def icon(name: str) -> QIcon:
    path = ICONS_DIR / f"{name}.svg"
    if path.is_file():
        loaded = QIcon(str(path))
        if not loaded.isNull():
            return loaded
    style = QApplication.style()
    fallback = _FALLBACKS.get(name)
    return style.standardIcon(fallback) if style is not None and fallback is not None else QIcon()
