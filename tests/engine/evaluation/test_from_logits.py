"""The evaluation document from logits: every split scored with the one temperature fitted on validation."""

import numpy as np
import pytest

from engine.evaluation.calibration import fit_temperature, softmax
from engine.evaluation.from_logits import SplitLogits, evaluate_logits
from engine.evaluation.metrics import check_evaluation_document

LABELS = ["cat", "dog", "fox"]


def _split(seed: int, count: int = 60) -> SplitLogits:
    """Overconfident logits (x4) of a model that is right about 70% of the time."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 3, count)
    logits = rng.normal(0, 1, (count, 3))
    logits[np.arange(count), truth] += 1.5
    return SplitLogits(tuple(truth.tolist()), 4 * logits, tuple(f"{seed}/{i}.jpg" for i in range(count)))


def test_confidences_are_the_fitted_temperatures_and_answers_do_not_change() -> None:
    validation, test = _split(1), _split(2)
    document = evaluate_logits(LABELS, validation, test, train_counts=[5, 5, 5])
    temperature = fit_temperature(validation.logits, np.array(validation.truth))
    assert temperature > 2 and document["calibration"]["temperature"] == temperature
    for name, split in (("validation", validation), ("test", test)):
        probabilities = softmax(split.logits, temperature)
        predictions = document[name]["predictions"]
        assert [p["confidence"] for p in predictions] == pytest.approx(probabilities.max(axis=1).tolist())
        assert [p["predicted"] for p in predictions] == [LABELS[i] for i in split.logits.argmax(axis=1)]
    assert "test" in document["calibration"]
    assert check_evaluation_document(document, LABELS) is document


def test_a_given_temperature_is_applied_not_fitted() -> None:
    validation = _split(3)
    document = evaluate_logits(LABELS, validation, None, train_counts=[5, 5, 5], temperature=2.0)
    assert "calibration" not in document and "test" not in document
    assert [p["confidence"] for p in document["validation"]["predictions"]] == pytest.approx(
        softmax(validation.logits, 2.0).max(axis=1).tolist())
