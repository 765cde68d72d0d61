"""The learning-rate finder's view: its button, the loss-against-rate curve and the suggested rate to use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from desktop.widgets.plots import TRAIN_COLOR, VAL_COLOR, MetricPlot

if TYPE_CHECKING:  # the engine module imports torch, which loads on the worker thread
    from engine.training.lr_find import LrFindResult

FIND_TEXT = "Find learning rate"
PLOT_HEIGHT = 260  # px: enough to read the dip, small enough to keep the options above it in view


def _rate(value: float) -> str:
    """Two significant digits, as the suggestion is shown and used: a sweep cannot tell 3.2e-04 from 3.24e-04."""
    return f"{value:.1e}"


class LrFindPanel(QWidget):
    """A view only: the Train page runs the sweep, switches the button with ``set_running`` and hands the result
    to ``show_result``; the plot and the suggestion stay hidden until there is one."""

    use_requested = Signal(float)  # the suggested learning rate, as shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.find_button = QPushButton(FIND_TEXT, objectName="findLearningRateButton")
        self.find_button.setToolTip("Train briefly on the dataset with the options above while the learning rate "
                                    "grows, and suggest a rate from the loss curve (nothing is saved)")
        self.plot = MetricPlot("Learning-rate sweep", "loss", x_label="learning rate (head)")
        self.plot.setObjectName("lrFindPlot")
        self.plot.setFixedHeight(PLOT_HEIGHT)
        self.plot.legend.hide()  # anywhere, it hides part of a curve that spans the plot; the label names the dot
        self.plot.getPlotItem().setLogMode(x=True, y=False)
        self.plot.add_curve("smoothed", "smoothed loss", TRAIN_COLOR, symbol=None)
        self.plot.add_curve("suggestion", "suggestion", VAL_COLOR).setSymbolSize(10)
        self.suggestion_label = QLabel(objectName="lrSuggestionLabel")
        self.suggestion_label.setWordWrap(True)
        self.use_button = QPushButton(objectName="useSuggestedLrButton")
        self.use_button.setToolTip("Set the learning rate above to the suggestion")
        self.use_button.clicked.connect(self.on_use_clicked)
        self.suggestion: float | None = None
        suggestion_row = QHBoxLayout()
        suggestion_row.addWidget(self.suggestion_label, 1)
        suggestion_row.addWidget(self.use_button)
        self.result_box = QWidget()
        result_layout = QVBoxLayout(self.result_box)
        result_layout.setContentsMargins(0, 0, 0, 0)
        result_layout.addWidget(self.plot)
        result_layout.addLayout(suggestion_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.find_button)
        layout.addWidget(self.result_box)
        self.clear()

    def set_running(self, running: bool) -> None:
        self.find_button.setText("Stop" if running else FIND_TEXT)

    def clear(self) -> None:
        self.suggestion = None
        self.plot.clear_curves()
        self.result_box.hide()

    def show_result(self, result: LrFindResult) -> None:
        self.suggestion = float(_rate(result.suggestion))
        rates = result.learning_rates
        marker = float(np.interp(np.log10(result.suggestion), np.log10(rates), result.smoothed))  # on the curve
        self.plot.set_curve("smoothed", rates, result.smoothed)
        self.plot.set_curve("suggestion", [result.suggestion], [marker])
        # The diverging tail (up to 4x the lowest loss) would flatten the rest: show up to where the sweep started,
        # the marker, and the rise where the engine puts the edge of usable rates (30 % above the lowest).
        lowest = min(result.smoothed)
        self.plot.setYRange(lowest, max(result.smoothed[0], marker, 1.5 * lowest), padding=0.1)
        self.suggestion_label.setText(f"Suggested learning rate (orange dot): {_rate(self.suggestion)} "
                                      f"({result.depth} fine-tune, {len(rates)} steps)")
        self.use_button.setText(f"Use {_rate(self.suggestion)}")
        self.result_box.show()

    @Slot()
    def on_use_clicked(self) -> None:
        if self.suggestion is not None:
            self.use_requested.emit(self.suggestion)
