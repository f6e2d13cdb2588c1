"""The latency panel: first audio, RTF, buffer ahead, underruns, and a live plot of the buffer."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget


@dataclass(frozen=True)
class LatencyReading:
    """One refresh of the panel (a timer tick), all in the units shown."""

    time_to_first_audio_ms: float | None = None
    output_latency_ms: float | None = None
    rtf: float | None = None
    buffered_seconds: float = 0.0
    underruns: int = 0
    engine: str = ""  # "CPU fp32", "NVIDIA H100 fp16"


def format_reading(reading: LatencyReading) -> str:
    """'First audio 412 ms (+ device 35 ms) · RTF 0.42 · 1.8 s ahead · 0 underruns · CPU fp32'."""
    if reading.time_to_first_audio_ms is None:
        first = "First audio …"
    else:
        first = f"First audio {reading.time_to_first_audio_ms:.0f} ms"
        if reading.output_latency_ms is not None:
            first += f" (+ device {reading.output_latency_ms:.0f} ms)"
    rtf = "RTF –" if reading.rtf is None else f"RTF {reading.rtf:.2f}"
    underruns = f"{reading.underruns} underrun" + ("" if reading.underruns == 1 else "s")
    parts = [first, rtf, f"{reading.buffered_seconds:.1f} s ahead", underruns]
    if reading.engine:
        parts.append(reading.engine)
    return " · ".join(parts)


class BufferPlot(QWidget):
    """Seconds of audio buffered ahead over the last `window_s` seconds, drawn with QPainter.

    A curve that stays up means synthesis keeps ahead of playback; one that sinks to zero
    (with a red band where underruns happened) means the listener hears gaps.
    """

    def __init__(self, window_s: float = 20.0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("bufferPlot")
        self.window_s = window_s
        self.capacity_s = 2.0
        self._points: deque[tuple[float, float]] = deque()
        # (start, end) of the refresh intervals in which the player ran dry.
        self._underrun_spans: deque[list[float]] = deque()
        self._last_underruns = 0
        self.setMinimumHeight(64)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Audio buffered ahead of the speaker. Staying up: synthesis keeps ahead. "
            "Falling to zero: playback waits for synthesis (red: underruns, audible gaps)."
        )

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt override)
        return QSize(320, 68)

    @property
    def points(self) -> list[tuple[float, float]]:
        return list(self._points)

    def clear(self) -> None:
        self._points.clear()
        self._underrun_spans.clear()
        self._last_underruns = 0
        self.update()

    def add(self, buffered_seconds: float, underruns: int = 0, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        previous = self._points[-1][0] if self._points else now
        self._points.append((now, max(0.0, buffered_seconds)))
        if underruns > self._last_underruns:
            spans = self._underrun_spans
            if spans and spans[-1][1] >= previous:
                spans[-1][1] = now  # the same dry spell goes on
            else:
                spans.append([previous, now])
        self._last_underruns = underruns
        horizon = now - self.window_s
        while self._points and self._points[0][0] < horizon:
            self._points.popleft()
        while self._underrun_spans and self._underrun_spans[0][1] < horizon:
            self._underrun_spans.popleft()
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        rect = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        background = palette.color(QPalette.ColorRole.Base)
        painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
        painter.setBrush(background)
        painter.drawRoundedRect(rect, 4, 4)

        plot = rect.adjusted(6, 6, -6, -6)
        top_value = max(self.capacity_s, max((v for _, v in self._points), default=0.0), 0.5)
        grid = QColor(palette.color(QPalette.ColorRole.Mid))
        grid.setAlpha(90)
        painter.setPen(QPen(grid, 1, Qt.PenStyle.DashLine))
        capacity_y = plot.bottom() - plot.height() * min(1.0, self.capacity_s / top_value)
        painter.drawLine(QPointF(plot.left(), capacity_y), QPointF(plot.right(), capacity_y))

        small = QFont(self.font())
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.8))
        painter.setFont(small)
        text_color = palette.color(QPalette.ColorRole.PlaceholderText)
        painter.setPen(text_color)
        painter.drawText(
            plot.adjusted(2, 0, 0, 0),
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
            f"buffer ahead (max {self.capacity_s:.1f} s, last {self.window_s:.0f} s)",
        )

        if not self._points:
            painter.end()
            return
        now = self._points[-1][0]

        def x_of(t: float) -> float:
            return plot.right() - (now - t) / self.window_s * plot.width()

        def y_of(v: float) -> float:
            return plot.bottom() - plot.height() * min(1.0, v / top_value)

        accent = palette.color(QPalette.ColorRole.Highlight)
        line = QPainterPath()
        area = QPainterPath()
        first_x = x_of(self._points[0][0])
        area.moveTo(first_x, plot.bottom())
        for i, (t, v) in enumerate(self._points):
            point = QPointF(x_of(t), y_of(v))
            if i == 0:
                line.moveTo(point)
            else:
                line.lineTo(point)
            area.lineTo(point)
        area.lineTo(x_of(now), plot.bottom())
        area.closeSubpath()
        fill = QColor(accent)
        fill.setAlpha(60)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawPath(area)
        painter.setPen(QPen(accent, 1.6))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(line)

        band = QColor("#d0312d")
        band.setAlpha(150)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(band)
        for start, end in self._underrun_spans:
            left = max(plot.left(), x_of(start))
            painter.drawRect(QRectF(left, plot.bottom() - 3, max(1.5, x_of(end) - left), 3))
        painter.end()


class LatencyPanel(QFrame):
    """The label (objectName latencyLabel) above the buffer plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("latencyPanel")
        self.label = QLabel("Press Play to measure the latency.")
        self.label.setObjectName("latencyLabel")
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setToolTip(
            "Time to first audio: from pressing Play to the first sample handed to the sound "
            "device (its own output latency beside it). RTF: synthesis time / audio time "
            "(below 1 keeps up). Ahead: audio buffered before the speaker."
        )
        self.plot = BufferPlot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        row = QHBoxLayout()
        row.setContentsMargins(2, 0, 2, 0)
        row.addWidget(self.label, 1)
        layout.addLayout(row)
        layout.addWidget(self.plot)
        self.reading: LatencyReading | None = None

    def show_reading(self, reading: LatencyReading) -> None:
        self.reading = reading
        self.label.setText(format_reading(reading))

    def show_idle(self, engine: str) -> None:
        if self.reading is None:
            self.label.setText(
                "Press Play to measure the latency." + (f" · {engine}" if engine else "")
            )
