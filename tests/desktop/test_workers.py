"""JobRunner: results, failures and cancellation come back as signals on the GUI thread; the thread ends cleanly."""

from __future__ import annotations

import threading

import pytest
import shiboken6
from PySide6.QtCore import QCoreApplication, QEvent, QThread

from desktop.workers import Job, JobRunner
from engine.events import BatchProgress, EpochEnded, Info, Progress, RunFailed, WarningEvent


@pytest.fixture
def runner(qtbot) -> JobRunner:
    runner = JobRunner("test")
    yield runner
    runner.stop()
    assert runner.wait(10_000)


def test_a_job_signals_started_returned_finished_in_order(runner: JobRunner, qtbot) -> None:
    job = Job("answer", lambda _on_event, _control: 42)
    with qtbot.waitSignals([runner.started, runner.returned, runner.finished], order="strict", timeout=10_000):
        runner.submit(job)
        assert runner.busy and runner.current is job
    assert not runner.busy


def test_a_job_runs_on_the_runner_thread(runner: JobRunner, qtbot) -> None:
    with qtbot.waitSignal(runner.returned, timeout=10_000) as returned:
        runner.submit(Job("where", lambda _e, _c: QThread.currentThread().objectName()))
    assert returned.args[1] == "testThread"


def test_an_exception_becomes_failed_with_its_traceback(runner: JobRunner, qtbot) -> None:
    def broken(_on_event, _control):
        raise ValueError("no such folder")

    with qtbot.waitSignal(runner.failed, timeout=10_000) as failed:
        runner.submit(Job("broken", broken))
    job, message, details = failed.args
    assert job.description == "broken" and message == "no such folder"
    assert "Traceback" in details and "ValueError" in details
    with qtbot.waitSignal(runner.returned, timeout=10_000):  # the thread lives on
        runner.submit(Job("next", lambda _e, _c: 1))


def test_engine_events_become_typed_signals_that_carry_their_job(runner: JobRunner, qtbot) -> None:
    epoch = EpochEnded(1, 2, "fine-tune", 0.5, 0.8, 0.6, 0.7, 1e-3, 1.0, 10.0, True)
    batch = BatchProgress(1, 1, 3, 0.5, 12.0, 2.0)

    def emits(on_event, _control):
        for event in (Progress("scanning", 1, 2), Info("hello"), WarningEvent("careful"), batch, epoch,
                      RunFailed("run", "ignored")):
            on_event(event)

    received = []
    for name in ("progress", "info", "warning", "batch_progress", "epoch_ended", "failed"):
        getattr(runner, name).connect(lambda *args, name=name: received.append((name, *args)))
    job = Job("events", emits)
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        runner.submit(job)
    assert received == [("progress", job, Progress("scanning", 1, 2)), ("info", job, "hello"),
                        ("warning", job, "careful"), ("batch_progress", job, batch), ("epoch_ended", job, epoch)]


def test_cancel_stops_a_running_job_and_drops_queued_ones(runner: JobRunner, qtbot) -> None:
    started = threading.Event()

    def loops(_on_event, control):
        started.set()
        while True:
            control.check()

    ran = []
    aborted = []
    runner.aborted.connect(lambda job: aborted.append(job.description))
    with qtbot.waitSignal(runner.finished, timeout=10_000, check_params_cb=lambda job: job.description == "later"):
        runner.submit(Job("loops", loops))
        runner.submit(Job("later", lambda _e, _c: ran.append(1)))
        assert started.wait(10)
        runner.cancel()
    assert aborted == ["loops", "later"] and not ran and not runner.busy


def test_stop_ends_the_thread_and_drops_new_jobs(qtbot) -> None:
    runner = JobRunner("short")
    assert not runner.running  # the thread starts with the first job
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        runner.submit(Job("one", lambda _e, _c: None))
    assert runner.running
    runner.stop()
    assert runner.wait(10_000) and not runner.running
    ran: list[int] = []
    late = runner.submit(Job("two", lambda _e, _c: ran.append(1)))  # e.g. a signal still queued while closing
    assert late.control.cancelled and not runner.running and not runner.busy
    qtbot.wait(50)
    assert not ran


def test_the_worker_is_deleted_with_its_thread(qtbot) -> None:
    runner = JobRunner("short")
    with qtbot.waitSignal(runner.finished, timeout=10_000):
        runner.submit(Job("one", lambda _e, _c: None))
    worker = runner.worker
    runner.stop()
    assert runner.wait(10_000)
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not shiboken6.isValid(worker)


def test_jobs_still_queued_when_stop_ends_the_thread_are_reported_as_aborted(qtbot) -> None:
    """A job queued behind a running one when the window closes never runs (the quitting event loop drops it):
    its end is still reported, so nothing waits on it and ``busy`` clears."""
    runner = JobRunner("queued")
    entered, release = threading.Event(), threading.Event()

    def blocking(_on_event, _control) -> None:  # noqa: ANN001
        entered.set()
        release.wait(10)

    first = runner.submit(Job("running", blocking))
    assert entered.wait(10)
    queued = runner.submit(Job("queued", lambda _e, _c: None))
    aborted: list[Job] = []
    runner.aborted.connect(lambda job: aborted.append(job))
    runner.stop()
    release.set()
    assert runner.wait(10_000)
    qtbot.waitUntil(lambda: not runner.busy, timeout=5_000)
    assert queued in aborted and queued.control.cancelled and first not in runner._jobs
