"""A size limit for the on-disk caches (decoded images, frozen features): least recently used entries go first.

Entries are ``.npy`` files; a cache hit touches its file, so modification time orders them by last use.
Written by hand because the caches are plain folders of files and no small library prunes those by age.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

LIMIT_VARIABLE = "TRANSFER_STUDIO_CACHE_LIMIT_GB"
DEFAULT_LIMIT_GB = 5.0
_PRUNE_TO = 0.8  # prune to 80% of the limit, so the next few runs do not prune again at once


@dataclass(frozen=True, slots=True)
class Pruned:
    files: int
    bytes: int


def cache_limit_bytes() -> int:
    """Per cache folder; ``TRANSFER_STUDIO_CACHE_LIMIT_GB`` overrides the default (5 GB)."""
    try:
        gigabytes = float(os.environ.get(LIMIT_VARIABLE, DEFAULT_LIMIT_GB))
    except ValueError:
        gigabytes = DEFAULT_LIMIT_GB
    return int(max(gigabytes, 0.0) * 1024**3)


def mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only cache only loses its ordering
        os.utime(path)


def prune(folder: Path, limit_bytes: int) -> Pruned:
    """Delete the least recently used ``.npy`` files under ``folder`` while it holds more than ``limit_bytes``."""
    entries = []
    for root, _dirs, files in os.walk(folder):
        for path in (os.path.join(root, name) for name in files if name.endswith(".npy")):
            with contextlib.suppress(OSError):  # gone meanwhile (another run pruning): nothing to count
                stat = os.stat(path)
                entries.append((stat.st_mtime_ns, stat.st_size, path))
    total = sum(size for _, size, _ in entries)
    if total <= limit_bytes:
        return Pruned(0, 0)
    removed = freed = 0
    for _, size, path in sorted(entries):
        if total - freed <= limit_bytes * _PRUNE_TO:
            break
        with contextlib.suppress(OSError):
            os.remove(path)
            removed, freed = removed + 1, freed + size
    return Pruned(removed, freed)
