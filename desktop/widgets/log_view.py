"""The training log: one row per line, warnings marked with an icon; Ctrl+C copies the selected lines."""

from __future__ import annotations

from datetime import datetime

from PySide6.QtGui import QGuiApplication, QKeyEvent, QKeySequence, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QListView, QStyle, QWidget

MAX_LINES = 5000


class LogView(QListView):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines = QStandardItemModel(self)
        self.setModel(self.lines)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setUniformItemSizes(True)
        self.setWordWrap(False)

    def add_line(self, text: str, *, warning: bool = False) -> None:
        item = QStandardItem(f"{datetime.now():%H:%M:%S}  {text}")
        item.setEditable(False)
        if warning:
            item.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
        at_bottom = self.verticalScrollBar().value() == self.verticalScrollBar().maximum()
        self.lines.appendRow(item)
        if self.lines.rowCount() > MAX_LINES:
            self.lines.removeRows(0, self.lines.rowCount() - MAX_LINES)
        if at_bottom:
            self.scrollToBottom()

    def text(self) -> str:
        return "\n".join(self.lines.item(row).text() for row in range(self.lines.rowCount()))

    def clear(self) -> None:
        self.lines.clear()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.matches(QKeySequence.StandardKey.Copy):
            rows = sorted(index.row() for index in self.selectedIndexes())
            QGuiApplication.clipboard().setText("\n".join(self.lines.item(row).text() for row in rows))
            event.accept()
            return
        super().keyPressEvent(event)
