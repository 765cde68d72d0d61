"""The Transfer Studio entry in an ONNX model's ``metadata_props``: written by export, read by the predictor.

One key, ``transfer_studio``, holds a JSON object (so the predictor parses one value and never guesses)::

    {
      "format": 1,
      "labels": ["cat", "dog"],                  # class names, index = output column
      "input": {"name": "image", "shape": ["batch", 3, 224, 224], "dtype": "float32"},
      "outputs": {"logits": "raw scores", "probabilities": "softmax of logits / calibration temperature, in the graph"},
      "preprocessing": {"resize": 256, "crop": 224, "mean": [...], "std": [...], "interpolation": "bicubic",
                        "channel_order": "RGB", "layout": "NCHW"},
      "backbone": "efficientnet_lite0",
      "training": {"best_val_accuracy": 0.94, "best_epoch": 2, "epochs": 3, "dataset_size": {"train": 72, ...},
                   "strategy": "fine-tune"},
      "app_version": "0.1.0",
      "created": "2026-01-01T12:00:00+00:00",
      "calibration": {"temperature": 0.61, "ece_before": 0.08, "ece_after": 0.02,   # absent in models exported
                      "unsure_threshold": 0.83, "target_accuracy": 0.95},          # before calibration existed
      "heatmaps": {"feature_map": "feature_map", "weights": "cam_weights", "method": "CAM: ..."},
      "quantization": "int8 static QDQ, per-channel weights"   # only in the quantized model
    }

``heatmaps`` names two more graph outputs (and ``outputs`` describes them): ``feature_map``, N x C x h x w, the last
convolutional feature map (the global average pool's input), and ``cam_weights``, classes x C, the linear head's
weights, from which the predictor computes class activation maps. The weights are a graph output rather than JSON:
they are the very tensor the head uses, onnxruntime alone reads them (the light predictor has no ``onnx``), and
2048 x 1000 floats would be 40 MB of text. A backbone whose head is not global-average-pool + linear has
``{"unavailable": "<why>"}`` and neither output; models exported before heatmaps existed have no entry.

Torch-free (JSON and the Preprocessing dataclass only): the predictor imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import BadInputError
from engine.preprocessing import Preprocessing

METADATA_KEY = "transfer_studio"
METADATA_FORMAT = 1
REQUIRED_FIELDS = ("format", "labels", "preprocessing", "backbone", "training", "app_version", "created")
# From evaluation.json's calibration block: the temperature is already in the graph's probabilities; a prediction
# whose confidence is below unsure_threshold (null: none) is "unsure".
CALIBRATION_FIELDS = ("temperature", "ece_before", "ece_after", "unsure_threshold", "target_accuracy")
FEATURE_MAP_OUTPUT = "feature_map"
CAM_WEIGHTS_OUTPUT = "cam_weights"
HEATMAP_OUTPUTS = {
    FEATURE_MAP_OUTPUT: "the last convolutional feature map (N x C x h x w), the input of the global average pool",
    CAM_WEIGHTS_OUTPUT: "the linear head's weights (classes x C): a class's row applied at each position of "
                        "feature_map is its class activation map",
}
CAM_METHOD = ("CAM: cam_weights[class] . feature_map at each position, no bias (its mean is the logit minus the "
              "bias); ReLU, then divided by its maximum")


class MetadataError(BadInputError):
    """The model's metadata is missing or unusable; the message says what, not where (the caller adds the file)."""


class HeatmapsUnavailableError(BadInputError):
    """Heatmaps were asked of a model that cannot give them; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    """The parsed, validated metadata document."""

    labels: tuple[str, ...]
    preprocessing: Preprocessing
    backbone: str
    training: dict[str, Any]
    app_version: str
    created: str
    document: dict[str, Any]
    temperature: float = 1.0
    unsure_threshold: float | None = None


def metadata_document(*, labels: list[str] | tuple[str, ...], preprocessing: Preprocessing, backbone: str,
                      training: Mapping[str, Any], app_version: str, created: str,
                      calibration: Mapping[str, Any] | None = None,
                      heatmaps: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The JSON object stored under ``METADATA_KEY``; ``calibration`` is evaluation.json's block (or None),
    ``heatmaps`` the ``heatmaps_entry`` (None: no entry, as in models exported before heatmaps existed)."""
    document = {
        "format": METADATA_FORMAT,
        "labels": list(labels),
        "input": {"name": "image", "shape": ["batch", 3, preprocessing.crop, preprocessing.crop], "dtype": "float32"},
        "outputs": {"logits": "raw class scores",
                    "probabilities": "softmax of logits / calibration temperature (1 without one), in the graph"},
        "preprocessing": preprocessing.to_dict(),
        "backbone": backbone,
        "training": dict(training),
        "app_version": app_version,
        "created": created,
    }
    if calibration is not None:
        document["calibration"] = {name: calibration[name] for name in CALIBRATION_FIELDS}
    if heatmaps is not None:
        document["heatmaps"] = dict(heatmaps)
        if "unavailable" not in heatmaps:
            document["outputs"].update(HEATMAP_OUTPUTS)
    return document


