"""RunFollower: watch a run folder that another process trains (on this machine, or another through a shared or
synced folder) and report what it adds.

Polled from a timer on the GUI thread: each tick reads only the bytes metrics.jsonl gained (a few hundred per
epoch) and run.json's status, so even a slow network folder holds the GUI for milliseconds, not seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from engine.run_files import METRICS_FILE, RUN_FILE

log = logging.getLogger(__name__)

POLL_MS = 1000


class RunFollower(QObject):
    """Emits the run's metrics records as they are appended, then ``ended`` once run.json leaves "running"."""

    records_read = Signal(list, bool)  # new metrics.jsonl records (dicts), whether they start the file afresh
    ended = Signal(str)  # run.json's status once it is no longer "running"

    def __init__(self, run_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_dir = Path(run_dir)
        self._offset = 0  # bytes of metrics.jsonl already read: up to the end of its last complete line
        self.timer = QTimer(self, interval=POLL_MS)
        self.timer.timeout.connect(self.poll)

    @property
    def following(self) -> bool:
        return self.timer.isActive()

    def start(self) -> None:
        """Read what the run holds so far (at once), then follow it."""
        self.timer.start()
        self.poll()

    def stop(self) -> None:
        self.timer.stop()

    @Slot()
    def poll(self) -> None:
        # The status first: the trainer writes an epoch's line before it marks the run ended, so the lines read
        # after seeing the end are all of them.
        status = self._status()
        self._read_new_records()
        if status is not None and status != "running":
            self.stop()
            self.ended.emit(status)

    def _status(self) -> str | None:
        """run.json's status; None while it cannot be read (a synced folder may show it half-copied)."""
        try:
            document = json.loads((self.run_dir / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        status = document.get("status") if isinstance(document, dict) else None
        return status if isinstance(status, str) else None

    def _read_new_records(self) -> None:
        try:
            with (self.run_dir / METRICS_FILE).open("rb") as handle:
                restarted = handle.seek(0, 2) < self._offset  # shorter than read: rewritten (a resume truncates it)
                if restarted:
                    self._offset = 0
                handle.seek(self._offset)
                data = handle.read()
        except OSError:  # not written yet (the quick head is still running), or the folder is unreachable now
            return
        complete = data[:data.rfind(b"\n") + 1]  # a line still being copied in is read on a later tick
        if not complete and not restarted:
            return
        from_start = self._offset == 0
        self._offset += len(complete)
        records = [record for record in map(_record, complete.decode("utf-8", "replace").splitlines())
                   if record is not None]
        self.records_read.emit(records, from_start)


def _record(line: str) -> dict[str, Any] | None:
    """One metrics.jsonl line, or None for a blank or damaged one (logged; the curves go on without it)."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if isinstance(record, dict) and isinstance(record.get("epoch"), int):
        return record
    log.warning("skipped a damaged metrics line while following a run: %.200s", line)
    return None
