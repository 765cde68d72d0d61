"""The onnxruntime predictor: parity with PyTorch on real photos, no torch import, inputs, errors, bad models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

from engine.control import Cancelled, RunControl
from engine.errors import BadInputError
from engine.events import Progress
from engine.images import preprocess_for_model
from engine.onnx_metadata import METADATA_KEY, metadata_document
from engine.predict import ModelLoadError, Prediction, Predictor, expand_inputs
from engine.preprocessing import Preprocessing

TINY_LABELS = ("red", "green", "blue")


@pytest.fixture(scope="module")
def model_path(exported_model: Path) -> Path:
    return exported_model


@pytest.fixture(scope="module")
def predictor(model_path: Path) -> Predictor:
    return Predictor(model_path)


def tiny_model(path: Path, *, labels: tuple[str, ...] = TINY_LABELS, classes: int = 3, crop: int = 8,
               metadata: dict[str, str] | None = None, metadata_crop: int | None = None) -> Path:
    """A 3-class "colour" classifier: the mean of each normalised channel is its logit (red image -> red)."""
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["features"], axis=1),
         helper.make_node("MatMul", ["features", "weight"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, crop, crop])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [helper.make_tensor("weight", TensorProto.FLOAT, [3, classes], np.eye(3, classes, dtype=np.float32).ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="test")
    model.ir_version = 9
    if metadata is None:
        size = metadata_crop or crop
        document = metadata_document(labels=labels, preprocessing=Preprocessing(size, size, (0.5,) * 3, (0.5,) * 3),
                                     backbone="tiny", training={"best_val_accuracy": 1.0}, app_version="test",
                                     created="2026-01-01T00:00:00+00:00")
        metadata = {METADATA_KEY: json.dumps(document)}
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


def _save_photos(folder: Path) -> list[Path]:
    from skimage import data

    from engine.dataset.sample_data import render_sample_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, pixels, suffix in (("chelsea", data.chelsea(), ".jpg"), ("coffee", data.coffee(), ".png"),
                                 ("rocket", data.rocket(), ".jpg"), ("camera", data.camera(), ".png")):
        Image.fromarray(pixels).save(folder / f"{name}{suffix}")
        paths.append(folder / f"{name}{suffix}")
    for index, label in enumerate(("circles", "squares", "triangles")):
        render_sample_image(label, np.random.default_rng(500 + index), 200).save(folder / f"{label}.jpg")
        paths.append(folder / f"{label}.jpg")
    return paths


def test_predictor_matches_pytorch_on_real_photos(predictor: Predictor, model_path: Path, trained_run: Path,
                                                  tmp_path: Path) -> None:
    import torch

    from engine.backbones.inference import load_trained_model

    paths = _save_photos(tmp_path / "photos")
    labels = predictor.info.labels
    predictions = predictor.predict_paths(paths, top_k=len(labels), batch_size=4)
    assert all(p.error is None for p in predictions)

    model, info = load_trained_model(trained_run)
    inputs = np.stack([preprocess_for_model(p, info.preprocessing) for p in paths])
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(inputs)).numpy()
    scaled = torch_logits / predictor.info.temperature  # the run's calibration, in the exported graph
    torch_probabilities = np.exp(scaled) / np.exp(scaled).sum(axis=1, keepdims=True)
    onnx_logits = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(
        ["logits"], {"image": inputs})[0]
    assert np.abs(onnx_logits - torch_logits).max() < 1e-3
    for prediction, expected in zip(predictions, torch_probabilities, strict=True):
        assert prediction.label == labels[int(expected.argmax())]
        by_label = dict(prediction.top_k)
        np.testing.assert_allclose([by_label[label] for label in labels], expected, atol=1e-4)


def test_predictor_does_not_import_torch(model_path: Path, tmp_path: Path, make_image) -> None:
    image = make_image(tmp_path / "one.jpg", size=(64, 48))
    code = (f"from engine.predict import Predictor; p = Predictor({str(model_path)!r}); "
            f"r = p.predict_paths([{str(image)!r}]); assert r[0].error is None, r; "
            "import sys; assert 'torch' not in sys.modules, 'torch was imported'; print(r[0].label)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() in {"circles", "squares", "triangles"}


def test_model_info_and_provider(predictor: Predictor, model_path: Path) -> None:
    info = predictor.info
    assert info.path == str(model_path) and info.labels == ("circles", "squares", "triangles")
    assert info.preprocessing.crop == 224 and info.backbone == "efficientnet_lite0"
    assert info.training["best_val_accuracy"] > 0.5 and info.app_version and info.created
    assert predictor.provider in {"CPUExecutionProvider", "CUDAExecutionProvider"}
    assert Predictor(model_path, device="cpu", threads=1).provider == "CPUExecutionProvider"


def test_unreadable_files_become_error_rows_in_order(predictor: Predictor, tmp_path: Path, make_image,
                                                     bad_corpus) -> None:
    good = [make_image(tmp_path / f"good{i}.png", size=(40, 30)) for i in range(3)]
    truncated, _ = bad_corpus["truncated.jpg"]
    text, _ = bad_corpus["text.jpg"]
    paths = [good[0], truncated, good[1], tmp_path / "missing.jpg", text, tmp_path, good[2]]
    results = predictor.predict_paths(paths, batch_size=2)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert [r.error is None for r in results] == [True, False, True, False, False, False, True]
    assert "truncated" in results[1].error and "not found" in results[3].error and "folder" in results[5].error
    assert results[1].label is None and results[1].confidence is None and results[1].top_k == ()
    one_batch = predictor.predict_paths(good, batch_size=32)
    for a, b in zip(one_batch, [results[0], results[2], results[6]], strict=True):
        assert a.label == b.label and a.confidence == pytest.approx(b.confidence, abs=1e-5)
    assert len(results[0].top_k) == 3 and results[0].confidence == results[0].top_k[0][1]
    assert sum(p for _, p in results[0].top_k) == pytest.approx(1.0, abs=1e-4)


def test_cpu_workers_share_batches_out_and_keep_the_order(model_path: Path, tmp_path: Path, make_image) -> None:
    paths = [make_image(tmp_path / f"{i}.png", size=(40 + 7 * i, 30), color=(25 * i, 200 - 20 * i, 90))
             for i in range(9)]
    alone = Predictor(model_path, device="cpu", threads=1).predict_paths(paths, top_k=3, batch_size=9)
    shared = Predictor(model_path, device="cpu", threads=3).predict_paths(paths, top_k=3, batch_size=5)
    assert [p.path for p in shared] == [str(p) for p in paths] and all(p.error is None for p in shared)
    for a, b in zip(alone, shared, strict=True):
        assert [label for label, _ in a.top_k] == [label for label, _ in b.top_k]
        np.testing.assert_allclose([p for _, p in a.top_k], [p for _, p in b.top_k], atol=1e-6)


def test_progress_events_and_cancel(predictor: Predictor, tmp_path: Path, make_image) -> None:
    paths = [make_image(tmp_path / f"{i}.png") for i in range(5)]
    events: list[object] = []
    predictor.predict_paths(paths, batch_size=2, top_k=1, on_event=events.append)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [e.done for e in progress] == [2, 4, 5] and all(e.phase == "predicting" and e.total == 5 for e in progress)

    control = RunControl()
    seen: list[object] = []

    def cancel_after_first(event: object) -> None:
        seen.append(event)
        control.cancel()

    with pytest.raises(Cancelled):
        predictor.predict_paths(paths, batch_size=2, on_event=cancel_after_first, control=control)
    assert sum(isinstance(e, Progress) for e in seen) == 1  # one batch ran


def test_expand_inputs(tmp_path: Path, make_image) -> None:
    root = tmp_path / "photos"
    a = make_image(root / "a.jpg")
    b = make_image(root / "sub" / "b.PNG")
    make_image(root / ".hidden" / "c.jpg")
    make_image(root / ".d.jpg")
    (root / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()
    (tmp_path / "only_text").mkdir()
    (tmp_path / "only_text" / "x.txt").write_text("x")
    other = make_image(tmp_path / "other" / "e.jpg")

    files, errors = expand_inputs([root, str(a), tmp_path / "empty", tmp_path / "only_text",
                                   str(tmp_path / "other" / "*.jpg"), str(tmp_path / "nope" / "*.jpg"),
                                   tmp_path / "missing.jpg"])
    assert files == [a, b, other]
    assert {Path(e.path).name: e.error for e in errors} == {
        "empty": errors[0].error, "only_text": errors[1].error, "*.jpg": "no images match this pattern",
        "missing.jpg": "file not found"}
    assert "no images" in errors[0].error and "no images" in errors[1].error
    assert all(e.top_k == () and e.label is None for e in errors)
    recursive, _ = expand_inputs([str(tmp_path / "**" / "*.jpg")])
    assert set(recursive) == {a, other}


def test_tiny_model_predicts_colours_and_serialises(tmp_path: Path, make_image) -> None:
    predictor = Predictor(tiny_model(tmp_path / "tiny.onnx"), device="cpu")
    images = [make_image(tmp_path / f"{name}.png", size=(20, 10), color=color)
              for name, color in (("r", (250, 10, 10)), ("g", (10, 250, 10)), ("b", (10, 10, 250)))]
    results = predictor.predict_paths(images, top_k=2)
    assert [r.label for r in results] == list(TINY_LABELS)
    record = results[0].to_dict()
    assert set(record) == {"path", "label", "confidence", "unsure", "top_k", "error"} and record["error"] is None
    assert record["top_k"][0] == {"label": "red", "probability": record["confidence"]} and len(record["top_k"]) == 2
    assert record["unsure"] is False  # a model exported before calibration is never unsure
    assert Prediction("x", (), "broken").to_dict() == {"path": "x", "label": None, "confidence": None,
                                                       "unsure": False, "top_k": [], "error": "broken"}


def _calibrated_tiny_model(path: Path, threshold: float | None) -> Path:
    document = metadata_document(labels=TINY_LABELS, preprocessing=Preprocessing(8, 8, (0.5,) * 3, (0.5,) * 3),
                                 backbone="tiny", training={}, app_version="test", created="2026-01-01T00:00:00+00:00",
                                 calibration={"temperature": 1.0, "ece_before": 0.2, "ece_after": 0.05,
                                              "unsure_threshold": threshold, "target_accuracy": 0.95})
    return tiny_model(path, metadata={METADATA_KEY: json.dumps(document)})


def test_unsure_is_exactly_below_the_threshold_and_min_confidence_overrides_it(tmp_path: Path, make_image) -> None:
    colours = [(250, 10, 10), (200, 90, 60), (150, 120, 100), (128, 128, 128), (10, 240, 30), (60, 70, 200)]
    images = [make_image(tmp_path / f"{i}.png", size=(12, 12), color=colour) for i, colour in enumerate(colours)]
    uncalibrated = Predictor(tiny_model(tmp_path / "old.onnx"), device="cpu").predict_paths(images)
    confidences = [p.confidence for p in uncalibrated]
    assert not any(p.unsure for p in uncalibrated) and len(set(confidences)) == len(colours)
    threshold = sorted(confidences)[2]  # a photo exactly at the threshold is answered, not unsure

    model = _calibrated_tiny_model(tmp_path / "calibrated.onnx", threshold)
    predictor = Predictor(model, device="cpu")
    assert predictor.info.unsure_threshold == predictor.unsure_threshold == threshold
    results = predictor.predict_paths(images)
    assert [p.unsure for p in results] == [c < threshold for c in confidences]
    assert sum(p.unsure for p in results) == 2
    assert [p.label for p in results] == [p.label for p in uncalibrated]  # unsure keeps the top class
    assert not any(p.unsure for p in Predictor(model, device="cpu", min_confidence=0).predict_paths(images))
    assert all(p.unsure for p in Predictor(model, device="cpu", min_confidence=1).predict_paths(images))
    assert not any(p.unsure for p in Predictor(_calibrated_tiny_model(tmp_path / "none.onnx", None),
                                               device="cpu").predict_paths(images))
    with pytest.raises(BadInputError, match="minimum confidence"):
        Predictor(model, device="cpu", min_confidence=1.5)


def test_a_logits_only_graph_is_scaled_by_the_metadata_temperature(tmp_path: Path, make_image) -> None:
    """A graph without our probabilities output gets the softmax here, divided by the temperature as ours is."""
    document = metadata_document(labels=TINY_LABELS, preprocessing=Preprocessing(8, 8, (0.5,) * 3, (0.5,) * 3),
                                 backbone="tiny", training={}, app_version="test", created="2026-01-01T00:00:00+00:00",
                                 calibration={"temperature": 0.5, "ece_before": 0.2, "ece_after": 0.05,
                                              "unsure_threshold": None, "target_accuracy": 0.95})
    path = tiny_model(tmp_path / "logits.onnx", metadata={METADATA_KEY: json.dumps(document)})
    model = onnx.load(path)
    del model.graph.output[1]  # keep only logits
    onnx.save(model, path)
    image = np.full((1, 3, 8, 8), 0.3, np.float32)
    image[0, 0] = 0.9
    logits = image.mean(axis=(2, 3))
    probabilities = Predictor(path, device="cpu").probabilities(image)
    expected = np.exp(logits / 0.5) / np.exp(logits / 0.5).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=1e-6)


def _load_error(path: Path) -> str:
    with pytest.raises(ModelLoadError) as caught:
        Predictor(path, device="cpu")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    return message


def test_bad_models_are_refused_with_a_clear_message(tmp_path: Path) -> None:
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a protobuf")
    assert "not a valid ONNX model" in _load_error(text)
    assert "not found" in _load_error(tmp_path / "absent.onnx")
    assert "is a folder" in _load_error(tmp_path)

    message = _load_error(tiny_model(tmp_path / "plain.onnx", metadata={"author": "someone"}))
    assert "transfer_studio" in message and "missing" in message and "author" in message
    assert "not valid JSON" in _load_error(tiny_model(tmp_path / "bad_json.onnx", metadata={METADATA_KEY: "{oops"}))
    partial = json.dumps({"format": 1, "backbone": "tiny", "training": {}, "app_version": "x", "created": "y"})
    message = _load_error(tiny_model(tmp_path / "partial.onnx", metadata={METADATA_KEY: partial}))
    assert "missing: labels, preprocessing" in message
    message = _load_error(tiny_model(tmp_path / "two_labels.onnx", labels=("red", "green")))
    assert "2 labels" in message and "3 classes" in message
    message = _load_error(tiny_model(tmp_path / "wrong_size.onnx", metadata_crop=16))
    assert "input shape" in message and "16" in message


class _FakeDriver:
    """libcuda's two calls the predictor makes, reporting ``devices`` GPUs."""

    def __init__(self, devices: int) -> None:
        self.devices = devices

    def cuInit(self, _flags: int) -> int:  # noqa: N802 - the driver's name
        return 0 if self.devices else 100  # CUDA_ERROR_NO_DEVICE

    def cuDeviceGetCount(self, count: object) -> int:  # noqa: N802
        count._obj.value = self.devices
        return 0


