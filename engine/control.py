"""RunControl: cooperative cancel and pause, checked by the engine between steps.

A busy worker thread has no event loop to receive a queued "cancel", so the engine polls this object.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

# How often check() looks for a watched stop file: a stat on a network folder can take milliseconds, and a fast GPU
# runs hundreds of batches a second; half a second is still "at the next batch" to the person who pressed Stop.
STOP_FILE_INTERVAL = 0.5


class Cancelled(Exception):
    """Raised inside the engine when the user cancelled; handled where the run ends."""


class RunControl:
    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._resume = threading.Event()
        self._resume.set()
        self._stop_file: Path | None = None
        self._next_look = 0.0

    def watch_stop_file(self, path: Path) -> None:
        """Also stop when ``path`` appears: how another process (the app following a run in a shared folder) asks."""
        self._stop_file, self._next_look = Path(path), 0.0

    def cancel(self) -> None:
        """Request a stop; also wakes a paused run so that it can stop."""
        self._cancel.set()
        self._resume.set()

    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def check_together(self) -> None:
        """``check`` at a point every process of a distributed run reaches in step (a training batch, an epoch);
        alone, the same as ``check`` (``engine.training.distributed.SharedStop`` makes it collective)."""
        self.check()

    def check(self) -> None:
        """Block while paused; raise Cancelled when a stop was requested (cancel(), or the watched stop file)."""
        self._resume.wait()
        if self._stop_file is not None and (now := time.monotonic()) >= self._next_look:
            self._next_look = now + STOP_FILE_INTERVAL
            if self._stop_file.exists():
                self.cancel()
        if self._cancel.is_set():
            raise Cancelled()
