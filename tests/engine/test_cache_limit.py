"""The on-disk caches stay under their size limit, evicting the least recently used entries first."""

import os
from pathlib import Path

import pytest

from engine.cache_limit import DEFAULT_LIMIT_GB, LIMIT_VARIABLE, cache_limit_bytes, mark_used, prune
from engine.events import Info
from engine.training.config import TrainConfig
from engine.training.trainer import train


def _entries(folder: Path, count: int, size: int) -> list[Path]:
    paths = []
    for index in range(count):
        path = folder / f"{index:02d}"[:2] / f"{index}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
        os.utime(path, ns=(index * 10**9, index * 10**9))  # entry 0 is the oldest
        paths.append(path)
    return paths


def test_least_recently_used_entries_go_first_down_to_80_percent(tmp_path: Path) -> None:
    paths = _entries(tmp_path, 10, 100)
    (tmp_path / "notes.txt").write_bytes(b"y" * 5000)  # not a cache entry: never counted or removed
    mark_used(paths[0])  # used just now: the newest
    pruned = prune(tmp_path, 500)
    assert (pruned.files, pruned.bytes) == (6, 600)
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == ["0.npy", "7.npy", "8.npy", "9.npy"]
    assert (tmp_path / "notes.txt").exists()


def test_nothing_is_removed_under_the_limit_or_from_a_missing_folder(tmp_path: Path) -> None:
    _entries(tmp_path, 3, 100)
    assert prune(tmp_path, 300).files == 0 and len(list(tmp_path.rglob("*.npy"))) == 3
    assert prune(tmp_path / "absent", 0).files == 0


def test_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIMIT_VARIABLE, raising=False)
    assert cache_limit_bytes() == int(DEFAULT_LIMIT_GB * 1024**3)
    monkeypatch.setenv(LIMIT_VARIABLE, "0.5")
    assert cache_limit_bytes() == 1024**3 // 2
    monkeypatch.setenv(LIMIT_VARIABLE, "lots")
    assert cache_limit_bytes() == int(DEFAULT_LIMIT_GB * 1024**3)


def test_training_prunes_the_feature_cache_and_says_so(small_data: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(LIMIT_VARIABLE, str(20_000 / 1024**3))  # room for about 3 of Lite0's 5 KB embeddings
    events: list = []
    result = train(small_data, tmp_path / "run", TrainConfig(strategy="feature-extract"), on_event=events.append)
    assert result.status == "completed"
    messages = [e.message for e in events if isinstance(e, Info) and "least recently used" in e.message]
    assert len(messages) == 1 and messages[0].startswith("feature cache over its")
    left = list((tmp_path / "cache").rglob("*.npy"))
    assert left and sum(p.stat().st_size for p in left) <= 16_000
