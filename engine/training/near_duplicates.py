"""Near-duplicate photos through the frozen backbone: the layout features the doctor groups by, and the split
that keeps each group on one side. Shared by ``train`` (a fresh run's split) and ``transfer-studio doctor``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.backbones.build import TransferModel
from engine.dataset.doctor import Neighbourhoods, find_neighbourhoods, unit_rows
from engine.dataset.report import ImageItem
from engine.training.frozen_features import FrozenFeatures
from engine.training.recipe import SHALLOW_STAGES

# Layout features: the boundary's feature map averaged over a grid of at most 4 x 4 cells (Lite0: 192 channels
# x 16 cells), fewer cells where the channels are many, so 20,000 photos hold at most 330 MB of them.
_LAYOUT_GRIDS = (4, 3, 2, 1)
_LAYOUT_MAX_VALUES = 4096


@dataclass(frozen=True)
class FrozenLook:
    """What the frozen backbone sees of some photos, in their order."""

    features: torch.Tensor  # pooled embeddings (N x D) on the CPU
    embeddings: np.ndarray  # the same as unit rows
    layout: np.ndarray  # layout features as unit rows
    found: Neighbourhoods  # near-duplicate groups (indices)


def look_at(model: TransferModel, frozen: FrozenFeatures, items: tuple[ImageItem, ...], phase: str) -> FrozenLook:
    """Embeddings and layout features of ``items`` at the quick head's boundary, whose frozen outputs the feature
    cache keeps, so the quick head after (or a doctor before) reuses them."""
    boundary = max(0, len(model.stages) - SHALLOW_STAGES)
    with layout_recorder(model, boundary) as layout:
        features = frozen.embeddings(items, boundary, phase)
    embeddings = unit_rows(features.numpy(), len(items))
    layout_rows = unit_rows(torch.cat(layout).numpy(), len(items)) if layout else embeddings
    return FrozenLook(features, embeddings, layout_rows, find_neighbourhoods(layout_rows))


def group_paths(look: FrozenLook, items: tuple[ImageItem, ...]) -> list[tuple[str, ...]]:
    return [tuple(items[index].path for index in group) for group in look.found.groups]


@contextmanager
def layout_recorder(model: TransferModel, boundary: int) -> Iterator[list[torch.Tensor]]:
    """Collect, batch by batch, the layout features of whatever passes into stage ``boundary`` meanwhile: its
    input (the cached frozen output, or the stages below it when the photos stream) pooled to a small grid.
    The pooled embedding keeps what is in a photo but not where, which is what tells a copy from a look-alike."""
    pooled: list[torch.Tensor] = []

    def record(_stage: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        maps = inputs[0].detach().float()
        if maps.dim() == 4:
            grid = next((g for g in _LAYOUT_GRIDS if maps.shape[1] * g * g <= _LAYOUT_MAX_VALUES), 1)
            maps = F.adaptive_avg_pool2d(maps, grid)
        pooled.append(maps.flatten(1).cpu())

    handle = model.stages[boundary].register_forward_pre_hook(record)
    try:
        yield pooled
    finally:
        handle.remove()
