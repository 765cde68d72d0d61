"""Training-time augmentation presets, applied per sample to the decoded cache (uint8 CHW tensors).

Each preset adds to the one before it, so "none" < "light" < "standard" < "strong". The random ops that
need integer pixels (TrivialAugmentWide) run before the float conversion; RandomErasing runs after
normalisation so that erased patches hold the dataset mean (0) rather than black.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torchvision.transforms import v2

from engine.errors import BadInputError
from engine.preprocessing import Preprocessing
from engine.training.config import AUGMENT_PRESETS


def build_train_transform(
    preset: str, preprocessing: Preprocessing
) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 CHW tensor (shorter side already at ``preprocessing.resize``) -> normalised float32 crop x crop.

    "none" is the evaluation transform (``engine.images.normalize_crop``) expressed in torchvision, so a run
    without augmentation trains on exactly what it is evaluated on.
    """
    if preset not in AUGMENT_PRESETS:
        raise BadInputError(
            f"unknown augmentation preset {preset!r}; choose one of {', '.join(AUGMENT_PRESETS)}"
        )
    level = AUGMENT_PRESETS.index(preset)
    crop = preprocessing.crop

    if level == 0:
        steps: list[torch.nn.Module] = [v2.CenterCrop(crop)]
    else:
        steps = [
            v2.RandomResizedCrop(
                crop,
                scale=(0.6, 1.0),
                interpolation=v2.InterpolationMode(preprocessing.interpolation),
                antialias=True,
            ),
            v2.RandomHorizontalFlip(),
        ]
    if level >= 2:
        # Bilinear, not the default nearest, whose rotated edges are jagged.
        steps += [
            v2.RandomRotation(10, interpolation=v2.InterpolationMode.BILINEAR),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    if level >= 3:
        steps.append(v2.TrivialAugmentWide())
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(preprocessing.mean), std=list(preprocessing.std)),
    ]
    if level >= 3:
        steps.append(v2.RandomErasing(p=0.25))
    return v2.Compose(steps)
