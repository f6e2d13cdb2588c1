"""The text area: plain text, the highlight of the sentence heard, file drops that never paste."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QColor, QFont, QMouseEvent, QPalette, QTextCharFormat, QTextCursor
from PySide6.QtWidgets import QTextEdit, QWidget

AUDIO_SUFFIXES = frozenset(
    {
        ".wav",
        ".flac",
        ".ogg",
        ".oga",
        ".opus",
        ".mp3",
        ".m4a",
        ".aac",
        ".aif",
        ".aiff",
        ".wma",
        ".webm",
    }
)
DOCUMENT_SUFFIXES = frozenset(
    {".txt", ".text", ".md", ".markdown", ".html", ".htm", ".xhtml", ".epub"}
)

_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


class PositionMap:
    """Python string indices <-> Qt document positions (Qt counts UTF-16 units: an emoji is 2)."""

    def __init__(self, text: str) -> None:
        # Indices (in the Python string) of characters outside the BMP; usually none.
        self._astral = [match.start() for match in _ASTRAL.finditer(text)]

    def to_qt(self, index: int) -> int:
        if not self._astral:
            return index
        return index + bisect.bisect_left(self._astral, index)

    def from_qt(self, position: int) -> int:
        if not self._astral:
            return position
        # The n-th astral character sits at Qt position astral[n] + n.
        index = position
        for n, astral_index in enumerate(self._astral):
            if astral_index + n < position:
                index -= 1
            else:
                break
        return index


def local_files(mime: QMimeData) -> list[Path]:
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


def classify_files(paths: Sequence[Path]) -> tuple[list[Path], list[Path], list[Path]]:
    """(audio files, documents, anything else), by file name extension."""
    audio, documents, other = [], [], []
    for path in paths:
        suffix = path.suffix.lower()
        if suffix in AUDIO_SUFFIXES:
            audio.append(path)
        elif suffix in DOCUMENT_SUFFIXES:
            documents.append(path)
        else:
            other.append(path)
    return audio, documents, other


class TextView(QTextEdit):
    """A plain-text QTextEdit that highlights a character span and hands dropped files on.

    Dropped or pasted local files are never inserted as text: they are reported through
    `filesDropped` (audio to clone from, documents to open). A click that places the cursor
    (no selection) is reported through `clickedAt` with the Python string index.
    """

    filesDropped = Signal(object)  # list[Path]
    clickedAt = Signal(int)  # character index in toPlainText()
    highlightChanged = Signal(int, int)  # start, end (Python indices); -1, -1 when cleared

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("textEdit")
        self.setAcceptRichText(False)
        self.setAcceptDrops(True)
        self.setTabChangesFocus(True)
        font = QFont(self.font())
        font.setPointSizeF(max(13.0, font.pointSizeF() * 1.3))
        self.setFont(font)
        self.document().setDocumentMargin(18)
        self.setPlaceholderText(
            "Paste or type text here, open a document (Ctrl+O) or drop one on the window, "
            "then press Play (Ctrl+Enter).\n\nDrop a short recording of a voice (WAV, FLAC, OGG, "
            "MP3) to clone it."
        )
        self._highlight: tuple[int, int] | None = None
        self._position_map: PositionMap | None = None
        self.textChanged.connect(self._forget_position_map)

    # ----- text and positions -----------------------------------------------------------

    def text(self) -> str:
        return self.toPlainText()

    def _forget_position_map(self) -> None:
        self._position_map = None

    def position_map(self) -> PositionMap:
        if self._position_map is None:
            self._position_map = PositionMap(self.toPlainText())
        return self._position_map

    def cursor_index(self) -> int:
        return self.position_map().from_qt(self.textCursor().position())

    def selection_range(self) -> tuple[int, int] | None:
        """The selection as Python indices, or None when nothing is selected."""
        cursor = self.textCursor()
        if not cursor.hasSelection():
            return None
        mapping = self.position_map()
        return mapping.from_qt(cursor.selectionStart()), mapping.from_qt(cursor.selectionEnd())

    def move_cursor_to(self, index: int) -> None:
        cursor = self.textCursor()
        cursor.setPosition(self.position_map().to_qt(index))
        self.setTextCursor(cursor)

    # ----- the highlight ----------------------------------------------------------------

    @property
    def highlight(self) -> tuple[int, int] | None:
        return self._highlight

    def set_highlight(self, start: int, end: int, *, follow: bool = True) -> None:
        """Highlight text[start:end] (Python indices) without moving the person's cursor."""
        if self._highlight == (start, end):
            return
        self._highlight = (start, end)
        mapping = self.position_map()
        cursor = QTextCursor(self.document())
        length = self.document().characterCount() - 1
        cursor.setPosition(min(mapping.to_qt(start), length))
        cursor.setPosition(min(mapping.to_qt(end), length), QTextCursor.MoveMode.KeepAnchor)
        selection = QTextEdit.ExtraSelection()
        selection.cursor = cursor
        selection.format = self._highlight_format()
        self.setExtraSelections([selection])
        if follow:
            self._scroll_into_view(cursor)
        self.highlightChanged.emit(start, end)

    def clear_highlight(self) -> None:
        if self._highlight is None:
            return
        self._highlight = None
        self.setExtraSelections([])
        self.highlightChanged.emit(-1, -1)

    def _highlight_format(self) -> QTextCharFormat:
        palette = self.palette()
        fmt = QTextCharFormat()
        base = palette.color(QPalette.ColorRole.Base)
        dark = base.lightness() < 128
        fmt.setBackground(QColor("#5c4a12") if dark else QColor("#ffe9a8"))
        fmt.setForeground(palette.color(QPalette.ColorRole.Text))
        return fmt

    def _scroll_into_view(self, cursor: QTextCursor) -> None:
        start = QTextCursor(cursor)
        start.setPosition(cursor.selectionStart())
        rect = self.cursorRect(start)
        viewport = self.viewport().rect()
        if rect.top() < viewport.top() or rect.bottom() > viewport.bottom():
            bar = self.verticalScrollBar()
            bar.setValue(bar.value() + rect.top() - viewport.height() // 3)

    # ----- drops and pastes -------------------------------------------------------------

    def canInsertFromMimeData(self, source: QMimeData) -> bool:  # noqa: N802 (Qt override)
        if local_files(source):
            return True
        return super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source: QMimeData) -> None:  # noqa: N802 (Qt override)
        files = local_files(source)
        if files:
            self.filesDropped.emit(files)  # never pasted as text
            return
        if source.hasText():
            self.insertPlainText(source.text())
            return
        super().insertFromMimeData(source)

    # ----- clicks -----------------------------------------------------------------------

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 (Qt override)
        super().mouseReleaseEvent(event)
        if event.button() == Qt.MouseButton.LeftButton and not self.textCursor().hasSelection():
            self.clickedAt.emit(self.cursor_index())
