"""desktop.app.main: the real entry point, started in-process, reusing the test's QApplication."""

from __future__ import annotations

import sys

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
