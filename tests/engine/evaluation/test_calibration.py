"""Temperature scaling and the unsure threshold: known miscalibrations recovered, errors and thresholds by hand."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation.calibration import (
    CALIBRATION_BINS,
    TEMPERATURE_BOUNDS,
    calibrate,
    confidence_and_correct,
    coverage_curve,
    expected_calibration_error,
    fit_temperature,
    recorded_calibration,
    reliability,
    softmax,
    unsure_threshold,
)
from engine.evaluation.metrics import evaluate_predictions, evaluation_document

REPO_ROOT = Path(__file__).resolve().parents[3]


def _sampled(count: int, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """True logits and labels drawn from their softmax: softmax(true logits) is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.5, (count, classes))
    cumulative = np.cumsum(softmax(logits), axis=1)
    return logits, (rng.random(count)[:, None] > cumulative).sum(axis=1)


@pytest.mark.parametrize("scale", [3.0, 0.5])
def test_the_fit_undoes_a_known_miscalibration(scale: float) -> None:
    """Logits scaled by 3 (overconfident) or 0.5 (timid): the fitted T is the scale, and the error drops."""
    logits, truth = _sampled(20_000)
    temperature = fit_temperature(scale * logits, truth)
    assert temperature == pytest.approx(scale, rel=0.05)
    before = expected_calibration_error(*confidence_and_correct(softmax(scale * logits), truth))
    after = expected_calibration_error(*confidence_and_correct(softmax(scale * logits, temperature), truth))
    assert before > 0.1 and after < 0.02


def test_without_a_mistake_there_is_nothing_to_fit() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    assert fit_temperature(logits, np.array([0, 1, 0])) == 1.0
    assert fit_temperature(logits, np.array([0, 1, 1])) != 1.0
    assert calibrate(logits, np.array([0, 1, 0]))["fitted"] is False  # so nobody reads T = 1 as a fitted value
    assert calibrate(logits, np.array([0, 1, 1]))["fitted"] is True


def test_the_fit_stops_at_its_bounds() -> None:
    """Half the answers wrong with huge logits: only an infinite T would do, so the upper bound is returned."""
    logits = np.array([[50.0, 0.0], [50.0, 0.0]])
    assert fit_temperature(logits, np.array([0, 1])) == TEMPERATURE_BOUNDS[1]


def test_softmax_keeps_the_answer_and_survives_huge_logits() -> None:
    logits = np.array([[1000.0, 999.0, -1000.0], [0.0, 2.0, 1.0]])
    for temperature in (0.1, 1.0, 7.0):
        probabilities = softmax(logits, temperature)
        assert np.isfinite(probabilities).all() and probabilities.sum(axis=1) == pytest.approx([1.0, 1.0])
        assert probabilities.argmax(axis=1).tolist() == [0, 1]
    assert softmax(logits, 2.0)[1] == pytest.approx(softmax(logits[1:] / 2.0)[0])


def test_calibration_error_and_reliability_by_hand() -> None:
    # bin 14 (0.933, 1]: 0.95 x 4, two right -> gap 0.45; bin 7 (0.467, 0.533]: 0.5 x 2, one right -> gap 0
    confidence = np.array([0.95, 0.95, 0.95, 0.95, 0.5, 0.5])
    correct = np.array([True, True, False, False, True, False])
    assert expected_calibration_error(confidence, correct) == pytest.approx(4 / 6 * 0.45)
    rows = reliability(confidence, correct)
    assert len(rows) == CALIBRATION_BINS and rows[0]["lower"] == 0.0 and rows[-1]["upper"] == 1.0
    assert [(i, row["count"]) for i, row in enumerate(rows) if row["count"]] == [(7, 2), (14, 4)]
    assert rows[14]["confidence"] == pytest.approx(0.95) and rows[14]["accuracy"] == 0.5
    assert rows[0]["confidence"] is None and rows[0]["accuracy"] is None
    # a bin's upper edge belongs to it: 1/15 falls in bin 0, just above it in bin 1
    assert [row["count"] for row in reliability(np.array([1 / 15, 1 / 15 + 1e-9]), np.array([True, True]))[:2]] == [
        1, 1]


@pytest.mark.parametrize(("target", "expected"), [(0.75, 0.6), (0.8, 0.8), (1.0, 0.8), (0.5, 0.6)])
def test_unsure_threshold_by_hand(target: float, expected: float) -> None:
    # at or above 0.9: 1/1 right; 0.8: 2/2; 0.7: 2/3; 0.6: 3/4
    confidence, correct = np.array([0.7, 0.9, 0.6, 0.8]), np.array([False, True, True, True])
    assert unsure_threshold(confidence, correct, target) == expected


def test_no_threshold_when_the_most_confident_are_wrong_and_ties_go_together() -> None:
    assert unsure_threshold(np.array([0.9, 0.6]), np.array([False, True]), 0.95) is None
    # the two photos at 0.9 are answered together: 1 of 2 right, never 100%
    assert unsure_threshold(np.array([0.9, 0.9, 0.5]), np.array([True, False, True]), 1.0) is None


