"""Records each finished epoch: the metrics line, best.pt when validation improved, then last.pt (the resume
point), and the events that say so. It also holds the early-stopping count and restores it on resume.

In a distributed run only rank 0's recorder writes (``writes``); the others keep the same count and best, and on
resume receive the checkpoint rank 0 read, so the run folder need only be on rank 0's machine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.events import CheckpointSaved, EpochEnded, EventSink
from engine.training import run_folder as rf
from engine.training.checkpoints import CheckpointError, load_checkpoint_in_every_process, save_checkpoint
from engine.training.distributed import current


@dataclass(frozen=True, slots=True)
class EpochMetrics:
    epoch: int
    phase: str  # "head" | "fine-tune" | "full"
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float
    images: int


class EpochRecorder:
    def __init__(self, run_dir: Path, model: torch.nn.Module, total_epochs: int, on_event: EventSink) -> None:
        self.run_dir, self.model, self.total_epochs, self.on_event = run_dir, model, total_epochs, on_event
        self.writes = current().main
        self.best: dict[str, Any] = {"epoch": -1, "val_accuracy": -1.0, "val_loss": float("inf")}
        self.bad_epochs = 0

    def resume(self, device: str) -> tuple[int, dict[str, Any] | None]:
        """Load last.pt into the model; (the next epoch to run, the checkpoint), or (0, None) without one."""
        last = self.run_dir / rf.LAST_FILE
        checkpoint = load_checkpoint_in_every_process(last, device)
        if checkpoint is None:
            if self.writes:
                rf.truncate_metrics(self.run_dir, -1)
            return 0, None
        try:
            self.model.load_state_dict(checkpoint["model"])
            next_epoch = int(checkpoint["epoch"]) + 1
            self.best = dict(checkpoint["best"])
            self.bad_epochs = int(checkpoint["bad_epochs"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"{last}: does not match this run ({str(exc).strip().splitlines()[0]}); "
                                  "delete it to start the run again from epoch 0, or start a new run") from exc
        if self.writes:
            rf.truncate_metrics(self.run_dir, next_epoch - 1)
        return next_epoch, checkpoint

    def record(self, metrics: EpochMetrics, *, extra: dict[str, Any], optimizer: torch.optim.Optimizer | None,
               scheduler: Any) -> None:
        """The metrics line first, then last.pt: a kill between the two is repaired by ``resume``."""
        improved = metrics.val_accuracy > self.best["val_accuracy"] or (
            metrics.val_accuracy == self.best["val_accuracy"] and metrics.val_loss < self.best["val_loss"])
        if improved:
            self.best = {"epoch": metrics.epoch, "val_accuracy": metrics.val_accuracy, "val_loss": metrics.val_loss}
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if not self.writes:
            return
        if improved:
            self._save(rf.BEST_FILE, {"model": self.model.state_dict(), "epoch": metrics.epoch,
                                      "val_accuracy": metrics.val_accuracy}, metrics.epoch)
        images_per_second = metrics.images / metrics.seconds if metrics.seconds > 0 else 0.0
        rf.append_metrics(self.run_dir, {
            "epoch": metrics.epoch, "phase": metrics.phase, "train_loss": metrics.train_loss,
            "train_accuracy": metrics.train_accuracy, "val_loss": metrics.val_loss,
            "val_accuracy": metrics.val_accuracy, "learning_rate": metrics.learning_rate,
            "seconds": metrics.seconds, "images_per_second": images_per_second, "is_best": improved, **extra})
        self._save(rf.LAST_FILE, {
            "model": self.model.state_dict(), "epoch": metrics.epoch, "best": self.best,
            "bad_epochs": self.bad_epochs, "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
        }, metrics.epoch)
        self.on_event(EpochEnded(metrics.epoch, self.total_epochs, metrics.phase, metrics.train_loss,
                                 metrics.train_accuracy, metrics.val_loss, metrics.val_accuracy,
                                 metrics.learning_rate, metrics.seconds, images_per_second, improved))

    def _save(self, name: str, payload: dict[str, Any], epoch: int) -> None:
        save_checkpoint(self.run_dir / name, payload)
        self.on_event(CheckpointSaved(str(self.run_dir / name), epoch))
