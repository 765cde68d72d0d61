"""Outputs of the frozen stages, computed once per photo and input transform, and kept in the feature cache.

The frozen stages are a fixed function, so their output for the evaluation crop, or for a seeded augmented
view, never changes: fine-tune epochs reuse it and only run the trainable top. Outputs are held in memory
only while a set of them fits ``FEATURE_MEMORY_BUDGET_BYTES``; beyond it (a deep boundary, tens of thousands
of photos) the photos stream through the frozen stages batch by batch, so memory does not grow with the
dataset.

In a distributed run (``engine.training.distributed``) each process computes a strided shard of the photos missing
from the cache and the shards are gathered once, so every process holds the whole set; each process then takes its
part of every training batch, and a streamed pass loads only that part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from engine.backbones.build import TransferModel, run_stages
from engine.backbones.inference import forward_in_batches
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.events import EventSink, Info, WarningEvent
from engine.training.batch_augment import AUGMENT_VERSION, BatchAugment, evaluation_crops, seeded_uniforms, view_key
from engine.training.batch_size import BatchSizeTuner
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup, to_device
from engine.training.distributed import current, gather_shards, gathered, shard
from engine.training.feature_cache import FeatureCache
from engine.training.image_batches import ImageBatch, gather_batch, image_batches

# One set of frozen outputs (say, every training photo's) held in memory at most; at Lite0's shallow boundary
# (36 KB a photo) that is 21,000 photos, at its deep one (294 KB) 2,600.
FEATURE_MEMORY_BUDGET_BYTES = 768 * 1024**2
_STREAM_BATCH = 64  # photos per batch when streaming evaluation crops through the whole network


class FrozenFeatures:
    """Stage outputs of one model below a chosen boundary (``upto``: the first stage that trains)."""

    def __init__(self, model: TransferModel, config: TrainConfig, weights_id: str, cache: DecodedImageCache,
                 augment: BatchAugment, setup: DeviceSetup, on_event: EventSink, control: RunControl) -> None:
        self.model, self.config, self.weights_id, self.cache = model, config, weights_id, cache
        self.augment, self.setup, self.on_event, self.control = augment, setup, on_event, control
        self._tuners: dict[int, BatchSizeTuner] = {}
        self._last_evaluation: dict[int, tuple[tuple[str, ...], torch.Tensor]] = {}
        self._bytes_per_photo: dict[int, int] = {}

    def fits_in_memory(self, count: int, upto: int) -> bool:
        """Whether the frozen outputs of ``count`` photos at boundary ``upto`` may be held at once."""
        return upto > 0 and count * self._photo_bytes(upto) <= FEATURE_MEMORY_BUDGET_BYTES

    def embeddings(self, items: tuple[ImageItem, ...], upto: int, phase: str) -> torch.Tensor:
        """Pooled embeddings of the evaluation crops (every stage, frozen), via the cached outputs at ``upto``."""
        return self._through_top(items, upto, phase, head=False)

    def logits(self, items: tuple[ImageItem, ...], upto: int, phase: str) -> torch.Tensor:
        """The model's logits for the evaluation crops, on the CPU; the stages below ``upto`` come from the cached
        outputs where they fit in memory (the validation photos, every epoch), else they run again."""
        return self._through_top(items, upto, phase, head=True)

    def training_inputs(self, items: tuple[ImageItem, ...], upto: int, order: Sequence[int], batch_size: int,
                        view: int, reuse: bool, phase: str) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(rows, inputs of the trainable stages on the device) for augmented view ``view``, batch by batch in
        ``order``. The view is seeded per photo, so every epoch that uses it, and a resumed run, see the same.

        Where the view's frozen outputs fit in memory they are computed now, for all photos at once, at the
        measured fastest batch size (call this before putting the model in train mode); ``reuse`` (the view comes
        back in later epochs) also keeps them in the feature cache on disk. Otherwise photos stream through the
        frozen stages as the batches are drawn, and those unreadable since the scan are left out with a warning.
        """
        chunks = _my_parts([list(order[start:start + batch_size]) for start in range(0, len(order), batch_size)])
        if self.fits_in_memory(len(items), upto):
            features = self._features(items, upto, phase, view, on_disk=reuse)
            return ((rows, to_device(features[rows], self.setup)) for rows in chunks)
        return self._streamed_inputs(items, upto, chunks, view)

    # --- internals ---------------------------------------------------------------------------------
    def _streamed_inputs(self, items: tuple[ImageItem, ...], upto: int, chunks: list[list[int]],
                         view: int) -> Iterator[tuple[list[int], torch.Tensor]]:
        for stage in self.model.stages[:upto]:
            stage.eval()  # frozen means inference mode too: their BatchNorm must not learn from these batches
        for batch in self._batches(items, chunks):
            inputs = self._augmented(batch, items, view)
            if upto:
                with torch.no_grad(), self._autocast():
                    inputs = run_stages(self.model, range(upto), inputs)
            yield batch.rows, inputs

    def _through_top(self, items: tuple[ImageItem, ...], upto: int, phase: str, *, head: bool) -> torch.Tensor:
        stages = len(self.model.stages)
        if self.fits_in_memory(len(items), upto):
            features = self._evaluation(items, upto, phase)
            if upto == stages and not head:
                return features
            return forward_in_batches(self.model, range(upto, stages), len(features),
                                      lambda rows: features[rows.start:rows.stop], self.setup, _STREAM_BATCH,
                                      head=head, phase=phase, on_event=self.on_event, control=self.control)
        chunks = [list(range(start, min(len(items), start + _STREAM_BATCH)))
                  for start in range(0, len(items), _STREAM_BATCH)]
        with contextlib.closing(self._batches(items, chunks, strict=True)) as batches:
            return forward_in_batches(self.model, range(stages), len(items),
                                      lambda _rows: evaluation_crops(self._on_device(next(batches)),
                                                                     self.cache.preprocessing),
                                      self.setup, _STREAM_BATCH, head=head, phase=phase, on_event=self.on_event,
                                      control=self.control)

    def _evaluation(self, items: tuple[ImageItem, ...], upto: int, phase: str) -> torch.Tensor:
        """Frozen outputs for the evaluation crops. The last set per boundary stays in memory: the quick head,
        every fine-tune epoch and the final evaluation ask for the validation photos' in turn."""
        paths = tuple(item.path for item in items)
        last = self._last_evaluation.get(upto)
        if last is None or last[0] != paths:
            self._last_evaluation.pop(upto, None)  # free the old set before computing the new one
            last = self._last_evaluation[upto] = (paths, self._features(items, upto, phase, None))
        return last[1]

    def _photo_bytes(self, upto: int) -> int:
        """Bytes of one photo's float32 output at boundary ``upto``, from one blank image through the stages."""
        if upto not in self._bytes_per_photo:
            crop = self.cache.preprocessing.crop
            modes = {module: module.training for module in self.model.modules()}
            self.model.eval()  # BatchNorm in train mode would learn from the blank image
            with torch.inference_mode():
                blank = to_device(torch.zeros(1, 3, crop, crop), self.setup)
                self._bytes_per_photo[upto] = run_stages(self.model, range(upto), blank).numel() * 4
            for module, training in modes.items():
                module.training = training
        return self._bytes_per_photo[upto]

    def _tuner(self, upto: int) -> BatchSizeTuner:
        if upto not in self._tuners:
            self._tuners[upto] = BatchSizeTuner(f"{self.config.backbone}|{self.weights_id}|"
                                                f"{self.setup.description}|0-{upto}|{self.cache.preprocessing.crop}",
                                                device=self.setup.device)
        return self._tuners[upto]

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.setup.device, dtype=self.setup.amp_dtype, enabled=self.setup.amp_dtype is not None)

    def _batches(self, items: Sequence[ImageItem], chunks: list[list[int]], *,
                 strict: bool = False) -> Iterator[ImageBatch]:
        """Cached photos batch by batch; an unreadable one is skipped with a warning, or, with ``strict`` (where
        every photo needs an output), raised."""
        for batch in image_batches(self.cache, items, chunks, pin=self.setup.device == "cuda"):
            for error in batch.skipped:
                if strict:
                    raise error
                self.on_event(WarningEvent(f"skipped {error.path}: {error.reason} (changed during training)"))
            if batch.rows:
                yield batch

    def _on_device(self, batch: ImageBatch) -> torch.Tensor:
        return to_device(batch.pixels, self.setup)

    def _augmented(self, batch: ImageBatch, items: Sequence[ImageItem], view: int) -> torch.Tensor:
        keys = [view_key(self.config.seed, self.cache.content_hash(items[row].path), view) for row in batch.rows]
        return self.augment(self._on_device(batch), seeded_uniforms(keys, self.augment.uniforms_per_image))

    def _features(self, items: tuple[ImageItem, ...], upto: int, phase: str, view: int | None, *,
                  on_disk: bool = True) -> torch.Tensor:
        """Frozen outputs at ``upto`` of every photo (evaluation crop, or augmented ``view``), from the feature
        cache where present; computed ones are saved there for later runs. ``on_disk=False`` skips the cache: a
        view used once (a deep fine-tune's, about 300 KB a photo for Lite0) would cost disk for a rare re-run."""
        hashes = [self.cache.content_hash(item.path) for item in items]
        variant = "evaluation" if view is None else (f"augment {self.config.augment}, view {view}, "
                                                     f"seed {self.config.seed}, {AUGMENT_VERSION}")
        cache = FeatureCache(self.config.backbone, self.weights_id, self.cache.preprocessing, upto, variant=variant)
        found = {h: f for h in set(hashes) if on_disk and (f := cache.load(h)) is not None}
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if current().distributed:  # one list for all: the processes' caches may differ (other machines, timing)
            missing = sorted(set().union(*gathered(missing)))
        tuner = self._tuner(upto)
        if missing:
            mine = shard(missing)
            computed = gather_shards(
                forward_in_batches(self.model, range(upto), len(mine), self._loader(items, mine, view), self.setup,
                                   tuner, phase=phase, on_event=self.on_event, control=self.control), len(missing))
            for i, features in zip(missing, computed, strict=True):
                found[hashes[i]] = features.numpy()
                if on_disk and current().main:
                    cache.save(hashes[i], found[hashes[i]])
        batch = f"batch size {tuner.chosen}" if tuner.chosen else "measuring batch sizes"
        self.on_event(Info(f"{phase}: {len(items) - len(missing)} of {len(items)} images from the feature cache, "
                           f"{len(missing)} computed ({batch})"))
        return torch.from_numpy(np.stack([found[h] for h in hashes])) if items else torch.empty(0)

    def _loader(self, items: tuple[ImageItem, ...], chosen: list[int],
                view: int | None) -> Callable[[range], torch.Tensor]:
        """Batches of ``items[chosen]`` on the device, transformed there (the tuner asks for varying sizes)."""

        def load(rows: range) -> torch.Tensor:
            batch = gather_batch(self.cache, items, [chosen[i] for i in rows], pin=self.setup.device == "cuda")
            if batch.skipped:
                raise batch.skipped[0]
            if view is None:
                return evaluation_crops(self._on_device(batch), self.cache.preprocessing)
            return self._augmented(batch, items, view)

        return load


def _my_parts(chunks: list[list[int]]) -> list[list[int]]:
    """This process's part of each training batch (all of it when alone). A batch with fewer photos than
    processes (an epoch's short last one) is left out: every process must run the same number of steps."""
    processes = current()
    if not processes.distributed:
        return chunks
    return [chunk[processes.rank::processes.world_size] for chunk in chunks if len(chunk) >= processes.world_size]
