"""Run engine work off the GUI thread: one QThread per JobRunner, engine events turned into typed Qt signals.

A job is a plain callable ``(on_event, control) -> result``. The worker catches every exception and sends it
back as data (``failed``), so a broken job never takes the app down. Cancellation is the RunControl flag
that the engine checks between steps, because a busy worker thread has no event loop to receive a signal.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.control import Cancelled, RunControl
from engine.events import (
    BatchPredicted,
    BatchProgress,
    CheckpointSaved,
    EpochEnded,
    EpochStarted,
    EventSink,
    Info,
    Progress,
    RunFinished,
    RunStarted,
    WarningEvent,
)

log = logging.getLogger(__name__)

JobFunction = Callable[[EventSink, RunControl], Any]


@dataclass(eq=False)
class Job:
    """One unit of work; ``description`` is what the status bar shows while it runs."""

    description: str
    function: JobFunction
    control: RunControl = field(default_factory=RunControl)


class JobSignals(QObject):
    """The fixed set of signals of a job. Every signal carries its Job first, so a page acts only on the jobs it
    submitted (a late event of a superseded job is ignored) without guessing which job is running. Payloads are
    the engine's frozen event dataclasses (builtin values only), so they are safe to queue across threads.
    ``finished`` is always a job's last signal, after exactly one of ``returned``, ``failed`` or ``aborted``.
    """

    started = Signal(object)  # Job
    progress = Signal(object, object)  # Job, engine.events.Progress
    info = Signal(object, str)  # Job, message
    warning = Signal(object, str)  # Job, message
    run_started = Signal(object, object)  # Job, RunStarted
    epoch_started = Signal(object, object)  # Job, EpochStarted
    batch_progress = Signal(object, object)  # Job, BatchProgress
    epoch_ended = Signal(object, object)  # Job, EpochEnded
    checkpoint_saved = Signal(object, object)  # Job, CheckpointSaved
    run_finished = Signal(object, object)  # Job, RunFinished
    batch_predicted = Signal(object, object)  # Job, BatchPredicted: part of a prediction's result, before it returns
    returned = Signal(object, object)  # Job, result
    failed = Signal(object, str, str)  # Job, message, traceback
    aborted = Signal(object)  # Job (cancelled)
    finished = Signal(object)  # Job


_SIGNAL_FOR_EVENT: dict[type, str] = {
    Progress: "progress", Info: "info", WarningEvent: "warning", RunStarted: "run_started",
    EpochStarted: "epoch_started", BatchProgress: "batch_progress", EpochEnded: "epoch_ended",
    CheckpointSaved: "checkpoint_saved",
    RunFinished: "run_finished", BatchPredicted: "batch_predicted",
}
RELAYED_SIGNALS = ("started", "progress", "info", "warning", "run_started", "epoch_started", "batch_progress",
                   "epoch_ended", "checkpoint_saved", "run_finished", "batch_predicted", "returned", "failed",
                   "aborted")


class EngineWorker(JobSignals):
    """Lives on its runner's thread and runs jobs there, one at a time, in the order they were submitted."""

    @Slot(object)
    def on_job(self, job: Job) -> None:
        self.started.emit(job)
        try:
            job.control.check()  # a job cancelled while it waited in the queue never starts
            result = job.function(partial(self.on_event, job), job.control)
        except Cancelled:
            self.aborted.emit(job)
        except Exception as exc:  # every failure is reported as data; the thread lives on
            if job.control.cancelled:  # a stop during set-up can surface as another error; the user asked for it
                log.info("%s: stopped (%s)", job.description, exc)
                self.aborted.emit(job)
            else:
                log.error("%s failed", job.description, exc_info=exc)
                self.failed.emit(job, str(exc) or type(exc).__name__, traceback.format_exc())
        else:
            self.returned.emit(job, result)
        finally:
            self.finished.emit(job)

    def on_event(self, job: Job, event: object) -> None:
        """The engine's event sink (bound to ``job``): called on the worker thread, re-emitted as the matching
        typed signal.

        RunFailed has no signal: the exception that follows it becomes ``failed``.
        """
        name = _SIGNAL_FOR_EVENT.get(type(event))
        if name is not None:
            getattr(self, name).emit(job, event.message if isinstance(event, (Info, WarningEvent)) else event)


class JobRunner(JobSignals):
    """A dedicated QThread with its EngineWorker (no parent, moved to the thread); jobs queue in order.

    The runner lives on the GUI thread and re-emits the worker's signals there, so slots and tests
    (``qtbot.waitSignal(runner.run_finished)``) always run on the GUI thread, after the runner's own bookkeeping.
    """

    paused_changed = Signal(bool)
    _submit = Signal(object)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(f"{name}Runner")
        self.worker = EngineWorker()
        self.qthread = QThread(self)
        self.qthread.setObjectName(f"{name}Thread")
        self.worker.moveToThread(self.qthread)
        self.qthread.finished.connect(self.worker.deleteLater)  # the thread ends only after stop: no job follows
        self.qthread.finished.connect(self.on_thread_finished)
        self._submit.connect(self.worker.on_job)
        for name in RELAYED_SIGNALS:
            getattr(self.worker, name).connect(getattr(self, name))
        self.worker.finished.connect(self.on_worker_finished)
        self._jobs: list[Job] = []
        self._stopped = False

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @property
    def current(self) -> Job | None:
        return self._jobs[0] if self._jobs else None

    @property
    def paused(self) -> bool:
        return self.current is not None and self.current.control.paused

    @property
    def running(self) -> bool:
        """Whether the thread is alive (it starts with the first job and ends after ``stop``)."""
        return self.qthread.isRunning()

    def submit(self, job: Job) -> Job:
        """Queue ``job``. After ``stop`` the job is cancelled instead: while the window closes, signals still in
        the queue may ask for follow-up work (thumbnails for the last batch, the next step), which is dropped."""
        if self._stopped:
            log.info("%s: not started, %s is stopped", job.description, self.objectName())
            job.control.cancel()
            return job
        if not self.qthread.isRunning():
            self.qthread.start()
        self._jobs.append(job)
        self._submit.emit(job)
        return job

    def cancel(self) -> None:
        """Stop the running job at its next check and drop the queued ones."""
        was_paused = self.paused
        for job in reversed(self._jobs):  # queued ones first: the running job may end, and the next start, at once
            job.control.cancel()  # also wakes a paused job, so that it can stop
        if was_paused:
            self.paused_changed.emit(False)

    def pause(self) -> None:
        if self.current is not None and not self.current.control.cancelled:
            self.current.control.pause()
            self.paused_changed.emit(True)

    def resume(self) -> None:
        if self.current is not None:
            self.current.control.resume()
            self.paused_changed.emit(False)

    def stop(self) -> None:
        """Cancel everything and end the thread once the running job returns; no job is accepted after."""
        self._stopped = True
        self.cancel()
        self.qthread.quit()

    def wait(self, timeout_ms: int | None = None) -> bool:
        """True when the thread has ended (or never started) within ``timeout_ms``; None waits until it ends."""
        return self.qthread.wait() if timeout_ms is None else self.qthread.wait(timeout_ms)

    @Slot(object)
    def on_worker_finished(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        self.finished.emit(job)

    @Slot()
    def on_thread_finished(self) -> None:
        """Jobs still queued when ``stop`` ended the thread never ran (a quitting event loop drops the queued
        ones): report each as aborted and finished, so that every job's end is reported and ``busy`` clears."""
        while self._jobs:
            job = self._jobs.pop(0)
            job.control.cancel()
            self.aborted.emit(job)
            self.finished.emit(job)
