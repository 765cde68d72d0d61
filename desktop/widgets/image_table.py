"""A table of images, one row per file: a thumbnail column, text columns, double-click opens the file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QModelIndex, QSize, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from desktop.thumbnails import THUMBNAIL_SIZE, to_pixmap

PATH_ROLE = Qt.ItemDataRole.UserRole + 1


class ImageTable(QTableView):
    """Column 0 holds the thumbnail (filled in later, off the GUI thread) and the file path."""

    def __init__(self, headers: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.items = QStandardItemModel(0, len(headers) + 1, self)
        self.items.setHorizontalHeaderLabels(["", *headers])
        self.setModel(self.items)
        self.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.verticalHeader().setDefaultSectionSize(THUMBNAIL_SIZE + 6)
        header = self.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Fixed)
        header.resizeSection(0, THUMBNAIL_SIZE + 8)
        header.setStretchLastSection(True)
        self.doubleClicked.connect(self.on_double_clicked)
        self._rows_by_path: dict[str, list[int]] = {}  # so thumbnails arriving in batches find their rows at once

    def add_row(self, path: str, cells: Sequence[QStandardItem | str], tooltip: str = "") -> None:
        thumb = QStandardItem()
        thumb.setData(path, PATH_ROLE)
        thumb.setToolTip(tooltip or path)
        row = [thumb, *(cell if isinstance(cell, QStandardItem) else QStandardItem(cell) for cell in cells)]
        for item in row:
            item.setEditable(False)
        self._rows_by_path.setdefault(path, []).append(self.items.rowCount())
        self.items.appendRow(row)

    def clear_rows(self) -> None:
        self.items.removeRows(0, self.items.rowCount())
        self._rows_by_path.clear()

    def path_at(self, row: int) -> str:
        return str(self.items.item(row, 0).data(PATH_ROLE))

    def paths(self) -> list[str]:
        return [self.path_at(row) for row in range(self.items.rowCount())]

    def set_thumbnails(self, thumbnails: Mapping[str, np.ndarray | None]) -> None:
        for path, array in thumbnails.items():
            if array is None:
                continue
            pixmap = to_pixmap(array)
            for row in self._rows_by_path.get(path, ()):
                self.items.item(row, 0).setData(pixmap, Qt.ItemDataRole.DecorationRole)

    @Slot(QModelIndex)
    def on_double_clicked(self, index: QModelIndex) -> None:
        path = Path(self.path_at(index.row()))
        if path.exists():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
