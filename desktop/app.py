"""GUI entry point: logging to the user log folder, an exception hook that reports instead of crashing,
and a QApplication (reused when one is running) with the main window."""

from __future__ import annotations

import faulthandler
import logging
import sys
import threading
import traceback
from collections.abc import Callable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QObject, Signal

from desktop.paths import log_file

log = logging.getLogger("desktop")
EXIT_WAIT_MS = 60_000
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


def main() -> int:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("Transfer Studio")
    app.setOrganizationName("Transfer Studio")
    path = configure_logging()
    log.info("starting Transfer Studio; log file %s", path)

    from desktop.main_window import MainWindow

    window = MainWindow()
    relay = ErrorRelay(window)
    relay.reported.connect(window.show_error)
    restore = install_exception_hooks(relay)
    try:
        window.show()
        return app.exec()
    finally:
        window.stop_workers(EXIT_WAIT_MS)  # the loop can also end without the window closing (QApplication.quit)
        restore()
