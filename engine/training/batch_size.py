"""Find, during the first real forward passes, which batch size runs the frozen backbone fastest per image.

On small CPUs a large batch is often slower per image than a small one (cache pressure), while GPUs want
large batches; guessing either way costs minutes on big datasets. The candidates are tried on the first
batches of real work (nothing is computed only to be thrown away), and the answer is remembered in the cache.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import platformdirs

from engine.atomic import write_json_atomic

CANDIDATES = (4, 8, 16, 32)


def _store() -> Path:
    return Path(platformdirs.user_cache_dir("transfer-studio")) / "batch_sizes.json"


def _read_store() -> dict:
    """The remembered answers; an unreadable or edited file counts as empty (measuring again is the only cost)."""
    try:
        known = json.loads(_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


class BatchSizeTuner:
    """Hands out batch sizes: each candidate twice (the first call at a new shape pays one-off set-up costs
    and is not counted), then the fastest per image, which is saved under ``key`` for later runs."""

    def __init__(self, key: str | None = None, fixed: int | None = None) -> None:
        self.key = key
        self.chosen = fixed if fixed is not None else self._remembered()
        self._plan = [size for size in CANDIDATES for _ in range(2)] if self.chosen is None else []
        self._per_image: dict[int, float] = {}

    @classmethod
    def fixed(cls, size: int) -> BatchSizeTuner:
        return cls(fixed=size)

    def next(self) -> int:
        return self._plan[0] if self._plan else self.chosen  # type: ignore[return-value] - set once trials end

    def record(self, size: int, seconds: float) -> None:
        """Report how long the batch handed out by ``next`` took; only trial batches are kept."""
        if not self._plan or self._plan[0] != size:
            return
        self._plan.pop(0)
        if not self._plan or self._plan[0] != size:  # the second run of this size: the measured one
            self._per_image[size] = seconds / size
        if not self._plan:  # every candidate measured
            self.chosen = min(self._per_image, key=self._per_image.__getitem__)
            self._remember()

    def _remembered(self) -> int | None:
        value = _read_store().get(self.key) if self.key is not None else None
        return value if isinstance(value, int) and value > 0 else None

    def _remember(self) -> None:
        if self.key is None:
            return
        known = _read_store()  # read again: another run may have remembered other keys meanwhile
        known[self.key] = self.chosen
        with contextlib.suppress(OSError):  # measuring again next time is the only cost
            write_json_atomic(_store(), known)
