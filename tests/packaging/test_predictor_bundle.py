"""Smoke test of the built Transfer Studio Predictor bundle (dist/transfer-studio-predictor), run with a clean
environment: its `predict` command agrees with the engine's own evaluation, and its window opens with the model."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

NAME = "transfer-studio-predictor"
TIMEOUT_S = 300


@pytest.fixture(scope="session")
def predictor(find_bundle) -> Path:
    return find_bundle(NAME, "predictor")


def test_bundle_holds_no_torch_and_no_gpu_runtime(predictor: Path) -> None:
    files = [p.relative_to(predictor.parent).as_posix() for p in predictor.parent.rglob("*")]
    assert not [f for f in files if "torch" in f.lower() or "libonnxruntime_providers_cuda" in f]
    assert not [f for f in files if f.split("/")[-1].startswith(("libQt6WebEngine", "libQt6Quick", "libQt6Pdf"))]


def test_predict_command_agrees_with_the_engine(predictor: Path, exported_model: Path, evaluation: dict, clean_env,
                                                tmp_path: Path) -> None:
    validation_predictions = evaluation["validation"]["predictions"]
    folder = tmp_path / "photos"
    folder.mkdir()
    for index, row in enumerate(validation_predictions[:3]):
        shutil.copy(row["path"], folder / f"{index}{Path(row['path']).suffix}")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    paths = [row["path"] for row in validation_predictions]
    result = subprocess.run([predictor, "predict", exported_model, *paths, folder, broken, "--format", "json"],
                            env=clean_env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [row["path"] for row in rows[:len(paths)]] == paths
    for row, expected in zip(rows, validation_predictions, strict=False):
        assert row["error"] is None
        assert row["label"] == expected["predicted"]
        assert row["confidence"] == pytest.approx(expected["confidence"], abs=1e-3)
    assert len(rows) == len(paths) + 3 + 1
    assert all(row["error"] is None for row in rows[len(paths):-1])
    assert rows[-1]["path"].endswith("broken.jpg") and rows[-1]["error"] and rows[-1]["top_k"] == []
    assert "CPUExecutionProvider" in result.stderr


def test_predict_command_refuses_a_bad_model_with_exit_2(predictor: Path, clean_env, tmp_path: Path) -> None:
    model = tmp_path / "not_a_model.onnx"
    model.write_bytes(b"not onnx")
    image = tmp_path / "image.png"
    image.write_bytes(b"")
    result = subprocess.run([predictor, "predict", model, image], env=clean_env(), capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and str(model) in result.stderr and "Traceback" not in result.stderr


def test_window_opens_with_the_model_and_classifies(predictor: Path, exported_model: Path, evaluation: dict,
                                                    clean_env) -> None:
    photos = [row["path"] for row in evaluation["validation"]["predictions"][:2]]
    result = subprocess.run([predictor, "--model", exported_model, "--smoke-seconds", "3", *photos],
                            env=clean_env(gui=True), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    labels = evaluation["labels"]
    assert f"model: {len(labels)} classes: {', '.join(labels)}" in result.stdout
    assert "running on CPUExecutionProvider" in result.stdout
    assert "results: 2 (0 could not be read)" in result.stdout
