"""One training epoch: the scheduler follows the optimizer's real steps."""

import pytest
import torch
from torch import nn

from engine.backbones.build import TransferModel
from engine.control import RunControl
from engine.events import ignore_event
from engine.training.device import resolve_device
from engine.training.loop import NonFiniteLossError, train_one_epoch, training_loss


class _SkippingScaler:
    """A GradScaler whose every step finds inf gradients: it skips optimizer.step() and lowers its scale."""

    def __init__(self) -> None:
        self.scale_value = 1024.0

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def unscale_(self, _optimizer: torch.optim.Optimizer) -> None:
        pass

    def step(self, _optimizer: torch.optim.Optimizer) -> None:
        pass

    def update(self) -> None:
        self.scale_value /= 2

    def get_scale(self) -> float:
        return self.scale_value


def _scheduler_steps(scaler: _SkippingScaler | None) -> int:
    """Train a linear head for one epoch of 3 batches; returns how often the scheduler stepped."""
    torch.manual_seed(0)
    model = TransferModel([nn.Flatten()], feature_dim=4, num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    batches = [(torch.randn(4, 4), torch.tensor([0, 1, 0, 1]), None) for _ in range(3)]
    train_one_epoch(model, 0, batches, optimizer, scheduler, training_loss(None, 0.0), resolve_device("cpu"),
                    model.train, epoch=1, batch_count=3, grad_clip=1.0, scaler=scaler, on_event=ignore_event,
                    control=RunControl())
    return scheduler.last_epoch


def test_scheduler_steps_with_every_optimizer_step() -> None:
    assert _scheduler_steps(None) == 3


def test_scheduler_does_not_step_when_the_scaler_skipped_the_step() -> None:
    assert _scheduler_steps(_SkippingScaler()) == 0


def _epoch(batches: list, events: list) -> object:
    torch.manual_seed(0)
    model = TransferModel([nn.Flatten()], feature_dim=4, num_classes=2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return train_one_epoch(model, 0, batches, optimizer, scheduler, training_loss(None, 0.0), resolve_device("cpu"),
                           model.train, epoch=2, batch_count=len(batches), grad_clip=0.0, scaler=None,
                           on_event=events.append, control=RunControl())


def test_the_epoch_loss_and_accuracy_are_summed_over_every_batch() -> None:
    """Summed on the device and read once: the figures still cover every image of the epoch."""
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(n, 4, generator=generator), torch.randint(0, 2, (n,), generator=generator), None)
               for n in (4, 3, 5)]
    events: list = []
    stats = _epoch(batches, events)
    assert stats.images == 12
    assert 0 < stats.loss < 5 and stats.accuracy in {k / 12 for k in range(13)}
    assert [e.batch for e in events][0] == 1 and events[-1].batch == 3, "progress at the first and last batch"


def test_a_diverged_loss_stops_the_run_with_advice() -> None:
    """A NaN reaches the loss sum (not read every step); the epoch still fails with what to do."""
    batches = [(torch.randn(4, 4), torch.tensor([0, 1, 0, 1]), None),
               (torch.full((4, 4), float("nan")), torch.tensor([0, 1, 0, 1]), None)] * 3
    with pytest.raises(NonFiniteLossError, match=r"epoch 2 .*Lower the learning rate"):
        _epoch(batches, [])
