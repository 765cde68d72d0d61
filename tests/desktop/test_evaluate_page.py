"""The Evaluate page's export can be cancelled, and says truthfully what was (not) written."""

import shutil
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from desktop.main_window import MainWindow
from engine.training import run_folder as rf


def test_export_can_be_cancelled_and_writes_nothing(window: MainWindow, find, qtbot, trained_run: Path,
                                                    tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / rf.MODEL_FILE).unlink(missing_ok=True)
    runner = window.runners["evaluate"]
    with qtbot.waitSignal(runner.returned, timeout=60_000):
        window.open_run(run)
    export, cancel = find("exportButton", QPushButton), find("cancelExportButton", QPushButton)
    assert not cancel.isVisible()
    qtbot.mouseClick(export, Qt.MouseButton.LeftButton)
    assert cancel.isVisible() and not export.isEnabled()
    with qtbot.waitSignal(runner.aborted, timeout=60_000):
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not cancel.isVisible())
    assert window.evaluate_page.export_status.text().startswith("Export cancelled: nothing was written")
    assert not (run / rf.MODEL_FILE).exists() and export.isEnabled()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_metric_names_are_not_cut_off(window: MainWindow, qtbot, trained_run: Path) -> None:
    with qtbot.waitSignal(window.runners["evaluate"].returned, timeout=60_000):
        window.open_run(trained_run)
    window.tabs.setCurrentWidget(window.evaluate_page)
    table = window.evaluate_page.metrics_table
    qtbot.waitUntil(lambda: table.isVisible())
    assert table.model().rowCount() >= 3  # classes, accuracy, macro average, balanced accuracy
    assert table.horizontalHeader().sectionSize(0) >= table.sizeHintForColumn(0) > 0
