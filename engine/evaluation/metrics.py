"""Classification metrics for one split, as a JSON-able dict (pure NumPy, so the CLI and GUI need no torch).

The document written to ``evaluation.json`` is::

    {
      "labels": ["cat", "dog", ...],           # class names, index = class id
      "validation": <split>,
      "test": <split>,                         # omitted when there is no test split
      "calibration": {...}                     # temperature, ECE, unsure threshold: see engine.evaluation.calibration
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
      ],
      "baseline": {                            # what guessing scores on this split
        "majority_label": "dog",               # the most frequent TRAINING label (the first on ties)
        "majority_accuracy": 0.67,             # accuracy of always answering it: its share of this split
        "chance_balanced_accuracy": 0.5        # 1 / number of labels
      },
      "verdict": {
        "level": "good",                       # "good", "weak" or "no better than guessing"
        "sentence": "Validation accuracy 0.93 clearly beats ...",
        "suggestions": []                      # what to try; empty when the level is "good"
      }
    }

``predicted`` is the argmax (the first label on ties) and ``confidence`` its probability (after temperature
scaling, when the document has a calibration: what the exported model will say). Undefined ratios
are 0 rather than NaN: precision of a label never predicted, recall of a label with no support, and F1 when
precision + recall is 0. Top-k ranks ties the same way as the argmax, so ``top_k_accuracy["1"]`` always
equals ``accuracy``.

``baseline``, ``verdict`` and ``calibration`` are absent from documents written before they existed; front ends
then show none of them.

The verdict compares the split's own numbers with what guessing would score on a sample this size, where the
noise of a score ``p`` on ``n`` images is two binomial standard errors, ``2 * sqrt(p (1 - p) / n)``:

- accuracy *clearly beats the majority* when it exceeds ``majority_accuracy`` plus its noise on ``count``;
- balanced accuracy *clearly beats chance* when it exceeds ``c = chance_balanced_accuracy`` plus the noise of
  a mean of per-class recalls, ``2 * sqrt(sum_j c (1 - c) / n_j) / K`` over the K classes with support n_j
  (``2 * sqrt(c (1 - c) / count)`` when the classes are balanced; a small class makes it larger);
- **no better than guessing**: neither clearly beats its baseline;
- **good**: both do, and balanced accuracy is at least halfway from chance to 1, ``c + (1 - c) / 2``;
- **weak**: anything between.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

VERDICT_LEVELS = ("good", "weak", "no better than guessing")
NOISE_STANDARD_ERRORS = 2.0  # a gap smaller than two binomial standard errors (~95%) could be luck


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
    labels: Sequence[str], validation: dict[str, Any], test: dict[str, Any] | None, *, train_counts: Sequence[int],
    calibration: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The top-level evaluation document, each split with its baseline and verdict.

    ``train_counts`` (training images per label, in label order) name the majority answer: a model must beat
    what it would have learnt from the label frequencies alone. ``test`` and ``calibration`` are left out, not
    null, when missing.
    """
    labels = [str(label) for label in labels]
    if len(train_counts) != len(labels) or sum(train_counts) <= 0:
        raise ValueError(f"train_counts must give {len(labels)} counts, not all zero; got {list(train_counts)}")
    document: dict[str, Any] = {"labels": labels}
    for name, split in (("validation", validation), ("test", test)):
        if split is not None:
            baseline = _baseline(split, labels, train_counts)
            verdict = _verdict(name, split, baseline, labels, train_counts)
            document[name] = {**split, "baseline": baseline, "verdict": verdict}
    if calibration is not None:
        document["calibration"] = calibration
    return document


def _baseline(split: dict[str, Any], labels: Sequence[str], train_counts: Sequence[int]) -> dict[str, Any]:
    """What always answering the most frequent training label, or guessing at random, scores on ``split``."""
    majority = int(np.argmax(train_counts))  # the first label on ties, like the argmax of a prediction
    return {
        "majority_label": str(labels[majority]),
        "majority_accuracy": split["per_class"][majority]["support"] / split["count"],
        "chance_balanced_accuracy": 1.0 / len(labels),
    }


