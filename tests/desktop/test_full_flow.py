"""The whole app through its widgets: open data, train, evaluate, export, drop photos to classify, save CSV.

Set TRANSFER_STUDIO_SCREENSHOTS=folder to keep the page screenshots (README's come from here).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QLineEdit, QPushButton, QSpinBox

from engine.training import run_folder as rf

TRAIN_TIMEOUT_MS = 240_000


def _points(plot: pg.PlotWidget, key: str) -> int:
    xs, _ = plot.curves[key].getData()
    return 0 if xs is None else len(xs)


def test_open_train_evaluate_export_predict(window, find, drop, qtbot, small_data: Path, tmp_path: Path) -> None:
    shots = Path(os.environ.get("TRANSFER_STUDIO_SCREENSHOTS", tmp_path / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)

    # Data: type the folder and press Enter; the scan runs on the worker.
    edit = find("datasetPathEdit", QLineEdit)
    edit.setText(str(small_data))
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        qtbot.keyClick(edit, Qt.Key.Key_Return)
    classes = find("classTable", QAbstractItemView).model()
    assert classes.rowCount() == 2
    assert [classes.index(r, 1).data() for r in range(2)] == ["6", "6"]
    assert find("scanReportView", QAbstractItemView).model().rowCount() >= 1
    assert window.grab().save(str(shots / "data.png"))

    # Train: 2 epochs, batch size 4; wait for the run to finish.
    window.tabs.setCurrentWidget(window.train_page)
    find("epochsSpin", QSpinBox).setValue(2)
    find("batchSizeSpin", QSpinBox).setValue(4)
    start = find("startButton", QPushButton)
    assert start.isEnabled()
    worker = window.runners["training"]
    with qtbot.waitSignal(worker.run_finished, timeout=TRAIN_TIMEOUT_MS) as finished:
        qtbot.mouseClick(start, Qt.MouseButton.LeftButton)
        assert not start.isEnabled()  # a second run cannot be started while one runs
        assert find("stopButton", QPushButton).isEnabled()
    assert finished.args[1].status == "completed"
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    run_dir = window.train_page.run_dir
    assert run_dir is not None and run_dir.parent.name == "runs"
    epochs = len(rf.read_metrics(run_dir))
    assert epochs == 3  # quick head + 2 fine-tune epochs
    loss_plot, accuracy_plot = find("lossPlot", pg.PlotWidget), find("accuracyPlot", pg.PlotWidget)
    assert _points(loss_plot, "train") == _points(loss_plot, "val") == epochs
    assert _points(accuracy_plot, "train") == _points(accuracy_plot, "val") == epochs
    assert _points(loss_plot, "batch") >= 2 * 2  # at least the first and last batch of each fine-tune epoch
    assert "quick head" in window.train_page.log_view.text()
    assert not find("stopButton", QPushButton).isEnabled()
    assert window.grab().save(str(shots / "train.png"))

    # Evaluate: the finished run opens by itself.
    metrics = find("metricsTable", QAbstractItemView).model()
    qtbot.waitUntil(lambda: metrics.rowCount() == 2 + 3, timeout=30_000)
    window.tabs.setCurrentWidget(window.evaluate_page)
    evaluation = json.loads((run_dir / rf.EVALUATION_FILE).read_text())
    assert metrics.index(0, 0).data() == evaluation["labels"][0]
    confusion = find("confusionMatrixView", QAbstractItemView).model()
    assert confusion.rowCount() == confusion.columnCount() == 2
    total = sum(int(confusion.index(r, c).data()) for r in range(2) for c in range(2))
    assert total == evaluation["validation"]["count"]
    wrong = sum(p["true"] != p["predicted"] for p in evaluation["validation"]["predictions"])
    assert find("mistakesView", QAbstractItemView).model().rowCount() == wrong

    # Export: model.onnx in the run folder, parity shown inline, and the Predict page loads it.
    with qtbot.waitSignal(window.predict_page.model_loaded, timeout=TRAIN_TIMEOUT_MS):
        qtbot.mouseClick(find("exportButton", QPushButton), Qt.MouseButton.LeftButton)
    assert (run_dir / "model.onnx").is_file()
    assert "top-1 agreement" in window.evaluate_page.export_status.text()
    assert find("modelPathEdit", QLineEdit).text() == str(run_dir / "model.onnx")
    assert window.grab().save(str(shots / "evaluate.png"))

    # Predict: photos dropped on the window while the Predict page shows are classified, one row each.
    window.tabs.setCurrentWidget(window.predict_page)
    photos = sorted(small_data.rglob("*.jpg"))[:3] + [small_data / "missing.jpg"]
    predictions = find("predictionsView", QAbstractItemView).model()
    drop(window, photos)
    qtbot.waitUntil(lambda: predictions.rowCount() == len(photos), timeout=60_000)
    results = {Path(p.path).name: p for p in window.predict_page.results}
    assert results["missing.jpg"].error
    assert all(results[p.name].label in evaluation["labels"] for p in photos[:3])
    qtbot.waitUntil(lambda: predictions.index(0, 0).data(Qt.ItemDataRole.DecorationRole) is not None, timeout=30_000)
    assert window.grab().save(str(shots / "predict.png"))
    out = tmp_path / "predictions.csv"
    window.predict_page.save_results(out)  # written on the Predict page's file runner
    qtbot.waitUntil(lambda: window.predict_page.status.text().startswith("Saved"), timeout=30_000)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(rows) == len(photos) and rows[0]["label"] in evaluation["labels"]
