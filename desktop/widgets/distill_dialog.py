"""The few choices a distillation needs beyond its teachers: the student's backbone, the teacher's share of the loss
and the softening temperature; the defaults and limits are TrainConfig's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFormLayout, QLabel, QWidget

from engine.backbones.registry import DEFAULT_BACKBONE, list_backbones
from engine.training.config import TrainConfig

MAX_TEMPERATURE = 20.0  # TrainConfig refuses more


class DistillDialog(QDialog):
    """Opened (not exec'd) by the Runs page, which reads the values when it is accepted."""

    def __init__(self, teachers: Sequence[Path], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("distillDialog")
        self.setWindowTitle("Distill into a smaller model")
        defaults = TrainConfig()
        names = ", ".join(path.name for path in teachers)
        intro = QLabel(f"Train a new student model that learns from {'the ensemble of ' if len(teachers) > 1 else ''}"
                       f"{names} as well as from the labels, on the same photos. A student of the same backbone is "
                       "trained without the teachers too, so you can see what distillation added.")
        intro.setWordWrap(True)
        self.student_combo = QComboBox(objectName="distillStudentCombo")
        for spec in list_backbones():
            self.student_combo.addItem(spec.name, spec.name)
        self.student_combo.setCurrentIndex(self.student_combo.findData(DEFAULT_BACKBONE))
        self.alpha_spin = QDoubleSpinBox(objectName="distillAlphaSpin")
        self.alpha_spin.setRange(0.0, 1.0)
        self.alpha_spin.setSingleStep(0.05)
        self.alpha_spin.setValue(defaults.distill_alpha)
        self.alpha_spin.setToolTip("The teachers' share of the loss; the labels' share is the rest (0: labels only)")
        self.temperature_spin = QDoubleSpinBox(objectName="distillTemperatureSpin")
        self.temperature_spin.setRange(0.5, MAX_TEMPERATURE)
        self.temperature_spin.setSingleStep(0.5)
        self.temperature_spin.setValue(defaults.distill_temperature)
        self.temperature_spin.setToolTip("Softens the teachers' probabilities so that the student also learns "
                                         "which classes look alike (higher: softer)")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.setObjectName("distillButtons")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(intro)
        form.addRow("Student backbone:", self.student_combo)
        form.addRow("Teacher weight (alpha):", self.alpha_spin)
        form.addRow("Temperature:", self.temperature_spin)
        form.addRow(buttons)

    def student(self) -> str:
        return self.student_combo.currentData()

    def alpha(self) -> float:
        return self.alpha_spin.value()

    def temperature(self) -> float:
        return self.temperature_spin.value()
