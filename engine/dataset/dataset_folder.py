"""Places in a dataset folder: the folder itself, a photo's path below it, and the hidden folder of the app's state.

Exclusions and the change journal name photos by their path below the dataset folder, '/'-separated, so that they
still apply when the folder is moved, or copied between Windows and macOS.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.dataset.validate import DatasetError
from engine.errors import BadInputError

STATE_FOLDER = ".transfer-studio"  # hidden, so the scan never takes it for a class


class DatasetPathError(BadInputError):
    """A path that names no photo of the dataset: outside it, its folder itself, or inside its state folder."""


def dataset_root(root: Path | str) -> Path:
    """The dataset folder, resolved; DatasetError when it is missing or a file."""
    path = Path(root).expanduser()
    if not path.exists():
        raise DatasetError(f"{path}: folder not found (check the path, or choose another folder)")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a folder (choose the folder that holds one sub-folder per class)")
    return path.resolve()


def relative_photo_path(root: Path, path: Path | str) -> str:
    """``path`` (absolute, or relative to the resolved ``root``) as a '/'-separated path below ``root``.

    Its folder is resolved (symbolic links, ``..``) but not the file itself, so a symlinked photo keeps its own name
    and a link can never carry a change outside the dataset.
    """
    candidate = Path(os.path.normpath(root / Path(path).expanduser()))
    resolved = candidate.parent.resolve() / candidate.name
    try:
        relative = resolved.relative_to(root)
    except ValueError:
        raise DatasetPathError(f"{path}: not inside the dataset folder {root}; only its own photos can be moved or "
                               "excluded") from None
    if not relative.parts:
        raise DatasetPathError(f"{path}: the dataset folder itself, not a photo in it")
    if relative.parts[0] == STATE_FOLDER:
        raise DatasetPathError(f"{path}: inside {STATE_FOLDER}, where Transfer Studio keeps the dataset's exclusions "
                               "and change journal; choose a photo of the dataset")
    return relative.as_posix()
