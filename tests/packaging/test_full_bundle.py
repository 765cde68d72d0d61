"""Smoke test of the built full Transfer Studio bundle (dist/transfer-studio), run with a clean environment and
fresh user folders: the bundled weights are found, `demo` trains, exports and predicts, and the window opens."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

NAME = "transfer-studio"
DEMO_TIMEOUT_S = 1800  # about 3 minutes on 2 CPU cores
TIMEOUT_S = 600


@pytest.fixture(scope="session")
def full_app(find_bundle) -> Path:
    return find_bundle(NAME, "full")


def test_bundled_weights_are_found(full_app: Path, clean_env) -> None:
    result = subprocess.run([full_app, "backbones"], env=clean_env(gui=True), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    lite0 = next(line for line in result.stdout.splitlines() if line.startswith("efficientnet_lite0"))
    assert lite0.rstrip().endswith("bundled")


def test_demo_trains_exports_and_predicts(full_app: Path, clean_env, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run([full_app, "demo", "--out", out], env=clean_env(gui=True), capture_output=True,
                            text=True, timeout=DEMO_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads((out / "run" / "run.json").read_text(encoding="utf-8"))["status"] == "completed"
    assert (out / "run" / "model.onnx").is_file()
    assert json.loads((out / "run" / "export_parity.json").read_text(encoding="utf-8"))["passed"]
    assert "predictions of" in result.stdout


def test_window_opens(full_app: Path, clean_env) -> None:
    result = subprocess.run([full_app, "--smoke-seconds", "3"], env=clean_env(gui=True), capture_output=True,
                            text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Transfer Studio: Device: " in result.stdout  # printed once torch has loaded and found the device
    assert "detecting" not in result.stdout
