"""How far a run's confidence can be trusted: the reliability diagram and the coverage / accuracy curve of
evaluation.json's ``calibration`` (engine.evaluation.calibration), with a sentence a person can act on."""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from desktop.widgets.plots import TRAIN_COLOR, VAL_COLOR, MetricPlot

IDEAL_COLOR = QColor(128, 128, 128)


class CalibrationView(QWidget):
    """Reliability (accuracy against confidence per bin, the diagonal being perfect calibration) and coverage
    (the share of photos answered, and their accuracy, against the unsure threshold)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("calibrationView")
        self.summary = QLabel(objectName="calibrationSummaryLabel")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Short legend labels, in the corner a calibrated model leaves empty (low confidence, high accuracy): the
        # plots are small beside the mistakes, and a long legend hid the curves.
        self.reliability = MetricPlot("Reliability (validation)", "accuracy", x_label="confidence",
                                      legend_offset=(10, 10))
        self.reliability.setObjectName("reliabilityPlot")
        self.reliability.add_curve("ideal", "ideal", IDEAL_COLOR, dashed=True, width=1, symbol=None)
        self.reliability.add_curve("model", "this model", VAL_COLOR)
        self.coverage = MetricPlot("Answered photos (validation)", "share", x_label="unsure below this confidence",
                                   legend_offset=(10, -10))
        self.coverage.setObjectName("coveragePlot")
        self.coverage.add_curve("coverage", "answered", TRAIN_COLOR)
        self.coverage.add_curve("accuracy", "accuracy", VAL_COLOR)
        self.threshold_line = pg.InfiniteLine(angle=90, pen=pg.mkPen(IDEAL_COLOR, style=Qt.PenStyle.DotLine))
        self.coverage.addItem(self.threshold_line)
        for plot in (self.reliability, self.coverage):
            plot.getPlotItem().setRange(xRange=(0, 1), yRange=(0, 1), padding=0.02)
        plots = QHBoxLayout()
        plots.addWidget(self.reliability)
        plots.addWidget(self.coverage)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addLayout(plots, 1)
        self.show_calibration(None)

    def show_calibration(self, calibration: dict[str, Any] | None) -> None:
        """Fill from evaluation.json's ``calibration``; None (a run from before calibration) says so."""
        self.reliability.clear_curves()
        self.coverage.clear_curves()
        self.threshold_line.hide()
        if not calibration:
            self.summary.setText("This run has no calibration (it was trained before Transfer Studio measured it): "
                                 "train it again to see how far its confidence can be trusted.")
            return
        self.summary.setText(calibration_sentence(calibration))
        self.reliability.set_curve("ideal", [0, 1], [0, 1])
        bins = [b for b in calibration["reliability"] if b["count"]]
        self.reliability.set_curve("model", [b["confidence"] for b in bins], [b["accuracy"] for b in bins])
        points = [p for p in calibration["coverage_curve"] if p["accuracy"] is not None]
        self.coverage.set_curve("coverage", [p["threshold"] for p in calibration["coverage_curve"]],
                                [p["coverage"] for p in calibration["coverage_curve"]])
        self.coverage.set_curve("accuracy", [p["threshold"] for p in points], [p["accuracy"] for p in points])
        if calibration["unsure_threshold"] is not None:
            self.threshold_line.setValue(calibration["unsure_threshold"])
            self.threshold_line.show()


def calibration_sentence(calibration: dict[str, Any]) -> str:
    """What the calibration means for the person reading predictions, in one paragraph."""
    if calibration.get("fitted", True):
        text = (f"Confidence is temperature-scaled (T = {calibration['temperature']:.2f}): the calibration error on "
                f"validation went from {calibration['ece_before']:.1%} to {calibration['ece_after']:.1%}. ")
    else:
        text = ("Confidence is not temperature-scaled: no validation photo was wrong, so there was nothing to fit "
                f"the temperature on (calibration error on validation {calibration['ece_before']:.1%}). ")
    threshold, target = calibration["unsure_threshold"], calibration["target_accuracy"]
    if threshold is None:
        text += (f"No confidence level reaches {target:.0%} accuracy on validation, so no answer is marked unsure: "
                 "treat every prediction with care.")
    else:
        text += (f"Predictions below {threshold:.0%} confidence are marked unsure; those above it were right "
                 f"{target:.0%} of the time or more on validation.")
    test = calibration.get("test")
    if threshold is not None and test and test.get("answered_accuracy") is not None:
        held = "meets" if test["meets_target"] else "misses"
        text += (f" On the test split it answered {test['coverage']:.0%} of the photos at "
                 f"{test['answered_accuracy']:.1%} accuracy (± {test['standard_error']:.1%}): it {held} the target.")
    return text
