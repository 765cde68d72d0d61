"""Batch sizes: the training step's (chosen for the device, with its learning rate), and the frozen backbone's,
measured during the first real forward passes.

On small CPUs a large batch is often slower per image than a small one (cache pressure), while GPUs want
large batches; guessing either way costs minutes on big datasets. The candidates are tried on the first
batches of real work (nothing is computed only to be thrown away), and the answer is remembered in the cache.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import platformdirs

from engine.atomic import write_json_atomic

CPU_CANDIDATES = (4, 8, 16, 32)
GPU_CANDIDATES = (64, 128, 256, 512)  # a GPU wants large batches: 20,000 img/s for Lite0 on an H200 at 256


REFERENCE_BATCH = 16  # the batch size the default learning rate was tuned at (bench/recipe_quality.py)
GPU_TRAINING_BATCH = 128


def training_batch_size(requested: int, device: str) -> int:
    """The training step's batch size: as asked, or for ``requested == 0`` 16 on a CPU (measured best there for a
    few hundred photos) and 128 on a GPU, where 16 leaves most of the card idle."""
    return requested or (GPU_TRAINING_BATCH if device == "cuda" else REFERENCE_BATCH)


def scaled_learning_rate(lr: float, batch_size: int) -> float:
    """``lr`` (given for a batch of 16) for ``batch_size``: square-root scaling, which suits Adam-type optimisers
    (Malladi et al. 2022); at 16 it is ``lr`` itself."""
    return lr * math.sqrt(batch_size / REFERENCE_BATCH)


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

    def __init__(self, key: str | None = None, fixed: int | None = None, device: str = "cpu") -> None:
        self.key = key
        self.chosen = fixed if fixed is not None else self._remembered()
        candidates = GPU_CANDIDATES if device == "cuda" else CPU_CANDIDATES
        self._plan = [size for size in candidates for _ in range(2)] if self.chosen is None else []
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
