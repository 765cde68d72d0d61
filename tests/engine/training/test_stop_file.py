"""A run stopped through its folder's stop file (what the app writes when it follows a run another process trains)."""

import threading
import time
from pathlib import Path

import pytest

from engine.control import STOP_FILE_INTERVAL, Cancelled, RunControl
from engine.events import EpochEnded
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import TrainResult, train

EPOCHS = 30  # far more than run between the request and the next look at the stop file (every 0.5 s): 6 all ran
# on an idle machine before it was seen


def test_a_watched_stop_file_cancels_at_the_next_look(tmp_path: Path) -> None:
    control, stop = RunControl(), tmp_path / "stop"
    control.watch_stop_file(stop)
    control.check()  # looked: no file
    stop.touch()
    control.check()  # within the interval: not looked at again (a stat per batch is too slow on a network folder)
    assert not control.cancelled
    time.sleep(STOP_FILE_INTERVAL * 1.2)
    with pytest.raises(Cancelled):
        control.check()
    assert control.cancelled


def test_request_stop_refuses_a_folder_without_a_run(tmp_path: Path) -> None:
    with pytest.raises(rf.RunFolderError, match="not a run folder"):
        rf.request_stop(tmp_path)
    assert not (tmp_path / rf.STOP_FILE).exists()


def test_a_run_stopped_through_its_stop_file_is_resumable_and_resuming_ignores_the_old_file(
        small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    results: list[TrainResult] = []
    trainer = threading.Thread(target=lambda: results.append(
        train(small_data, run, TrainConfig(epochs=EPOCHS, batch_size=4, early_stopping=0))))
    trainer.start()
    try:
        deadline = time.monotonic() + 120
        while not any(m["epoch"] >= 1 for m in rf.read_metrics(run)):  # another process would see just this
            assert trainer.is_alive() and time.monotonic() < deadline, "the run ended or stalled before epoch 1"
            time.sleep(0.05)
        rf.request_stop(run)
    finally:
        trainer.join(timeout=120)
    assert not trainer.is_alive()
    assert results[0].status == "cancelled" and rf.read_run(run).status == "cancelled"
    stopped_at = rf.read_metrics(run)[-1]["epoch"]
    assert 1 <= stopped_at < EPOCHS
    assert (run / rf.STOP_FILE).exists(), "the request stays until a start or resume removes it"

    events: list = []
    resumed = train(None, run, resume=True, on_event=events.append)
    assert resumed.status == "completed", "the stale stop file did not stop the resumed run"
    assert not (run / rf.STOP_FILE).exists()
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == list(range(stopped_at + 1, EPOCHS + 1))
    assert [m["epoch"] for m in rf.read_metrics(run)] == list(range(EPOCHS + 1))
    assert rf.read_run(run).status == "completed"
