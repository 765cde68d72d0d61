"""Re-evaluating a run: on the split it recorded (never a new one), with the whole model on one device."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.events import WarningEvent
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.evaluate_run import evaluate_run, predict_logits
from engine.training.trainer import train


def test_evaluate_uses_the_recorded_split_and_reports_added_and_removed_photos(small_data: Path, tmp_path: Path,
                                                                             make_image) -> None:  # noqa: ANN001
    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(small_data, data)
    train(data, run, TrainConfig(strategy="feature-extract", device="cpu"))
    recorded = json.loads((run / rf.SCAN_REPORT_FILE).read_text())
    validation = sorted(item["path"] for item in recorded["items"] if item["split"] == "val")
    removed = Path(validation.pop(0))
    removed.unlink()
    added = make_image(data / "squares" / "added.png", size=(96, 96))

    events: list = []
    document = evaluate_run(run, on_event=events.append)
    assert sorted(p["path"] for p in document["validation"]["predictions"]) == validation
    warnings = [e.message for e in events if isinstance(e, WarningEvent)]
    assert [m for m in warnings if "1 photo" in m and str(added) in m], warnings
    assert [m for m in warnings if "1 photo" in m and str(removed) in m], warnings


def test_predictions_run_the_head_where_the_features_are(small_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake device: float64. Whatever reaches the (float64) head without passing through to_device fails,
    as a CPU tensor meeting a CUDA head does."""
    from engine.backbones import inference

    model = create_model("efficientnet_lite0", 2, pretrained=False).double().eval()
    moved: list = []

    def to_fake_device(tensor: torch.Tensor, _setup: object) -> torch.Tensor:
        moved.append(tensor.shape)
        return tensor.double()

    monkeypatch.setattr(inference, "to_device", to_fake_device)
    items = [ImageItem(str(path), 0, "val") for path in sorted(small_data.rglob("*.jpg"))[:3]]
    logits = predict_logits(model, items, DecodedImageCache(get_backbone("efficientnet_lite0").preprocessing()))
    assert logits.shape == (3, 2) and np.isfinite(logits).all()
    assert moved and sum(shape[0] for shape in moved) == 3
