"""Correct and retrain, end to end in the main window: a photo corrected on the Predict page is copied into the
model's dataset, and "Retrain with corrections" trains a new run (same options) whose split holds it."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton

from desktop.main_window import MainWindow
from engine.training import run_folder as rf


def test_a_corrected_photo_is_in_the_retrained_runs_data(window: MainWindow, qtbot, own_run: Path, make_image,
                                                         tmp_path: Path) -> None:
    page = window.predict_page
    page.load_model(own_run / "model.onnx")
    qtbot.waitUntil(lambda: page.predictor is not None and not page.runner.busy, timeout=60_000)
    photo = make_image(tmp_path / "inbox" / "new-photo.png", size=(256, 256))
    page.classify([photo])
    qtbot.waitUntil(lambda: len(page.results) == 1 and not page.runner.busy, timeout=60_000)
    label = page.predictor.info.labels[0]
    page.correct([0], label)
    qtbot.waitUntil(lambda: page.status.text().startswith(("Added", "Could not")), timeout=30_000)
    assert page.status.text().startswith("Added"), page.status.text()

    with qtbot.waitSignal(window.train_page.run_ended, timeout=300_000) as ended:
        qtbot.mouseClick(page.findChild(QPushButton, "retrainButton"), Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.train_page
    run_dir, status = ended.args
    assert status == "completed" and run_dir != own_run
    new, old = rf.read_run(run_dir), rf.read_run(own_run)
    assert new.config == old.config and Path(new.data_dir) == Path(old.data_dir).resolve()
    items = rf.read_scan_report(new).items
    copy = Path(old.data_dir) / label / "new-photo.png"
    assert [(Path(i.path).name, new.labels[i.label]) for i in items if Path(i.path) == copy.resolve()] == [
        ("new-photo.png", label)]
    assert len(items) == sum(sum(split.values()) for split in old.dataset_counts.values()) + 1
