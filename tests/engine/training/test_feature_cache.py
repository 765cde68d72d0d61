"""The frozen-feature cache: reused on a second run, invalidated by any change that alters the features."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.backbones.registry import get_backbone
from engine.events import Info
from engine.training.config import TrainConfig
from engine.training.feature_cache import FeatureCache
from engine.training.trainer import train

pytestmark = pytest.mark.usefixtures("private_cache")  # the tests count cache hits: they need an empty cache


def _cache_lines(events: list) -> list[str]:
    return [e.message for e in events if isinstance(e, Info) and "feature cache" in e.message]


def _counts(line: str) -> dict:
    """Parse "PHASE: CACHED of TOTAL images from the feature cache, COMPUTED computed (...)"."""
    match = re.fullmatch(r"(.+): (\d+) of (\d+) images from the feature cache, (\d+) computed \(.+\)", line)
    assert match, line
    return {"phase": match[1], "cached": int(match[2]), "total": int(match[3]), "computed": int(match[4])}


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
    # The edited photo is computed again once at each boundary: the near-duplicate pass's (a mid-level stage,
    # for the split) and the quick head's (every stage, for feature-extract); every other photo comes from disk.
    computed = [_counts(line) for line in _cache_lines(third)]
    assert [c["computed"] for c in computed if c["phase"] == "features (near-duplicates)"] == [1]
    assert sum(c["computed"] for c in computed if c["phase"] != "features (near-duplicates)") == 1


def test_augmented_views_are_computed_once_then_reused_and_cached(small_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=4, augment_views=2, early_stopping=0, seed=3)
    first: list = []
    train(small_data, tmp_path / "a", config, on_event=first.append)
    views = [_counts(line) for line in _cache_lines(first) if line.startswith("augmented view")]
    train_count = views[0]["total"]
    assert [v["phase"] for v in views] == [
        "augmented view 1 of 2 (training)", "augmented view 2 of 2 (training)", "augmented view 1 of 2 (training)"]
    assert [v["computed"] for v in views] == [train_count, train_count, 0]

    second: list = []
    train(small_data, tmp_path / "b", config, on_event=second.append)
    assert all(" 0 computed" in line for line in _cache_lines(second)), _cache_lines(second)
    other_seed: list = []
    train(small_data, tmp_path / "c", TrainConfig(epochs=3, batch_size=4, augment_views=2, seed=4),
          on_event=other_seed.append)
    fresh = [_counts(line) for line in _cache_lines(other_seed) if line.startswith("augmented view")]
    assert [v["computed"] for v in fresh] == [train_count, train_count, 0], "another seed must give other views"


def test_namespace_changes_with_backbone_weights_preprocessing_boundary_and_view() -> None:
    prep = get_backbone("efficientnet_lite0").preprocessing()
    base = FeatureCache("efficientnet_lite0", "w1", prep, 7).namespace
    assert FeatureCache("resnet18", "w1", prep, 7).namespace != base
    assert FeatureCache("efficientnet_lite0", "w2", prep, 7).namespace != base
    assert FeatureCache("efficientnet_lite0", "w1", prep, 8).namespace != base
    other = type(prep)(resize=prep.resize + 1, crop=prep.crop, mean=prep.mean, std=prep.std)
    assert FeatureCache("efficientnet_lite0", "w1", other, 7).namespace != base
    view = FeatureCache("efficientnet_lite0", "w1", prep, 7, variant="augment light, view 0, seed 0").namespace
    assert view != base
    assert FeatureCache("efficientnet_lite0", "w1", prep, 7, variant="augment light, view 1, seed 0").namespace != view


def test_corrupt_cache_entry_is_recomputed(tmp_path: Path) -> None:
    prep = get_backbone("efficientnet_lite0").preprocessing()
    cache = FeatureCache("efficientnet_lite0", "w", prep, 9, directory=tmp_path)
    cache.save("ab" * 16, np.ones(4, dtype=np.float32))
    assert np.array_equal(cache.load("ab" * 16), np.ones(4))
    path = next(tmp_path.rglob("*.npy"))
    path.write_bytes(b"garbage")
    assert cache.load("ab" * 16) is None and not path.exists()
