"""Decoded-image cache: each photo is decoded and resized once, then reused by every epoch.

Decoding a JPEG costs far more than a training step of a small model, so arrays are kept in memory
up to a budget and spilled to ``.npy`` files beyond it. Entries are keyed by the file's bytes and the
resize settings, so an edited photo or a new backbone never reads a stale array, and byte-identical
copies share one entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import platformdirs

from engine.atomic import write_atomic
from engine.cache_limit import mark_used
from engine.control import RunControl
from engine.dataset.validate import content_hash, decode_in_parallel
from engine.events import EventSink, ignore_event
from engine.images import DECODER_VERSION, ImageLoadError, decode_for_cache, file_error_reason
from engine.preprocessing import Preprocessing

_log = logging.getLogger(__name__)

DEFAULT_MEMORY_BUDGET_BYTES = 1024**3  # 5,400 photos at 256 x 256; the rest spill to disk


def default_disk_dir() -> Path:
    return Path(platformdirs.user_cache_dir("transfer-studio")) / "decoded"


class DecodedImageCache:
    """Thread-safe store of resized uint8 HWC arrays; returned arrays are read-only and shared.

    A file's content hash is remembered until its size, modification time or inode changes, so a hit
    costs one ``stat``, not a re-read of the file.
    """

    def __init__(
        self,
        preprocessing: Preprocessing,
        disk_dir: Path | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET_BYTES,
    ) -> None:
        self.preprocessing = preprocessing
        self.memory_budget_bytes = memory_budget_bytes
        self._disk_dir = disk_dir
        self._lock = threading.Lock()
        self._memory: dict[str, np.ndarray] = {}
        self._memory_bytes = 0
        self._hashes: dict[str, tuple[tuple[int, int, int, int], str]] = {}
        self._spill_failed = False

    @property
    def disk_dir(self) -> Path:
        """Resolved lazily; only a spill creates it, so a cache that fits in memory leaves no folder."""
        if self._disk_dir is None:
            self._disk_dir = default_disk_dir()
        return self._disk_dir

    @property
    def memory_bytes(self) -> int:
        with self._lock:
            return self._memory_bytes

    def content_hash(self, path: Path | str) -> str:
        """The file's content hash, re-read only when the file changed since it was last hashed."""
        return self._identify(path)[0]

    def get(self, path: Path | str) -> np.ndarray:
        """The resized array for ``path``, decoded on a miss; ImageLoadError if the file is bad or gone."""
        return self._lookup(path)[1]

    def put_from_path(self, path: Path | str) -> str:
        """Make sure ``path`` is cached (decoding proves it is a usable image) and return its content hash."""
        return self._lookup(path)[0]

    def warm(
        self,
        paths: Sequence[Path | str],
        on_event: EventSink = ignore_event,
        control: RunControl | None = None,
        workers: int | None = None,
    ) -> list[tuple[str, str]]:
        """Decode ``paths`` in parallel ahead of training; returns (path, reason) for each failure."""
        outcomes = decode_in_parallel(
            [Path(path) for path in paths],
            self.put_from_path,
            phase="caching",
            on_event=on_event,
            control=control,
            workers=workers,
        )
        return [(outcome.path, outcome.reason) for outcome in outcomes if isinstance(outcome, ImageLoadError)]

    def _identify(self, path: Path | str) -> tuple[str, int]:
        """(content hash, size in bytes) of ``path``, from memory while its stat signature is unchanged."""
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise ImageLoadError(path, file_error_reason(exc)) from exc
        signature = (stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)
        with self._lock:
            known = self._hashes.get(str(path))
        if known is not None and known[0] == signature:
            return known[1], stat.st_size
        digest = content_hash(path)
        with self._lock:
            self._hashes[str(path)] = (signature, digest)
        return digest, stat.st_size

    def _key(self, digest: str, size: int) -> str:
        resize, interpolation = self.preprocessing.resize, self.preprocessing.interpolation
        settings = f"v{DECODER_VERSION}|{digest}|{size}|{resize}|{interpolation}"
        return hashlib.blake2b(settings.encode(), digest_size=16).hexdigest()

    def _lookup(self, path: Path | str) -> tuple[str, np.ndarray]:
        digest, size = self._identify(path)
        key = self._key(digest, size)
        with self._lock:
            pixels = self._memory.get(key)
        if pixels is None:
            pixels = self._load_from_disk(key)
        if pixels is None:
            pixels = decode_for_cache(path, self.preprocessing)
            pixels.setflags(write=False)
            if not self._keep_in_memory(key, pixels):
                self._write_to_disk(key, pixels)
        return digest, pixels

    def _keep_in_memory(self, key: str, pixels: np.ndarray) -> bool:
        with self._lock:
            if key in self._memory:
                return True
            if self._memory_bytes + pixels.nbytes > self.memory_budget_bytes:
                return False
            self._memory[key] = pixels
            self._memory_bytes += pixels.nbytes
            return True

    def _disk_path(self, key: str) -> Path:
        return self.disk_dir / key[:2] / f"{key}.npy"

    def _load_from_disk(self, key: str) -> np.ndarray | None:
        path = self._disk_path(key)
        try:
            pixels = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError):
            pixels = None
        if pixels is None or pixels.dtype != np.uint8 or pixels.ndim != 3:
            with contextlib.suppress(OSError):
                path.unlink()  # an unreadable leftover: decode again, and the next spill rewrites it
            return None
        pixels.setflags(write=False)
        mark_used(path)  # the size limit evicts least recently used entries first
        self._keep_in_memory(key, pixels)
        return pixels

    def _write_to_disk(self, key: str, pixels: np.ndarray) -> None:
        try:
            write_atomic(self._disk_path(key), lambda handle: np.save(handle, pixels, allow_pickle=False))
        except OSError as exc:
            # A full or read-only disk only costs speed (the image is decoded again next time), not the run.
            if not self._spill_failed:
                self._spill_failed = True
                _log.warning("cannot write the decoded-image cache under %s: %s", self.disk_dir, exc)
