"""Batches of cached photos as one uint8 tensor each: the input path of every training and frozen-feature pass.

Each photo's cached array (shorter side at ``resize``) is cut to the ``resize`` x ``resize`` square whose own
centre crop is the evaluation crop, so photos of any aspect ratio stack into one tensor and cropping,
augmentation and normalisation run on the device, in batch (``engine.training.batch_augment``), as fastai's
"presizing" does. Batches are assembled one ahead on a background thread, pinned when bound for CUDA, so the
host-to-device copy overlaps the device's work instead of waiting for per-photo CPU work.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.images import ImageLoadError
from engine.preprocessing import Preprocessing

T = TypeVar("T")
_END = object()


@dataclass(frozen=True, slots=True)
class ImageBatch:
    rows: list[int]  # indices into the items of the photos in ``pixels``, in order
    pixels: torch.Tensor  # uint8 (len(rows), 3, resize, resize), channels_last in memory
    skipped: tuple[ImageLoadError, ...]  # photos of this batch that could not be read (changed since the scan)


def square_crop(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """The ``resize`` x ``resize`` square of a cached HWC array whose centre crop equals ``center_crop_array``'s.

    The cache holds the shorter side at ``resize`` (>= ``crop`` for every backbone), so the square always fits;
    the offset repeats the evaluation crop's rounding, so evaluation from squares is exact to the pixel.
    """
    size, crop = preprocessing.resize, preprocessing.crop
    top, left = _offset(pixels.shape[0], size, crop), _offset(pixels.shape[1], size, crop)
    return pixels[top:top + size, left:left + size]


def _offset(length: int, size: int, crop: int) -> int:
    return min(max(0, int(round((length - crop) / 2.0)) - int(round((size - crop) / 2.0))), length - size)


def image_batches(cache: DecodedImageCache, items: Sequence[ImageItem], row_batches: Iterable[Sequence[int]],
                  *, pin: bool) -> Iterator[ImageBatch]:
    """One ImageBatch per entry of ``row_batches`` (indices into ``items``), prepared a batch ahead.

    An unreadable photo is left out of its batch and reported in ``skipped``; a batch of only such photos is
    not yielded.
    """
    return prefetched(gather_batch(cache, items, rows, pin=pin) for rows in row_batches)


def gather_batch(cache: DecodedImageCache, items: Sequence[ImageItem], rows: Sequence[int], *,
                 pin: bool) -> ImageBatch:
    """``items[rows]`` as one batch, now (see ``image_batches`` for batches prepared ahead)."""
    size = cache.preprocessing.resize
    squares, kept, skipped = [], [], []
    for row in rows:
        try:
            squares.append(square_crop(cache.get(items[row].path), cache.preprocessing))
            kept.append(row)
        except ImageLoadError as exc:
            skipped.append(exc)
    batch = torch.empty((len(kept), size, size, 3), dtype=torch.uint8, pin_memory=pin and bool(kept))
    target = batch.numpy()
    for index, square in enumerate(squares):
        target[index] = square
    return ImageBatch(kept, batch.permute(0, 3, 1, 2), tuple(skipped))


def prefetched(source: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``source``'s items, produced ``depth`` ahead on a thread; its exceptions re-raised here, in order.

    Closing the returned generator early (a stop, an error in the consumer) ends the thread too.
    """
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[object, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((item, None)):
                    return
            put((_END, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            put((_END, exc))

    thread = threading.Thread(target=produce, name="image-batches", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