@pytest.mark.parametrize("driver", [None, 0, 1], ids=["no NVIDIA driver", "driver without a GPU", "one GPU"])
def test_cuda_is_tried_only_where_the_driver_sees_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        driver: int | None) -> None:
    """Loading CUDA's libraries to find out that they cannot be used cost 100 ms of every CPU-only start-up."""
    import ctypes
    from types import SimpleNamespace

    import engine.predict

    def load(_name: str) -> _FakeDriver:
        if driver is None:
            raise OSError("libcuda.so.1: cannot open shared object file")
        return _FakeDriver(driver)

    monkeypatch.setattr(engine.predict, "ctypes", SimpleNamespace(CDLL=load, c_int=ctypes.c_int, byref=ctypes.byref))
    monkeypatch.setattr(engine.predict.ort, "get_available_providers", lambda: ["CUDAExecutionProvider",
                                                                               "CPUExecutionProvider"])
    opened: list[list[str]] = []
    real_open = engine.predict._open
    monkeypatch.setattr(engine.predict, "_open", lambda path, options, providers: opened.append(providers) or
                        real_open(path, options, ["CPUExecutionProvider"]))
    assert Predictor(tiny_model(tmp_path / "tiny.onnx")).provider == "CPUExecutionProvider"
    tried = [["CUDAExecutionProvider", "CPUExecutionProvider"]] if driver else []
    assert opened == [*tried, ["CPUExecutionProvider"]]  # a probed CUDA session that fell back to the CPU is refused
    with pytest.raises(ValueError, match="cuda"):
        Predictor(tmp_path / "tiny.onnx", device="cuda")


def test_device_choices(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "tiny.onnx")
    with pytest.raises(ValueError, match="device"):
        Predictor(model, device="tpu")
    if Predictor(model).provider != "CUDAExecutionProvider":
        with pytest.raises(ValueError, match="cuda"):
            Predictor(model, device="cuda")
