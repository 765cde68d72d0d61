"""A dataset's excluded photos: ``DATA/.transfer-studio/excluded.json``, which the scan honours.

An excluded photo stays where it is (nothing is deleted); the scan leaves it out and lists it with its reason. Each
entry keeps the photo's content hash, so that a new photo reusing an excluded one's name (cameras restart at
IMG_0001) is not silently left out. Changes go through ``engine.dataset.journal`` (``exclude``, ``include``), which
records them so they can be undone; this module is the file and its format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.atomic import write_json_atomic
from engine.dataset.dataset_folder import STATE_FOLDER, dataset_root
from engine.errors import BadInputError

EXCLUSIONS_FILE = "excluded.json"
FORMAT_VERSION = 1


class ExclusionsError(BadInputError):
    """excluded.json cannot be used: unreadable, damaged, or from a newer Transfer Studio."""


@dataclass(frozen=True, slots=True)
class ExcludedPhoto:
    path: str  # below the dataset folder, '/'-separated
    reason: str  # e.g. "near-duplicate", "wrong label", "off-topic", "manual"
    content_hash: str | None  # engine.dataset.validate.content_hash; None when the photo could not be read
    time: str  # UTC, ISO 8601 (engine.time_format.utc_now_iso)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> ExcludedPhoto:
        """An entry as written by ``asdict``; TypeError or KeyError when a field is missing or of the wrong type."""
        photo = cls(entry["path"], entry["reason"], entry["content_hash"], entry["time"])
        if not all(isinstance(value, str) for value in (photo.path, photo.reason, photo.time)) or not (
            photo.content_hash is None or isinstance(photo.content_hash, str)
        ):
            raise TypeError(f"entry {entry!r} needs path, reason and time as text, content_hash as text or null")
        return photo


@dataclass(frozen=True, slots=True)
class Exclusions:
    photos: tuple[ExcludedPhoto, ...] = ()  # sorted by path, one entry per path

    @classmethod
    def of(cls, photos: Iterable[ExcludedPhoto]) -> Exclusions:
        """Sorted by path, one entry per path: the last one given."""
        return cls(tuple(sorted({photo.path: photo for photo in photos}.values(), key=lambda photo: photo.path)))

    def by_path(self) -> dict[str, ExcludedPhoto]:
        return {photo.path: photo for photo in self.photos}

    def to_dict(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "excluded": [asdict(photo) for photo in self.photos]}


def exclusions_file(root: Path) -> Path:
    return root / STATE_FOLDER / EXCLUSIONS_FILE


def read_exclusions(data_dir: Path | str) -> Exclusions:
    """The dataset's exclusions; none when the file does not exist, ExclusionsError when it is damaged."""
    path = exclusions_file(dataset_root(data_dir))
    fix = "repair it, or delete it to include every photo again"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Exclusions()
    except (OSError, UnicodeDecodeError) as exc:
        raise ExclusionsError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc}); {fix}") from exc
    try:
        data = json.loads(text)
        version = data["version"]
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ExclusionsError(f"{path}: written by a newer Transfer Studio (format {version}); update "
                                  f"Transfer Studio, or {fix}")
        photos = [ExcludedPhoto.from_dict(entry) for entry in data["excluded"]]
    except ExclusionsError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ExclusionsError(f"{path}: damaged exclusions file ({type(exc).__name__}: {exc}); {fix}") from exc
    return Exclusions.of(photos)


def write_exclusions(root: Path, exclusions: Exclusions) -> None:
    """Replace excluded.json atomically: a crash leaves the previous version or the new one, never half of one."""
    write_json_atomic(exclusions_file(root), exclusions.to_dict())
