"""The voice picker: XTTS's built-in speakers and the user's saved voices, in two groups."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QWidget

KIND_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole


class VoicePicker(QComboBox):
    """A combo box whose group headers ("Built-in", "Saved") cannot be chosen."""

    voiceChosen = Signal(str)  # the voice's name, when the person picks one

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("speakerCombo")
        self.setToolTip("The voice that reads: a built-in speaker or one you cloned")
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.setMinimumContentsLength(14)
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self._builtin: tuple[str, ...] = ()
        self._saved: tuple[str, ...] = ()
        self._filling = False
        self.currentIndexChanged.connect(self._on_index_changed)

    @property
    def builtin_names(self) -> tuple[str, ...]:
        return self._builtin

    @property
    def saved_names(self) -> tuple[str, ...]:
        return self._saved

    def set_voices(
        self, builtin: Sequence[str], saved: Sequence[str], select: str | None = None
    ) -> None:
        """Refill both groups, keeping (or choosing) ``select`` when it is still there."""
        wanted = select if select is not None else self.current_voice()
        self._builtin, self._saved = tuple(builtin), tuple(saved)
        self._filling = True
        try:
            self._model.clear()
            self._add_header("Built-in voices" if builtin else "Built-in voices (loading…)")
            for name in builtin:
                self._add_voice(name, "builtin")
            self._add_header("Saved voices" if saved else "Saved voices (drop a sample to add one)")
            for name in saved:
                self._add_voice(name, "saved")
            row = self._row_of(wanted) if wanted else -1
            if row < 0:
                row = self._first_voice_row()
            self.setCurrentIndex(row)
        finally:
            self._filling = False

    def _add_header(self, text: str) -> None:
        item = QStandardItem(text)
        item.setFlags(Qt.ItemFlag.NoItemFlags)
        font = QFont(self.font())
        font.setBold(True)
        item.setFont(font)
        self._model.appendRow(item)

    def _add_voice(self, name: str, kind: str) -> None:
        item = QStandardItem(name)
        item.setData(name, NAME_ROLE)
        item.setData(kind, KIND_ROLE)
        item.setToolTip(
            f"{name} ({'built-in speaker' if kind == 'builtin' else 'your saved voice'})"
        )
        self._model.appendRow(item)

    def _row_of(self, name: str) -> int:
        folded = name.casefold()
        for row in range(self._model.rowCount()):
            value = self._model.item(row).data(NAME_ROLE)
            if value is not None and value.casefold() == folded:
                return row
        return -1

    def _first_voice_row(self) -> int:
        for row in range(self._model.rowCount()):
            if self._model.item(row).data(NAME_ROLE) is not None:
                return row
        return -1

    def current_voice(self) -> str:
        """The chosen voice's name ("" when there is none)."""
        row = self.currentIndex()
        if row < 0:
            return ""
        return self._model.item(row).data(NAME_ROLE) or ""

    def current_kind(self) -> str:
        row = self.currentIndex()
        if row < 0:
            return ""
        return self._model.item(row).data(KIND_ROLE) or ""

    def select_voice(self, name: str) -> bool:
        row = self._row_of(name)
        if row >= 0:
            self.setCurrentIndex(row)
        return row >= 0

    def _on_index_changed(self, _row: int) -> None:
        if not self._filling and self.current_voice():
            self.voiceChosen.emit(self.current_voice())
