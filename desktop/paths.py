"""Where the app keeps its files: the user's data and log folders (platformdirs), never next to the code."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import platformdirs

APP_NAME = "transfer-studio"  # the same name the engine uses for its caches


def user_data_folder() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME))


def log_file() -> Path:
    return Path(platformdirs.user_log_dir(APP_NAME)) / "transfer-studio.log"


def runs_folder() -> Path:
    """Where new runs go and what the Runs page lists."""
    return user_data_folder() / "runs"


def new_run_folder(now: datetime | None = None) -> Path:
    """Create and return ``runs/<timestamp>`` under the user data folder (suffixed if that second is taken)."""
    runs = runs_folder()
    runs.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    return _first_free(runs, stamp, create=True)


def new_sample_data_folder() -> Path:
    """A missing or empty ``sample-data[-N]`` folder for the generated dataset (the generator refuses full ones)."""
    base = user_data_folder()
    base.mkdir(parents=True, exist_ok=True)
    return _first_free(base, "sample-data", create=False)


def _first_free(parent: Path, name: str, *, create: bool) -> Path:
    for index in range(1, 10_000):
        candidate = parent / (name if index == 1 else f"{name}-{index}")
        if create:
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
        if not candidate.exists() or (candidate.is_dir() and not any(candidate.iterdir())):
            return candidate
    raise FileExistsError(f"{parent}: no free folder name for {name!r}")
