"""The Evaluate page's export can be cancelled, and says truthfully what was (not) written."""

import shutil
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QPushButton

from desktop.jobs import RunSnapshot
from desktop.main_window import MainWindow
from engine.evaluation.metrics import evaluate_predictions, evaluation_document
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


def _evaluation(right: int) -> dict:
    """20 cats and 20 dogs with ``right`` of each classified correctly; both labels 10 times in training."""
    truth = [0] * 20 + [1] * 20
    predicted = [0] * right + [1] * (20 - right) + [1] * right + [0] * (20 - right)
    split = evaluate_predictions(["cat", "dog"], truth, np.eye(2)[predicted], [f"{i}.png" for i in range(40)])
    return evaluation_document(["cat", "dog"], split, None, train_counts=[10, 10])


def test_verdict_warns_for_a_weak_model_and_is_hidden_for_an_old_run(window: MainWindow, find, tmp_path: Path) -> None:
    page = window.evaluate_page
    window.tabs.setCurrentWidget(page)
    label = find("verdictLabel", QLabel)
    weak = _evaluation(right=14)  # 0.70: above the noise bar (0.66) but not halfway from chance to 1 (0.75)
    assert weak["validation"]["verdict"]["level"] == "weak"
    page.show_snapshot(RunSnapshot(tmp_path, {"status": "completed"}, [], weak, None))
    assert label.isVisible() and page.verdict_icon.isVisible()
    assert "Warning: the model is weak" in label.text() and "--strategy full" in label.text()

    page.show_snapshot(RunSnapshot(tmp_path, {"status": "completed"}, [], _evaluation(right=19), None))
    assert label.isVisible() and not page.verdict_icon.isVisible()
    assert label.text().startswith("Validation accuracy 0.95 clearly beats") and "Warning" not in label.text()

    old = _evaluation(right=14)
    del old["validation"]["verdict"], old["validation"]["baseline"]
    page.show_snapshot(RunSnapshot(tmp_path, {"status": "completed"}, [], old, None))
    assert not label.isVisible()
