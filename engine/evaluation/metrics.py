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


def check_evaluation_document(document: object, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """``document`` if it has the documented shape (and ``labels``, when given); else ValueError saying what is wrong.

    Front ends read every field without further checks, so an edited or truncated file is refused here, whole.
    """
    if not isinstance(document, dict) or not _is_list_of(document.get("labels"), str):
        raise ValueError("not an evaluation document (no list of labels)")
    names = document["labels"]
    if labels is not None and list(labels) != names:
        raise ValueError(f"its labels ({', '.join(names)}) are not the run's ({', '.join(labels)})")
    if "validation" not in document:
        raise ValueError("no validation results")
    for key in ("validation", "test"):
        if key in document:
            problem = _split_problem(document[key], names)
            if problem:
                raise ValueError(f"{key}: {problem}")
    return document


def _split_problem(split: object, labels: list[str]) -> str | None:
    n = len(labels)
    if not isinstance(split, dict):
        return "not an object"
    if not _is_list_of([split.get("count")], int) or split["count"] < 0:
        return "count is not a whole number"
    for name in ("accuracy", "balanced_accuracy"):
        if not _is_number(split.get(name)):
            return f"{name} is not a number"
    macro = split.get("macro")
    if not isinstance(macro, dict) or not all(_is_number(macro.get(k)) for k in ("precision", "recall", "f1")):
        return "macro averages are missing"
    rows = split.get("per_class")
    if not _is_list_of(rows, dict) or len(rows) != n or not all(
            _is_number(row.get(k)) for row in rows for k in ("precision", "recall", "f1", "support")):
        return f"per_class must hold {n} rows of precision, recall, f1 and support"
    matrix = split.get("confusion_matrix")
    if not isinstance(matrix, list) or len(matrix) != n or not all(
            _is_list_of(row, int) and len(row) == n for row in matrix):
        return f"confusion_matrix must be {n} x {n} whole numbers"
    top_k = split.get("top_k_accuracy", {})
    if not isinstance(top_k, dict) or not all(_is_number(v) for v in top_k.values()):
        return "top_k_accuracy must map k to numbers"
    predictions = split.get("predictions")
    if not _is_list_of(predictions, dict) or not all(
            isinstance(p.get("path"), str) and p.get("true") in labels and p.get("predicted") in labels
            and _is_number(p.get("confidence")) for p in predictions):
        return "predictions must each hold a path, true and predicted labels of the run, and a confidence"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_list_of(value: object, kind: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)


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
