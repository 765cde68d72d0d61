"""The main window's shell: pages and names, status bar, start-up cost, settings, drops, menus, palette."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QPalette
from PySide6.QtWidgets import QAbstractItemView, QComboBox, QFileDialog, QMessageBox, QPushButton, QSpinBox

from desktop import paths
from desktop.jobs import RunSnapshot
from desktop.main_window import MainWindow
from desktop.widgets.confusion_matrix import ConfusionMatrixView
from desktop.widgets.plots import MetricPlot

NAMED = ("datasetPathEdit", "chooseDatasetButton", "sampleDataButton", "classTable", "scanReportView",
         "backboneCombo", "strategyCombo", "epochsSpin", "batchSizeSpin", "learningRateSpin", "augmentCombo",
         "advancedSection", "findLearningRateButton", "lrFindPlot", "lrSuggestionLabel", "useSuggestedLrButton",
         "startButton", "pauseButton", "stopButton", "lossPlot", "accuracyPlot", "progressBar",
         "logView", "metricsTable", "confusionMatrixView", "mistakesView", "exportButton", "cancelExportButton",
         "modelPathEdit", "openModelButton", "dropArea", "predictionsView", "saveResultsButton", "deviceLabel",
         "activityLabel")
ITEM_VIEWS = ("classTable", "scanReportView", "metricsTable", "mistakesView", "predictionsView",
              "confusionMatrixView", "logView")


def test_pages_and_named_widgets(window: MainWindow, find) -> None:
    assert window.objectName() == "mainWindow"
    tabs = find("mainTabs")
    assert [tabs.widget(i).objectName() for i in range(tabs.count())] == [
        "dataPage", "trainPage", "evaluatePage", "predictPage", "runsPage"]
    for name in NAMED:
        find(name)
    for name in ITEM_VIEWS:
        view = find(name, QAbstractItemView)
        assert view.model() is not None
    assert not find("startButton", QPushButton).isEnabled()  # no dataset yet
    titles = [action.text() for action in window.menuBar().actions()]
    assert titles == ["&File", "&View", "&Help"]


def test_status_bar_shows_the_device_and_the_backbones_get_their_details(window: MainWindow, find, qtbot) -> None:
    label = find("deviceLabel")
    qtbot.waitUntil(lambda: label.text().startswith(("Device: CPU", "Device: CUDA")), timeout=120_000)
    combo = find("backboneCombo", QComboBox)
    assert combo.itemText(0) == "efficientnet_lite0 (bundled)"
    assert "4.7 M parameters" in find("backboneInfoLabel").text()
    augment = find("augmentCombo", QComboBox)
    assert augment.count() > 1 and augment.currentData() == "light"


def test_the_window_appears_before_torch_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from PySide6.QtCore import QSettings\n"
        "from PySide6.QtWidgets import QApplication\n"
        "app = QApplication([])\n"
        "from desktop.main_window import MainWindow\n"
        "from desktop.settings import AppSettings\n"
        "window = MainWindow(AppSettings(QSettings(sys.argv[1], QSettings.Format.IniFormat)))\n"
        "window.show()\n"
        "print(' '.join(m for m in ('torch', 'torchvision', 'onnxruntime') if m in sys.modules) or 'none')\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "settings.ini")], capture_output=True,
                            text=True, check=True, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
                            timeout=120)
    assert result.stdout.split()[-1] == "none"


def test_geometry_page_and_options_persist(qtbot, make_window) -> None:
    first = make_window()
    first.show()
    first.resize(790, 620)
    first.tabs.setCurrentIndex(2)
    first.findChild(QSpinBox, "epochsSpin").setValue(9)
    first.close()
    qtbot.waitUntil(lambda: not any(r.running for r in first.runners.values()), timeout=120_000)

    second = make_window()
    assert second.tabs.currentIndex() == 2
    assert (second.size().width(), second.size().height()) == (790, 620)
    assert second.findChild(QSpinBox, "epochsSpin").value() == 9


def test_drops_are_routed_by_what_they_are_and_where(window: MainWindow, find, drop, qtbot, small_data: Path,
                                                     tmp_path: Path) -> None:
    window.tabs.setCurrentWidget(window.data_page)
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        drop(window, [small_data])
    assert window.train_page.data_dir == small_data
    assert ("dataset", str(small_data)) in window.settings.recent()

    photo = next(small_data.rglob("*.jpg"))
    drop(window, [photo])  # photos on another page go to the Predict page, which needs a model first
    assert window.tabs.currentWidget() is window.predict_page
    assert "Open a model first" in window.predict_page.status.text()

    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"not a model")
    with qtbot.waitSignal(window.runners["predict"].failed, timeout=60_000):
        drop(find("dropArea"), [fake])
    assert "Could not load this model" in find("modelInfoLabel").text()
    assert window.notice.isVisible()


def test_sample_data_button_generates_into_the_user_data_folder(window: MainWindow, find, qtbot) -> None:
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=120_000) as opened:
        qtbot.mouseClick(find("sampleDataButton", QPushButton), Qt.MouseButton.LeftButton)
    root = Path(opened.args[0].root)
    assert root.parent == paths.user_data_folder() and root.name.startswith("sample-data")
    assert find("classTable", QAbstractItemView).model().rowCount() == 4
    assert find("datasetPathEdit").text() == str(root)
    assert find("startButton", QPushButton).isEnabled()


def test_recent_menu_reopens_items(window: MainWindow, qtbot, small_data: Path) -> None:
    window.settings.add_recent("dataset", small_data)
    window.recent_menu.aboutToShow.emit()
    action = next(a for a in window.recent_menu.actions() if str(small_data) in a.text())
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        action.trigger()


def test_about_names_versions_and_device(window: MainWindow, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr(QMessageBox, "about", lambda _parent, _title, text: shown.append(text))
    window.on_about()
    assert "PySide6" in shown[0] and "PyTorch" in shown[0] and "Compute device" in shown[0]


def test_plots_and_heatmap_follow_a_dark_palette(qtbot) -> None:
    dark = QPalette()
    for role, color in ((QPalette.ColorRole.Base, QColor(30, 30, 30)), (QPalette.ColorRole.Text, QColor(230, 230, 230)),
                        (QPalette.ColorRole.Highlight, QColor(42, 130, 218))):
        dark.setColor(role, color)
    plot = MetricPlot("Loss", "loss")
    qtbot.addWidget(plot)
    plot.setPalette(dark)
    assert plot.backgroundBrush().color() == QColor(30, 30, 30)
    assert plot.getPlotItem().getAxis("left").textPen().color() == QColor(230, 230, 230)
    assert isinstance(plot, pg.PlotWidget)

    view = ConfusionMatrixView()
    qtbot.addWidget(view)
    view.setPalette(dark)
    view.set_matrix(["a", "b"], [[3, 1], [0, 4]])
    empty = view.model().index(1, 0)
    assert empty.data(Qt.ItemDataRole.BackgroundRole) == QColor(30, 30, 30)
    assert empty.data(Qt.ItemDataRole.ForegroundRole) == QColor(Qt.GlobalColor.white)


def _action(window: MainWindow, text: str) -> QAction:
    return next(action for menu in window.menuBar().actions() for action in menu.menu().actions()
                if action.text() == text)


def test_export_model_as_asks_where_and_exports_there(window: MainWindow, make_run_info, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    target = tmp_path / "elsewhere" / "mine.onnx"
    target.parent.mkdir()

    def save_dialog(_parent, _title, default, _filter):
        asked.append(default)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    exported: list[Path | None] = []
    monkeypatch.setattr(window.evaluate_page, "export", exported.append)
    export_as = _action(window, "&Export model as…")
    export_as.trigger()  # no run yet
    assert not asked and not exported and "Export needs a trained run" in window.notice.message.text()

    window.evaluate_page.show_snapshot(RunSnapshot(make_run_info(tmp_path / "run-7"), [], None, None))
    export_as.trigger()
    assert Path(asked[0]).name == "run-7.onnx" and exported == [target]
    assert window.tabs.currentWidget() is window.evaluate_page
    assert window.settings.last_folder("export") == str(target.parent)

    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *_args: ("", ""))  # the dialog cancelled
    export_as.trigger()
    assert exported == [target]


MENU_SHORTCUTS = {"Open &dataset…": "Ctrl+O", "Open &run…": "Ctrl+Shift+O", "Open &model…": "Ctrl+M",
                  "&Export model as…": "Ctrl+Shift+E", "&Save results…": "Ctrl+S", "&Quit": "Ctrl+Q",
                  "Data": "Ctrl+1", "Train": "Ctrl+2", "Evaluate": "Ctrl+3", "Predict": "Ctrl+4"}


def test_menu_shortcuts_are_the_readmes_and_work(window: MainWindow, qtbot, make_run_info,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for text, keys in MENU_SHORTCUTS.items():
        assert _action(window, text).shortcut().toString() == keys, text
    dialogs: list[str] = []
    for name in ("getExistingDirectory", "getOpenFileName", "getSaveFileName"):
        monkeypatch.setattr(QFileDialog, name, lambda *_args, name=name: dialogs.append(name) or
                            ("" if name == "getExistingDirectory" else ("", "")))
    window.activateWindow()
    qtbot.waitActive(window)
    ctrl, shift = Qt.KeyboardModifier.ControlModifier, Qt.KeyboardModifier.ShiftModifier
    for key, page in ((Qt.Key.Key_2, window.train_page), (Qt.Key.Key_4, window.predict_page),
                      (Qt.Key.Key_3, window.evaluate_page), (Qt.Key.Key_1, window.data_page)):
        qtbot.keyClick(window, key, ctrl)
        assert window.tabs.currentWidget() is page
    qtbot.keyClick(window, Qt.Key.Key_O, ctrl)  # Open dataset…
    qtbot.keyClick(window, Qt.Key.Key_O, ctrl | shift)  # Open run…
    qtbot.keyClick(window, Qt.Key.Key_M, ctrl)  # Open model…
    assert dialogs == ["getExistingDirectory", "getExistingDirectory", "getOpenFileName"]
    window.evaluate_page.show_snapshot(RunSnapshot(make_run_info(Path("run")), [], None, None))
    qtbot.keyClick(window, Qt.Key.Key_E, ctrl | shift)  # Export model as…
    assert dialogs[-1] == "getSaveFileName"
    qtbot.keyClick(window, Qt.Key.Key_Q, ctrl)
    assert not window.isVisible()


def test_retrain_from_the_predict_page_starts_on_the_train_page(window: MainWindow, trained_run: Path,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list = []
    monkeypatch.setattr(window.train_page, "retrain", lambda info: asked.append(info) or True)
    window.predict_page.retrain_requested.emit(trained_run)
    assert [info.path for info in asked] == [trained_run]
    assert window.tabs.currentWidget() is window.train_page
    window.tabs.setCurrentWidget(window.predict_page)
    window.predict_page.retrain_requested.emit(tmp_path)  # not a run folder (any more): said, nothing started
    assert len(asked) == 1 and "not a run folder" in window.notice.message.text()
    assert window.tabs.currentWidget() is window.predict_page
