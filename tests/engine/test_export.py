"""ONNX export of a trained run: checked graph, symbolic batch, metadata, parity report, int8 model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from engine import __version__
from engine.evaluation.calibration import softmax
from engine.export import (
    MODEL_FILE,
    PARITY_FILE,
    ExportError,
    ExportResult,
    append_metadata,
    export_onnx,
    export_proto,
    parity_images,
)
from engine.onnx_metadata import CALIBRATION_FIELDS, METADATA_KEY, parse_metadata
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf


@pytest.fixture(scope="module")
def run_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the shared run: exporting writes model files and export_parity.json into it."""
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("export") / "run"))


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> ExportResult:
    """One export per module, to the default place, with the int8 model too."""
    return export_onnx(run_dir, quantize="int8")


def _session(path: str | Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_a_checked_model_with_a_symbolic_batch(exported: ExportResult, run_dir: Path) -> None:
    assert Path(exported.path) == run_dir / MODEL_FILE
    assert exported.size_bytes == Path(exported.path).stat().st_size
    model = onnx.load(exported.path)
    onnx.checker.check_model(model, full_check=True)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value
    assert [i.name for i in model.graph.input] == ["image"]
    assert [o.name for o in model.graph.output] == ["logits", "probabilities", "feature_map", "cam_weights"]

    session = _session(exported.path)
    labels = rf.read_run(run_dir).labels
    for size in (1, 5):
        logits, probabilities, feature_map, cam_weights = session.run(None, {
            "image": np.random.default_rng(size).standard_normal((size, 3, 224, 224), dtype=np.float32)})
        assert logits.shape == probabilities.shape == (size, len(labels))
        assert feature_map.shape == (size, 1280, 7, 7) and cam_weights.shape == (len(labels), 1280)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # the softmax is in the graph


def test_metadata_round_trips(exported: ExportResult, run_dir: Path) -> None:
    model = onnx.load(exported.path)
    metadata = parse_metadata({p.key: p.value for p in model.metadata_props})
    run = rf.read_run(run_dir)
    assert metadata.labels == run.labels
    assert metadata.preprocessing == run.preprocessing
    assert metadata.backbone == run.config.backbone
    assert metadata.app_version == __version__
    assert metadata.training["best_val_accuracy"] == pytest.approx(run.best_val_accuracy)
    assert metadata.training["best_epoch"] == run.best_epoch and metadata.training["strategy"] == run.config.strategy
    assert run.dataset_counts is not None
    assert metadata.training["dataset_size"]["val"] == sum(run.dataset_counts["val"].values())
    assert metadata.document["format"] == 1
    assert metadata.document["input"]["shape"] == ["batch", 3, 224, 224]


def test_probabilities_are_the_calibrated_softmax_of_the_logits(exported: ExportResult, run_dir: Path) -> None:
    """The graph divides the logits by the temperature evaluation.json records; the metadata carries it."""
    calibration = json.loads((run_dir / rf.EVALUATION_FILE).read_text())["calibration"]
    temperature = calibration["temperature"]
    assert temperature != pytest.approx(1.0, abs=0.05), "the shared run has a validation mistake to fit on"
    image = np.random.default_rng(7).standard_normal((6, 3, 224, 224), dtype=np.float32)
    logits, probabilities = _session(exported.path).run(["logits", "probabilities"], {"image": image})
    np.testing.assert_allclose(probabilities, softmax(logits, temperature), atol=1e-5)
    assert not np.allclose(probabilities, softmax(logits), atol=1e-3)
    for path in (exported.path, exported.quantized_path):
        metadata = parse_metadata({p.key: p.value for p in onnx.load(path).metadata_props})
        assert metadata.document["calibration"] == {name: calibration[name] for name in CALIBRATION_FIELDS}
        assert metadata.temperature == temperature
        assert metadata.unsure_threshold == calibration["unsure_threshold"]


def test_export_proto_scales_only_the_probabilities() -> None:
    class Colours(torch.nn.Module):  # logits: each channel's mean, doubled
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return 2 * image.mean(dim=(2, 3))

    image = np.random.default_rng(8).standard_normal((3, 3, 8, 8), dtype=np.float32)
    expected = 2 * image.mean(axis=(2, 3))
    for temperature in (1.0, 2.5):
        session = ort.InferenceSession(export_proto(Colours(), 8, 18, temperature).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        logits, probabilities = session.run(["logits", "probabilities"], {"image": image})
        np.testing.assert_allclose(logits, expected, atol=1e-5)
        np.testing.assert_allclose(probabilities, softmax(expected, temperature), atol=1e-5)


def test_a_run_evaluated_before_calibration_exports_uncalibrated(exported: ExportResult, run_dir: Path,
                                                                   tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    run = Path(shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("*.onnx", PARITY_FILE)))
    evaluation = json.loads((run / rf.EVALUATION_FILE).read_text())
    del evaluation["calibration"]
    (run / rf.EVALUATION_FILE).write_text(json.dumps(evaluation))
    import engine.export as export_module

    temperatures = []

    def traced(_model: object, _crop: int, _opset: int, temperature: float) -> onnx.ModelProto:
        temperatures.append(temperature)
        return onnx.load(exported.path)  # skip tracing

    monkeypatch.setattr(export_module, "export_proto", traced)
    metadata = parse_metadata({p.key: p.value for p in onnx.load(export_onnx(run).path).metadata_props})
    assert temperatures == [1.0]
    assert "calibration" not in metadata.document
    assert metadata.temperature == 1.0 and metadata.unsure_threshold is None


def test_exporter_entries_are_kept(exported: ExportResult) -> None:
    model = onnx.load(exported.path)
    assert model.producer_name == "pytorch"  # the exporter's own identification is untouched
    model.metadata_props.add(key="exporter_note", value="kept")
    append_metadata(model, {METADATA_KEY: "{}", "another": "x"})
    entries = {p.key: p.value for p in model.metadata_props}
    assert entries["exporter_note"] == "kept" and entries["another"] == "x" and entries[METADATA_KEY] == "{}"
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1


def test_parity_report_is_written(exported: ExportResult, run_dir: Path) -> None:
    report = json.loads((run_dir / PARITY_FILE).read_text(encoding="utf-8"))
    validation = len(json.loads((run_dir / rf.EVALUATION_FILE).read_text())["validation"]["predictions"])
    assert report["passed"] is True and report["image_source"] == "validation"
    assert report["images"] == exported.parity["images"] == validation
    assert report["top1_agreement"] == exported.parity["top1_agreement"] == 1.0
    assert report["max_abs_diff"] == exported.parity["max_abs_diff"] <= 1e-3
    assert report["int8"]["model"] == exported.quantized_path


def test_quantized_model_is_smaller_and_reports_its_parity(exported: ExportResult) -> None:
    assert exported.quantized_path is not None and exported.quantized_parity is not None
    assert Path(exported.quantized_path).name == "model.int8.onnx"
    ratio = exported.size_bytes / Path(exported.quantized_path).stat().st_size
    agreement = exported.quantized_parity["top1_agreement"]
    assert ratio >= 3.0  # README: about 3.5x smaller
    assert agreement >= 0.8  # README: 94% on the sample data; a broken quantization agrees by chance (1/3)
    assert exported.quantized_parity["images"] == exported.parity["images"]
    model = onnx.load(exported.quantized_path)
    document = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert "int8" in document["quantization"]
    batch = _session(exported.quantized_path).run(None, {"image": np.zeros((2, 3, 224, 224), np.float32)})
    assert batch[1].shape[0] == 2


def test_failed_parity_refuses_and_keeps_the_previous_file(exported: ExportResult, trained_run: Path,
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name in (rf.RUN_FILE, rf.BEST_FILE, rf.EVALUATION_FILE, rf.SCAN_REPORT_FILE):
        shutil.copy(trained_run / name, run / name)
    previous = run / MODEL_FILE
    previous.write_bytes(b"the previous export")
    import engine.export as export_module

    monkeypatch.setattr(export_module, "export_proto", lambda *_args: onnx.load(exported.path))  # skip tracing
    real = export_module._onnx_logits
    monkeypatch.setattr(export_module, "_onnx_logits", lambda data, inputs: real(data, inputs) + 0.01)
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        export_onnx(run)
    assert previous.read_bytes() == b"the previous export"
    assert json.loads((run / PARITY_FILE).read_text())["passed"] is False
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_int8_failure_keeps_the_float_model_and_says_so(exported: ExportResult, run_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    run = Path(shutil.copytree(run_dir, tmp_path / "run", ignore=shutil.ignore_patterns("*.onnx", PARITY_FILE)))
    import engine.export as export_module

    def failing(*_args: object) -> None:
        raise ExportError("int8 quantization failed: RuntimeError: boom")

    monkeypatch.setattr(export_module, "export_proto", lambda *_args: onnx.load(exported.path))  # skip tracing
    monkeypatch.setattr(export_module, "_write_int8", failing)
    model = run / MODEL_FILE
    with pytest.raises(ExportError, match="boom") as caught:
        export_onnx(run, quantize="int8")
    assert f"{model} was written" in str(caught.value) and "the int8 model was not" in str(caught.value)
    assert caught.value.float_export.path == str(model) and caught.value.float_export.quantized_path is None
    onnx.checker.check_model(onnx.load(model), full_check=True)
    assert not (run / "model.int8.onnx").exists()
    report = json.loads((run / PARITY_FILE).read_text(encoding="utf-8"))
    assert report["passed"] is True and "int8" not in report


def test_parity_falls_back_to_generated_images_when_the_data_is_gone(tmp_path: Path) -> None:
    preprocessing = Preprocessing(resize=64, crop=56, mean=(0.5,) * 3, std=(0.5,) * 3)
    (tmp_path / rf.EVALUATION_FILE).write_text(json.dumps(
        {"validation": {"predictions": [{"path": str(tmp_path / "gone.jpg")}]}}))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    paths, source = parity_images(tmp_path, preprocessing, scratch)
    assert source == "generated" and len(paths) >= 8 and all(p.is_file() for p in paths)


def test_parity_uses_the_scan_report_when_evaluation_json_is_malformed(tmp_path: Path, make_image) -> None:  # noqa: ANN001
    preprocessing = Preprocessing(resize=64, crop=56, mean=(0.5,) * 3, std=(0.5,) * 3)
    photo = make_image(tmp_path / "data" / "a" / "one.png", size=(80, 70))
    (tmp_path / rf.EVALUATION_FILE).write_text('{"labels": ["a"], "validation": {"predictions": [3]}}')
    (tmp_path / rf.SCAN_REPORT_FILE).write_text(json.dumps({"items": [{"path": str(photo), "split": "val"}]}))
    paths, source = parity_images(tmp_path, preprocessing, tmp_path)
    assert (paths, source) == ([photo], "validation")


def test_bad_requests_are_refused(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="opset"):
        export_onnx(trained_run, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ValueError, match="quantize"):
        export_onnx(trained_run, tmp_path / "m.onnx", quantize="int4")
    with pytest.raises(rf.RunFolderError, match="not a run folder"):
        export_onnx(tmp_path / "nothing")
