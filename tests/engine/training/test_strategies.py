"""Each strategy trains exactly the parameters it should, and frozen BatchNorm statistics never move."""

import pytest
import torch

from engine.backbones.build import create_model
from engine.training.strategies import apply_strategy, first_trainable_stage, parameter_groups, set_train_mode


def _count(params) -> int:  # noqa: ANN001
    return sum(p.numel() for p in params)


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    return create_model("efficientnet_lite0", num_classes=3, pretrained=False)


def test_feature_extract_trains_only_the_head(model) -> None:  # noqa: ANN001
    first = first_trainable_stage(model, "feature-extract", 2)
    apply_strategy(model, first)
    trainable = _count(p for p in model.parameters() if p.requires_grad)
    assert trainable == 1280 * 3 + 3
    assert len(parameter_groups(model, first, 1e-3, 0.1)) == 1


def test_fine_tune_trains_head_and_top_stages(model) -> None:  # noqa: ANN001
    first = first_trainable_stage(model, "fine-tune", 2)
    apply_strategy(model, first)
    expected = _count(model.head.parameters()) + _count(model.stages[-1].parameters()) + _count(
        model.stages[-2].parameters())
    assert _count(p for p in model.parameters() if p.requires_grad) == expected
    groups = parameter_groups(model, first, 1e-3, 0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert _count(groups[1]["params"]) == expected - _count(model.head.parameters())


def test_full_trains_everything(model) -> None:  # noqa: ANN001
    apply_strategy(model, first_trainable_stage(model, "full", 2))
    assert all(p.requires_grad for p in model.parameters())


def test_frozen_stages_get_no_gradient_and_keep_batchnorm_statistics(model) -> None:  # noqa: ANN001
    first = first_trainable_stage(model, "fine-tune", 2)
    apply_strategy(model, first)
    set_train_mode(model, first, train_batchnorm=False)
    frozen_buffers = {k: v.clone() for k, v in model.stages[:first].state_dict().items()}
    for p in model.parameters():
        p.grad = None
    x = torch.randn(4, 3, 96, 96)
    with torch.no_grad():
        features = x
        for stage in model.stages[:first]:
            features = stage(features)
    for stage in model.stages[first:]:
        features = stage(features)
    model.head(features).sum().backward()
    assert all(p.grad is None for p in model.stages[:first].parameters())
    assert all(p.grad is not None for p in model.stages[first:].parameters())
    after = model.stages[:first].state_dict()
    assert all(torch.equal(frozen_buffers[k], after[k]) for k in frozen_buffers)
