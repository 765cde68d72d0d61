"""Durations and timestamps as text, shared by the CLI, the app and the run files."""

import math
from datetime import datetime, timedelta

import pytest

from engine.time_format import format_duration, utc_now_iso


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0:00"), (5.4, "0:05"), (59.6, "1:00"), (65, "1:05"), (3599, "59:59"), (3600, "1:00:00"),
    (3725, "1:02:05"), (90061, "25:01:01"), (-3, "0:00"),
    (None, "--:--"), (math.nan, "--:--"), (math.inf, "--:--"),
])
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_utc_now_iso_is_utc_to_the_second() -> None:
    stamp = utc_now_iso()
    parsed = datetime.fromisoformat(stamp)
    assert parsed.utcoffset() == timedelta(0) and parsed.microsecond == 0 and stamp.endswith("+00:00")