def test_threshold_on_calibrated_confidences_reaches_its_target_and_is_the_smallest() -> None:
    rng = np.random.default_rng(3)
    confidence = rng.uniform(0.5, 1.0, 5_000)
    correct = rng.random(5_000) < confidence  # calibrated: right as often as it says
    threshold = unsure_threshold(confidence, correct, 0.95)
    assert threshold is not None and 0.85 < threshold < 0.95  # the mean confidence of [t, 1] is (1 + t) / 2
    assert correct[confidence >= threshold].mean() >= 0.95
    lower = np.sort(confidence[confidence < threshold])
    assert all(correct[confidence >= c].mean() < 0.95 for c in lower), "a smaller threshold would have done"


def test_coverage_curve() -> None:
    confidence, correct = np.array([0.3, 0.6, 0.9, 0.95]), np.array([False, False, True, True])
    curve = {row["threshold"]: row for row in coverage_curve(confidence, correct)}
    assert sorted(curve) == [i / 20 for i in range(21)]
    assert curve[0.0] == {"threshold": 0.0, "answered": 4, "coverage": 1.0, "accuracy": 0.5}
    assert curve[0.6] == {"threshold": 0.6, "answered": 3, "coverage": 0.75, "accuracy": pytest.approx(2 / 3)}
    assert curve[0.95]["answered"] == 1 and curve[1.0] == {"threshold": 1.0, "answered": 0, "coverage": 0.0,
                                                            "accuracy": None}


def test_calibrate_fits_on_validation_and_checks_the_threshold_on_test() -> None:
    logits, truth = _sampled(8_000, seed=5)
    block = calibrate(3 * logits[:4_000], truth[:4_000], 3 * logits[4_000:], truth[4_000:])
    assert block["fitted_on"] == "validation" and block["bins"] == CALIBRATION_BINS
    assert block["temperature"] == pytest.approx(fit_temperature(3 * logits[:4_000], truth[:4_000]))
    assert block["ece_after"] < block["ece_before"] and block["target_accuracy"] == 0.95
    threshold = block["unsure_threshold"]
    validation = confidence_and_correct(softmax(3 * logits[:4_000], block["temperature"]), truth[:4_000])
    assert threshold == unsure_threshold(*validation)
    assert sum(row["count"] for row in block["reliability"]) == 4_000

    test = block["test"]
    confidence, correct = confidence_and_correct(softmax(3 * logits[4_000:], block["temperature"]), truth[4_000:])
    answered = confidence >= threshold
    assert test["count"] == 4_000 and test["answered"] == answered.sum() and test["coverage"] == answered.mean()
    assert test["answered_accuracy"] == pytest.approx(correct[answered].mean())
    assert test["standard_error"] == pytest.approx(math.sqrt(test["answered_accuracy"] * (1 - test["answered_accuracy"])
                                                             / answered.sum()))
    assert test["meets_target"] == (test["answered_accuracy"] + 2 * test["standard_error"] >= 0.95)
    assert test["ece_after"] < test["ece_before"]
    json.dumps(block, allow_nan=False)  # plain JSON: no NumPy scalars, no NaN


def test_without_a_threshold_every_test_photo_is_answered() -> None:
    logits = np.tile([[3.0, 0.0], [3.0, 0.0], [0.0, 1.0]], (30, 1))  # the most confident photos are half wrong
    truth = np.tile([0, 1, 1], 30)
    block = calibrate(logits, truth, logits, truth, target_accuracy=0.99)
    assert block["unsure_threshold"] is None
    assert block["test"]["answered"] == 90 and block["test"]["coverage"] == 1.0
    assert block["test"]["answered_accuracy"] == pytest.approx(2 / 3) and block["test"]["meets_target"] is False


def test_recorded_calibration_of_new_old_and_damaged_files(tmp_path: Path) -> None:
    labels, truth = ["a", "b"], [0, 1, 1]
    logits = np.array([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    split = evaluate_predictions(labels, truth, softmax(logits), ["x", "y", "z"])
    block = calibrate(logits, np.array(truth))
    new, old, damaged = tmp_path / "new.json", tmp_path / "old.json", tmp_path / "damaged.json"
    new.write_text(json.dumps(evaluation_document(labels, split, None, train_counts=[1, 1], calibration=block)))
    old.write_text(json.dumps(evaluation_document(labels, split, None, train_counts=[1, 1])))
    damaged.write_text(json.dumps(evaluation_document(labels, split, None, train_counts=[1, 1],
                                                      calibration={**block, "temperature": -1})))
    assert recorded_calibration(new) == json.loads(json.dumps(block))
    assert recorded_calibration(old) is None and recorded_calibration(damaged) is None
    assert recorded_calibration(tmp_path / "missing.json") is None


def test_calibration_loads_without_torch() -> None:
    code = "import sys, engine.evaluation.calibration; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    assert result.stdout.strip() == "False"
