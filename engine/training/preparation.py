"""What every training-like job needs before its first step: the scanned dataset, the model on its device, the
class weights and the frozen-feature provider. Shared by ``train`` and ``find_learning_rate``; writes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.backbones.build import TransferModel, create_model
from engine.backbones.registry import get_backbone
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import IMBALANCE_WARNING_RATIO, ImageItem, ScanReport
from engine.dataset.scan import scan_dataset
from engine.dataset.split import keep_groups_together
from engine.events import EventSink
from engine.images import ImageLoadError
from engine.training.batch_augment import BatchAugment
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup, for_dataset, resolve_device
from engine.training.feature_cache import weights_identity
from engine.training.frozen_features import FrozenFeatures
from engine.training.near_duplicates import group_paths, look_at


@dataclass(frozen=True, slots=True)
class PreparedTraining:
    config: TrainConfig
    setup: DeviceSetup
    cache: DecodedImageCache
    report: ScanReport
    labels: list[str]
    model: TransferModel
    class_weights: torch.Tensor | None  # None unless the classes are imbalanced (or asked for)
    frozen: FrozenFeatures


def prepare_training(data_dir: Path, config: TrainConfig, on_event: EventSink, control: RunControl, *,
                     near_duplicates: bool = False) -> PreparedTraining:
    """Scan ``data_dir`` (validated, split, decoded into the cache) and build the model with its weights.

    ``near_duplicates``: find near-duplicate photos through the frozen backbone and split so that each group is
    on one side (a fresh training run; the cost is one frozen pass that the quick head then reads from the
    feature cache, plus the test photos')."""
    setup = resolve_device(config.device)
    preprocessing = get_backbone(config.backbone).preprocessing()
    cache = DecodedImageCache(preprocessing)
    torch.manual_seed(config.seed)
    report = scan_dataset(data_dir, val_fraction=config.val_split, test_fraction=config.test_split,
                          seed=config.seed, cache=cache, on_event=on_event, control=control)
    labels = list(report.classes)
    setup = for_dataset(setup, len(report.split_items("train")))
    weights_file = Path(config.weights_file) if config.weights_file else None
    model = create_model(config.backbone, len(labels), weights_file=weights_file, dropout=config.dropout,
                         on_event=on_event, control=control).to(setup.device)
    if setup.channels_last:
        model = model.to(memory_format=torch.channels_last)
    frozen = FrozenFeatures(model, config, weights_identity(config.backbone, weights_file), cache,
                            BatchAugment(config.augment, preprocessing), setup, on_event, control)
    if near_duplicates:
        items, _unreadable = still_readable(cache, report.items)  # skipped, with a warning, when training
        look = look_at(model, frozen, items, "features (near-duplicates)")
        report = keep_groups_together(report, group_paths(look, items), val_fraction=config.val_split,
                                      test_fraction=config.test_split, seed=config.seed, on_event=on_event)
    return PreparedTraining(config, setup, cache, report, labels, model, class_weights_for(config, report, labels),
                            frozen)


def class_weights_for(config: TrainConfig, report: ScanReport, labels: list[str]) -> torch.Tensor | None:
    """Loss weights inverse to the training counts of ``report``'s split (a resumed run passes its recorded one)."""
    mode = config.class_weighting
    if mode == "off" or (mode == "auto" and report.imbalance_ratio <= IMBALANCE_WARNING_RATIO):
        return None
    counts = np.array([report.counts["train"][c] for c in labels], dtype=np.float64)
    return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)


def still_readable(cache: DecodedImageCache,
                   items: tuple[ImageItem, ...]) -> tuple[tuple[ImageItem, ...], list[ImageLoadError]]:
    """The photos that still decode, and why the others do not (deleted or broken since the scan)."""
    kept, unreadable = [], []
    for item in items:
        try:
            cache.get(item.path)
            kept.append(item)
        except ImageLoadError as exc:
            unreadable.append(exc)
    return tuple(kept), unreadable
