"""RunControl: cooperative cancel and pause, checked by the engine between steps.

A busy worker thread has no event loop to receive a queued "cancel", so the engine polls this object.
"""

from __future__ import annotations

import threading


class Cancelled(Exception):
    """Raised inside the engine when the user cancelled; handled where the run ends."""


class RunControl:
    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._resume = threading.Event()
        self._resume.set()

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

    def check(self) -> None:
        """Block while paused; raise Cancelled when a stop was requested."""
        self._resume.wait()
        if self._cancel.is_set():
            raise Cancelled()
