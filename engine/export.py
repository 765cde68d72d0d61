"""ONNX export of a run's best weights, checked against PyTorch before the file is written.

The graph takes ``image`` (float32, N x 3 x crop x crop, normalised as the metadata says; N is symbolic) and
returns ``logits`` and ``probabilities`` (the softmax is part of the graph: ``softmax(logits / T)``, with the
temperature ``T`` the run's evaluation.json records, 1 for runs evaluated before calibration existed). The
Transfer Studio metadata is appended to ``metadata_props`` (see ``engine.onnx_metadata``). Nothing is written
unless ``onnx.checker`` passes and onnxruntime agrees with PyTorch on the run's validation images (top-1
identical, logits within ``PARITY_TOLERANCE``); the figures go to ``export_parity.json`` in the run folder either
way.

Where the backbone ends in global average pooling + linear head (``split_at_global_pool``), the graph also returns
``feature_map`` and ``cam_weights``, which the predictor computes class activation maps from (``engine.heatmaps``).

An ensemble run (``engine.ensemble``) exports the same way, as one graph with the same input, outputs (no heatmap
ones) and metadata, checked against its PyTorch ``EnsembleModel``: the predictor cannot tell it from a single model.

With ``quantize="int8"`` the float model is written first and kept when the int8 step then fails: it passed its
own checks, so it is a good model, and ``QuantizationError`` says that it was written (and carries its result).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from engine import __version__
from engine.atomic import write_bytes_atomic, write_json_atomic
from engine.backbones.build import NO_EXACT_CAM, TransferModel, split_at_global_pool
from engine.control import Cancelled, RunControl
from engine.ensemble_model import ENSEMBLE_KIND, NO_ENSEMBLE_CAM, load_run_model, recorded_members
from engine.errors import BadInputError
from engine.evaluation.calibration import recorded_calibration
from engine.evaluation.metrics import check_evaluation_document
from engine.events import EventSink, Progress, ignore_event
from engine.images import ImageLoadError, preprocess_for_model
from engine.onnx_metadata import FEATURE_MAP_OUTPUT, HEATMAP_OUTPUTS, METADATA_KEY, heatmaps_entry, metadata_document
from engine.preprocessing import Preprocessing
from engine.time_format import utc_now_iso
from engine.training import run_folder as rf

MODEL_FILE = rf.MODEL_FILE
PARITY_FILE = "export_parity.json"
# The torch.export-based exporter implements opset 18 and later; older opsets go through a version converter
# that fails on this graph (Pad). 18 is read by every onnxruntime since 1.14.
DEFAULT_OPSET = 18
MIN_OPSET = 18
PARITY_TOLERANCE = 1e-3
MAX_PARITY_IMAGES = 256
MAX_CALIBRATION_IMAGES = 64
GENERATED_PARITY_IMAGES = 16
QUANTIZE_CHOICES = ("int8",)
QUANTIZATION = ("int8 static QDQ (per-channel weights, moving-average MinMax calibration, stem convs kept in "
                "float)")
_BATCH = 16
_PHASE = "exporting"
# The exporter's optimizer warns of each initializer it leaves alone because it is a graph output: cam_weights is
# one on purpose (the head's weight itself, so the CAM uses exactly the tensor the logits do).
_DEDUPLICATION_LOGGER = "onnx_ir.passes.common.initializer_deduplication"


class ExportError(RuntimeError):
    """The export could not produce a model we trust; no new .onnx file was written (see QuantizationError)."""


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: str
    size_bytes: int
    parity: dict[str, Any]  # max_abs_diff, top1_agreement, images
    quantized_path: str | None
    quantized_parity: dict[str, Any] | None
    seconds: float


class QuantizationError(ExportError):
    """The float model was written (it passed its checks) but the int8 model was not; ``float_export`` is the
    float model's result, so a caller can still offer it."""

    def __init__(self, message: str, float_export: ExportResult) -> None:
        super().__init__(message)
        self.float_export = float_export


class _WithProbabilities(torch.nn.Module):
    """The classifier with its (temperature-scaled) softmax inside the graph, so every consumer gets the same
    calibrated probabilities."""

    def __init__(self, model: torch.nn.Module, temperature: float = 1.0, heatmaps: bool = False) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.heatmaps = heatmaps

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feature_map, logits = self.model.feature_map_and_logits(image) if self.heatmaps else (None, self.model(image))
        probabilities = torch.softmax(logits / self.temperature, dim=1)
        if feature_map is None:
            return logits, probabilities
        return logits, probabilities, feature_map, self.model.head[-1].weight


