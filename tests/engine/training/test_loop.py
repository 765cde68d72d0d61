"""One training epoch: the scheduler follows the optimizer's real steps."""

import torch
from torch import nn

from engine.backbones.build import TransferModel
from engine.control import RunControl
from engine.events import ignore_event
from engine.training.device import resolve_device
from engine.training.loop import cross_entropy, train_one_epoch


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
    batches = [(torch.randn(4, 4), torch.tensor([0, 1, 0, 1])) for _ in range(3)]
    train_one_epoch(model, 0, batches, optimizer, scheduler, cross_entropy(None, 0.0), resolve_device("cpu"),
                    model.train, epoch=1, batch_count=3, grad_clip=1.0, scaler=scaler, on_event=ignore_event,
                    control=RunControl())
    return scheduler.last_epoch


def test_scheduler_steps_with_every_optimizer_step() -> None:
    assert _scheduler_steps(None) == 3


def test_scheduler_does_not_step_when_the_scaler_skipped_the_step() -> None:
    assert _scheduler_steps(_SkippingScaler()) == 0
