"""The frozen-feature cache: reused on a second run, invalidated by any change that alters the features."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from engine.backbones.registry import get_backbone
from engine.events import Info
from engine.training.config import TrainConfig
from engine.training.feature_cache import FeatureCache
from engine.training.trainer import train


def _cache_lines(events: list) -> list[str]:
    return [e.message for e in events if isinstance(e, Info) and "feature cache" in e.message]


def test_second_run_skips_the_forward_pass_and_edits_invalidate(small_data: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    config = TrainConfig(strategy="feature-extract", seed=5)
    first: list = []
    train(data, tmp_path / "a", config, on_event=first.append)
    second: list = []
    result_b = train(data, tmp_path / "b", config, on_event=second.append)
    assert all(" 0 of " in line for line in _cache_lines(first)), _cache_lines(first)
    assert all(" 0 computed" in line for line in _cache_lines(second)), _cache_lines(second)
    assert result_b.status == "completed"

    victim = sorted((data / "circles").iterdir())[0]
    image = np.asarray(Image.open(victim).convert("RGB")).copy()
    image[:10] = 255
    Image.fromarray(image).save(victim)
    third: list = []
    train(data, tmp_path / "c", config, on_event=third.append)
    assert sum(int(line.split(", ")[1].split(" ")[0]) for line in _cache_lines(third)) == 1


def test_namespace_changes_with_backbone_weights_preprocessing_and_boundary() -> None:
    prep = get_backbone("efficientnet_lite0").preprocessing()
    base = FeatureCache("efficientnet_lite0", "w1", prep, 7).namespace
    assert FeatureCache("resnet18", "w1", prep, 7).namespace != base
    assert FeatureCache("efficientnet_lite0", "w2", prep, 7).namespace != base
    assert FeatureCache("efficientnet_lite0", "w1", prep, 8).namespace != base
    other = type(prep)(resize=prep.resize + 1, crop=prep.crop, mean=prep.mean, std=prep.std)
    assert FeatureCache("efficientnet_lite0", "w1", other, 7).namespace != base


def test_corrupt_cache_entry_is_recomputed(tmp_path: Path) -> None:
    prep = get_backbone("efficientnet_lite0").preprocessing()
    cache = FeatureCache("efficientnet_lite0", "w", prep, 9, directory=tmp_path)
    cache.save("ab" * 16, np.ones(4, dtype=np.float32))
    assert np.array_equal(cache.load("ab" * 16), np.ones(4))
    path = next(tmp_path.rglob("*.npy"))
    path.write_bytes(b"garbage")
    assert cache.load("ab" * 16) is None and not path.exists()
