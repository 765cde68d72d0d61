"""The fine-tune epochs after the quick head: the trainable top of the network, following a FineTunePlan.

Recording (metrics, checkpoints, early-stopping count) is the EpochRecorder's job, frozen outputs are the
FrozenFeatures provider's and a distillation's soft targets the TeacherTargets'; this module only loops: inputs
for the epoch, one epoch, validation, record.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.backbones.build import TransferModel
from engine.control import RunControl
from engine.dataset.report import ImageItem
from engine.events import EpochStarted, EventSink, Info, WarningEvent
from engine.training import run_folder as rf
from engine.training.batch_size import scaled_learning_rate, training_batch_size
from engine.training.checkpoints import load_checkpoint
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup, to_device
from engine.training.distributed import current, from_main
from engine.training.epoch_recorder import EpochMetrics, EpochRecorder
from engine.training.frozen_features import FrozenFeatures
from engine.training.loop import TrainableTop, TrainingBatch, train_one_epoch, training_loss, warmup_cosine
from engine.training.quick_head import head_metrics, labels_tensor
from engine.training.recipe import FineTunePlan
from engine.training.strategies import apply_strategy, build_optimizer, set_train_mode
from engine.training.teacher_targets import TeacherTargets


@dataclass(frozen=True, slots=True)
class FineTuneData:
    train_items: tuple[ImageItem, ...]
    val_items: tuple[ImageItem, ...]
    class_weights: torch.Tensor | None


class FineTuner:
    def __init__(self, model: TransferModel, plan: FineTunePlan, config: TrainConfig, setup: DeviceSetup,
                 frozen: FrozenFeatures, recorder: EpochRecorder, run_dir: Path,
                 drop_unreadable: Callable[[tuple[ImageItem, ...]], tuple[ImageItem, ...]], on_event: EventSink,
                 control: RunControl, teacher: TeacherTargets | None = None) -> None:
        """``teacher``: a distillation's teachers, whose probabilities of each view join the loss."""
        self.model, self.plan, self.config, self.setup = model, plan, config, setup
        self.frozen, self.recorder, self.run_dir = frozen, recorder, run_dir
        self.drop_unreadable, self.on_event, self.control = drop_unreadable, on_event, control
        self.teacher = teacher
        self.batch_size = training_batch_size(config.batch_size, setup.device)

    def run(self, data: FineTuneData, start_epoch: int, checkpoint: dict[str, Any] | None) -> None:
        """Epochs max(1, start_epoch)..plan.epochs, stopping early after plan.patience epochs without progress."""
        plan, first = self.plan, self.plan.first_trainable
        apply_strategy(self.model, first, plan.train_batchnorm)
        if self.config.compile:
            self.on_event(Info("compiling the trainable stages (torch.compile): the first batches of training and "
                               "of validation wait for it, a minute or more on a CPU"))
            for module in (*self.model.stages[first:], self.model.head):
                module.compile()  # in place: state_dict keys, checkpoints and export stay as they are
        top = self._distributed_top(first)
        optimizer = build_optimizer(self.model, first, scaled_learning_rate(self.config.lr, self.batch_size),
                                    self.config.optimizer,
                                    self.config.backbone_lr_factor, self.config.weight_decay)
        scheduler = self._scheduler(optimizer, len(data.train_items))
        scaler = torch.amp.GradScaler("cuda") if self.setup.use_scaler else None
        if checkpoint is not None and checkpoint.get("optimizer"):
            optimizer.load_state_dict(checkpoint["optimizer"])
            scheduler.load_state_dict(checkpoint["scheduler"])
        loss_fn = training_loss(data.class_weights, self.config.label_smoothing, alpha=self.config.distill_alpha,
                                temperature=self.config.distill_temperature)
        val_targets = labels_tensor(i.label for i in data.val_items)
        phase = "full" if plan.depth == "full" else "fine-tune"
        train_items = data.train_items
        self.on_event(Info(f"{phase}: batch size {self.batch_size} on {self.setup.description}"))
        for epoch in range(max(1, start_epoch), plan.epochs + 1):
            self.control.check_together()
            self.on_event(EpochStarted(epoch, plan.epochs, phase))
            train_items = self.drop_unreadable(train_items)
            while True:
                view_started = time.perf_counter()
                batches = self._batches(train_items, epoch)  # a reused view's frozen pass runs here, once
                view_seconds = time.perf_counter() - view_started
                try:
                    stats = train_one_epoch(
                        self.model, first, batches, optimizer, scheduler, loss_fn,
                        self.setup, lambda: set_train_mode(self.model, first, plan.train_batchnorm), epoch=epoch,
                        batch_count=_steps(len(train_items), self.batch_size), grad_clip=self.config.grad_clip,
                        scaler=scaler, on_event=self.on_event, control=self.control, top=top,
                    )
                    break
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    if not _is_out_of_memory(exc):
                        raise
                    scheduler = self._recover_from_out_of_memory(optimizer, len(train_items), epoch)
            val_logits = self.frozen.logits(data.val_items, first, "validation")
            # Rank 0's figures decide for every process (best epoch, early stop): the same weights everywhere, but
            # the same sums in the same order are not promised on every device.
            val_loss, val_acc = from_main(head_metrics(val_logits, val_targets, data.class_weights,
                                                       self.config.label_smoothing))
            self.recorder.record(
                EpochMetrics(epoch, phase, stats.loss, stats.accuracy, val_loss, val_acc,
                             optimizer.param_groups[0]["lr"], view_seconds + stats.seconds, stats.images),
                extra={"view_seconds": view_seconds}, optimizer=optimizer, scheduler=scheduler)
            if plan.patience and self.recorder.bad_epochs >= plan.patience:
                self.on_event(WarningEvent(f"early stopping after epoch {epoch}: no validation improvement for "
                                           f"{self.recorder.bad_epochs} epochs"))
                break

    def _distributed_top(self, first: int) -> torch.nn.Module | None:
        """In a distributed run, the trainable top under DistributedDataParallel (which also gives every process
        rank 0's weights); alone, None: train_one_epoch runs the model's own top."""
        processes = current()
        if not processes.distributed:
            return None
        device_ids = [processes.local_rank] if self.setup.device == "cuda" else None
        top = torch.nn.parallel.DistributedDataParallel(TrainableTop(self.model, first), device_ids=device_ids)
        # Each process draws its own dropout masks: with one seed everywhere, the parts of a batch would share them.
        torch.manual_seed(self.config.seed * 1000 + processes.rank)
        return top

    def _scheduler(self, optimizer: torch.optim.Optimizer, images: int) -> torch.optim.lr_scheduler.LambdaLR:
        steps = _steps(images, self.batch_size)
        return warmup_cosine(optimizer, int(self.config.warmup_epochs * steps), self.plan.epochs * steps)

    def _recover_from_out_of_memory(self, optimizer: torch.optim.Optimizer, images: int,
                                    epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
        """Halve the batch size and redo the epoch from the last checkpoint; give up below batch size 1."""
        if self.setup.device == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size == 1:
            raise RuntimeError(f"out of memory on {self.setup.description} even with batch size 1: choose a smaller "
                               "backbone, fewer unfrozen stages, or --device cpu") from None
        self.batch_size //= 2
        self.on_event(WarningEvent(f"out of memory during epoch {epoch}: retrying it with batch size "
                                   f"{self.batch_size}"))
        last = load_checkpoint(self.run_dir / rf.LAST_FILE, self.setup.device)
        self.model.load_state_dict(last["model"])
        if last.get("optimizer"):
            optimizer.load_state_dict(last["optimizer"])
        scheduler = self._scheduler(optimizer, images)
        for _ in range((epoch - 1) * _steps(images, self.batch_size)):
            scheduler.step()
        return scheduler

    def _batches(self, items: tuple[ImageItem, ...], epoch: int) -> Iterator[TrainingBatch]:
        """(inputs of the trainable stages, labels, teacher probabilities or None) on the device, for augmented
        view (epoch - 1) mod plan.views.

        Shuffled per epoch with a seed derived from (seed, epoch), so a resumed run sees the same order. A view
        that later epochs reuse has its frozen outputs computed once (see FrozenFeatures.training_inputs); the
        teachers' outputs of every view are computed once and cached (see TeacherTargets).
        """
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        order = torch.randperm(len(items), generator=generator).tolist()
        views = self.plan.views
        view = (epoch - 1) % views
        inputs = self.frozen.training_inputs(items, self.plan.first_trainable, order, self.batch_size, view,
                                             views < self.plan.epochs,
                                             f"augmented view {view + 1} of {views} (training)")
        labels = labels_tensor(item.label for item in items)
        teacher = (self.teacher.probabilities(items, view, self.config.distill_temperature)
                   if self.teacher is not None else None)
        return ((x, to_device(labels[rows], self.setup),
                 to_device(teacher[rows], self.setup) if teacher is not None else None) for rows, x in inputs)


def _steps(images: int, batch_size: int) -> int:
    return max(1, -(-images // batch_size))


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; MPS raises a RuntimeError that says so."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()
