"""Temperature scaling, its calibration error, and the confidence below which a prediction is "unsure".

A fine-tuned network's softmax is not a probability a person can take at its word: label smoothing makes it
modest, a small training set makes it bold. One scalar ``T``, fitted on the validation split's logits by
minimising the negative log-likelihood of ``softmax(logits / T)``, fixes most of that without changing a single
answer (the argmax is the same for every ``T > 0``). The block ``calibrate`` returns, written to
``evaluation.json`` as ``"calibration"``::

    {
      "fitted_on": "validation",
      "fitted": true,                        # false: no validation photo was wrong, so T stays 1 (nothing to fit)
      "temperature": 0.61,                   # probabilities = softmax(logits / temperature)
      "bins": 15,                            # equal-width confidence bins on [0, 1], each (lower, upper]
      "ece_before": 0.081,                   # expected calibration error on validation at T = 1 ...
      "ece_after": 0.024,                    # ... and at the fitted T
      "reliability": [                       # validation at the fitted T, one entry per bin, in order
        {"lower": 0.0, "upper": 0.0667, "count": 0, "confidence": null, "accuracy": null}, ...
      ],
      "target_accuracy": 0.95,
      "unsure_threshold": 0.83,              # null when no threshold reaches the target on validation
      "coverage_curve": [                    # validation at the fitted T, thresholds 0, 0.05, ..., 1
        {"threshold": 0.0, "answered": 120, "coverage": 1.0, "accuracy": 0.9}, ...  # accuracy null: none answered
      ],
      "test": {                              # only when the run has a test split: the threshold's held-out check
        "count": 120, "ece_before": 0.07, "ece_after": 0.03,
        "answered": 95, "coverage": 0.79,    # photos at or above the threshold (all of them without one)
        "answered_accuracy": 0.96,           # null when none is answered
        "standard_error": 0.02,              # binomial, sqrt(p (1 - p) / answered); null when none is answered
        "meets_target": true                 # answered_accuracy + 2 standard errors >= target_accuracy
      }
    }

The expected calibration error is ``sum_b (n_b / N) |accuracy_b - confidence_b|`` over the bins, where a photo's
confidence is its top probability. The unsure threshold is the smallest validation confidence ``c`` such that
the photos at or above ``c`` are right at least ``target_accuracy`` of the time; a prediction below it is
"unsure" (its label is still the top class). When no validation photo is wrong the likelihood keeps rising as
``T`` falls to 0, so there is nothing to fit and ``T`` stays 1.

NumPy only: the trainer fits it, but nothing here needs torch.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from engine.evaluation.metrics import NOISE_STANDARD_ERRORS, read_evaluation_document

CALIBRATION_BINS = 15
TARGET_ACCURACY = 0.95
# T outside these is a sign of a degenerate split (a handful of photos), not of a model; the fit stops there.
TEMPERATURE_BOUNDS = (0.05, 20.0)
COVERAGE_THRESHOLDS = tuple(i / 20 for i in range(21))
_BISECTIONS = 60  # the bracket, ln 400 wide, shrinks to 5e-18: exact in float64


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)`` in float64, shifted by the row maximum so it cannot overflow."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    exponentials = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The ``T`` in ``TEMPERATURE_BOUNDS`` that minimises the mean negative log-likelihood of ``truth``.

    The likelihood is convex in ``1 / T``, so its slope is monotone and bisection on the slope's sign finds the
    minimum deterministically, with no step size to tune. 1.0 when every photo's true class already has the
    highest logit (no finite minimum).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(truth, dtype=np.int64)
    true_logit = z[np.arange(len(y)), y]
    if not can_fit_temperature(z, y):
        return 1.0

    def slope(log_inverse: float) -> float:  # d NLL / d(1/T): the expected logit minus the true one
        return float(np.mean((softmax(z * math.exp(log_inverse)) * z).sum(axis=1) - true_logit))

    low, high = -math.log(TEMPERATURE_BOUNDS[1]), -math.log(TEMPERATURE_BOUNDS[0])
    if slope(low) >= 0:
        return TEMPERATURE_BOUNDS[1]
    if slope(high) <= 0:
        return TEMPERATURE_BOUNDS[0]
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        low, high = (low, middle) if slope(middle) > 0 else (middle, high)
    return math.exp(-(low + high) / 2)


def can_fit_temperature(logits: np.ndarray, truth: np.ndarray) -> bool:
    """Whether some photo's true class is below the top logit: without one the likelihood has no finite maximum."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(truth, dtype=np.int64)
    return bool(np.any(z.max(axis=1) > z[np.arange(len(y)), y]))


