"""A progress bar following an engine Progress event: the pages that show a job's steps share one format."""

from __future__ import annotations

from PySide6.QtWidgets import QProgressBar

from engine.events import Progress


def show_progress(bar: QProgressBar, event: Progress) -> None:
    """``done`` of ``total`` steps, labelled with the phase (a total of 0 still draws an empty bar, not a busy one)."""
    bar.setRange(0, max(event.total, 1))
    bar.setValue(event.done)
    bar.setFormat(f"{event.phase}: %v / %m")