def _verdict(
    name: str, split: dict[str, Any], baseline: dict[str, Any], labels: Sequence[str], train_counts: Sequence[int]
) -> dict[str, Any]:
    """The level, a sentence with the numbers and what to try, by the rule in the module docstring."""
    count, accuracy, balanced = split["count"], split["accuracy"], split["balanced_accuracy"]
    majority, chance = baseline["majority_accuracy"], baseline["chance_balanced_accuracy"]
    supports = [row["support"] for row in split["per_class"] if row["support"] > 0]
    accuracy_bar = majority + NOISE_STANDARD_ERRORS * math.sqrt(majority * (1 - majority) / count)
    balanced_bar = chance + NOISE_STANDARD_ERRORS * math.sqrt(
        sum(chance * (1 - chance) / n for n in supports)) / len(supports)
    strong_bar = chance + (1 - chance) / 2
    beats_majority, beats_chance = accuracy > accuracy_bar, balanced > balanced_bar
    if not (beats_majority or beats_chance):
        level = "no better than guessing"
    elif beats_majority and beats_chance and balanced >= strong_bar:
        level = "good"
    else:
        level = "weak"

    answer = f"always answering '{baseline['majority_label']}' ({majority:.2f}"
    if beats_majority:
        accuracy_clause = f"clearly beats {answer})"
    else:
        accuracy_clause = f"is not clearly better than {answer}; {_needed(accuracy_bar)})"
    if not beats_chance:
        balanced_clause = f"is not clearly above chance ({chance:.2f}; {_needed(balanced_bar)})"
    elif balanced >= strong_bar:
        balanced_clause = f"clearly beats chance ({chance:.2f})"
    else:
        balanced_clause = f"is above chance ({chance:.2f}) but below {strong_bar:.2f}, so some classes are often missed"
    sentence = (f"{name.capitalize()} accuracy {accuracy:.2f} {accuracy_clause} and balanced accuracy {balanced:.2f} "
                f"{balanced_clause}, on {count} images: the model is {_LEVEL_TEXT[level]}.")
    return {"level": level, "sentence": sentence,
            "suggestions": [] if level == "good" else _suggestions(labels, train_counts)}


_LEVEL_TEXT = {"good": "clearly better than guessing", "weak": "only weakly better than guessing",
               "no better than guessing": "no better than guessing"}


def _needed(bar: float) -> str:
    return f"it would need above {bar:.2f}" if bar < 1 else "too few images to show it"


def _suggestions(labels: Sequence[str], train_counts: Sequence[int]) -> list[str]:
    fewest, most = min(train_counts), max(train_counts)
    per_class = f"{fewest}" if fewest == most else f"{fewest} ('{labels[int(np.argmin(train_counts))]}') to {most}"
    return [
        f"Add more photos per class: the training split has {per_class} per class.",
        "Fine-tune the whole backbone: train again with --strategy full.",
        "Try another backbone (list them with: transfer-studio backbones).",
    ]


def read_evaluation_document(path: Path, labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The evaluation.json at ``path``, checked by ``check_evaluation_document``: the one reader of the file.
    OSError when it cannot be read, ValueError when it is not valid JSON or not a valid document; callers word
    the refusal for their use."""
    return check_evaluation_document(json.loads(Path(path).read_text(encoding="utf-8")), labels)


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
    if "calibration" in document:
        problem = _calibration_problem(document["calibration"])
        if problem:
            raise ValueError(f"calibration: {problem}")
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
    return _verdict_problem(split, labels)


def _verdict_problem(split: dict[str, Any], labels: list[str]) -> str | None:
    """Baseline and verdict are optional (older documents lack them) but, when present, complete."""
    fields: dict[str, tuple[tuple[str, Any, str], ...]] = {
        "baseline": (("majority_label", lambda v: isinstance(v, str) and v in labels, "a label of the run"),
                     ("majority_accuracy", _is_number, "a number"),
                     ("chance_balanced_accuracy", _is_number, "a number")),
        "verdict": (("level", lambda v: isinstance(v, str) and v in VERDICT_LEVELS,
                     f"one of {', '.join(VERDICT_LEVELS)}"),
                    ("sentence", lambda v: isinstance(v, str), "text"),
                    ("suggestions", lambda v: _is_list_of(v, str), "a list of texts")),
    }
    for block, checks in fields.items():
        if block not in split:
            continue
        if not isinstance(split[block], dict):
            return f"{block} is not an object"
        for field, valid, what in checks:
            if not valid(split[block].get(field)):
                return f"{block}.{field} must be {what}"
    return None


def _calibration_problem(block: object) -> str | None:
    """The fields the CLI, the export and the predictor read; ``test`` is optional (runs without a test split)."""
    if not isinstance(block, dict):
        return "not an object"
    if not _is_number(block.get("temperature")) or block["temperature"] <= 0:
        return "temperature must be a positive number"
    for name in ("ece_before", "ece_after", "target_accuracy"):
        if not _is_number(block.get(name)):
            return f"{name} is not a number"
    threshold = block.get("unsure_threshold", "missing")
    if threshold is not None and not (_is_number(threshold) and 0 <= threshold <= 1):
        return "unsure_threshold must be a number from 0 to 1, or null"
    for name in ("reliability", "coverage_curve"):
        if not _is_list_of(block.get(name), dict):
            return f"{name} must be a list of objects"
    if "test" in block and not _is_calibration_test(block["test"]):
        return ("test must hold count, answered, coverage, ece_before and ece_after (numbers), answered_accuracy "
                "and standard_error (numbers or null) and meets_target (true, false or null)")
    return None


def _is_calibration_test(test: object) -> bool:
    if not isinstance(test, dict):
        return False
    numbers = all(_is_number(test.get(k)) for k in ("count", "answered", "coverage", "ece_before", "ece_after"))
    nullable = all(k in test and (test[k] is None or _is_number(test[k]))
                   for k in ("answered_accuracy", "standard_error"))
    verdict = "meets_target" in test and (test["meets_target"] is None or isinstance(test["meets_target"], bool))
    return numbers and nullable and verdict


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
