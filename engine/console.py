"""Print engine events on a terminal: a one-line progress bar with ETA, and a line per finished epoch."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from engine.events import BatchProgress, EpochEnded, Info, Progress, RunFinished, RunStarted, WarningEvent
from engine.time_format import format_duration

_REDRAW_INTERVAL = 0.2


class ConsoleProgress:
    """An EventSink for the CLI. On a terminal the bar redraws in place; otherwise only milestones print.

    A failure is not printed here: the command prints its one-line error (or traceback) itself.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty()
        self._last_draw = 0.0
        self._bar_shown = False

    def __call__(self, event: object) -> None:
        if isinstance(event, Progress):
            self._bar(f"{event.phase}", event.done, event.total, event.eta_seconds, event.message)
        elif isinstance(event, BatchProgress):
            self._bar(f"epoch {event.epoch}", event.batch, event.batches, event.eta_seconds,
                      f"loss {event.loss:.3f}, {event.images_per_second:.0f} img/s")
        elif isinstance(event, EpochEnded):
            self._line(
                f"epoch {event.epoch:>2} [{event.phase}] "
                f"train loss {event.train_loss:.3f} acc {event.train_accuracy:.3f}"
                f" | val loss {event.val_loss:.3f} acc {event.val_accuracy:.3f}"
                f" | {event.seconds:.1f}s, {event.images_per_second:.0f} img/s{' *best' if event.is_best else ''}"
            )
        elif isinstance(event, WarningEvent):
            self._line(f"warning: {event.message}")
        elif isinstance(event, Info):
            self._line(event.message)
        elif isinstance(event, RunStarted):
            start = f", resuming at epoch {event.start_epoch}" if event.start_epoch else ""
            self._line(f"training {event.config['backbone']} ({event.config['strategy']}) on {event.device}{start}")
        elif isinstance(event, RunFinished):
            self._line(f"run {event.status}: best validation accuracy {event.best_val_accuracy:.3f} "
                       f"at epoch {event.best_epoch} ({event.epochs_run} epochs recorded)")

    def _bar(self, label: str, done: int, total: int, eta: float | None, extra: str) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not self.interactive or (now - self._last_draw < _REDRAW_INTERVAL and not finished):
            return
        self._last_draw = now
        width = 24
        filled = int(width * done / total) if total else 0
        bar = "#" * filled + "." * (width - filled)
        text = f"\r{label:<22} [{bar}] {done}/{total} ETA {format_duration(eta)} {extra}"
        self.stream.write(text[:160].ljust(100))
        self.stream.flush()
        self._bar_shown = True

    def _line(self, text: str) -> None:
        if self._bar_shown:
            self.stream.write("\r" + " " * 100 + "\r")
            self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()
