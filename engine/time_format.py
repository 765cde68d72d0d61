"""Times as text, one definition each: durations for progress displays, UTC timestamps for run files and models."""

from __future__ import annotations

import math
from datetime import datetime, timezone

UNKNOWN_DURATION = "--:--"


def format_duration(seconds: float | None) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on; ``--:--`` when unknown (None, NaN, infinite), 0 below zero.

    An ETA estimated from the first batch can be infinite or slightly negative; neither should crash a display.
    """
    if seconds is None or not math.isfinite(seconds):
        return UNKNOWN_DURATION
    whole = max(0, round(seconds))
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d}"
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def utc_now_iso() -> str:
    """The current UTC time in ISO 8601 to the second (``2026-01-31T12:00:00+00:00``), as run.json and models record."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
