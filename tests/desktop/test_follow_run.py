"""Following a run that another process trains: File → Open run on a "running" run shows its curves live, and Stop
asks that process, through the run's stop file, to stop."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLabel

from desktop.main_window import MainWindow
from desktop.run_follower import RunFollower
from engine.cli import EXIT_INTERRUPTED
from engine.training import run_folder as rf

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 1000  # far more than run before the test presses Stop (40 all ran on an idle machine); killed at the end


def _record(epoch: int) -> dict:
    return {"epoch": epoch, "phase": "fine-tune", "train_loss": 1.0 / (epoch + 1), "train_accuracy": 0.5,
            "val_loss": 0.9, "val_accuracy": 0.25 * epoch, "seconds": 1.0}


def _lines(*epochs: int) -> bytes:
    return b"".join(json.dumps(_record(e)).encode() + b"\n" for e in epochs)


def test_the_follower_reads_only_whole_new_lines_and_a_rewritten_file_from_its_start(qtbot, tmp_path: Path) -> None:
    (tmp_path / rf.RUN_FILE).write_text(json.dumps({"status": "running"}))
    metrics = tmp_path / rf.METRICS_FILE
    follower = RunFollower(tmp_path)
    read: list[tuple[list[int], bool]] = []
    follower.records_read.connect(lambda records, from_start: read.append(([r["epoch"] for r in records], from_start)))
    ended: list[str] = []
    follower.ended.connect(ended.append)
    follower.start()  # no metrics.jsonl yet (the quick head is running)
    metrics.write_bytes(_lines(0, 1) + _lines(2)[:20])  # the third line half-copied by a sync tool
    follower.poll()
    metrics.write_bytes(_lines(0, 1, 2) + b"not json\n" + _lines(3))
    follower.poll()
    metrics.write_bytes(_lines(0, 1))  # resumed elsewhere: truncated to its last checkpoint
    follower.poll()
    assert read == [([0, 1], True), ([2, 3], False), ([0, 1], True)] and ended == []
    metrics.write_bytes(_lines(0, 1, 2))
    (tmp_path / rf.RUN_FILE).write_text(json.dumps({"status": "completed"}))
    follower.poll()
    assert read[-1] == ([2], False) and ended == ["completed"] and not follower.following
    follower.deleteLater()


def test_a_run_trained_by_another_process_is_followed_live_and_stopped_through_its_stop_file(
        window: MainWindow, qtbot, small_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", str(small_data), "--out", str(run), "--epochs", str(EPOCHS),
         "--batch-size", "4", "--early-stopping", "0"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as writer:
        try:
            qtbot.waitUntil(lambda: (run / rf.RUN_FILE).is_file(), timeout=120_000)
            window.open_run(run)
            page = window.train_page
            qtbot.waitUntil(lambda: page.following, timeout=60_000)
            assert window.tabs.currentWidget() is page
            label = window.findChild(QLabel, "followRunLabel")
            assert label.isVisible() and "another process" in label.text()
            assert not page.resume_button.isVisible() and page.stop_button.isEnabled()

            shown: list[list[tuple[float, float]]] = []  # the validation-accuracy curve's points, as drawn each time

            def caught_up_after_growing() -> bool:
                on_file = rf.read_metrics(run)
                xs, ys = page.accuracy_plot.curves["val"].getData()
                shown.append(list(zip(xs if xs is not None else [], ys if ys is not None else [], strict=True)))
                return len({len(points) for points in shown} - {0}) >= 2 and len(shown[-1]) == len(on_file) >= 2

            qtbot.waitUntil(caught_up_after_growing, timeout=120_000)
            on_file = [(m["epoch"], 100 * m["val_accuracy"]) for m in rf.read_metrics(run)]
            assert all(points == on_file[:len(points)] for points in shown), "every curve drawn was the file's so far"
            page.stop_button.click()
            assert (run / rf.STOP_FILE).is_file() and not page.stop_button.isEnabled()
            assert writer.wait(timeout=120) == EXIT_INTERRUPTED, writer.stderr.read()
        finally:
            writer.kill()
    qtbot.waitUntil(lambda: not page.following, timeout=10_000)
    info = rf.read_run(run)
    assert info.status == "cancelled" and info.epochs_completed < EPOCHS
    assert page.history.epochs == [m["epoch"] for m in rf.read_metrics(run)], "the last lines were read too"
    assert label.isHidden() and page.resume_button.isVisible() and page.progress.format() == "Run cancelled"


def test_following_ends_when_the_run_completes_and_the_evaluate_page_shows_it(
        window: MainWindow, qtbot, trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    rf.update_run_file(run, status="running")  # as it was while the other process trained it
    page = window.train_page
    window.open_run(run)
    qtbot.waitUntil(lambda: page.following, timeout=60_000)
    assert page.history.epochs == [m["epoch"] for m in rf.read_metrics(run)]
    with qtbot.waitSignal(page.run_ended, timeout=10_000) as ended:
        rf.update_run_file(run, status="completed")
    assert ended.args == [run, "completed"] and not page.following
    assert "Finished: best epoch" in page.log_view.text() and page.resume_button.isHidden()
    qtbot.waitUntil(lambda: window.evaluate_page.snapshot.info.status == "completed", timeout=60_000)


@pytest.mark.skipif(os.name == "nt", reason="on Windows a gone process cannot be told")
def test_a_running_run_whose_process_is_gone_is_offered_for_resume_not_followed(
        window: MainWindow, qtbot, trained_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    rf.update_run_file(run, status="running", process={"host": socket.gethostname(), "pid": child.pid})
    page = window.train_page
    window.open_run(run)
    qtbot.waitUntil(lambda: "its process is gone" in page.run_label.text(), timeout=60_000)
    assert not page.following and not page.resume_button.isHidden()
    assert f"its process ({child.pid} on this machine) is gone" in page.log_view.text()
