"""Session-wide generated datasets and one trained run, shared by the training, CLI and export tests."""

from pathlib import Path

import pytest

from engine.dataset.sample_data import generate_sample_dataset
from engine.training.config import TrainConfig
from engine.training.trainer import train


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes x 30 generated photos: enough for an honest held-out accuracy check."""
    return generate_sample_dataset(tmp_path_factory.mktemp("sample") / "data", classes=3, per_class=30, seed=1)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 8 small images: fast runs for control-flow tests."""
    return generate_sample_dataset(tmp_path_factory.mktemp("small") / "data", classes=2, per_class=8, seed=2,
                                   image_size=96)


@pytest.fixture(scope="session")
def trained_run(sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    train(sample_data, run_dir, TrainConfig(epochs=2, batch_size=16, early_stopping=0))
    return run_dir
