"""On-disk cache of frozen-backbone outputs, so a second run on the same photos skips the forward pass.

Keyed by everything that changes the output: backbone, weights, preprocessing, the stage boundary, the
input transform (evaluation crop or a seeded augmented view) and the image's bytes. Entries are float32
``.npy`` files written atomically under the user cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import platformdirs

from engine.atomic import write_atomic
from engine.cache_limit import mark_used
from engine.images import DECODER_VERSION
from engine.preprocessing import Preprocessing

_FORMAT_VERSION = 1


def default_feature_dir() -> Path:
    return Path(platformdirs.user_cache_dir("transfer-studio")) / "features"


def weights_identity(backbone: str, weights_file: Path | None) -> str:
    """Identifies the weights: a local file by its bytes, the packaged or downloaded file by its name and size."""
    if weights_file is not None:
        digest = hashlib.blake2b(Path(weights_file).read_bytes(), digest_size=16).hexdigest()
        return f"file:{digest}"
    from engine.backbones.registry import get_backbone

    spec = get_backbone(backbone)
    return f"{spec.source}:{spec.weights_file_name()}:{spec.file_size_mb()}"


class FeatureCache:
    def __init__(self, backbone: str, weights_id: str, preprocessing: Preprocessing, boundary: int,
                 directory: Path | None = None, variant: str = "evaluation") -> None:
        """``variant`` names the input transform: the evaluation crop, or one seeded augmented view."""
        identity = json.dumps([_FORMAT_VERSION, DECODER_VERSION, backbone, weights_id, preprocessing.to_dict(),
                               boundary, variant])
        self.namespace = hashlib.blake2b(identity.encode(), digest_size=12).hexdigest()
        self.directory = (directory or default_feature_dir()) / self.namespace

    def _path(self, content_hash: str) -> Path:
        return self.directory / content_hash[:2] / f"{content_hash}.npy"

    def load(self, content_hash: str) -> np.ndarray | None:
        path = self._path(content_hash)
        try:
            features = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        mark_used(path)  # the size limit evicts least recently used entries first
        return features

    def save(self, content_hash: str, features: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        with contextlib.suppress(OSError):  # a full or read-only cache folder only costs speed next time
            write_atomic(self._path(content_hash), lambda handle: handle.write(buffer.getvalue()))
