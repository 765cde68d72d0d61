"""The Train page on its own: options checked before a run folder exists; only its own jobs' events count; an
opened run's curves, options and plan."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

import desktop.pages.train as train_module
from desktop import paths
from desktop.jobs import RunSnapshot
from desktop.pages.train import TrainPage
from desktop.settings import AppSettings
from desktop.workers import Job, JobRunner
from engine.events import EpochEnded, RunFinished
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.recipe import FineTunePlan


@pytest.fixture
def page(qtbot, settings: AppSettings) -> Iterator[TrainPage]:
    runner = JobRunner("training")
    page = TrainPage(runner, settings)
    qtbot.addWidget(page)
    yield page
    runner.stop()
    assert runner.wait(60_000)


def _runs() -> list[Path]:
    runs = paths.user_data_folder() / "runs"
    return sorted(runs.iterdir()) if runs.is_dir() else []


def test_invalid_options_show_a_message_and_create_no_run_folder(page: TrainPage, qtbot, tmp_path: Path) -> None:
    page.set_dataset(tmp_path, "2 classes")
    page.options_form.set_options({"val_split": 0.5, "test_split": 0.5})
    before = _runs()
    qtbot.mouseClick(page.start_button, Qt.MouseButton.LeftButton)
    assert not page.training and not page.runner.busy and _runs() == before
    message = page.findChild(QLabel, "optionsErrorLabel")
    assert not message.isHidden() and "test_split too large" in message.text()

    page.options_form.set_options({"test_split": 0.0})  # fixed: the message goes with the next start
    page.find_learning_rate()
    assert message.isHidden() and page.finding_lr
    page.runner.cancel()


def test_events_from_a_job_the_page_did_not_submit_are_ignored(page: TrainPage, qtbot) -> None:
    stale = Job("Training an earlier run", lambda _e, _c: None)
    epoch = EpochEnded(1, 2, "fine-tune", 0.5, 0.8, 0.6, 0.7, 1e-3, 1.0, 10.0, True)
    with qtbot.assertNotEmitted(page.run_ended):
        page.runner.info.emit(stale, "from another job")
        page.runner.epoch_ended.emit(stale, epoch)
        page.runner.run_finished.emit(stale, RunFinished("/elsewhere", "cancelled", 0, 0.5, 1))
    assert not page.history.epochs and page.log_view.text() == ""
    assert page.progress.format() == "Idle"


def test_an_opened_run_shows_its_curves_options_and_plan(page: TrainPage, make_run_info, tmp_path: Path) -> None:
    (tmp_path / rf.LAST_FILE).touch()
    info = make_run_info(tmp_path, status="cancelled", config=TrainConfig(batch_size=8),
                         plan=FineTunePlan("shallow", 5, 6, 2, 3, False, "the quick head fits"))
    metrics = [{"epoch": epoch, "phase": "fine-tune", "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.6,
                "val_accuracy": 0.7, "seconds": 2.0} for epoch in (0, 1)]
    page.show_run(RunSnapshot(info, metrics, None, None))
    assert page.history.epochs == [0, 1] and "epoch 1/6: train loss 0.500" in page.log_view.text()
    assert page.options_form.options()["batch_size"] == 8
    assert page.run_label.text() == f"Run folder: {tmp_path} (cancelled)"
    assert not page.resume_button.isHidden()


def test_retrain_starts_a_new_run_with_the_runs_dataset_and_options(page: TrainPage, qtbot, make_run_info,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """"Retrain with corrections": the run's dataset folder and options, a new run folder; refused while busy."""
    started: list[tuple] = []
    hold = threading.Event()

    def fake_train(data_dir: Path, run_dir: Path, config: TrainConfig) -> Job:
        started.append((data_dir, run_dir, config))
        return Job("Training", lambda _e, control: hold.wait(30) and control.check())

    monkeypatch.setattr(train_module.jobs, "train", fake_train)
    info = make_run_info(tmp_path / "old-run", config=TrainConfig(epochs=3, seed=7))
    assert page.retrain(info)
    assert len(started) == 1
    data_dir, run_dir, config = started[0]
    assert data_dir == Path(info.data_dir) and config == info.config and run_dir != info.path
    assert page.options_form.config().epochs == 3 and page.options_form.config().seed == 7
    assert not page.retrain(info) and len(started) == 1  # training: refused, nothing started
    hold.set()
    qtbot.waitUntil(lambda: not page.runner.busy, timeout=30_000)
