import numpy as np
import pytest

from engine.evaluation.format import format_calibration, format_metrics_table, format_verdict
from engine.evaluation.metrics import evaluate_predictions, evaluation_document

LABELS = ["cat", "dog", "long-tailed tit"]
# true cat -> cat, cat -> dog, dog -> dog, dog -> dog, tit -> dog: confusion [[1, 1, 0], [0, 2, 0], [0, 1, 0]]
# accuracy 3/5; recalls 1/2, 1, 0 -> balanced 1/2; precisions 1, 1/2, 0 -> macro P 1/2; F1s 2/3, 2/3, 0 -> 4/9
PROBABILITIES = np.array(
    [[0.7, 0.2, 0.1], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.1, 0.6, 0.3]]
)


@pytest.fixture
def text():
    split = evaluate_predictions(LABELS, [0, 0, 1, 1, 2], PROBABILITIES, ["a", "b", "c", "d", "e"], top_k=2)
    return format_metrics_table(split, LABELS)


def _line(text, start):
    return next(line for line in text.splitlines() if line.startswith(start))


def test_summary_shows_the_overall_numbers(text):
    assert _line(text, "accuracy").split()[-1] == "0.6000"
    assert _line(text, "balanced accuracy").split()[-1] == "0.5000"
    assert _line(text, "macro precision").split()[-1] == "0.5000"
    assert _line(text, "macro recall").split()[-1] == "0.5000"
    assert _line(text, "macro f1").split()[-1] == "0.4444"
    assert _line(text, "top-1 accuracy").split()[-1] == "0.6000"
    assert _line(text, "top-2 accuracy").split()[-1] == "1.0000"  # every second guess is right


def test_per_class_table_has_one_aligned_row_per_label(text):
    header = _line(text, "label")
    assert header.split() == ["label", "precision", "recall", "f1", "support"]
    rows = [_line(text, f"{label} ") for label in LABELS]
    assert rows[0].split() == ["cat", "1.0000", "0.5000", "0.6667", "2"]
    assert rows[1].split() == ["dog", "0.5000", "1.0000", "0.6667", "2"]
    assert rows[2].split()[-4:] == ["0.0000", "0.0000", "0.0000", "1"]
    assert len({len(line) for line in [header, *rows]}) == 1


def test_confusion_matrix_is_labelled_rows_true_columns_predicted(text):
    matrix = text.split("Confusion matrix")[1].splitlines()[1:]
    assert matrix[0].endswith("cat  dog  long-tailed tit")
    assert matrix[1].split() == ["cat", "1", "1", "0"]
    assert matrix[2].split() == ["dog", "0", "2", "0"]
    assert matrix[3].split()[-3:] == ["0", "1", "0"]
    assert len({len(line) for line in matrix}) == 1


def test_mismatched_labels_are_refused():
    split = evaluate_predictions(["a", "b"], [0], np.array([[0.6, 0.4]]), ["x"])
    with pytest.raises(ValueError):
        format_metrics_table(split, ["a", "b", "c"])


def test_verdict_warns_and_lists_what_to_try():
    # Always answering "long-tailed tit" scores 1/5: 3/5 beats it, but balanced accuracy 1/2 is within noise of 1/3.
    split = evaluate_predictions(LABELS, [0, 0, 1, 1, 2], PROBABILITIES, ["a", "b", "c", "d", "e"])
    lines = format_verdict(evaluation_document(LABELS, split, None, train_counts=[1, 1, 30])["validation"],
                           "validation").splitlines()
    assert lines[0].startswith("Validation accuracy 0.60 clearly beats always answering 'long-tailed tit' (0.20)")
    assert lines[1] == "WARNING: on the validation split the model is weak; before relying on it, try:"
    assert len(lines) == 5 and all(line.startswith("  - ") for line in lines[2:])


def test_good_verdict_is_one_sentence_and_old_documents_have_none():
    probabilities = np.eye(2)[[0] * 20 + [1] * 20]
    split = evaluate_predictions(["a", "b"], [0] * 20 + [1] * 20, probabilities, [str(i) for i in range(40)])
    text = format_verdict(evaluation_document(["a", "b"], split, None, train_counts=[5, 5])["validation"], "validation")
    assert text.startswith("Validation accuracy 1.00 clearly beats") and "\n" not in text
    assert format_verdict(split, "validation") == ""


def _calibrated(threshold: float | None, test: dict | None) -> dict:
    split = evaluate_predictions(LABELS, [0, 0, 1, 1, 2], PROBABILITIES, ["a", "b", "c", "d", "e"])
    block = {"temperature": 0.8123, "ece_before": 0.2, "ece_after": 0.05, "target_accuracy": 0.95,
             "unsure_threshold": threshold, **({"test": test} if test else {})}
    return {**evaluation_document(LABELS, split, None, train_counts=[1, 1, 1]), "calibration": block}


def test_calibration_lines() -> None:
    test = {"count": 40, "answered": 30, "coverage": 0.75, "ece_before": 0.15, "ece_after": 0.04,
            "answered_accuracy": 0.9, "standard_error": 0.055, "meets_target": True}
    lines = format_calibration(_calibrated(0.65, test)).splitlines()
    assert lines[0] == "Temperature 0.812 (fitted on validation): expected calibration error 0.200 before, 0.050 after."
    # confidences 0.7, 0.5, 0.8, 0.6, 0.6: two at or above 0.65
    assert lines[1] == ("Unsure below confidence 0.650: on validation the 2 of 5 photos at or above it reach 95% "
                        "accuracy.")
    assert lines[2] == ("On test: expected calibration error 0.150 before, 0.040 after; 30 of 40 photos answered "
                        "(75%), 90.0% of them are right (+/- 11.0%; target 95%).")
    not_fitted = _calibrated(0.65, test)
    not_fitted["calibration"].update(fitted=False, temperature=1.0)
    assert format_calibration(not_fitted).splitlines()[0] == (
        "Temperature not fitted (no validation photo was wrong, so there is nothing to fit it on; probabilities "
        "are the plain softmax): expected calibration error 0.200.")
    missed = format_calibration(_calibrated(0.65, {**test, "meets_target": False}))
    assert missed.endswith("target 95%, missed).")


def test_calibration_without_a_threshold_or_a_test_and_older_documents() -> None:
    lines = format_calibration(_calibrated(None, None)).splitlines()
    assert len(lines) == 2 and "no prediction will be marked unsure" in lines[1]
    document = _calibrated(None, None)
    del document["calibration"]
    assert format_calibration(document) == ""
