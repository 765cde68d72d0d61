"""desktop.app.main: the real entry point, started in-process, reusing the test's QApplication."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QWidget

from desktop import app as desktop_app
from desktop.paths import log_file


@pytest.mark.qt_no_exception_capture
def test_main_shows_the_window_and_reports_uncaught_errors_instead_of_crashing(qapp) -> None:
    hook_before = sys.excepthook
    seen: dict[str, object] = {}

    def find_window() -> QWidget:
        return next(w for w in QApplication.topLevelWidgets() if w.objectName() == "mainWindow" and w.isVisible())

    def broken_slot() -> None:
        raise RuntimeError("boom from a slot")

    def inspect_and_close() -> None:
        window = find_window()
        seen["notice"] = window.notice.message.text() if window.notice.isVisible() else ""
        seen["details"] = window.notice.details.toPlainText()
        window.close()

    QTimer.singleShot(0, broken_slot)
    QTimer.singleShot(300, inspect_and_close)
    watchdog = QTimer(singleShot=True, interval=120_000)
    watchdog.timeout.connect(qapp.quit)
    watchdog.start()

    assert desktop_app.main() == 0
    watchdog.stop()
    assert QApplication.instance() is qapp
    assert "boom from a slot" in seen["notice"] and "RuntimeError" in seen["details"]
    assert "boom from a slot" in log_file().read_text(encoding="utf-8")
    assert sys.excepthook is hook_before  # restored when the loop ends


STUBBORN_EXIT = """
import sys, time
from PySide6.QtCore import QSettings, QTimer
from PySide6.QtWidgets import QApplication
from desktop import app, worker_window
from desktop.predictor_app import PredictorWindow
from desktop.settings import AppSettings
from desktop.workers import Job

app.EXIT_WAIT_MS = worker_window.CLOSE_WAIT_MS = 100

def stubborn(_on_event, _control):
    time.sleep(1.5)  # ignores cancel, like an ONNX export's graph capture
    print("job ended", flush=True)

def create_window():
    window = PredictorWindow(AppSettings(QSettings(sys.argv[1], QSettings.Format.IniFormat)))
    window.runner.submit(Job("stubborn", stubborn))
    QTimer.singleShot(200, window.close)  # "Stopping…": the window waits for the job
    QTimer.singleShot(400, lambda: QApplication.exit(0))  # then the loop ends anyway (logout, smoke test)
    return window

print("exit code", app.run_window("stubborn", create_window), flush=True)
"""


def test_the_app_exits_cleanly_when_a_job_outlives_the_exit_wait(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", STUBBORN_EXIT, str(tmp_path / "settings.ini")],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert "Destroyed while thread" not in result.stderr
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["job ended", "exit code 0"]
