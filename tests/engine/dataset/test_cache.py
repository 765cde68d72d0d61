from __future__ import annotations

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import engine.dataset.cache as cache_module
from engine.dataset.cache import DecodedImageCache
from engine.dataset.scan import scan_dataset
from engine.events import Progress
from engine.images import ImageLoadError
from engine.preprocessing import Preprocessing

PREPROCESSING = Preprocessing(resize=16, crop=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


@pytest.fixture
def decode_calls(monkeypatch) -> list[str]:
    """Count real decodes, to prove what the cache saves."""
    calls: list[str] = []
    real = cache_module.decode_for_cache

    def counting(path, preprocessing):
        calls.append(str(path))
        return real(path, preprocessing)

    monkeypatch.setattr(cache_module, "decode_for_cache", counting)
    return calls


def test_a_hit_does_not_decode_again(tmp_path: Path, make_image, decode_calls):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    path = make_image(tmp_path / "a.png", size=(40, 20))
    first = cache.get(path)
    assert first.shape == (16, 32, 3) and first.dtype == np.uint8 and not first.flags.writeable
    assert cache.get(path) is first
    assert decode_calls == [str(path)]
    assert cache.memory_bytes == first.nbytes
    assert not (tmp_path / "cache").exists()  # nothing spilled while under budget


def test_byte_identical_copies_share_one_entry(tmp_path: Path, make_image, decode_calls):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    path = make_image(tmp_path / "a.png")
    shutil.copy(path, tmp_path / "b.png")
    assert cache.put_from_path(path) == cache.put_from_path(tmp_path / "b.png")
    assert len(decode_calls) == 1


def test_an_edited_file_is_decoded_again(tmp_path: Path, make_image, decode_calls):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    path = make_image(tmp_path / "a.png", size=(16, 16), color=(255, 0, 0))
    assert cache.get(path)[0, 0].tolist() == [255, 0, 0]
    before = os.stat(path).st_mtime_ns
    make_image(path, size=(16, 16), color=(0, 0, 255))
    # A real edit moves the modification time; filesystems with coarse timestamps may not within a test.
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert cache.get(path)[0, 0].tolist() == [0, 0, 255]
    assert len(decode_calls) == 2


def test_beyond_the_memory_budget_arrays_spill_to_disk(tmp_path: Path, make_image, decode_calls):
    disk = tmp_path / "cache"
    cache = DecodedImageCache(PREPROCESSING, disk_dir=disk, memory_budget_bytes=16 * 16 * 3)
    paths = [make_image(tmp_path / f"{index}.png", size=(16, 16)) for index in range(3)]
    arrays = [cache.get(path) for path in paths]
    assert cache.memory_bytes == 16 * 16 * 3
    assert len(list(disk.rglob("*.npy"))) == 2
    assert not list(disk.rglob("*.tmp"))
    np.testing.assert_array_equal(cache.get(paths[2]), arrays[2])

    reopened = DecodedImageCache(PREPROCESSING, disk_dir=disk, memory_budget_bytes=0)
    for path, array in zip(paths[1:], arrays[1:], strict=True):
        np.testing.assert_array_equal(reopened.get(path), array)
    assert len(decode_calls) == 3  # the disk served the reopened cache and the repeat


def test_a_corrupt_spilled_file_is_decoded_again(tmp_path: Path, make_image, decode_calls):
    disk = tmp_path / "cache"
    cache = DecodedImageCache(PREPROCESSING, disk_dir=disk, memory_budget_bytes=0)
    path = make_image(tmp_path / "a.png", size=(16, 16))
    expected = cache.get(path)
    (spilled,) = disk.rglob("*.npy")
    spilled.write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.get(path), expected)
    assert len(decode_calls) == 2


def test_resize_settings_are_part_of_the_key(tmp_path: Path, make_image):
    path = make_image(tmp_path / "a.png", size=(64, 64))
    disk = tmp_path / "cache"
    small = DecodedImageCache(PREPROCESSING, disk_dir=disk, memory_budget_bytes=0)
    large = DecodedImageCache(
        Preprocessing(resize=32, crop=32, mean=(0, 0, 0), std=(1, 1, 1)), disk_dir=disk, memory_budget_bytes=0
    )
    assert small.get(path).shape == (16, 16, 3) and large.get(path).shape == (32, 32, 3)


def test_bad_and_missing_files_raise_load_errors(tmp_path: Path, bad_corpus):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    with pytest.raises(ImageLoadError, match="truncated"):
        cache.get(bad_corpus["truncated.jpg"][0])
    with pytest.raises(ImageLoadError, match="file not found"):
        cache.get(tmp_path / "gone.png")


def test_warm_decodes_in_parallel_and_lists_failures(tmp_path: Path, make_image, bad_corpus, decode_calls):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    good = [make_image(tmp_path / f"{index}.png") for index in range(10)]
    events = []
    failures = cache.warm(good + [bad_corpus["bomb.png"][0]], on_event=events.append, workers=3)
    assert failures == [(str(bad_corpus["bomb.png"][0]), failures[0][1])]
    assert "decompression-bomb" in failures[0][1]
    assert events[-1] == Progress(phase="caching", done=11, total=11, eta_seconds=0.0)
    decode_calls.clear()
    for path in good:
        cache.get(path)
    assert decode_calls == []


def test_concurrent_gets_are_consistent(tmp_path: Path, make_image):
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache", memory_budget_bytes=5 * 16 * 16 * 3)
    paths = [make_image(tmp_path / f"{index}.png", size=(16, 16)) for index in range(10)]
    expected = {
        path: DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "other").get(path) for path in paths
    }
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda path: (path, cache.get(path)), paths * 8))
    for path, array in results:
        np.testing.assert_array_equal(array, expected[path])
    assert cache.memory_bytes == 5 * 16 * 16 * 3


def test_scanning_through_the_cache_decodes_each_image_once(tmp_path: Path, make_dataset, decode_calls):
    root = make_dataset(tmp_path / "data", {"a": 4, "b": 4})
    cache = DecodedImageCache(PREPROCESSING, disk_dir=tmp_path / "cache")
    report = scan_dataset(root, cache=cache)
    assert len(decode_calls) == 8
    for item in report.items:
        cache.get(item.path)
    assert len(decode_calls) == 8
    assert scan_dataset(root, cache=cache).items == report.items
    assert len(decode_calls) == 8
