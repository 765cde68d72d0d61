"""Each strategy trains exactly the parameters it should, and frozen BatchNorm statistics never move."""

from pathlib import Path

import pytest
import torch

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.scan import scan_dataset
from engine.events import ignore_event
from engine.training.batch_augment import BatchAugment
from engine.training.config import TrainConfig
from engine.training.device import resolve_device
from engine.training.frozen_features import FrozenFeatures
from engine.training.loop import train_one_epoch, training_loss, warmup_cosine
from engine.training.quick_head import labels_tensor
from engine.training.strategies import (
    TRAINED_BATCHNORM_MOMENTUM,
    apply_strategy,
    parameter_groups,
    set_train_mode,
)


def _count(params) -> int:  # noqa: ANN001
    return sum(p.numel() for p in params)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return create_model("efficientnet_lite0", num_classes=3, pretrained=False)


def test_feature_extract_trains_only_the_head(model) -> None:  # noqa: ANN001
    first = len(model.stages)
    apply_strategy(model, first)
    trainable = _count(p for p in model.parameters() if p.requires_grad)
    assert trainable == 1280 * 3 + 3
    assert len(parameter_groups(model, first, 1e-3, 0.1)) == 1


def test_fine_tune_trains_head_and_top_stages(model) -> None:  # noqa: ANN001
    first = len(model.stages) - 2
    apply_strategy(model, first)
    expected = _count(model.head.parameters()) + _count(model.stages[-1].parameters()) + _count(
        model.stages[-2].parameters())
    assert _count(p for p in model.parameters() if p.requires_grad) == expected
    groups = parameter_groups(model, first, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert _count(groups[1]["params"]) == expected - _count(model.head.parameters())


def test_full_trains_everything(model) -> None:  # noqa: ANN001
    apply_strategy(model, 0)
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_stages_get_no_gradient_and_keep_batchnorm_statistics(small_data: Path) -> None:
    """The training path itself: the frozen stages' outputs from FrozenFeatures, then train_one_epoch on the top."""
    model = create_model("efficientnet_lite0", num_classes=2)
    first = len(model.stages) - 2
    config, setup = TrainConfig(device="cpu"), resolve_device("cpu")
    preprocessing = get_backbone(config.backbone).preprocessing()
    cache = DecodedImageCache(preprocessing)
    items = scan_dataset(small_data, cache=cache).split_items("train")
    frozen = FrozenFeatures(model, config, "test", cache, BatchAugment(config.augment, preprocessing), setup,
                            ignore_event, RunControl())
    apply_strategy(model, first)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = labels_tensor(i.label for i in items)
    provided = frozen.training_inputs(items, first, range(len(items)), 4, 0, reuse=False, phase="x")
    batches = ((inputs, targets[rows], None) for rows, inputs in provided)
    optimizer = torch.optim.AdamW(parameter_groups(model, first, 1e-2, 0.1))
    train_one_epoch(model, first, batches, optimizer, warmup_cosine(optimizer, 0, -(-len(items) // 4)),
                    training_loss(None, 0.0), setup, lambda: set_train_mode(model, first, train_batchnorm=False),
                    epoch=1, batch_count=-(-len(items) // 4), grad_clip=1.0, scaler=None, on_event=ignore_event,
                    control=RunControl())
    assert all(p.grad is None for p in model.stages[:first].parameters())
    assert all(p.grad is not None for p in model.stages[first:].parameters())
    after = model.state_dict()
    below = [k for k in before if k.startswith("stages.") and int(k.split(".")[1]) < first]
    statistics = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert all(torch.equal(before[k], after[k]) for k in below + statistics)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(f"stages.{first}.")), "it trained"


def _batchnorm_means(model) -> list[torch.Tensor]:  # noqa: ANN001
    return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize("first", [0, 3])
def test_trained_batchnorm_tracks_the_new_data_and_frozen_batchnorm_does_not(first: int) -> None:
    """Ten steps on images unlike ImageNet's close most of the gap between the running mean and the data's mean
    in trained stages (the TF port's momentum 0.01 would close 10 %), and move nothing in frozen stages."""
    model = create_model("efficientnet_lite0", num_classes=2)
    apply_strategy(model, first, train_batchnorm=True)
    set_train_mode(model, first, train_batchnorm=True)
    stem_bn = model.stages[0]._bn0
    head_bn = model.stages[-1]._bn1
    assert head_bn.momentum == TRAINED_BATCHNORM_MOMENTUM
    before = _batchnorm_means(model)
    frozen_before = {k: v.clone() for k, v in model.stages[:first].state_dict().items()}
    torch.manual_seed(0)
    images = 0.8 + 0.05 * torch.randn(8, 3, 64, 64)  # bright, flat images: far from ImageNet statistics
    with torch.no_grad():
        x = images
        for stage in model.stages[:first]:
            x = stage(x)
        inputs = x
        head_input = inputs
        for stage in model.stages[first:-1]:
            head_input = stage(head_input)
        # What the head stage's BatchNorm sees: the batch mean of its conv output.
        target = model.stages[-1]._conv_head(head_input).mean(dim=(0, 2, 3))
    start = head_bn.running_mean.clone()
    for _ in range(10):
        with torch.no_grad():
            x = inputs
            for stage in model.stages[first:]:
                x = stage(x)
    closed = 1 - (head_bn.running_mean - target).norm() / (start - target).norm()
    assert closed > 0.5, f"the trained BatchNorm closed only {closed:.0%} of the gap to the new data"
    assert all(torch.equal(v, model.stages[:first].state_dict()[k]) for k, v in frozen_before.items())
    moved = [not torch.equal(a, b) for a, b in zip(before, _batchnorm_means(model), strict=True)]
    trained_count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.stages[first:].modules())
    assert sum(moved) == trained_count and (first == 0 or not moved[0])
    assert (stem_bn.momentum == TRAINED_BATCHNORM_MOMENTUM) == (first == 0)


def test_frozen_batchnorm_keeps_the_imagenet_statistics_while_its_stage_trains() -> None:
    model = create_model("efficientnet_lite0", num_classes=2)
    first = len(model.stages) - 2
    apply_strategy(model, first, train_batchnorm=False)
    set_train_mode(model, first, train_batchnorm=False)
    before = _batchnorm_means(model)
    with torch.no_grad():
        model(0.8 + 0.05 * torch.randn(4, 3, 64, 64))
    assert all(torch.equal(a, b) for a, b in zip(before, _batchnorm_means(model), strict=True))
