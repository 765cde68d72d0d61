"""Outputs of the frozen stages, computed once per photo and input transform, and kept in the feature cache.

The frozen stages are a fixed function, so their output for the evaluation crop, or for a seeded augmented
view, never changes: fine-tune epochs reuse it and only run the trainable top.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import torch
import torchvision

from engine.backbones.build import TransferModel
from engine.backbones.inference import forward_in_batches
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.events import EventSink, Info
from engine.images import normalize_crop
from engine.training.batch_size import BatchSizeTuner
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup
from engine.training.feature_cache import FeatureCache


class FrozenFeatures:
    """Stage outputs of one model below a chosen boundary (``upto``: the first stage that trains)."""

    def __init__(self, model: TransferModel, config: TrainConfig, weights_id: str, cache: DecodedImageCache,
                 augment: Callable[[torch.Tensor], torch.Tensor], setup: DeviceSetup, on_event: EventSink,
                 control: RunControl) -> None:
        self.model, self.config, self.weights_id, self.cache = model, config, weights_id, cache
        self.augment, self.setup, self.on_event, self.control = augment, setup, on_event, control
        self._tuners: dict[int, BatchSizeTuner] = {}
        self._last_evaluation: dict[int, tuple[tuple[str, ...], torch.Tensor]] = {}

    def evaluation(self, items: tuple[ImageItem, ...], upto: int, phase: str) -> torch.Tensor:
        """Frozen outputs for the evaluation crop of each photo. The last set per boundary stays in memory: the
        quick head, every fine-tune epoch and the final evaluation ask for the validation photos' in turn."""
        paths = tuple(item.path for item in items)
        last = self._last_evaluation.get(upto)
        if last is None or last[0] != paths:
            last = self._last_evaluation[upto] = (paths, self._features(items, upto, phase, None))
        return last[1]

    def augmented(self, items: tuple[ImageItem, ...], upto: int, view: int, phase: str, *,
                  on_disk: bool = True) -> torch.Tensor:
        """Frozen outputs for augmented view ``view`` of each photo (the same view every run: seeded).

        ``on_disk=False`` skips the feature cache: a deep fine-tune's boundary outputs are large (about 300 KB
        a photo for Lite0) and each view is used once, so writing them would cost disk for a rare re-run.
        """
        return self._features(items, upto, phase, view, on_disk)

    def augment_item(self, item: ImageItem) -> torch.Tensor:
        """A random augmentation of the cached photo (a copy: the cached array stays untouched)."""
        return self.augment(torch.from_numpy(np.array(self.cache.get(item.path))).permute(2, 0, 1))

    def embeddings(self, features: torch.Tensor, upto: int, phase: str) -> torch.Tensor:
        """The pooled embeddings: the stages from ``upto`` on, run frozen on ``features``."""
        stages = range(upto, len(self.model.stages))
        if not stages:
            return features
        return forward_in_batches(self.model, stages, len(features), lambda idx: features[idx.start:idx.stop],
                                  self.setup, 64, phase=phase, on_event=self.on_event, control=self.control)

    def _tuner(self, upto: int) -> BatchSizeTuner:
        if upto not in self._tuners:
            self._tuners[upto] = BatchSizeTuner(f"{self.config.backbone}|{self.weights_id}|"
                                                f"{self.setup.description}|0-{upto}|{self.cache.preprocessing.crop}")
        return self._tuners[upto]

    def _input(self, view: int | None) -> Callable[[ImageItem, str], np.ndarray | torch.Tensor]:
        if view is None:
            return lambda item, _hash: normalize_crop(self.cache.get(item.path), self.cache.preprocessing)

        def load(item: ImageItem, content_hash: str) -> torch.Tensor:
            key = hashlib.blake2b(f"{self.config.seed}|{content_hash}|{view}".encode(), digest_size=8).digest()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int.from_bytes(key, "little") & (2**63 - 1))
                return self.augment_item(item)

        return load

    def _features(self, items: tuple[ImageItem, ...], upto: int, phase: str, view: int | None,
                  on_disk: bool = True) -> torch.Tensor:
        hashes = [self.cache.content_hash(item.path) for item in items]
        make_input = self._input(view)

        def loader(chosen: list[int]) -> Callable[[range], torch.Tensor]:  # batches of items[chosen]
            return lambda batch: torch.stack([torch.as_tensor(make_input(items[chosen[i]], hashes[chosen[i]]))
                                              for i in batch])

        if upto == 0:  # nothing frozen: the "features" are the preprocessed images themselves
            return loader(list(range(len(items))))(range(len(items))) if items else torch.empty(0)
        variant = "evaluation" if view is None else (f"augment {self.config.augment}, view {view}, "
                                                     f"seed {self.config.seed}, torchvision {torchvision.__version__}")
        cache = FeatureCache(self.config.backbone, self.weights_id, self.cache.preprocessing, upto, variant=variant)
        found = {h: f for h in set(hashes) if on_disk and (f := cache.load(h)) is not None}
        missing = [i for i, h in enumerate(hashes) if h not in found]
        tuner = self._tuner(upto)
        if missing:
            computed = forward_in_batches(self.model, range(upto), len(missing), loader(missing), self.setup, tuner,
                                          phase=phase, on_event=self.on_event, control=self.control)
            for i, features in zip(missing, computed, strict=True):
                found[hashes[i]] = features.numpy()
                if on_disk:
                    cache.save(hashes[i], found[hashes[i]])
        batch = f"batch size {tuner.chosen}" if tuner.chosen else "measuring batch sizes"
        self.on_event(Info(f"{phase}: {len(items) - len(missing)} of {len(items)} images from the feature cache, "
                           f"{len(missing)} computed ({batch})"))
        return torch.from_numpy(np.stack([found[h] for h in hashes])) if items else torch.empty(0)