def confidence_and_correct(probabilities: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each photo's top probability and whether its top class (the first on ties, as in the metrics) is right."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = probabilities.argmax(axis=1)
    return probabilities.max(axis=1), predicted == np.asarray(truth)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> float:
    """The count-weighted mean gap between accuracy and mean confidence over equal-width bins."""
    return float(sum(row["count"] * abs(row["accuracy"] - row["confidence"])
                     for row in reliability(confidence, correct, bins) if row["count"]) / len(confidence))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Per bin ``(lower, upper]``: the count, mean confidence and accuracy (both null for an empty bin)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append({"lower": b / bins, "upper": (b + 1) / bins, "count": count,
                     "confidence": float(confidence[members].mean()) if count else None,
                     "accuracy": float(correct[members].mean()) if count else None})
    return rows


def unsure_threshold(confidence: np.ndarray, correct: np.ndarray, target: float = TARGET_ACCURACY) -> float | None:
    """The smallest observed confidence whose photos at or above it are right at least ``target`` of the time;
    None when even the most confident photos miss it."""
    confidence = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    descending = confidence[order]
    accuracy = np.cumsum(np.asarray(correct, dtype=bool)[order]) / np.arange(1, len(order) + 1)
    group_end = np.append(descending[1:] != descending[:-1], True)  # the set {confidence >= c} ends a tie group
    reaching = descending[group_end & (accuracy >= target)]
    return float(reaching.min()) if reaching.size else None


def coverage_curve(confidence: np.ndarray, correct: np.ndarray,
                   thresholds: tuple[float, ...] = COVERAGE_THRESHOLDS) -> list[dict[str, Any]]:
    """For each threshold: the share of photos answered (confidence at or above it) and their accuracy."""
    return [{"threshold": t, **_answered(confidence, correct, t)} for t in thresholds]


def calibrate(validation_logits: np.ndarray, validation_truth: np.ndarray, test_logits: np.ndarray | None = None,
              test_truth: np.ndarray | None = None, *, target_accuracy: float = TARGET_ACCURACY) -> dict[str, Any]:
    """Fit ``T`` on validation and describe it, with the threshold's check on test when there is one (the block
    in the module docstring)."""
    temperature = fit_temperature(validation_logits, validation_truth)
    before = confidence_and_correct(softmax(validation_logits), validation_truth)
    after = confidence_and_correct(softmax(validation_logits, temperature), validation_truth)
    threshold = unsure_threshold(*after, target_accuracy)
    block: dict[str, Any] = {
        "fitted_on": "validation", "fitted": can_fit_temperature(validation_logits, validation_truth),
        "temperature": temperature, "bins": CALIBRATION_BINS,
        "ece_before": expected_calibration_error(*before), "ece_after": expected_calibration_error(*after),
        "reliability": reliability(*after), "target_accuracy": target_accuracy, "unsure_threshold": threshold,
        "coverage_curve": coverage_curve(*after),
    }
    if test_logits is not None and test_truth is not None:
        test_after = confidence_and_correct(softmax(test_logits, temperature), test_truth)
        answered = _answered(*test_after, 0.0 if threshold is None else threshold)
        accuracy = answered["accuracy"]
        error = None if accuracy is None else math.sqrt(accuracy * (1 - accuracy) / answered["answered"])
        block["test"] = {
            "count": len(test_truth),
            "ece_before": expected_calibration_error(*confidence_and_correct(softmax(test_logits), test_truth)),
            "ece_after": expected_calibration_error(*test_after),
            "answered": answered["answered"], "coverage": answered["coverage"], "answered_accuracy": accuracy,
            "standard_error": error,
            "meets_target": None if accuracy is None else accuracy + NOISE_STANDARD_ERRORS * error >= target_accuracy,
        }
    return block


def recorded_calibration(evaluation_file: Path) -> dict[str, Any] | None:
    """The calibration block of a run's evaluation.json; None for a run evaluated before calibration existed, or a
    missing or damaged file (its model then keeps T = 1 and has no unsure threshold)."""
    try:
        document = read_evaluation_document(evaluation_file)
    except (OSError, ValueError):
        return None
    return document.get("calibration")


def _answered(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, Any]:
    answered = np.asarray(confidence) >= threshold
    count = int(answered.sum())
    return {"answered": count, "coverage": count / len(answered),
            "accuracy": float(np.asarray(correct)[answered].mean()) if count else None}
