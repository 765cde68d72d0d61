"""Progress events: frozen, slotted dataclasses of builtin values that any front end can consume.

The engine calls one sink per run; the CLI prints them, the desktop worker turns them into Qt signals.
Events never hold tensors, so they are safe to pass across threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Progress:
    """Generic progress of a phase (scanning, validating, caching, embedding, downloading, predicting)."""

    phase: str
    done: int
    total: int
    message: str = ""
    eta_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class BatchPredicted:
    """One batch of results as soon as it is ready, so a front end can show them while the rest runs.

    ``predictions`` are ``engine.predict.Prediction`` objects (frozen, builtin values only), in input order.
    """

    predictions: tuple[Any, ...]
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class WarningEvent:
    """Something the user should know that did not stop the work."""

    message: str


@dataclass(frozen=True, slots=True)
class Info:
    """A line for the log: what the engine decided or reused (cache hits, chosen batch size)."""

    message: str


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_dir: str
    config: dict[str, Any]
    device: str
    dataset: dict[str, Any]
    start_epoch: int


@dataclass(frozen=True, slots=True)
class EpochStarted:
    epoch: int
    epochs: int
    phase: str


@dataclass(frozen=True, slots=True)
class BatchProgress:
    epoch: int
    batch: int
    batches: int
    loss: float
    images_per_second: float
    eta_seconds: float


@dataclass(frozen=True, slots=True)
class EpochEnded:
    epoch: int
    epochs: int
    phase: str
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    images_per_second: float
    is_best: bool


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    path: str
    epoch: int


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_dir: str
    status: str  # "completed" | "cancelled"
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunFailed:
    run_dir: str
    message: str


Event = (Progress | BatchPredicted | WarningEvent | Info | RunStarted | EpochStarted | BatchProgress | EpochEnded
         | CheckpointSaved | RunFinished | RunFailed)
EventSink = Callable[[Event], None]


def ignore_event(_event: object) -> None:
    """The default sink: drops every event."""
