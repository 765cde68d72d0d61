"""Paint a cell's top-k predictions as labelled probability bars (the cell's text is used when it has none)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

TOP_K_ROLE = Qt.ItemDataRole.UserRole + 2  # list[tuple[str, float]]
_LINE_HEIGHT = 18


class ProbabilityBarsDelegate(QStyledItemDelegate):
    def paint(self, painter: QPainter, option: QStyleOptionViewItem,
              index: QModelIndex | QPersistentModelIndex) -> None:
        top_k = index.data(TOP_K_ROLE)
        if not top_k:
            super().paint(painter, option, index)
            return
        palette = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            painter.fillRect(option.rect, palette.color(QPalette.ColorRole.Highlight))
        text_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        bar_color = palette.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Highlight)
        track_color = palette.color(QPalette.ColorRole.Mid)
        rect = option.rect.adjusted(4, 2, -4, -2)
        top = rect.top() + max(0, (rect.height() - _LINE_HEIGHT * len(top_k)) // 2)
        label_width = min(160, rect.width() * 2 // 5)
        percent_width = option.fontMetrics.horizontalAdvance("100.0%") + 6
        bar_width = max(10, rect.width() - label_width - percent_width - 8)
        painter.save()
        for row, (label, probability) in enumerate(top_k):
            line = QRect(rect.left(), top + row * _LINE_HEIGHT, rect.width(), _LINE_HEIGHT)
            font = option.font
            font.setBold(row == 0)
            painter.setFont(font)
            painter.setPen(text_color)
            name = option.fontMetrics.elidedText(str(label), Qt.TextElideMode.ElideRight, label_width)
            painter.drawText(QRect(line.left(), line.top(), label_width, line.height()),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, name)
            bar = QRect(line.left() + label_width + 4, line.top() + 4, bar_width, line.height() - 8)
            painter.fillRect(bar, track_color)
            painter.fillRect(QRect(bar.left(), bar.top(), round(bar.width() * float(probability)), bar.height()),
                             bar_color)
            painter.drawText(QRect(bar.right() + 6, line.top(), percent_width, line.height()),
                             Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, f"{probability:.1%}")
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        top_k = index.data(TOP_K_ROLE)
        if not top_k:
            return super().sizeHint(option, index)
        return QSize(320, _LINE_HEIGHT * len(top_k) + 4)
