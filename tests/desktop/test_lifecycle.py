"""Pause, stop, resume, closing during training, and errors that must surface as messages, not crashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton, QSpinBox

import desktop.worker_window
from engine.training import run_folder as rf

TIMEOUT_MS = 240_000


def _open_dataset(window, qtbot, folder: Path) -> None:
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        window.data_page.open_dataset(folder)


def _start(window, find, qtbot, epochs: int) -> None:
    window.tabs.setCurrentWidget(window.train_page)
    find("epochsSpin", QSpinBox).setValue(epochs)
    find("batchSizeSpin", QSpinBox).setValue(4)
    find("earlyStoppingSpin", QSpinBox).setValue(0)
    with qtbot.waitSignal(window.runners["training"].run_started, timeout=TIMEOUT_MS):
        qtbot.mouseClick(find("startButton", QPushButton), Qt.MouseButton.LeftButton)


def test_pause_stop_and_resume_keep_the_ui_consistent(window, find, qtbot, small_data: Path) -> None:
    _open_dataset(window, qtbot, small_data)
    worker = window.runners["training"]
    start, pause, stop, resume = (find(name, QPushButton) for name in
                                  ("startButton", "pauseButton", "stopButton", "resumeButton"))
    with qtbot.waitSignal(worker.epoch_ended, timeout=TIMEOUT_MS, check_params_cb=lambda _job, e: e.epoch == 1):
        _start(window, find, qtbot, epochs=3)
    assert not find("findLearningRateButton", QPushButton).isEnabled()  # no learning-rate sweep while training
    qtbot.mouseClick(pause, Qt.MouseButton.LeftButton)
    assert pause.text() == "Resume" and window.runners["training"].paused
    with qtbot.waitSignal(worker.run_finished, timeout=TIMEOUT_MS) as finished:
        qtbot.mouseClick(stop, Qt.MouseButton.LeftButton)  # a paused run wakes up to stop
        assert not stop.isEnabled() and not pause.isEnabled()
    assert finished.args[1].status == "cancelled"
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    assert not stop.isEnabled() and not pause.isEnabled() and pause.text() == "Pause"
    run_dir = window.train_page.run_dir
    assert rf.read_run(run_dir).status == "cancelled"
    assert (run_dir / rf.LAST_FILE).is_file()
    assert resume.isVisible() and resume.isEnabled()
    with qtbot.waitSignal(window.evaluate_page.run_opened, timeout=30_000):
        window.open_run(run_dir)  # File → Open run on a stopped run
    assert "stopped before it finished" in window.evaluate_page.summary.text()
    assert find("exportButton", QPushButton).isEnabled()  # best.pt exists

    epochs_before = len(rf.read_metrics(run_dir))
    with qtbot.waitSignal(worker.run_finished, timeout=TIMEOUT_MS) as finished:
        qtbot.mouseClick(resume, Qt.MouseButton.LeftButton)
        assert not start.isEnabled() and not resume.isEnabled()
    assert finished.args[1].status == "completed"
    assert rf.read_run(run_dir).status == "completed"
    assert len(rf.read_metrics(run_dir)) == 4 > epochs_before
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    assert not resume.isVisible()
    xs, _ = window.train_page.loss_plot.curves["val"].getData()
    assert list(xs) == list(range(4))  # the resumed epochs replace, not repeat, the curve's points


def test_closing_during_training_asks_then_stops_cleanly(window, find, qtbot, small_data: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _open_dataset(window, qtbot, small_data)
    _start(window, find, qtbot, epochs=50)
    run_dir = window.train_page.run_dir
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "question", lambda *_args, **_kwargs: answers.pop(0))
    monkeypatch.setattr(desktop.worker_window, "CLOSE_WAIT_MS", 0)  # always take the "Stopping…" path

    window.close()
    assert window.isVisible() and window.train_page.training  # "No" keeps everything running

    window.close()
    assert not answers
    if window.isVisible():
        assert window.activity_label.text().startswith("Stopping…")
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=TIMEOUT_MS)
    assert not any(runner.running for runner in window.runners.values())
    assert rf.read_run(run_dir).status == "cancelled"


def test_a_failing_job_shows_a_message_and_the_app_keeps_working(window, find, qtbot, make_dataset,
                                                                 tmp_path: Path) -> None:
    one_class = make_dataset(tmp_path / "one", {"only": 8})
    with qtbot.waitSignal(window.runners["data"].failed, timeout=60_000):
        window.data_page.open_dataset(one_class)
    notice = window.notice
    assert notice.isVisible() and "only class 'only'" in notice.message.text()
    assert "Traceback" in notice.details.toPlainText() and not notice.details.isVisible()
    qtbot.mouseClick(notice.details_button, Qt.MouseButton.LeftButton)
    assert notice.details.isVisible()
    assert "Could not open" in window.data_page.status.text()

    # Training on it anyway fails inside the worker: reported, and the page is ready for another try.
    notice.hide()
    window.train_page.set_dataset(one_class, "1 class")
    start = find("startButton", QPushButton)
    with qtbot.waitSignal(window.runners["training"].failed, timeout=TIMEOUT_MS):
        qtbot.mouseClick(start, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    assert notice.isVisible() and "only class 'only'" in notice.message.text()
    assert "Training failed" in window.train_page.log_view.text()
    assert not window.train_page.run_dir.exists()  # the empty run folder is not left behind


def test_stopping_while_preparing_is_quiet(window, find, qtbot, small_data: Path) -> None:
    # Stop once the job has started (it scans): the trainer then returns "cancelled" before any run file exists,
    # which must read the same as a stop before the job started (it used to say "Run cancelled", offer Resume for
    # a run that does not exist, and leave its empty folder: a race that made this test flaky).
    _open_dataset(window, qtbot, small_data)
    window.tabs.setCurrentWidget(window.train_page)
    start = find("startButton", QPushButton)
    runner = window.runners["training"]
    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT_MS,
                          check_params_cb=lambda job: job.description.startswith("Training")):
        with qtbot.waitSignal(runner.started, timeout=TIMEOUT_MS,
                              check_params_cb=lambda job: job.description.startswith("Training")):
            qtbot.mouseClick(start, Qt.MouseButton.LeftButton)
        qtbot.mouseClick(find("stopButton", QPushButton), Qt.MouseButton.LeftButton)
    assert start.isEnabled() and not window.notice.isVisible()
    assert "Stop" in window.train_page.progress.format()
    assert not find("resumeButton", QPushButton).isVisible() and not window.train_page.run_dir.exists()