def export_onnx(run_dir: Path | str, out: Path | str | None = None, *, opset: int | None = None,
                quantize: str | None = None, on_event: EventSink = ignore_event,
                control: RunControl | None = None) -> ExportResult:
    """Export ``run_dir``'s best weights to ``out`` (default ``run_dir/model.onnx``), parity-checked.

    ``quantize="int8"`` also writes ``<out stem>.int8.onnx`` (static QDQ, calibrated on training images) with
    its own parity figures; its agreement may be below 100%, which is reported, not refused.
    Raises ExportError when the checker or the parity check fails, leaving any earlier file intact, and
    QuantizationError when the int8 step fails after the float model was written (that model is kept).
    """
    started = time.perf_counter()
    run_dir = Path(run_dir)
    control = control or RunControl()
    opset = DEFAULT_OPSET if opset is None else int(opset)
    if opset < MIN_OPSET or opset > onnx.defs.onnx_opset_version():
        raise BadInputError(f"opset {opset} is not supported: choose {MIN_OPSET} to {onnx.defs.onnx_opset_version()}")
    if quantize not in (None, *QUANTIZE_CHOICES):
        raise BadInputError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)}, not {quantize!r}")
    out = Path(out) if out is not None else run_dir / MODEL_FILE
    steps = 4 if quantize else 3

    on_event(Progress(_PHASE, 0, steps, "loading the best weights"))
    if (run_dir / rf.RUN_FILE).is_file() and not (run_dir / rf.BEST_FILE).is_file() and (
            rf.read_run(run_dir).kind != ENSEMBLE_KIND):
        raise rf.RunFolderError(f"{run_dir}: no trained weights yet ({rf.BEST_FILE} is missing); "
                                f"finish or resume the training first")
    model, info = load_run_model(run_dir)
    control.check()
    on_event(Progress(_PHASE, 1, steps, "exporting the graph"))
    calibration = recorded_calibration(run_dir / rf.EVALUATION_FILE)
    proto = export_proto(model, info.preprocessing.crop, opset, calibration["temperature"] if calibration else 1.0)
    has_heatmaps = FEATURE_MAP_OUTPUT in {output.name for output in proto.graph.output}
    document = metadata_document(labels=info.labels, preprocessing=info.preprocessing, backbone=info.backbone,
                                 training=training_summary(info), app_version=__version__, created=utc_now_iso(),
                                 calibration=calibration,
                                 heatmaps=heatmaps_entry(None if has_heatmaps else _no_heatmaps(info)))
    append_metadata(proto, {METADATA_KEY: json.dumps(document)})
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the exported graph fails onnx.checker: {exc}") from exc
    data = proto.SerializeToString()
    control.check()

    on_event(Progress(_PHASE, 2, steps, "checking onnxruntime against PyTorch"))
    with tempfile.TemporaryDirectory(prefix="transfer-studio-parity-") as scratch:
        parity_paths, source = parity_images(run_dir, info.preprocessing, Path(scratch))
        inputs = _preprocessed(parity_paths, info.preprocessing, control)
        reference = _torch_logits(model, inputs, on_event, control)
        parity = _parity(_onnx_logits(data, inputs), reference)
        report: dict[str, Any] = {"model": str(out), "exporter": "torch.onnx.export(dynamo=True)", "opset": opset,
                                  "image_source": source, "tolerance": PARITY_TOLERANCE, **parity,
                                  "passed": _passes(parity), "created": utc_now_iso()}
        if not report["passed"]:
            write_json_atomic(run_dir / PARITY_FILE, report)
            raise ExportError(
                f"onnxruntime disagrees with PyTorch on {parity['images']} {source} images: top-1 agreement "
                f"{parity['top1_agreement']:.1%}, max |logit difference| {parity['max_abs_diff']:.2e} (limit "
                f"{PARITY_TOLERANCE:g}); {out} was not written")
        write_bytes_atomic(out, data)
        write_json_atomic(run_dir / PARITY_FILE, report)
        result = ExportResult(path=str(out), size_bytes=len(data), parity=parity, quantized_path=None,
                              quantized_parity=None, seconds=time.perf_counter() - started)
        if quantize:
            control.check()
            on_event(Progress(_PHASE, 3, steps, "quantizing to int8"))
            quantized_path = out.with_name(f"{_stem(out)}.int8.onnx")
            try:
                calibration = _preprocessed(calibration_images(run_dir) or parity_paths[:MAX_CALIBRATION_IMAGES],
                                            info.preprocessing, control)
                report["int8"] = _write_int8(proto, {**document, "quantization": QUANTIZATION}, quantized_path,
                                             calibration, inputs, reference)
            except Cancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever failed, the float model on disk must be reported
                detail = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
                raise QuantizationError(f"{out} was written (its parity check passed), but the int8 model was "
                                        f"not: {detail}", result) from exc
            write_json_atomic(run_dir / PARITY_FILE, report)
            result = replace(result, quantized_path=str(quantized_path),
                             quantized_parity={key: report["int8"][key] for key in parity},
                             seconds=time.perf_counter() - started)
    on_event(Progress(_PHASE, steps, steps, "done"))
    return result


