"""Cached photos as uint8 batches: squares whose centre crop is the evaluation crop, prepared ahead on a thread."""

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.images import center_crop_array, normalize_crop
from engine.preprocessing import Preprocessing
from engine.training.batch_augment import evaluation_crops
from engine.training.image_batches import image_batches, prefetched, square_crop

PREPROCESSING = Preprocessing(resize=40, crop=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))


@pytest.mark.parametrize(("height", "width"), [(40, 40), (40, 57), (40, 58), (61, 40), (62, 40), (40, 41)])
@pytest.mark.parametrize(("resize", "crop"), [(40, 32), (40, 33)])
def test_the_square_holds_the_evaluation_crop_exactly(height: int, width: int, resize: int, crop: int) -> None:
    pixels = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    preprocessing = Preprocessing(resize=resize, crop=crop, mean=PREPROCESSING.mean, std=PREPROCESSING.std)
    square = square_crop(pixels, preprocessing)
    assert square.shape == (resize, resize, 3)
    np.testing.assert_array_equal(center_crop_array(square, crop), center_crop_array(pixels, crop))


def _photos(folder: Path, sizes: list[tuple[int, int]]) -> list[ImageItem]:
    folder.mkdir()
    items = []
    for index, (width, height) in enumerate(sizes):
        path = folder / f"{index}.png"
        Image.fromarray(np.random.default_rng(index).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        items.append(ImageItem(str(path), 0, "train"))
    return items


def test_batches_are_the_evaluation_input_of_every_photo(tmp_path: Path) -> None:
    items = _photos(tmp_path / "photos", [(50, 40), (40, 70), (64, 64), (41, 90), (90, 41)])
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    batches = list(image_batches(cache, items, [[4, 0], [2], [1, 3]], pin=False))
    assert [b.rows for b in batches] == [[4, 0], [2], [1, 3]]
    for batch in batches:
        assert batch.pixels.dtype == torch.uint8 and batch.pixels.shape[1:] == (3, 40, 40) and not batch.skipped
        crops = evaluation_crops(batch.pixels, PREPROCESSING)
        for row, crop in zip(batch.rows, crops, strict=True):
            expected = normalize_crop(cache.get(items[row].path), PREPROCESSING)
            np.testing.assert_allclose(crop.numpy(), expected, atol=1e-5)


def test_an_unreadable_photo_is_left_out_and_named(tmp_path: Path) -> None:
    items = _photos(tmp_path / "photos", [(40, 40), (40, 40), (40, 40)])
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    Path(items[1].path).write_bytes(b"not an image any more")
    batches = list(image_batches(cache, items, [[0, 1, 2], [1]], pin=False))
    assert [b.rows for b in batches] == [[0, 2], []]
    assert [e.path for b in batches for e in b.skipped] == [items[1].path, items[1].path]
    assert batches[1].pixels.shape[0] == 0


def test_prefetched_keeps_order_and_reraises_the_source_error() -> None:
    def source():  # noqa: ANN202
        yield from range(5)
        raise ValueError("broken source")

    seen = []
    with pytest.raises(ValueError, match="broken source"):
        for item in prefetched(source(), depth=2):
            seen.append(item)
    assert seen == [0, 1, 2, 3, 4]


def test_closing_early_ends_the_producer_thread() -> None:
    produced = []

    def endless():  # noqa: ANN202
        count = 0
        while True:
            produced.append(count)
            yield count
            count += 1

    before = threading.active_count()
    batches = prefetched(endless())
    assert next(batches) == 0
    batches.close()
    assert threading.active_count() == before
    assert len(produced) <= 4, "the producer stays at most a few items ahead"
