"""Learning-rate finder (Leslie Smith's range test, as fastai's ``lr_find``): train the fine-tune's trainable
part for a few hundred steps while the learning rate grows exponentially, and read a rate off the loss curve.

It runs on the real data and on exactly what the fine-tune would train: after the quick head, at the depth
the plan picks, on the same augmented frozen features. Nothing is written to a run; the model is thrown away.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from engine.atomic import write_bytes_atomic, write_json_atomic
from engine.backbones.build import run_stages
from engine.control import RunControl
from engine.errors import BadInputError
from engine.events import EventSink, Info, Progress, ignore_event
from engine.line_plot import log_x_line_plot
from engine.training.batch_size import scaled_learning_rate, training_batch_size
from engine.training.config import TrainConfig
from engine.training.device import to_device
from engine.training.head_phase import fit_quick_head
from engine.training.loop import cross_entropy
from engine.training.preparation import prepare_training
from engine.training.quick_head import labels_tensor
from engine.training.recipe import plan_fine_tune
from engine.training.strategies import apply_strategy, build_optimizer, set_train_mode

START_LR, END_LR, STEPS = 1e-7, 1.0, 200
_SMOOTHING = 0.95  # exponential moving average of the loss, bias-corrected (fastai's beta 0.98 over 100 steps)
_DIVERGED = 4.0  # stop once the smoothed loss is this many times its minimum
# The edge of the usable rates: the smoothed loss 30 % above its lowest so far (batch-to-batch noise moves the
# smoothed loss by about 10 % on the sample data, so a smaller rise would be noise).
RISE = 0.3
_SETTLE_STEPS = 10  # the first smoothed values rest on a handful of batches: no edge among them


@dataclass(frozen=True, slots=True)
class LrFindResult:
    learning_rates: list[float]  # head learning rate at each step (backbone stages: times backbone_lr_factor)
    losses: list[float]
    smoothed: list[float]
    suggestion: float  # a tenth of the rate where the smoothed loss starts to rise (suggest_learning_rate)
    steepest: float  # the rate where the smoothed loss falls fastest
    depth: str  # the plan the sweep trained: "shallow", "deep" or "full"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def find_learning_rate(data_dir: Path | str, config: TrainConfig | None = None, *, steps: int = STEPS,
                       start_lr: float = START_LR, end_lr: float = END_LR, on_event: EventSink = ignore_event,
                       control: RunControl | None = None) -> LrFindResult:
    """Sweep ``steps`` learning rates from ``start_lr`` to ``end_lr`` (geometric) on ``data_dir``."""
    config, control = config or TrainConfig(), control or RunControl()
    if config.strategy == "feature-extract":
        raise BadInputError("feature-extract fits the head in closed form: it has no learning rate to find")
    if not (0 < start_lr < end_lr) or steps < 10:
        raise BadInputError("the sweep needs 0 < start_lr < end_lr and at least 10 steps")
    prepared = prepare_training(Path(data_dir), config, on_event, control)
    train_items = prepared.report.split_items("train")
    head = fit_quick_head(prepared, train_items, prepared.report.split_items("val"), on_event)
    model, setup = prepared.model, prepared.setup
    plan = plan_fine_tune(config, len(model.stages), head.fit)
    first = plan.first_trainable
    on_event(Info(f"learning-rate sweep: {plan.depth} fine-tune ({plan.reason})"))
    apply_strategy(model, first, plan.train_batchnorm)
    batch_size = min(training_batch_size(config.batch_size, setup.device), len(train_items))
    # Each group's multiplier of the swept rate, which is in --lr's units (scaled like it for the batch size).
    optimizer = build_optimizer(model, first, scaled_learning_rate(1.0, batch_size), config.optimizer,
                                config.backbone_lr_factor, config.weight_decay)
    factors = [group["lr"] for group in optimizer.param_groups]
    loss_fn = cross_entropy(prepared.class_weights, config.label_smoothing)
    order = _order(len(train_items), batch_size, steps, config.seed)
    batches = prepared.frozen.training_inputs(train_items, first, order, batch_size, 0, plan.views < plan.epochs,
                                              "augmented view (sweep)")
    labels = labels_tensor(item.label for item in train_items)
    ratio = (end_lr / start_lr) ** (1 / (steps - 1))
    rates: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    average = 0.0
    set_train_mode(model, first, plan.train_batchnorm)
    for step in range(steps):
        control.check()
        lr = start_lr * ratio**step
        for group, factor in zip(optimizer.param_groups, factors, strict=True):
            group["lr"] = lr * factor
        rows, x = next(batches)
        targets = to_device(labels[rows], setup)
        with torch.autocast(setup.device, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None):
            loss = loss_fn(model.head(run_stages(model, range(first, len(model.stages)), x)).float(), targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        average = _SMOOTHING * average + (1 - _SMOOTHING) * value
        rates.append(lr)
        losses.append(value)
        smoothed.append(average / (1 - _SMOOTHING ** (step + 1)))
        on_event(Progress("learning-rate sweep", step + 1, steps, f"lr {lr:.1e}, loss {smoothed[-1]:.3f}"))
        if step > 10 and smoothed[-1] > _DIVERGED * min(smoothed):
            break
    suggestion, steepest = suggest_learning_rate(rates, smoothed)
    return LrFindResult(rates, losses, smoothed, suggestion, steepest, plan.depth)


def save_lr_find(result: LrFindResult, folder: Path | str) -> tuple[Path, Path]:
    """Write ``lr_find.json`` (the curve and the suggestion) and ``lr_find.png`` into ``folder``, atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, png_path = folder / "lr_find.json", folder / "lr_find.png"
    write_json_atomic(json_path, result.to_dict())
    write_bytes_atomic(png_path, log_x_line_plot(
        result.learning_rates, result.smoothed, faint=result.losses, mark=result.suggestion,
        y_max=2 * max(result.smoothed[0], min(result.smoothed)),  # the blow-up at the end would flatten the rest
        title=f"Learning-rate sweep ({result.depth} fine-tune): suggested {result.suggestion:.1e}",
        x_label="learning rate (head)", y_label="loss"))
    return json_path, png_path


