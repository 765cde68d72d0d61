"""The evaluation document from each split's logits: one temperature, fitted on validation, scales every split.

The training run and ``transfer-studio evaluate`` both end here, so evaluation.json's confidences are the
calibrated ones the exported model will give.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.evaluation.calibration import calibrate, softmax
from engine.evaluation.metrics import evaluate_predictions, evaluation_document


@dataclass(frozen=True, slots=True)
class SplitLogits:
    """One split's model output (N x C logits) with each photo's true class id and path, in the same order."""

    truth: tuple[int, ...]
    logits: np.ndarray
    paths: tuple[str, ...]


def evaluate_logits(labels: Sequence[str], validation: SplitLogits, test: SplitLogits | None, *,
                    train_counts: Sequence[int], temperature: float | None = None) -> dict[str, Any]:
    """Fit the temperature on ``validation``, score both splits with it, and add the calibration block.

    A given ``temperature`` (the run's own, for the photos of another folder) is applied as it is, not refitted
    on the photos being judged, and no calibration block is added.
    """
    calibration = None
    if temperature is None:
        calibration = calibrate(validation.logits, np.asarray(validation.truth),
                                None if test is None else test.logits, None if test is None else np.asarray(test.truth))
    scale = calibration["temperature"] if calibration is not None else temperature

    def scored(split: SplitLogits) -> dict[str, Any]:
        return evaluate_predictions(labels, split.truth, softmax(split.logits, scale), split.paths)

    return evaluation_document(labels, scored(validation), None if test is None else scored(test),
                               train_counts=train_counts, calibration=calibration)