def heatmaps_entry(unavailable: str | None = None) -> dict[str, str]:
    """The ``heatmaps`` entry of a graph with the HEATMAP_OUTPUTS, or, given ``unavailable``, of one without."""
    if unavailable is not None:
        return {"unavailable": unavailable}
    return {"feature_map": FEATURE_MAP_OUTPUT, "weights": CAM_WEIGHTS_OUTPUT, "method": CAM_METHOD}


def heatmap_outputs(document: Mapping[str, Any]) -> tuple[str, str]:
    """The names of the feature map and CAM weights outputs; HeatmapsUnavailableError saying why there are none."""
    entry = document.get("heatmaps")
    if entry is None:
        raise HeatmapsUnavailableError("this model was exported before heatmaps existed (it has no feature_map "
                                       "output): export it again ('transfer-studio export RUN') to get heatmaps")
    if not isinstance(entry, dict):
        raise MetadataError("metadata 'heatmaps' must be a JSON object")
    if "unavailable" in entry:
        raise HeatmapsUnavailableError(f"this model has no heatmaps: {entry['unavailable']}")
    names = entry.get("feature_map"), entry.get("weights")
    if not all(isinstance(name, str) for name in names):
        raise MetadataError("metadata 'heatmaps' must name its 'feature_map' and 'weights' outputs")
    return names


def parse_metadata(props: Mapping[str, str]) -> ModelMetadata:
    """Validate ``metadata_props`` (or onnxruntime's ``custom_metadata_map``) and return the parsed document."""
    if METADATA_KEY not in props:
        found = ", ".join(sorted(props)) or "none"
        raise MetadataError(f"not a Transfer Studio model: metadata key {METADATA_KEY!r} is missing (keys found: "
                            f"{found}); export the model with 'transfer-studio export'")
    try:
        document = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise MetadataError(f"metadata {METADATA_KEY!r} is not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise MetadataError(f"metadata {METADATA_KEY!r} must be a JSON object, not {type(document).__name__}")
    missing = [name for name in REQUIRED_FIELDS if name not in document]
    if missing:
        raise MetadataError(f"metadata {METADATA_KEY!r} is missing: {', '.join(missing)}")
    if document["format"] != METADATA_FORMAT:
        raise MetadataError(f"metadata format {document['format']!r} is not supported (this version reads "
                            f"{METADATA_FORMAT}); export the model again with this version")
    labels = document["labels"]
    if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
        raise MetadataError("metadata 'labels' must be a list of at least two class names")
    if len(set(labels)) != len(labels):
        raise MetadataError("metadata 'labels' must be unique")
    if not isinstance(document["preprocessing"], dict):
        raise MetadataError("metadata 'preprocessing' must be a JSON object")
    try:
        preprocessing = Preprocessing.from_dict(document["preprocessing"])
    except ValueError as exc:
        raise MetadataError(f"metadata 'preprocessing' is invalid ({exc})") from exc
    _check_preprocessing(preprocessing)
    training = document["training"]
    if not isinstance(training, dict):
        raise MetadataError("metadata 'training' must be a JSON object")
    temperature, threshold = _calibration(document.get("calibration"))
    return ModelMetadata(labels=tuple(labels), preprocessing=preprocessing, backbone=str(document["backbone"]),
                         training=training, app_version=str(document["app_version"]),
                         created=str(document["created"]), document=document, temperature=temperature,
                         unsure_threshold=threshold)


def _calibration(block: object) -> tuple[float, float | None]:
    """(temperature, unsure threshold); (1, None) for a model exported before calibration existed."""
    if block is None:
        return 1.0, None
    if not isinstance(block, dict):
        raise MetadataError("metadata 'calibration' must be a JSON object")
    temperature, threshold = block.get("temperature"), block.get("unsure_threshold")
    if not _is_number(temperature) or temperature <= 0:
        raise MetadataError("metadata 'calibration.temperature' must be a positive number")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold <= 1):
        raise MetadataError("metadata 'calibration.unsure_threshold' must be a number from 0 to 1, or null")
    return float(temperature), None if threshold is None else float(threshold)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_preprocessing(p: Preprocessing) -> None:
    problems = []
    if p.resize < 1 or p.crop < 1:
        problems.append("resize and crop must be positive")
    if len(p.mean) != 3 or len(p.std) != 3 or any(s <= 0 for s in p.std):
        problems.append("mean and std need three values, std positive")
    if p.interpolation not in ("nearest", "bilinear", "bicubic"):
        problems.append(f"unknown interpolation {p.interpolation!r}")
    if p.channel_order != "RGB" or p.layout != "NCHW":
        problems.append(f"only RGB / NCHW inputs are supported, not {p.channel_order} / {p.layout}")
    if problems:
        raise MetadataError(f"metadata 'preprocessing' is invalid: {'; '.join(problems)}")