def export_proto(model: torch.nn.Module, crop: int, opset: int, temperature: float = 1.0) -> onnx.ModelProto:
    """Trace ``model`` (eval mode) with the torch.export-based exporter; the batch dimension stays symbolic, and
    ``probabilities`` is ``softmax(logits / temperature)``. A TransferModel whose head allows exact class activation
    maps also gets the HEATMAP_OUTPUTS: the feature map and the head's weights.

    dynamo=True: the TorchScript exporter is deprecated in torch 2.14 (DeprecationWarning, plus a
    TracerWarning per SamePadConv2d for its shape arithmetic); torch.export exports every registry backbone
    cleanly here with a symbolic batch and logits within 2e-6 of eager.
    """
    heatmaps = isinstance(model, TransferModel) and split_at_global_pool(model.stages[-1]) is not None
    wrapped = _WithProbabilities(model, temperature, heatmaps).eval()
    example = torch.zeros(2, 3, crop, crop)  # batch 2: torch.export specialises a size-1 dimension
    outputs = ["logits", "probabilities", *(HEATMAP_OUTPUTS if heatmaps else ())]
    deduplication = logging.getLogger(_DEDUPLICATION_LOGGER)
    deduplication.addFilter(_not_about_output_initializers)
    try:
        program = torch.onnx.export(wrapped, (example,), None, dynamo=True, opset_version=opset, verbose=False,
                                    input_names=["image"], output_names=outputs,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    except Exception as exc:  # noqa: BLE001 - any exporter failure is reported as one ExportError
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    finally:
        deduplication.removeFilter(_not_about_output_initializers)
    proto = program.model_proto
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch.dim_param:
        raise ExportError(f"the exported batch dimension is fixed ({batch.dim_value}), expected a symbolic one")
    return proto


def _not_about_output_initializers(record: logging.LogRecord) -> bool:
    return "is a graph input or output" not in record.getMessage()


def append_metadata(proto: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Add (or replace) our entries in ``metadata_props``, keeping everything the exporter wrote."""
    existing = {prop.key: prop for prop in proto.metadata_props}
    for key, value in entries.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)


def training_summary(info: rf.RunInfo) -> dict[str, Any]:
    """What the model card needs from run.json: how good, how long, on how much data; an ensemble's has no epochs
    of its own, but its members, each with its backbone and its own accuracies."""
    summary = {
        "best_val_accuracy": info.best_val_accuracy,
        "best_epoch": info.best_epoch,
        "epochs": info.epochs_completed,
        "strategy": info.config.strategy if info.kind != ENSEMBLE_KIND else ENSEMBLE_KIND,
        "dataset_size": {split: sum(per_label.values()) for split, per_label in (info.dataset_counts or {}).items()},
        "run_created": info.created,
    }
    if info.kind == ENSEMBLE_KIND:
        summary["members"] = [{"backbone": member.backbone, "validation_accuracy": member.validation_accuracy,
                               "test_accuracy": member.test_accuracy} for member in recorded_members(info)]
    return summary


def _no_heatmaps(info: rf.RunInfo) -> str:
    """Why the run's graph has no heatmap outputs."""
    return NO_ENSEMBLE_CAM if info.kind == ENSEMBLE_KIND else f"{info.backbone}: {NO_EXACT_CAM}"


def parity_images(run_dir: Path, preprocessing: Preprocessing, scratch: Path) -> tuple[list[Path], str]:
    """The run's validation images that still exist (at most MAX_PARITY_IMAGES), else generated ones.

    The paths come from evaluation.json, or from scan_report.json when that is missing or malformed.
    """
    paths: list[str] = []
    with contextlib.suppress(ValueError):
        evaluation = check_evaluation_document(_read_json(run_dir / rf.EVALUATION_FILE))
        paths = [p["path"] for p in evaluation["validation"]["predictions"]]
    if not paths:
        scan = _read_json(run_dir / rf.SCAN_REPORT_FILE) or {}
        paths = [item["path"] for item in scan.get("items", []) if item.get("split") == "val"]
    existing = [Path(p) for p in paths if Path(p).is_file()]
    if existing:
        return _spread(existing, MAX_PARITY_IMAGES), "validation"
    return _generated_images(scratch, preprocessing.resize), "generated"


def calibration_images(run_dir: Path) -> list[Path]:
    """Training images for int8 calibration, kept apart from the validation images the parity is measured on."""
    scan = _read_json(run_dir / rf.SCAN_REPORT_FILE) or {}
    train = [Path(item["path"]) for item in scan.get("items", []) if item.get("split") == "train"]
    return _spread([path for path in train if path.is_file()], MAX_CALIBRATION_IMAGES)



def quantize_int8(proto: onnx.ModelProto, calibration: np.ndarray, document: dict[str, Any]) -> bytes:
    """Static QDQ quantization; the stem convolution, which sees the raw image, stays in float (each member's, in
    an ensemble).

    Measured on EfficientNet-Lite0 (232 images): top-1 agreement with float 92.2% (plain MinMax), 94.0% with the
    stem kept in float and moving-average calibration, same 3.9 MB. Dynamic quantization cannot even run on
    the exported graph (its shape inference fails on the classifier), and QDQ runs on every provider.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{"image": calibration[i:i + 8]} for i in range(0, len(calibration), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(prefix="transfer-studio-quantize-") as scratch:
        source, prepared, target = (Path(scratch) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        source.write_bytes(proto.SerializeToString())
        try:
            quant_pre_process(str(source), str(prepared))
            stems = _stem_convolutions(onnx.load(str(prepared)).graph)
            quantize_static(str(prepared), str(target), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=stems, extra_options={"CalibMovingAverage": True})
        except Exception as exc:  # noqa: BLE001 - any quantizer failure is reported as one ExportError
            raise ExportError(f"int8 quantization failed: {type(exc).__name__}: {exc}") from exc
        quantized = onnx.load(str(target))
    append_metadata(quantized, {METADATA_KEY: json.dumps(document)})
    return quantized.SerializeToString()


def _stem_convolutions(graph: onnx.GraphProto) -> list[str]:
    """The convolutions that see the image itself rather than another convolution's output: the stem, or one per
    member of an ensemble (after its input adapter). The image is followed along data inputs (a node's first), not
    along shapes taken from it."""
    from_image, stems = {graph.input[0].name}, []
    for node in graph.node:  # in topological order, as ONNX requires
        if node.input and node.input[0] in from_image:
            if node.op_type == "Conv":
                stems.append(node.name)
            else:
                from_image.update(node.output)
    return stems


def _write_int8(proto: onnx.ModelProto, document: dict[str, Any], path: Path, calibration: np.ndarray,
                inputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """Quantize, measure against the PyTorch logits, write; returns the int8 section of the parity report."""
    quantized = quantize_int8(proto, calibration, document)
    parity = _parity(_onnx_logits(quantized, inputs), reference)
    write_bytes_atomic(path, quantized)
    return {"model": str(path), "method": QUANTIZATION, "calibration_images": len(calibration), **parity,
            "size_bytes": len(quantized)}


def _preprocessed(paths: Sequence[Path], preprocessing: Preprocessing, control: RunControl) -> np.ndarray:
    """The evaluation transform (the predictor's too); files that no longer decode are left out."""
    arrays = []
    for path in paths:
        control.check()
        try:
            arrays.append(preprocess_for_model(path, preprocessing))
        except ImageLoadError:
            continue
    if not arrays:
        raise ExportError("no image could be decoded for the parity check")
    return np.stack(arrays)


def _torch_logits(model: torch.nn.Module, inputs: np.ndarray, on_event: EventSink,
                  control: RunControl) -> np.ndarray:
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(inputs), _BATCH):
            control.check()
            outputs.append(model(torch.from_numpy(inputs[start:start + _BATCH])).numpy())
            on_event(Progress("checking parity", min(start + _BATCH, len(inputs)), len(inputs)))
    return np.concatenate(outputs)


def _onnx_logits(model: bytes, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(["logits"], {"image": inputs[start:start + _BATCH]})[0]
                           for start in range(0, len(inputs), _BATCH)])


def _parity(logits: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    return {"max_abs_diff": float(np.abs(logits - reference).max()),
            "top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))),
            "images": int(len(reference))}


def _passes(parity: dict[str, Any]) -> bool:
    return parity["top1_agreement"] == 1.0 and parity["max_abs_diff"] <= PARITY_TOLERANCE


def _generated_images(folder: Path, size: int) -> list[Path]:
    """Photo-like sample images (the data is gone): parity needs realistic activations, not constants."""
    from engine.dataset.sample_data import SAMPLE_CLASSES, render_sample_image

    paths = []
    for index in range(GENERATED_PARITY_IMAGES):
        path = folder / f"generated_{index:02d}.png"
        render_sample_image(SAMPLE_CLASSES[index % len(SAMPLE_CLASSES)], np.random.default_rng(index), size).save(path)
        paths.append(path)
    return paths


def _spread(items: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` items, evenly spread (deterministic), so every class is represented."""
    if len(items) <= limit:
        return items
    return [items[int(i * len(items) / limit)] for i in range(limit)]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _stem(path: Path) -> str:
    return path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
