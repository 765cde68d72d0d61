"""The bundles' entry points, run from source in fresh interpreters (no bundle needed).

The predictor's are run with torch, torchvision and onnx made unimportable, as in its build environment, so an
import of any of them on the way (the CLI, its error handling, the window) fails here before it fails a build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRY_PREDICTOR = ROOT / "packaging" / "entry_predictor.py"
TIMEOUT_S = 300
# Runs a script as __main__ with the torch family blocked (sys.modules[name] = None makes `import name` fail).
WITHOUT_TORCH = ("import runpy, sys\n"
                 "for name in ('torch', 'torchvision', 'onnx', 'onnxscript'):\n"
                 "    sys.modules[name] = None\n"
                 "script, sys.argv = sys.argv[1], sys.argv[1:]\n"
                 "runpy.run_path(script, run_name='__main__')\n")


def run_predictor(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_TORCH, ENTRY_PREDICTOR, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT_S, env=env)


def test_predict_command_without_torch(exported_model: Path, evaluation: dict) -> None:
    rows = evaluation["validation"]["predictions"][:4]
    result = run_predictor("predict", exported_model, *(row["path"] for row in rows), "--format", "json")
    assert result.returncode == 0, result.stderr
    predicted = json.loads(result.stdout)
    assert [(p["path"], p["label"]) for p in predicted] == [(row["path"], row["predicted"]) for row in rows]


def test_predict_errors_without_torch_are_one_line_and_exit_2(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not onnx")
    result = run_predictor("predict", model, tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_window_smoke_without_torch(exported_model: Path, evaluation: dict, tmp_path: Path) -> None:
    photo = evaluation["validation"]["predictions"][0]["path"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.update({variable: str(tmp_path / variable.lower())
                for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")})
    result = run_predictor("--model", exported_model, "--smoke-seconds", "0.5", photo, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"model: {len(evaluation['labels'])} classes: " in result.stdout
    assert "results: 1 (0 could not be read)" in result.stdout


def test_window_smoke_fails_when_the_model_does_not_load(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not onnx")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "XDG_STATE_HOME": str(tmp_path / "state")}
    result = run_predictor("--model", model, "--smoke-seconds", "0.2", env=env)
    assert result.returncode == 1
    assert "model: Could not load this model" in result.stdout
