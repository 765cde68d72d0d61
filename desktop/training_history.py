"""The curves of a training run as plain lists: per-epoch metrics and a smoothed per-batch loss.

Epoch 0 is the quick head; batch ``b`` of ``n`` in fine-tune epoch ``e`` sits at x = e - 1 + b / n, so each
epoch's batches lead up to that epoch's point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

SMOOTHING = 0.3  # weight of the newest batch in the exponential moving average


@dataclass
class TrainingHistory:
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    batch_x: list[float] = field(default_factory=list)
    batch_loss: list[float] = field(default_factory=list)  # smoothed

    @classmethod
    def from_metrics(cls, records: Iterable[Mapping[str, Any]]) -> TrainingHistory:
        history = cls()
        for record in records:
            history.add_epoch(int(record["epoch"]), float(record["train_loss"]), float(record["train_accuracy"]),
                              float(record["val_loss"]), float(record["val_accuracy"]))
        return history

    def add_epoch(self, epoch: int, train_loss: float, train_accuracy: float, val_loss: float,
                  val_accuracy: float) -> None:
        self.epochs.append(epoch)
        self.train_loss.append(train_loss)
        self.train_accuracy.append(train_accuracy)
        self.val_loss.append(val_loss)
        self.val_accuracy.append(val_accuracy)

    def add_batch(self, epoch: int, batch: int, batches: int, loss: float) -> None:
        smoothed = loss if not self.batch_loss else SMOOTHING * loss + (1 - SMOOTHING) * self.batch_loss[-1]
        self.batch_x.append(epoch - 1 + batch / max(batches, 1))
        self.batch_loss.append(smoothed)

    def truncate(self, first_epoch: int) -> None:
        """Forget epoch ``first_epoch`` and later (a resumed run repeats them)."""
        keep = sum(1 for epoch in self.epochs if epoch < first_epoch)
        for values in (self.epochs, self.train_loss, self.val_loss, self.train_accuracy, self.val_accuracy):
            del values[keep:]
        keep_batches = sum(1 for x in self.batch_x if x <= first_epoch - 1)
        del self.batch_x[keep_batches:]
        del self.batch_loss[keep_batches:]
