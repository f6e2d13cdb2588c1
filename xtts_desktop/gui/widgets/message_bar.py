"""An inline message above the text: problems shown in the window without a modal dialog."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

_STYLES = {
    "info": ("#e8f1fb", "#9cc0e8", "#12304f"),
    "warning": ("#fff4d6", "#e6c45c", "#4a3800"),
    "error": ("#fde7e7", "#e29a9a", "#5a1111"),
}


class MessageBar(QFrame):
    """One message at a time, with an optional action button and a close button."""

    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.text_label = QLabel()
        self.text_label.setObjectName("messageText")
        self.text_label.setWordWrap(True)
        self.text_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action_button = QPushButton()
        self.action_button.setObjectName("messageAction")
        self.action_button.hide()
        self.close_button = QToolButton()
        self.close_button.setObjectName("messageClose")
        self.close_button.setText("✕")
        self.close_button.setAutoRaise(True)
        self.close_button.setToolTip("Dismiss")
        self.close_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.addWidget(self.text_label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        self._action: Callable[[], None] | None = None
        self.action_button.clicked.connect(self._run_action)
        self.kind = ""
        self.hide()

    def show_message(
        self,
        text: str,
        kind: str = "warning",
        action: tuple[str, Callable[[], None]] | None = None,
    ) -> None:
        background, border, foreground = _STYLES.get(kind, _STYLES["warning"])
        self.kind = kind
        self.setStyleSheet(
            f"QFrame#messageBar {{ background: {background}; border: 1px solid {border}; "
            f"border-radius: 6px; }} QLabel#messageText {{ color: {foreground}; }}"
        )
        self.text_label.setText(text)
        if action is None:
            self._action = None
            self.action_button.hide()
        else:
            self.action_button.setText(action[0])
            self._action = action[1]
            self.action_button.show()
        self.show()

    def text(self) -> str:
        return "" if self.isHidden() else self.text_label.text()

    def dismiss(self) -> None:
        self.hide()
        self.closed.emit()

    def _run_action(self) -> None:
        if self._action is not None:
            self._action()