def suggest_learning_rate(rates: list[float], smoothed: list[float]) -> tuple[float, float]:
    """(a tenth of the rate at the edge, the rate of steepest descent before the lowest loss).

    The edge is where the smoothed loss first rises RISE (30 %) above its lowest value so far: past it, steps are
    too big. A tenth of it is the classic choice (Smith 2017; fastai's ``lr_min``, the minimum / 10). The edge
    rather than the minimum, because after the quick head the loss often starts near its floor and only rises:
    the minimum is then the first, smallest rate, while the edge still says where training breaks down.
    """
    if len(rates) < 3:
        raise ValueError("the sweep stopped before it had 3 finite losses; lower start_lr")
    running_low = smoothed[0]
    edge = len(rates) - 1
    for index, value in enumerate(smoothed):
        if index >= _SETTLE_STEPS and value > running_low * (1 + RISE):
            edge = index
            break
        running_low = min(running_low, value)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    logs = [math.log10(r) for r in rates[: lowest + 1]]
    slopes = [(smoothed[i + 1] - smoothed[i]) / (logs[i + 1] - logs[i]) for i in range(len(logs) - 1)]
    steepest = rates[min(range(len(slopes)), key=slopes.__getitem__)] if slopes else rates[lowest]
    return rates[edge] / 10, steepest


def _order(count: int, batch_size: int, steps: int, seed: int) -> list[int]:
    """Shuffled indices for ``steps`` whole batches: as many epochs' permutations as the sweep needs."""
    generator = torch.Generator().manual_seed(seed)
    per_epoch = count - count % batch_size
    order: list[int] = []
    while len(order) < steps * batch_size:
        order += torch.randperm(count, generator=generator)[:per_epoch].tolist()
    return order[:steps * batch_size]
