"""The behaviour both app windows share: drops anywhere open files, errors go to the notice bar, and closing
stops every worker thread first (briefly waiting, else showing "Stopping…" and closing when the last ends)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QDeadlineTimer, Slot
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QMainWindow

from desktop import paths
from desktop.widgets.drop_area import dropped_paths
from desktop.widgets.notice import NoticeBar
from desktop.workers import JobRunner

CLOSE_WAIT_MS = 2000
STOPPING_MESSAGE = "Stopping… (finishing the current step, then the window closes)"


class WorkerWindow(QMainWindow):
    """Subclasses set ``notice`` and implement ``runner_list``, ``open_paths``, ``save_state`` and ``show_stopping``."""

    notice: NoticeBar

    def __init__(self) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self._stopping = False

    def runner_list(self) -> list[JobRunner]:
        raise NotImplementedError

    def open_paths(self, dropped: Sequence[Path]) -> None:
        raise NotImplementedError

    def save_state(self) -> None:
        raise NotImplementedError

    def confirm_close(self) -> bool:
        """Whether closing may go on (the main window asks while training)."""
        return True

    def show_stopping(self, message: str) -> None:
        raise NotImplementedError

    @Slot(str, str)
    def show_error(self, message: str, details: str = "") -> None:
        """Non-blocking: the notice bar above the pages, with the traceback behind "Details"."""
        self.notice.show_message(f"{message}\n(Logged to {paths.log_file()})" if details else message, details)

    def stop_workers(self, timeout_ms: int | None) -> bool:
        """Cancel every job and end the worker threads; True when all have ended within ``timeout_ms`` (None: wait
        as long as they take)."""
        deadline = QDeadlineTimer(timeout_ms if timeout_ms is not None else QDeadlineTimer.ForeverConstant.Forever)
        runners = self.runner_list()
        for runner in runners:
            runner.stop()
        return all([runner.wait(None if deadline.isForever() else max(0, deadline.remainingTime()))
                    for runner in runners])

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        dropped = dropped_paths(event.mimeData())
        if dropped:
            event.acceptProposedAction()
            self.open_paths(dropped)

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._stopping:
            if not self.confirm_close():
                event.ignore()
                return
            self.save_state()
            self._stopping = True
            if self.stop_workers(CLOSE_WAIT_MS):
                event.accept()
                return
        running = [r for r in self.runner_list() if r.running]
        if not running:
            event.accept()
            return
        event.ignore()
        self.show_stopping(STOPPING_MESSAGE)
        self.centralWidget().setEnabled(False)
        for runner in running:
            runner.qthread.finished.connect(self.on_thread_finished)

    @Slot()
    def on_thread_finished(self) -> None:
        if not any(r.running for r in self.runner_list()):
            self.close()
