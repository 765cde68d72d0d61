"""One training epoch and one evaluation pass of the trainable top of the network.

Batches arrive as outputs of the frozen stages (computed once per augmented view, without autograd, by the
trainer), or as images when nothing is frozen; only the trainable stages and the head build a graph.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.backbones.build import TransferModel, run_stages
from engine.backbones.inference import forward_in_batches
from engine.control import RunControl
from engine.events import BatchProgress, EventSink
from engine.training.device import DeviceSetup, to_device

_BATCH_EVENT_INTERVAL = 0.25  # seconds: a few progress events per second is plenty for any front end


class NonFiniteLossError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class EpochStats:
    loss: float
    accuracy: float
    images: int
    seconds: float


def train_one_epoch(
    model: TransferModel,
    first_trainable: int,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    setup: DeviceSetup,
    set_mode: Callable[[], None],
    *,
    epoch: int,
    batch_count: int,
    grad_clip: float,
    scaler: torch.amp.GradScaler | None,
    on_event: EventSink,
    control: RunControl,
) -> EpochStats:
    set_mode()
    trainable = range(first_trainable, len(model.stages))
    total_loss, correct, seen = 0.0, 0, 0
    started = last_event = time.perf_counter()
    for index, (images, targets) in enumerate(batches, start=1):
        control.check()
        images, targets = to_device(images, setup), to_device(targets, setup)
        with torch.autocast(setup.device, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None):
            logits = model.head(run_stages(model, trainable, images))
            loss = loss_fn(logits.float(), targets)
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"the loss became {loss_value} at epoch {epoch}, batch {index}: training diverged. "
                "Lower the learning rate (for example --lr 0.0001) and try again."
            )
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
        total_loss += loss_value * count
        correct += int((logits.argmax(1) == targets).sum())
        seen += count
        now = time.perf_counter()
        if now - last_event >= _BATCH_EVENT_INTERVAL or index in (1, batch_count):
            last_event = now
            elapsed = now - started
            on_event(BatchProgress(epoch, index, batch_count, loss_value, seen / elapsed,
                                   elapsed / index * (batch_count - index)))
    control.check()  # a stop requested during the last batch discards the epoch, like any other mid-epoch stop
    seconds = time.perf_counter() - started
    return EpochStats(total_loss / max(seen, 1), correct / max(seen, 1), seen, seconds)


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


def logits_from_features(model: TransferModel, first_trainable: int, features: torch.Tensor, setup: DeviceSetup,
                         batch_size: int = 64, *, control: RunControl | None = None) -> torch.Tensor:
    """Logits for inputs already passed through the frozen stages (see ``FrozenFeatures``)."""
    return forward_in_batches(model, range(first_trainable, len(model.stages)), len(features),
                              lambda rows: features[rows.start:rows.stop], setup, batch_size, head=True,
                              phase="logits", control=control)


def cross_entropy(class_weights: torch.Tensor | None, label_smoothing: float) -> Callable:
    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = class_weights.to(logits.device) if class_weights is not None else None
        return F.cross_entropy(logits, targets, weight=weight, label_smoothing=label_smoothing)

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
