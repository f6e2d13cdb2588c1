"""Fixtures for the window tests: windows on the tiny model, a responsive null sink, drops."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import xtts_desktop.gui  # noqa: E402  (installs the PySide6 reference fix before any signal)

# Generous: the CPU is shared, and random weights decode slower than real time on 2 cores.
MODEL_TIMEOUT_MS = 180_000
AUDIO_TIMEOUT_MS = 120_000


@pytest.fixture
def make_window(qtbot) -> Callable[..., object]:
    """Builds windows that pytest-qt closes (and so shuts down) after the test."""

    def make(**kwargs):
        window = xtts_desktop.gui.create_window(**kwargs)
        qtbot.addWidget(window)
        return window

    return make


@pytest.fixture
def ready_window(make_window, qtbot, tiny_model) -> object:
    """A window on the session's tiny model (loaded once), ready to play."""
    window = make_window(device="cpu", loaded=tiny_model, warm_up=False)
    # Short chunks: the first audio comes sooner on the slow random-weight decoder.
    window.worker.generation_overrides = {"first_chunk_tokens": 4, "chunk_tokens": 8}
    qtbot.waitUntil(lambda: window.is_model_ready, timeout=MODEL_TIMEOUT_MS)
    return window


class SignalLog:
    """Every emission of a signal with its arguments and time, from any thread.

    The worker's signals come from its own thread; pytest-qt's waitSignal would then stop
    its timer from that thread, so tests record emissions here and wait with waitUntil.
    """

    def __init__(self, signal) -> None:
        self._lock = threading.Lock()
        self._calls: list[tuple[float, tuple]] = []
        signal.connect(self._record)

    def _record(self, *args) -> None:
        with self._lock:
            self._calls.append((time.perf_counter(), args))

    @property
    def calls(self) -> list[tuple[float, tuple]]:
        with self._lock:
            return list(self._calls)

    def args(self) -> list[tuple]:
        return [args for _, args in self.calls]

    def first(self, predicate: Callable[..., bool]) -> tuple | None:
        return next((args for args in self.args() if predicate(*args)), None)


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0


def loudest_window_rms(samples: np.ndarray, rate: int, seconds: float = 0.1) -> float:
    size = max(1, int(rate * seconds))
    usable = len(samples) // size * size
    if usable == 0:
        return rms(samples)
    frames = samples[:usable].reshape(-1, size).astype(np.float64)
    return float(np.sqrt(np.mean(frames**2, axis=1)).max())


def drop_files(widget, paths: list[Path], *, with_text: bool = True) -> bool:
    """A real drag-enter, drag-move and drop of file URLs on ``widget``; returns whether the
    drop was accepted. Like a file manager, the data also carries the paths as text."""
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    if with_text:
        mime.setText("\n".join(str(path) for path in paths))
    center = widget.rect().center()
    action = Qt.DropAction.CopyAction
    buttons = Qt.MouseButton.LeftButton
    modifiers = Qt.KeyboardModifier.NoModifier
    enter = QDragEnterEvent(center, action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, enter)
    move = QDragMoveEvent(center, action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, move)
    drop = QDropEvent(QPointF(center), action, mime, buttons, modifiers)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()
