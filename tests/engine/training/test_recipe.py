"""The fine-tune plan: shallow where frozen features fit the data, deep where they do not, as asked otherwise."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.recipe import (
    DEEP_EPOCHS,
    SHALLOW_EPOCHS,
    SHALLOW_STAGES,
    FineTunePlan,
    HeadFit,
    plan_fine_tune,
)
from engine.training.trainer import train

STAGES = 9


def test_frozen_features_that_fit_give_the_fast_shallow_plan() -> None:
    plan = plan_fine_tune(TrainConfig(), STAGES, HeadFit(1.0, 0.95))
    assert (plan.depth, plan.first_trainable, plan.epochs, plan.views, plan.train_batchnorm) == (
        "shallow", STAGES - SHALLOW_STAGES, SHALLOW_EPOCHS, 2, False)


@pytest.mark.parametrize("fit", [HeadFit(0.88, 0.76), HeadFit(1.0, 0.6)])
def test_frozen_features_that_do_not_fit_give_a_deep_plan_with_fresh_views(fit: HeadFit) -> None:
    plan = plan_fine_tune(TrainConfig(), STAGES, fit)
    assert plan.depth == "deep" and plan.first_trainable == STAGES // 3
    assert plan.epochs == DEEP_EPOCHS and plan.views == plan.epochs and plan.patience > 3
    assert not plan.train_batchnorm  # measured: frozen statistics keep the fitted head's inputs (recipe.py)


def test_explicit_options_override_the_measured_choice() -> None:
    config = TrainConfig(epochs=3, unfreeze_stages=5, augment_views=1, early_stopping=0)
    plan = plan_fine_tune(config, STAGES, HeadFit(1.0, 1.0))
    assert (plan.depth, plan.first_trainable, plan.epochs, plan.views, plan.patience) == ("deep", 4, 3, 1, 0)


def test_full_trains_every_stage_and_feature_extract_nothing() -> None:
    full = plan_fine_tune(TrainConfig(strategy="full"), STAGES, HeadFit(1.0, 1.0))
    assert (full.first_trainable, full.train_batchnorm) == (0, False)
    assert plan_fine_tune(TrainConfig(strategy="full", batchnorm="train"), STAGES, None).train_batchnorm
    head_only = plan_fine_tune(TrainConfig(strategy="feature-extract"), STAGES, HeadFit(0.5, 0.5))
    assert head_only.epochs == 0 and head_only.first_trainable == STAGES


def test_plan_round_trips_through_json() -> None:
    plan = plan_fine_tune(TrainConfig(), STAGES, HeadFit(0.8, 0.7))
    assert FineTunePlan.from_dict(plan.to_dict()) == plan


def _fine_texture_dataset(root: Path, per_class: int = 16) -> Path:
    """Two classes of flat grey photos that differ only in the strength of a one-pixel grain, under random
    brightness: what the eye barely sees, and what ImageNet features do not separate."""
    rng = np.random.default_rng(5)
    for label, grain in (("fine", 6.0), ("coarse", 9.0)):
        (root / label).mkdir(parents=True)
        for index in range(per_class):
            base = rng.uniform(70, 180)
            pixels = base + rng.normal(0, grain, (128, 128, 1)) * np.ones((1, 1, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(root / label / f"{index}.png")
    return root


def test_the_run_picks_shallow_on_photos_and_deep_on_what_frozen_features_cannot_separate(
        sample_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=8)
    train(sample_data, tmp_path / "photos", config)
    train(_fine_texture_dataset(tmp_path / "texture"), tmp_path / "texture-run", config)
    photos, texture = (rf.read_run(tmp_path / name).plan for name in ("photos", "texture-run"))
    assert photos is not None and texture is not None
    assert photos.depth == "shallow", photos.reason
    assert texture.depth == "deep", texture.reason
    assert texture.first_trainable < photos.first_trainable
