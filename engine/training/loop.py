"""One training epoch and one evaluation pass of the trainable top of the network.

Batches arrive as outputs of the frozen stages (computed without autograd by ``FrozenFeatures``), or as
augmented images when nothing is frozen; only the trainable stages and the head build a graph. Each batch also
carries its labels and, in a distillation, the teacher's softened probabilities of the same views.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.backbones.build import TransferModel, run_stages
from engine.control import RunControl
from engine.events import BatchProgress, EventSink
from engine.training.device import DeviceSetup, to_device
from engine.training.distributed import current, sum_across

_BATCH_EVENT_INTERVAL = 0.25  # seconds: a few progress events per second is plenty for any front end

# (inputs of the trainable stages, labels, teacher probabilities at the distillation temperature or None)
TrainingBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
TrainingLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    pass


class TrainableTop(torch.nn.Module):
    """The trainable stages and the head as one module, inputs of the first trainable stage to logits: what
    DistributedDataParallel wraps (the frozen stages' parameters need no gradient, so it leaves them alone)."""

    def __init__(self, model: TransferModel, first_trainable: int) -> None:
        super().__init__()
        self.model = model
        self.trainable = range(first_trainable, len(model.stages))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.model.head(run_stages(self.model, self.trainable, inputs))


@dataclass(frozen=True, slots=True)
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float


def train_one_epoch(
    model: TransferModel,
    first_trainable: int,
    batches: Iterable[TrainingBatch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: TrainingLoss,
    setup: DeviceSetup,
    set_mode: Callable[[], None],
    *,
    epoch: int,
    batch_count: int,
    grad_clip: float,
    scaler: torch.amp.GradScaler | None,
    on_event: EventSink,
    control: RunControl,
    top: torch.nn.Module | None = None,
) -> EpochStats:
    """One pass over ``batches`` (inputs of the trainable stages, labels, teacher probabilities or None), through
    ``top`` (a DistributedDataParallel of TrainableTop; None: the model's trainable stages and head). The epoch's
    loss and accuracy are over every process's batches.

    Loss and accuracy are summed on the device and read back only for a progress event (a few a second) and at
    the end: a read per step would make the host wait for the device at every batch. A loss that stops being
    finite is caught at the next read.
    """
    set_mode()
    top = TrainableTop(model, first_trainable) if top is None else top
    processes = current().world_size
    total_loss = torch.zeros((), device=setup.device)
    correct = torch.zeros((), dtype=torch.long, device=setup.device)
    seen = 0
    started = last_event = time.perf_counter()
    for index, (images, targets, teacher) in enumerate(batches, start=1):
        control.check_together()
        images, targets = to_device(images, setup), to_device(targets, setup)
        teacher = to_device(teacher, setup) if teacher is not None else None
        with torch.autocast(setup.device, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None):
            logits = top(images)
            loss = loss_fn(logits.float(), targets, teacher)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
        if _optimizer_step(optimizer, scaler):
            scheduler.step()
        count = len(targets)
        total_loss += loss.detach() * count
        correct += (logits.detach().argmax(1) == targets).sum()
        seen += count
        now = time.perf_counter()
        if now - last_event >= _BATCH_EVENT_INTERVAL or index in (1, batch_count):
            last_event = now
            loss_value = _finite_loss(loss, epoch, index)
            elapsed = now - started
            on_event(BatchProgress(epoch, index, batch_count, loss_value, seen * processes / elapsed,
                                   elapsed / index * (batch_count - index)))
    control.check_together()  # a stop requested during the last batch discards the epoch, like a mid-epoch stop
    total_loss, correct, seen = sum_across(torch.stack([total_loss.float().cpu(), correct.float().cpu(),
                                                        torch.tensor(float(seen))])).tolist()
    mean_loss = _finite_loss(torch.tensor(total_loss / max(seen, 1)), epoch, None)
    seconds = time.perf_counter() - started
    return EpochStats(mean_loss, correct / max(seen, 1), int(seen), seconds)


def _finite_loss(loss: torch.Tensor, epoch: int, batch: int | None) -> float:
    value = float(loss.detach())
    if not math.isfinite(value):
        where = f"batch {batch}" if batch is not None else "its end"
        raise NonFiniteLossError(
            f"the loss became {value} at epoch {epoch} (seen at {where}): training diverged. "
            "Lower the learning rate (for example --lr 0.0001) and try again."
        )
    return value


def _optimizer_step(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> bool:
    """Step the optimizer (through the scaler for fp16); False when the scaler skipped it for inf/NaN gradients.

    The scheduler must then not step either, or the schedule runs ahead of the weights. GradScaler.update()
    lowers the scale exactly when it skipped the step.
    """
    if scaler is None:
        optimizer.step()
        return True
    scale = scaler.get_scale()
    scaler.step(optimizer)
    scaler.update()
    return scaler.get_scale() >= scale


def cross_entropy(class_weights: torch.Tensor | None, label_smoothing: float) -> Callable:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = class_weights.to(logits.device) if class_weights is not None else None
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)

    return loss


def training_loss(class_weights: torch.Tensor | None, label_smoothing: float, *, alpha: float = 0.0,
                  temperature: float = 1.0) -> TrainingLoss:
    """The fine-tune loss: cross-entropy on the labels (class-weighted, smoothed); for a batch that carries
    teacher probabilities p (softened at ``temperature`` T), Hinton et al.'s (2015)
    alpha * T^2 * KL(p || softmax(logits / T)) + (1 - alpha) * cross-entropy. T^2 keeps the soft term's gradients
    at the scale of the hard term's whatever T is, so alpha means the same at every temperature."""
    hard = cross_entropy(class_weights, label_smoothing)

    def loss(logits: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor | None) -> torch.Tensor:
        if teacher is None:
            return hard(logits, targets)
        soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), teacher, reduction="batchmean")
        return alpha * temperature**2 * soft + (1 - alpha) * hard(logits, targets)

    return loss


def warmup_cosine(
    optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero over the remaining steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
