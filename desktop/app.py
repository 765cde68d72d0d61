"""GUI entry point: logging to the user log folder, an exception hook that reports instead of crashing,
and a QApplication (reused when one is running) with the main window."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QApplication, QMainWindow

from desktop.paths import log_file

log = logging.getLogger("desktop")
EXIT_WAIT_MS = 60_000
SMOKE_BUSY_LIMIT_S = 120  # how long a smoke test waits, past its seconds, for a busy window to settle
ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], object]


class ErrorRelay(QObject):
    """Carries an uncaught exception from any thread to the GUI thread (queued signal)."""

    reported = Signal(str, str)  # message, traceback


def configure_logging() -> Path:
    """Log to a rotating file in the user log folder (and keep Python's fault dumps next to it)."""
    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not any(isinstance(h, RotatingFileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = RotatingFileHandler(path, maxBytes=1_000_000, backupCount=3, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
    if not faulthandler.is_enabled():
        faulthandler.enable(open(path.with_name("faults.log"), "a", encoding="utf-8"))  # noqa: SIM115 - stays open
    return path


def install_exception_hooks(relay: ErrorRelay) -> Callable[[], None]:
    """Log uncaught exceptions (GUI thread and other threads) and report them; returns an undo function."""
    previous_hook, previous_thread_hook = sys.excepthook, threading.excepthook

    def report(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            previous_hook(kind, value, tb)
            return
        log.error("uncaught exception", exc_info=(kind, value, tb))
        relay.reported.emit(f"Unexpected error: {value or kind.__name__}",
                            "".join(traceback.format_exception(kind, value, tb)))

    def report_thread(args: threading.ExceptHookArgs) -> None:
        report(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)

    sys.excepthook, threading.excepthook = report, report_thread

    def restore() -> None:
        sys.excepthook, threading.excepthook = previous_hook, previous_thread_hook

    return restore


def main(argv: Sequence[str] = ()) -> int:
    """The full app's window. ``--smoke-seconds N`` (hidden) closes it after N seconds: the bundle's smoke test."""
    parser = argparse.ArgumentParser(prog="transfer-studio")
    parser.add_argument("--smoke-seconds", type=float, default=None, help=argparse.SUPPRESS)
    options = parser.parse_args(list(argv))

    def create_window() -> QMainWindow:
        from desktop.main_window import MainWindow

        return MainWindow()

    def report(window: QMainWindow) -> int | None:
        if not window.device:  # torch is still loading on the training thread
            return None
        print(f"{window.windowTitle()}: {window.device_label.text()}", flush=True)
        return 0

    return run_window("Transfer Studio", create_window, smoke_seconds=options.smoke_seconds, smoke_report=report)


def run_window(name: str, create_window: Callable[[], QMainWindow], *, smoke_seconds: float | None = None,
               smoke_report: Callable[[QMainWindow], int | None] | None = None) -> int:
    """Show a window (it needs ``show_error`` and ``stop_workers``) with logging and the exception hooks.

    With ``smoke_seconds``, ``smoke_report(window)`` runs after that long: it prints what the smoke test checks and
    returns the exit code, or None while the window is still busy (it is asked again shortly after).
    """
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName(name)
    app.setOrganizationName("Transfer Studio")
    path = configure_logging()
    log.info("starting %s; log file %s", name, path)

    window = create_window()
    relay = ErrorRelay(window)
    relay.reported.connect(window.show_error)
    restore = install_exception_hooks(relay)
    if smoke_seconds is not None:
        deadline = time.monotonic() + smoke_seconds + SMOKE_BUSY_LIMIT_S

        def finish_smoke() -> None:
            code = smoke_report(window) if smoke_report is not None else 0
            if code is None and time.monotonic() < deadline:
                QTimer.singleShot(200, finish_smoke)
                return
            app.exit(1 if code is None else code)

        QTimer.singleShot(round(smoke_seconds * 1000), finish_smoke)
    try:
        window.show()
        return app.exec()
    finally:
        _stop_workers_before_exit(window)
        restore()


def _stop_workers_before_exit(window: QMainWindow) -> None:
    """The loop can also end without the window closing (``QApplication.exit``, a smoke test). Destroying a running
    QThread aborts the process, so a job that outlives EXIT_WAIT_MS (one that ignores cancel for a while, like an
    ONNX export's graph capture) is waited for, with the window hidden."""
    if not window.stop_workers(EXIT_WAIT_MS):
        log.warning("a job is still running %d s after it was cancelled; waiting for it to end before exiting",
                    EXIT_WAIT_MS // 1000)
        window.hide()
        window.stop_workers(None)
