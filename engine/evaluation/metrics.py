"""Classification metrics for one split, as a JSON-able dict (pure NumPy, so the CLI and GUI need no torch).

The document written to ``evaluation.json`` is::

    {
      "labels": ["cat", "dog", ...],           # class names, index = class id
      "validation": <split>,
      "test": <split>                          # omitted when there is no test split
    }

and each ``<split>`` is::

    {
      "count": 120,                            # number of samples
      "accuracy": 0.93,
      "balanced_accuracy": 0.91,               # mean recall over the classes that have support
      "macro": {"precision": ..., "recall": ..., "f1": ...},   # unweighted mean over ALL labels
      "per_class": [                           # one entry per label, in label order
        {"label": "cat", "precision": ..., "recall": ..., "f1": ..., "support": 40}, ...
      ],
      "confusion_matrix": [[38, 2], [5, 75]],  # rows = true label, columns = predicted label
      "top_k_accuracy": {"1": 0.93, "2": 0.98, "3": 1.0},  # every k from 1 to min(top_k, number of labels)
      "predictions": [                         # one per sample, in input order
        {"path": "...", "true": "cat", "predicted": "dog", "confidence": 0.71}, ...
      ]
    }

``predicted`` is the argmax (the first label on ties) and ``confidence`` its probability. Undefined ratios
are 0 rather than NaN: precision of a label never predicted, recall of a label with no support, and F1 when
precision + recall is 0. Top-k ranks ties the same way as the argmax, so ``top_k_accuracy["1"]`` always
equals ``accuracy``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def evaluate_predictions(
    labels: Sequence[str],
    y_true: Sequence[int],
    probabilities: np.ndarray,
    paths: Sequence[str],
    top_k: int = 3,
) -> dict[str, Any]:
    """Score one split from the model's class probabilities (N x C, rows summing to 1)."""
    labels = [str(label) for label in labels]
    probabilities = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(y_true, dtype=np.int64).reshape(-1)
    _check_inputs(labels, truth, probabilities, paths, top_k)
    num_classes = len(labels)

    ranking = np.argsort(-probabilities, axis=1, kind="stable")
    predicted = ranking[:, 0]
    confusion = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )
    true_positives = np.diag(confusion).astype(np.float64)
    support = confusion.sum(axis=1)
    precision = _safe_ratio(true_positives, confusion.sum(axis=0))
    recall = _safe_ratio(true_positives, support)
    f1 = _safe_ratio(2.0 * precision * recall, precision + recall)
    hits = ranking == truth[:, None]

    return {
        "count": int(truth.size),
        "accuracy": float(np.mean(predicted == truth)),
        "balanced_accuracy": float(np.mean(recall[support > 0])),
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "per_class": [
            {
                "label": label,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        ],
        "confusion_matrix": confusion.tolist(),
        "top_k_accuracy": {
            str(k): float(hits[:, :k].any(axis=1).mean()) for k in range(1, min(top_k, num_classes) + 1)
        },
        "predictions": [
            {
                "path": str(path),
                "true": labels[t],
                "predicted": labels[p],
                "confidence": float(probabilities[i, p]),
            }
            for i, (path, t, p) in enumerate(zip(paths, truth.tolist(), predicted.tolist(), strict=True))
        ],
    }


def evaluation_document(
    labels: Sequence[str], validation: dict[str, Any], test: dict[str, Any] | None
) -> dict[str, Any]:
    """The top-level evaluation document; ``test`` is left out, not null, when there is no test split."""
    document: dict[str, Any] = {"labels": [str(label) for label in labels], "validation": validation}
    if test is not None:
        document["test"] = test
    return document


def mistakes(split: dict[str, Any]) -> list[dict[str, Any]]:
    """Wrong predictions, most confident first: the confident mistakes are the ones worth looking at."""
    wrong = [p for p in split["predictions"] if p["true"] != p["predicted"]]
    return sorted(wrong, key=lambda p: p["confidence"], reverse=True)


def _check_inputs(
    labels: list[str], truth: np.ndarray, probabilities: np.ndarray, paths: Sequence[str], top_k: int
) -> None:
    if truth.size == 0:
        raise ValueError("cannot evaluate an empty split")
    if not labels:
        raise ValueError("at least one label is required")
    if probabilities.shape != (truth.size, len(labels)):
        raise ValueError(
            f"probabilities have shape {probabilities.shape}, expected ({truth.size}, {len(labels)})"
        )
    if len(paths) != truth.size:
        raise ValueError(f"got {len(paths)} paths for {truth.size} samples")
    if truth.min() < 0 or truth.max() >= len(labels):
        raise ValueError(f"true class ids must lie in [0, {len(labels) - 1}]")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio that is 0 where the denominator is 0 (no NaN, no warning)."""
    out = np.zeros(numerator.shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out
