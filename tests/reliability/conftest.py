"""Fixtures for the reliability tests: an exported model, damageable run copies, the real command, the GUI window.

The GUI fixtures are the desktop tests' own (``window``, ``find``, ``drop``...), loaded from tests/desktop/conftest.py
so that both folders drive the window the same way.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _load_desktop_fixtures():  # noqa: ANN202 - a module
    path = Path(__file__).parents[1] / "desktop" / "conftest.py"
    spec = importlib.util.spec_from_file_location("_reliability_desktop_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_desktop = _load_desktop_fixtures()
settings, make_window, window, find, drop = (_desktop.settings, _desktop.make_window, _desktop.window, _desktop.find,
                                            _desktop.drop)


@pytest.fixture
def run_copy(trained_run: Path, exported_model: Path, tmp_path: Path) -> Path:
    """A copy of the trained run, with its exported model, that a test may damage."""
    assert exported_model.parent == trained_run
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


Command = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def transfer_studio() -> Command:
    """Run the installed ``transfer-studio`` command (the one users run) in a real process."""
    installed = Path(sys.executable).with_name("transfer-studio")
    command = [str(installed)] if installed.is_file() else [sys.executable, "-m", "engine.cli"]

    def run(*args: object, timeout: float = 180) -> subprocess.CompletedProcess:
        return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def error_line() -> Callable[[str], str]:
    """The CLI's one-line error from a command's stderr: no traceback, no other line that speaks of an error."""

    def check(stderr: str) -> str:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        assert lines, "nothing on stderr"
        assert "Traceback" not in stderr, stderr
        assert [line for line in lines if "error" in line.lower() or "warn" in line.lower()] == [lines[-1]], stderr
        assert lines[-1].startswith("error: "), stderr
        return lines[-1]

    return check
