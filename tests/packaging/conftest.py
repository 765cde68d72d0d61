"""Fixtures for the bundle smoke tests: where the bundles are, a clean environment to run them in, and a model.

The bundles are built by ``python packaging/build.py``; without one the tests that need it are skipped, unless
TS_REQUIRE_BUNDLES names it (``predictor``, ``full``; set by the build script and CI): then it is a failure.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEAN_PATH = "/usr/bin:/bin"

FindBundle = Callable[[str, str], Path]
CleanEnv = Callable[..., dict[str, str]]


@pytest.fixture(scope="session")
def find_bundle() -> FindBundle:
    """``find_bundle(name, which)``: the executable ``$TS_DIST/<name>/<name>`` (TS_DIST defaults to dist/)."""

    def find(name: str, which: str) -> Path:
        dist = Path(os.environ.get("TS_DIST") or ROOT / "dist")
        executable = dist / name / (f"{name}.exe" if sys.platform == "win32" else name)
        if not executable.is_file():
            message = (f"no {name} bundle at {executable}: build it with `python packaging/build.py {which}` "
                       "(or point TS_DIST at the folder holding it)")
            if which in os.environ.get("TS_REQUIRE_BUNDLES", "").split():
                pytest.fail(message)
            pytest.skip(message)
        return executable

    return find


@pytest.fixture
def clean_env(tmp_path: Path) -> CleanEnv:
    """The whole environment of a bundle run, as ``env -i`` would leave it: PATH=/usr/bin:/bin only, so nothing
    from this virtual environment (PYTHONPATH, LD_LIBRARY_PATH, VIRTUAL_ENV, ...) can help the bundle. ``gui=True``
    adds the offscreen Qt platform and a fresh HOME and XDG folders for its settings, logs and data."""

    def make(*, gui: bool = False) -> dict[str, str]:
        env = {"PATH": CLEAN_PATH}
        if gui:
            home = tmp_path / "home"
            env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home))
            for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
                env[variable] = str(home / variable.lower())
        return env

    return make


@pytest.fixture(scope="session")
def evaluation(trained_run: Path) -> dict:
    """The run's evaluation.json: its labels, and what the engine predicted for each validation image."""
    return json.loads((trained_run / "evaluation.json").read_text(encoding="utf-8"))
