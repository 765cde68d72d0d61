"""Live metric plots: each curve is created once and updated with setData; colours follow the palette."""

from __future__ import annotations

from collections.abc import Sequence

import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QWidget

# Mid-tone hues that read on both light and dark backgrounds (matplotlib's tab10 blue and orange).
TRAIN_COLOR = QColor(31, 119, 180)
VAL_COLOR = QColor(255, 127, 14)


class MetricPlot(pg.PlotWidget):
    """A plot with named curves, axis labels and a legend, themed from the widget's palette."""

    def __init__(self, title: str, y_label: str, parent: QWidget | None = None, *,
                 legend_offset: tuple[int, int] = (-10, 10), x_label: str = "epoch") -> None:
        self.legend: pg.LegendItem | None = None  # set before the base class sends its first changeEvent
        super().__init__(parent)
        self.setMinimumSize(160, 140)
        self.curves: dict[str, pg.PlotDataItem] = {}
        item = self.getPlotItem()
        item.setTitle(title)
        item.setLabel("bottom", x_label)
        item.setLabel("left", y_label)
        for name in ("left", "bottom"):
            item.getAxis(name).enableAutoSIPrefix(False)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setMenuEnabled(False)
        item.getViewBox().setMouseEnabled(x=False, y=False)
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.legend = item.addLegend(offset=legend_offset)  # negative: from the right / bottom edge
        self.apply_palette()

    def add_curve(self, key: str, name: str, color: QColor, *, dashed: bool = False, width: float = 2.0,
                  symbol: str | None = "o") -> pg.PlotDataItem:
        style = Qt.PenStyle.DashLine if dashed else Qt.PenStyle.SolidLine
        curve = self.plot([], [], name=name, pen=pg.mkPen(color, width=width, style=style), symbol=symbol,
                          symbolSize=6, symbolBrush=color, symbolPen=color)
        self.curves[key] = curve
        return curve

    def set_curve(self, key: str, xs: Sequence[float], ys: Sequence[float]) -> None:
        self.curves[key].setData(list(xs), list(ys))

    def clear_curves(self) -> None:
        for curve in self.curves.values():
            curve.setData([], [])

    def apply_palette(self) -> None:
        if self.legend is None:
            return
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        self.setBackground(palette.color(QPalette.ColorRole.Base))
        item = self.getPlotItem()
        for name in ("left", "bottom"):
            axis = item.getAxis(name)
            axis.setPen(palette.color(QPalette.ColorRole.Mid))
            axis.setTextPen(text)
        item.titleLabel.setAttr("color", text.name())
        item.titleLabel.setText(item.titleLabel.text)
        self.legend.setLabelTextColor(text)
        self.legend.setBrush(palette.color(QPalette.ColorRole.Base))
        self.legend.setPen(palette.color(QPalette.ColorRole.Mid))

    def changeEvent(self, event: QEvent) -> None:
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.apply_palette()
        super().changeEvent(event)
