"""Batched frozen inference: every input reaches the model through to_device, the head included."""

import pytest
import torch

from engine.backbones import inference
from engine.backbones.build import create_model, run_stages
from engine.training.device import resolve_device


def test_the_head_runs_inside_the_batches_on_the_model_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake device, float64: a tensor that reached the float64 model without to_device would fail in it."""
    model = create_model("efficientnet_lite0", 3, pretrained=False).double()
    first = len(model.stages) - 1
    with torch.no_grad():
        features = run_stages(model.eval(), range(first), torch.randn(5, 3, 32, 32).double()).float()
    moved: list[int] = []

    def to_fake_device(tensor: torch.Tensor, _setup: object) -> torch.Tensor:
        moved.append(len(tensor))
        return tensor.double()

    monkeypatch.setattr(inference, "to_device", to_fake_device)
    logits = inference.forward_in_batches(model, range(first, len(model.stages)), 5,
                                          lambda rows: features[rows.start:rows.stop], resolve_device("cpu"), 2,
                                          head=True, phase="x")
    assert moved == [2, 2, 1]
    assert logits.shape == (5, 3) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    with torch.no_grad():
        expected = model.head(model.stages[first](features.double())).float()
    torch.testing.assert_close(logits, expected)
    empty = inference.forward_in_batches(model, range(first, len(model.stages)), 0, lambda rows: features[:0],
                                         resolve_device("cpu"), 2, head=True, phase="x")
    assert empty.shape == (0, 3)
