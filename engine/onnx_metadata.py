"""The Transfer Studio entry in an ONNX model's ``metadata_props``: written by export, read by the predictor.

One key, ``transfer_studio``, holds a JSON object (so the predictor parses one value and never guesses)::

    {
      "format": 1,
      "labels": ["cat", "dog"],                  # class names, index = output column
      "input": {"name": "image", "shape": ["batch", 3, 224, 224], "dtype": "float32"},
      "outputs": {"logits": "raw scores", "probabilities": "softmax of logits, computed in the graph"},
      "preprocessing": {"resize": 256, "crop": 224, "mean": [...], "std": [...], "interpolation": "bicubic",
                        "channel_order": "RGB", "layout": "NCHW"},
      "backbone": "efficientnet_lite0",
      "training": {"best_val_accuracy": 0.94, "best_epoch": 2, "epochs": 3, "dataset_size": {"train": 72, ...},
                   "strategy": "fine-tune"},
      "app_version": "0.1.0",
      "created": "2026-01-01T12:00:00+00:00",
      "quantization": "int8 static QDQ, per-channel weights"   # only in the quantized model
    }

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


class MetadataError(BadInputError):
    """The model's metadata is missing or unusable; the message says what, not where (the caller adds the file)."""


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


def metadata_document(*, labels: list[str] | tuple[str, ...], preprocessing: Preprocessing, backbone: str,
                      training: Mapping[str, Any], app_version: str, created: str) -> dict[str, Any]:
    """The JSON object stored under ``METADATA_KEY``."""
    return {
        "format": METADATA_FORMAT,
        "labels": list(labels),
        "input": {"name": "image", "shape": ["batch", 3, preprocessing.crop, preprocessing.crop], "dtype": "float32"},
        "outputs": {"logits": "raw class scores", "probabilities": "softmax of logits, computed in the graph"},
        "preprocessing": preprocessing.to_dict(),
        "backbone": backbone,
        "training": dict(training),
        "app_version": app_version,
        "created": created,
    }


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
    return ModelMetadata(labels=tuple(labels), preprocessing=preprocessing, backbone=str(document["backbone"]),
                         training=training, app_version=str(document["app_version"]),
                         created=str(document["created"]), document=document)


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
