"""A model trained on random labels is not called good, however lucky its small validation split."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from engine.dataset.sample_data import generate_sample_dataset
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.evaluate_run import evaluate_run
from engine.training.trainer import train


def _shuffle_labels(root: Path, seed: int) -> None:
    """Move every image into a class folder drawn at random, keeping each class's size: labels become noise."""
    files = sorted(root.glob("*/*.jpg"))
    classes = [path.parent.name for path in files]
    for path, label in zip(files, np.random.default_rng(seed).permutation(classes), strict=True):
        path.rename(root / label / path.name)


def test_random_labels_are_not_judged_good(tmp_path: Path) -> None:
    data = generate_sample_dataset(tmp_path / "data", classes=3, per_class=30, seed=3, image_size=96)
    _shuffle_labels(data, seed=0)
    run = tmp_path / "run"
    train(data, run, TrainConfig(strategy="feature-extract"))
    split = json.loads((run / rf.EVALUATION_FILE).read_text())["validation"]
    assert split["verdict"]["level"] != "good", split["verdict"]["sentence"]
    assert split["verdict"]["suggestions"]
    # On another folder the baseline is still the training split's majority (a tie: the first label), not that
    # folder's: keep 5 images of the first label, and always answering it is right 5 times in 65.
    other = Path(shutil.copytree(data, tmp_path / "other"))
    first = rf.read_run(run).labels[0]
    for path in sorted((other / first).iterdir())[5:]:
        path.unlink()
    elsewhere = evaluate_run(run, other)["validation"]
    assert split["baseline"]["majority_label"] == elsewhere["baseline"]["majority_label"] == first
    assert elsewhere["count"] == 65 and elsewhere["baseline"]["majority_accuracy"] == pytest.approx(5 / 65)
