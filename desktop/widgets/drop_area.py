"""Accept files and folders dropped from the file manager."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDragLeaveEvent, QDropEvent
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget


def dropped_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders in a drag's data (web URLs and text are ignored)."""
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()] if mime.hasUrls() else []


class DropArea(QFrame):
    """A framed target that emits ``paths_dropped``; extra widgets (buttons) go below its text."""

    paths_dropped = Signal(list)  # list[Path]

    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setFrameShadow(QFrame.Shadow.Sunken)
        self.setMinimumHeight(90)
        self.layout_ = QVBoxLayout(self)
        label = QLabel(text)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        self.layout_.addWidget(label)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
            self.setFrameShadow(QFrame.Shadow.Raised)

    def dragLeaveEvent(self, event: QDragLeaveEvent) -> None:
        self.setFrameShadow(QFrame.Shadow.Sunken)
        super().dragLeaveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        self.setFrameShadow(QFrame.Shadow.Sunken)
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.paths_dropped.emit(paths)
