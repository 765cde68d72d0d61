"""The fine-tune plan: how deep to train, for how long, and how BatchNorm behaves, chosen from the quick head.

The quick head (epoch 0) measures how well frozen ImageNet features fit this data. Where they separate the
training photos and generalise (photos of everyday things), training the top two stages for a few epochs
on cached features is all it takes, in seconds. Where they cannot even fit the training split (ultrasound,
scans, microscopy: far from ImageNet), only a deeper fine-tune helps: the top two thirds of the stages, for
more epochs, with more patience and a fresh augmented view every epoch. Figures behind the
thresholds: README ("How the fine-tune adapts") and bench/README.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.training.config import TrainConfig

# The quick head fits frozen features "well" at or above both: measured on photos (cats-dogs 1.00/1.00, the
# generated sample data 1.00/0.94) against ultrasound (0.88/0.76) and a brain-MRI set (0.77/0.58).
FIT_TRAIN_ACCURACY = 0.97
FIT_VAL_ACCURACY = 0.90
SHALLOW_STAGES = 2
SHALLOW_EPOCHS, SHALLOW_PATIENCE, SHALLOW_VIEWS = 6, 3, 2
# Patience 4 stopped ultrasound's deep fine-tune after epoch 6 once validation held no near-duplicates of the
# training photos (honest validation is noisier): test accuracy 0.744 (0.768 on the test photos without a copy in
# training) against 0.821 (0.818) when the 12 epochs run, as they did while the leaky validation kept rising.
DEEP_EPOCHS, DEEP_PATIENCE = 12, 8


@dataclass(frozen=True, slots=True)
class HeadFit:
    """How well the quick head (a linear model on frozen features) fits this data."""

    train_accuracy: float
    val_accuracy: float

    @property
    def frozen_features_suffice(self) -> bool:
        return self.train_accuracy >= FIT_TRAIN_ACCURACY and self.val_accuracy >= FIT_VAL_ACCURACY


@dataclass(frozen=True, slots=True)
class FineTunePlan:
    """What the epochs after the quick head do; saved in run.json so a resumed run follows the same plan."""

    depth: str  # "shallow" | "deep" | "full" | "none" (feature-extract)
    first_trainable: int  # index of the first stage that trains
    epochs: int
    views: int  # augmented views of each training photo, cycled through the epochs
    patience: int  # epochs without validation improvement before stopping; 0 = never
    # BatchNorm of the trained stages updates its statistics (momentum 0.1): only with ``batchnorm="train"``.
    # Frozen statistics measured better on ultrasound, for a deep fine-tune (validation 0.91 vs 0.81) and for
    # ``full`` (test 0.859 vs 0.744): the head, fitted on features normalised by ImageNet statistics, keeps
    # its inputs, and batches of 16 give noisy statistics.
    train_batchnorm: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FineTunePlan:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})


def plan_fine_tune(config: TrainConfig, stage_count: int, fit: HeadFit | None) -> FineTunePlan:
    """The plan for ``config``; its ``epochs`` and ``unfreeze_stages`` override the measured choice when set (> 0).

    ``fit`` is None for ``full`` (nothing to decide: every stage trains) and when resuming a run whose plan
    was not recorded (it then takes the deep branch's values, which is what ``full`` runs on too).
    """
    if config.strategy == "feature-extract":
        return FineTunePlan("none", stage_count, 0, 0, 0, False, "feature-extract: the quick head only")
    if config.strategy == "full":
        depth, first, reason = "full", 0, "full: every stage trains"
    elif config.unfreeze_stages:
        first = max(0, stage_count - config.unfreeze_stages)
        depth = "shallow" if config.unfreeze_stages <= SHALLOW_STAGES else "deep"
        reason = f"{config.unfreeze_stages} top stages, as asked"
    elif fit is not None and fit.frozen_features_suffice:
        depth, first = "shallow", stage_count - SHALLOW_STAGES
        reason = (f"frozen features fit this data (quick head: train {fit.train_accuracy:.2f}, validation "
                  f"{fit.val_accuracy:.2f}): the top {SHALLOW_STAGES} stages fine-tune on cached features")
    else:
        depth, first = "deep", stage_count // 3
        measured = (f"train {fit.train_accuracy:.2f} < {FIT_TRAIN_ACCURACY} or validation {fit.val_accuracy:.2f} < "
                    f"{FIT_VAL_ACCURACY}") if fit is not None else "not measured"
        reason = (f"frozen ImageNet features do not fit this data (quick head: {measured}): the top "
                  f"{stage_count - first} of {stage_count} stages train")
    shallow = depth == "shallow"
    epochs = config.epochs or (SHALLOW_EPOCHS if shallow else DEEP_EPOCHS)
    views = config.augment_views or (SHALLOW_VIEWS if shallow else epochs)
    patience = config.early_stopping if config.early_stopping >= 0 else (
        SHALLOW_PATIENCE if shallow else DEEP_PATIENCE)
    return FineTunePlan(depth, first, epochs, views, patience, config.batchnorm == "train", reason)
