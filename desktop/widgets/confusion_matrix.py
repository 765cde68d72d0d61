"""Confusion matrix heatmap: a table view whose cells show counts, shaded by each true class's share."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QAbstractTableModel, QEvent, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

Index = QModelIndex | QPersistentModelIndex
_ROOT = QModelIndex()


def blend(base: QColor, tint: QColor, amount: float) -> QColor:
    """``base`` moved ``amount`` (0..1) of the way towards ``tint``."""
    return QColor.fromRgbF(*(b + (t - b) * amount for b, t in zip(base.getRgbF()[:3], tint.getRgbF()[:3],
                                                                     strict=True)))


def readable_text(background: QColor) -> QColor:
    return QColor(Qt.GlobalColor.black) if background.lightnessF() > 0.55 else QColor(Qt.GlobalColor.white)


class ConfusionMatrixModel(QAbstractTableModel):
    """Rows are true classes, columns predicted classes; shading is the row-normalised fraction."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._labels: list[str] = []
        self._counts: list[list[int]] = []
        self._palette = QPalette()

    def set_matrix(self, labels: Sequence[str], counts: Sequence[Sequence[int]]) -> None:
        self.beginResetModel()
        self._labels, self._counts = list(labels), [list(row) for row in counts]
        self.endResetModel()

    def set_palette(self, palette: QPalette) -> None:
        self._palette = palette
        if self._counts:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._labels) - 1, len(self._labels) - 1))

    def rowCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._labels)

    def columnCount(self, parent: Index = _ROOT) -> int:
        return 0 if parent.isValid() else len(self._labels)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        count = self._counts[index.row()][index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(count)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return Qt.AlignmentFlag.AlignCenter
        if role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            background = self._cell_color(index.row(), count)
            return background if role == Qt.ItemDataRole.BackgroundRole else readable_text(background)
        if role == Qt.ItemDataRole.ToolTipRole:
            total = sum(self._counts[index.row()])
            share = f" ({count / total:.0%} of {total})" if total else ""
            return f"true {self._labels[index.row()]}, predicted {self._labels[index.column()]}: {count}{share}"
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if role != Qt.ItemDataRole.DisplayRole or section >= len(self._labels):
            return None
        return self._labels[section]

    def _cell_color(self, row: int, count: int) -> QColor:
        total = sum(self._counts[row])
        fraction = count / total if total else 0.0
        return blend(self._palette.color(QPalette.ColorRole.Base), self._palette.color(QPalette.ColorRole.Highlight),
                     fraction)


class ConfusionMatrixView(QTableView):
    """Read-only heatmap with counts; headers name the true (rows) and predicted (columns) classes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.matrix = ConfusionMatrixModel(self)
        self.setModel(self.matrix)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setShowGrid(False)
        for header in (self.horizontalHeader(), self.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
            header.setMinimumSectionSize(36)
        self.setToolTip("Rows: true class. Columns: predicted class. Shade: share of the true class.")
        self.matrix.set_palette(self.palette())

    def set_matrix(self, labels: Sequence[str], counts: Sequence[Sequence[int]]) -> None:
        self.matrix.set_matrix(labels, counts)

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.matrix.set_palette(self.palette())
        super().changeEvent(event)
