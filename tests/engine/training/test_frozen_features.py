"""Frozen outputs held in memory and streamed batch by batch are the same numbers; memory is the only difference."""

from pathlib import Path

import pytest
import torch

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.scan import scan_dataset
from engine.events import ignore_event
from engine.training import frozen_features as frozen_module
from engine.training.batch_augment import BatchAugment
from engine.training.config import TrainConfig
from engine.training.device import resolve_device
from engine.training.frozen_features import FrozenFeatures


@pytest.fixture(scope="module")
def frozen(small_data: Path) -> tuple[FrozenFeatures, tuple]:
    model = create_model("efficientnet_lite0", num_classes=2)
    config = TrainConfig(device="cpu", augment="standard")
    preprocessing = get_backbone(config.backbone).preprocessing()
    cache = DecodedImageCache(preprocessing)
    items = scan_dataset(small_data, cache=cache).items
    provider = FrozenFeatures(model, config, "test", cache, BatchAugment(config.augment, preprocessing),
                              resolve_device("cpu"), ignore_event, RunControl())
    return provider, items


def _inputs(provider: FrozenFeatures, items: tuple, upto: int, reuse: bool, view: int = 0) -> torch.Tensor:
    order = list(reversed(range(len(items))))
    batches = list(provider.training_inputs(items, upto, order, 5, view, reuse, "test"))
    assert [row for rows, _ in batches for row in rows] == order
    return torch.cat([x for _, x in batches])


def test_a_view_held_in_memory_equals_the_same_view_streamed(frozen, monkeypatch) -> None:  # noqa: ANN001
    provider, items = frozen
    upto = len(provider.model.stages) - 2
    cached = _inputs(provider, items, upto, reuse=True)
    monkeypatch.setattr(frozen_module, "FEATURE_MEMORY_BUDGET_BYTES", 1024)
    streamed = _inputs(provider, items, upto, reuse=False)
    torch.testing.assert_close(cached, streamed, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(_inputs(provider, items, upto, reuse=False, view=1), streamed, atol=1e-2), \
        "another view is another augmentation"


def test_over_the_memory_budget_photos_stream_and_give_the_same_outputs(frozen, monkeypatch) -> None:  # noqa: ANN001
    provider, items = frozen
    upto = len(provider.model.stages) - 2
    assert provider.fits_in_memory(len(items), upto)
    in_memory = provider.logits(items, upto, "test"), provider.embeddings(items, upto, "test")
    monkeypatch.setattr(frozen_module, "FEATURE_MEMORY_BUDGET_BYTES", 1024)
    assert not provider.fits_in_memory(len(items), upto)
    provider._last_evaluation.clear()
    streamed = provider.logits(items, upto, "test"), provider.embeddings(items, upto, "test")
    assert not provider._last_evaluation, "nothing over the budget is kept"
    for held, fresh in zip(in_memory, streamed, strict=True):
        torch.testing.assert_close(held, fresh, atol=1e-4, rtol=1e-4)


def test_streaming_keeps_the_frozen_stages_in_inference_mode(frozen, monkeypatch) -> None:  # noqa: ANN001
    provider, items = frozen
    upto = 3
    monkeypatch.setattr(frozen_module, "FEATURE_MEMORY_BUDGET_BYTES", 1024)
    provider.model.train()
    means = [m.running_mean.clone() for m in provider.model.stages[:upto].modules()
             if isinstance(m, torch.nn.BatchNorm2d)]
    _inputs(provider, items, upto, reuse=False)
    after = [m.running_mean for m in provider.model.stages[:upto].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(means, after, strict=True))
