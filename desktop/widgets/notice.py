"""A non-blocking notification bar: a message, an optional "Details" traceback, and a close button."""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


class NoticeBar(QFrame):
    """Shown above the pages; a new message replaces the previous one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noticeBar")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.icon = QLabel()
        self.message = QLabel(objectName="noticeText")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details_button = QPushButton("Details", objectName="noticeDetailsButton")
        self.details_button.setCheckable(True)
        self.details_button.toggled.connect(self.on_details_toggled)
        close = QToolButton(objectName="noticeCloseButton")
        close.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton))
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        self.details = QPlainTextEdit(objectName="noticeDetails")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(220)
        self.details.hide()
        row = QHBoxLayout()
        row.addWidget(self.icon)
        row.addWidget(self.message, 1)
        row.addWidget(self.details_button)
        row.addWidget(close)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addLayout(row)
        layout.addWidget(self.details)
        self.hide()

    def show_message(self, text: str, details: str = "", *, error: bool = True) -> None:
        kind = QStyle.StandardPixmap.SP_MessageBoxCritical if error else QStyle.StandardPixmap.SP_MessageBoxInformation
        self.icon.setPixmap(self.style().standardIcon(kind).pixmap(24, 24))
        self.message.setText(text)
        self.details.setPlainText(details)
        self.details_button.setChecked(False)
        self.details_button.setVisible(bool(details))
        self.show()

    @Slot(bool)
    def on_details_toggled(self, shown: bool) -> None:
        self.details.setVisible(shown)
