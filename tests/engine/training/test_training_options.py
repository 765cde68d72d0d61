"""README's training options doing what they say: early stopping stops, class weighting weights, SGD is SGD."""

import shutil
from pathlib import Path

import pytest

from engine.events import WarningEvent
from engine.training import fine_tune as fine_tune_module
from engine.training import run_folder as rf
from engine.training.checkpoints import load_checkpoint
from engine.training.config import TrainConfig
from engine.training.trainer import train

FAST = {"batch_size": 8, "unfreeze_stages": 1, "augment_views": 1}  # a shallow fine-tune: seconds on a CPU


def test_early_stopping_stops_after_patience_epochs_without_improvement(
        small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fine_tune_module, "head_metrics", lambda *_args: (9.0, 0.0))  # every epoch worse than 0
    events: list = []
    result = train(small_data, tmp_path / "run", TrainConfig(epochs=8, early_stopping=2, **FAST),
                   on_event=events.append)
    assert result.status == "completed"
    assert [m["epoch"] for m in rf.read_metrics(tmp_path / "run")] == [0, 1, 2]
    assert any(isinstance(e, WarningEvent) and "early stopping after epoch 2" in e.message for e in events)


def test_class_weighting_changes_the_loss_on_imbalanced_data(small_data: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(small_data, tmp_path / "data"))
    for path in sorted((data / "squares").iterdir())[2:]:
        path.unlink()  # 8 circles, 2 squares: past the 3x imbalance at which "auto" weights the loss
    losses = {}
    for mode in ("auto", "off"):
        train(data, tmp_path / mode, TrainConfig(epochs=1, early_stopping=0, class_weighting=mode, **FAST))
        losses[mode] = [(m["train_loss"], m["val_loss"]) for m in rf.read_metrics(tmp_path / mode)]
    for weighted, plain in zip(losses["auto"], losses["off"], strict=True):
        assert weighted[0] != pytest.approx(plain[0], abs=1e-4) and weighted[1] != pytest.approx(plain[1], abs=1e-4)


def test_sgd_optimizer_trains_with_momentum(small_data: Path, tmp_path: Path) -> None:
    result = train(small_data, tmp_path / "run", TrainConfig(epochs=1, early_stopping=0, optimizer="sgd", **FAST))
    assert result.status == "completed"
    groups = load_checkpoint(tmp_path / "run" / rf.LAST_FILE)["optimizer"]["param_groups"]
    assert groups and all(g["momentum"] == 0.9 and "nesterov" in g and "betas" not in g for g in groups)
