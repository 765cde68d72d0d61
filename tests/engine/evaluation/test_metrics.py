import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.evaluation.calibration import calibrate
from engine.evaluation.metrics import check_evaluation_document, evaluate_predictions, evaluation_document, mistakes

LABELS = ["cat", "dog", "bird"]
# Six samples; "bird" is never predicted.
#   sample  true  probabilities (cat, dog, bird)  argmax  rank of the true class
#   a       cat   0.8 0.1 0.1                     cat     1
#   b       cat   0.3 0.6 0.1                     dog     2
#   c       dog   0.1 0.7 0.2                     dog     1
#   d       dog   0.2 0.7 0.1                     dog     1
#   e       dog   0.5 0.2 0.3                     cat     3
#   f       bird  0.2 0.5 0.3                     dog     2
Y_TRUE = [0, 0, 1, 1, 1, 2]
PROBABILITIES = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.7, 0.2],
        [0.2, 0.7, 0.1],
        [0.5, 0.2, 0.3],
        [0.2, 0.5, 0.3],
    ]
)
REPO_ROOT = Path(__file__).resolve().parents[3]
PATHS = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]
TRAIN_COUNTS = [5, 9, 2]  # training images per label: "dog" is the majority answer


@pytest.fixture
def split():
    return evaluate_predictions(LABELS, Y_TRUE, PROBABILITIES, PATHS)


def test_split_has_exactly_the_documented_keys(split):
    assert set(split) == {
        "accuracy",
        "balanced_accuracy",
        "macro",
        "per_class",
        "confusion_matrix",
        "top_k_accuracy",
        "count",
        "predictions",
    }
    assert set(split["macro"]) == {"precision", "recall", "f1"}
    assert all(set(row) == {"label", "precision", "recall", "f1", "support"} for row in split["per_class"])


def test_confusion_matrix_rows_are_true_columns_are_predicted(split):
    # true cat: 1 cat (a), 1 dog (b); true dog: 1 cat (e), 2 dog (c, d); true bird: 1 dog (f).
    assert split["confusion_matrix"] == [[1, 1, 0], [1, 2, 0], [0, 1, 0]]


def test_confusion_matrix_orientation_on_a_single_mistake():
    split = evaluate_predictions(["a", "b"], [0], np.array([[0.1, 0.9]]), ["x.png"])
    assert split["confusion_matrix"] == [[0, 1], [0, 0]]


def test_per_class_metrics_by_hand(split):
    # Predicted counts (column sums): cat 2, dog 4, bird 0.  Support (row sums): cat 2, dog 3, bird 1.
    # cat:  P = 1/2, R = 1/2, F1 = 1/2
    # dog:  P = 2/4, R = 2/3, F1 = 2 * (1/2 * 2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7
    # bird: never predicted -> P = 0; R = 0/1 = 0; P + R = 0 -> F1 = 0
    expected = [
        ("cat", 1 / 2, 1 / 2, 1 / 2, 2),
        ("dog", 1 / 2, 2 / 3, 4 / 7, 3),
        ("bird", 0.0, 0.0, 0.0, 1),
    ]
    for row, (label, precision, recall, f1, support) in zip(split["per_class"], expected, strict=True):
        assert row["label"] == label
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support


def test_overall_metrics_by_hand(split):
    assert split["count"] == 6
    assert split["accuracy"] == pytest.approx(3 / 6)  # a, c, d
    assert split["balanced_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)  # 7/18
    assert split["macro"]["precision"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # 1/3
    assert split["macro"]["recall"] == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)  # 7/18
    assert split["macro"]["f1"] == pytest.approx((1 / 2 + 4 / 7 + 0) / 3)  # 5/14


def test_top_k_counts_the_true_class_among_the_k_most_probable(split):
    # Ranks of the true class: 1, 2, 1, 1, 3, 2.
    assert split["top_k_accuracy"] == pytest.approx({"1": 3 / 6, "2": 5 / 6, "3": 1.0})


def test_top_k_is_capped_at_the_number_of_labels():
    split = evaluate_predictions(["a", "b"], [0, 1], np.array([[0.6, 0.4], [0.7, 0.3]]), ["x", "y"], top_k=5)
    assert split["top_k_accuracy"] == {"1": 0.5, "2": 1.0}


def test_top_1_matches_accuracy_when_probabilities_tie():
    # On a tie the argmax takes the first label, and top-1 must rank it the same way.
    split = evaluate_predictions(["a", "b"], [1, 0], np.array([[0.5, 0.5], [0.5, 0.5]]), ["x", "y"])
    assert [p["predicted"] for p in split["predictions"]] == ["a", "a"]
    assert split["accuracy"] == split["top_k_accuracy"]["1"] == 0.5


def test_perfect_predictions():
    probabilities = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0], [0.6, 0.3, 0.1]])
    split = evaluate_predictions(LABELS, [0, 1, 2, 0], probabilities, ["p", "q", "r", "s"])
    assert split["accuracy"] == split["balanced_accuracy"] == 1.0
    assert split["macro"] == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert split["confusion_matrix"] == [[2, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert mistakes(split) == []


def test_balanced_accuracy_on_an_imbalanced_split():
    # 8 "common" and 2 "rare", everything predicted "common": accuracy 8/10, balanced (1 + 0) / 2.
    y_true = [0] * 8 + [1] * 2
    probabilities = np.tile([0.9, 0.1], (10, 1))
    split = evaluate_predictions(["common", "rare"], y_true, probabilities, [f"{i}.jpg" for i in range(10)])
    assert split["accuracy"] == pytest.approx(0.8)
    assert split["balanced_accuracy"] == pytest.approx(0.5)


@pytest.mark.filterwarnings("error")
def test_label_without_support_scores_zero_and_is_left_out_of_balanced_accuracy():
    # bird has no true samples but is predicted once (for the cat): P(bird) = 0/1, R(bird) = 0 by definition.
    probabilities = np.array([[0.1, 0.1, 0.8], [0.1, 0.8, 0.1]])
    split = evaluate_predictions(LABELS, [0, 1], probabilities, ["x", "y"])
    bird = split["per_class"][2]
    assert (bird["precision"], bird["recall"], bird["f1"], bird["support"]) == (0.0, 0.0, 0.0, 0)
    assert split["balanced_accuracy"] == pytest.approx((0 + 1) / 2)  # cat and dog only
    assert split["macro"]["recall"] == pytest.approx((0 + 1 + 0) / 3)  # all labels


@pytest.mark.filterwarnings("error")
def test_never_predicted_class_gives_no_nan_and_no_warning(split):
    values = [split["accuracy"], split["balanced_accuracy"], *split["macro"].values()]
    values += [row[key] for row in split["per_class"] for key in ("precision", "recall", "f1")]
    assert all(np.isfinite(values))


def test_predictions_name_labels_and_report_the_predicted_probability(split):
    assert split["predictions"][1] == {"path": "b.jpg", "true": "cat", "predicted": "dog", "confidence": 0.6}
    assert [p["path"] for p in split["predictions"]] == PATHS


def test_split_round_trips_through_json(split):
    assert json.loads(json.dumps(split, allow_nan=False)) == split


def test_mistakes_are_the_wrong_predictions_most_confident_first(split):
    assert [(m["path"], m["confidence"]) for m in mistakes(split)] == [
        ("b.jpg", 0.6),
        ("e.jpg", 0.5),
        ("f.jpg", 0.5),
    ]


def test_evaluation_document_omits_a_missing_test_split(split):
    document = evaluation_document(LABELS, split, None, train_counts=TRAIN_COUNTS)
    assert set(document) == {"labels", "validation"}
    document = evaluation_document(LABELS, split, split, train_counts=TRAIN_COUNTS)
    assert {key: document["test"][key] for key in split} == split
    assert document["test"]["verdict"]["sentence"].startswith("Test accuracy 0.50 ")
    assert json.loads(json.dumps(document, allow_nan=False)) == document


def test_baseline_by_hand(split):
    # Support on the split: cat 2, dog 3, bird 1 of 6. Always answering "dog" is right 3 / 6 times.
    document = evaluation_document(LABELS, split, split, train_counts=TRAIN_COUNTS)
    expected = {"majority_label": "dog", "majority_accuracy": 0.5, "chance_balanced_accuracy": pytest.approx(1 / 3)}
    assert document["validation"]["baseline"] == document["test"]["baseline"] == expected
    # A tie in training goes to the first label, as the argmax of a prediction does: "cat", right 2 / 6 times.
    tied = evaluation_document(LABELS, split, None, train_counts=[4, 4, 1])["validation"]["baseline"]
    assert (tied["majority_label"], tied["majority_accuracy"]) == ("cat", pytest.approx(2 / 6))


def test_train_counts_must_match_the_labels(split):
    with pytest.raises(ValueError, match="train_counts must give 3 counts"):
        evaluation_document(LABELS, split, None, train_counts=[5, 9])


def _verdict(right_per_class: list[tuple[int, int]], train_counts: list[int]) -> dict:
    """The verdict for a split with (right, total) samples per class; wrong ones are predicted as the next class."""
    labels = [f"c{i}" for i in range(len(right_per_class))]
    truth, predicted = [], []
    for label, (right, total) in enumerate(right_per_class):
        truth += [label] * total
        predicted += [label] * right + [(label + 1) % len(labels)] * (total - right)
    probabilities = np.eye(len(labels))[predicted]
    split = evaluate_predictions(labels, truth, probabilities, [f"{i}.jpg" for i in range(len(truth))])
    return evaluation_document(labels, split, None, train_counts=train_counts)["validation"]["verdict"]


def test_a_clear_margin_on_balanced_classes_is_good():
    # 95 of 100: both scores 0.95; the bars are 0.5 + 2 * sqrt(0.25 / 100) = 0.6, and 0.75 for balanced accuracy.
    verdict = _verdict([(48, 50), (47, 50)], [30, 30])
    assert verdict["level"] == "good" and verdict["suggestions"] == []
    assert verdict["sentence"].startswith("Validation accuracy 0.95 clearly beats always answering 'c0' (0.50)")


def test_above_chance_but_low_balanced_accuracy_is_weak():
    # 65 of 100 clears the noise bars (0.6) but not halfway from chance to 1 (0.75).
    verdict = _verdict([(33, 50), (32, 50)], [30, 30])
    assert verdict["level"] == "weak"
    assert "balanced accuracy 0.65 is above chance (0.50) but below 0.75" in verdict["sentence"]


def test_accuracy_within_noise_of_the_majority_answer_is_weak():
    # 90 "c0", 10 "c1": always answering c0 scores 0.9, the bar 0.9 + 2 * sqrt(0.09 / 100) = 0.96; 93 right is
    # within noise although balanced accuracy (85/90 + 8/10) / 2 = 0.87 is well above chance.
    verdict = _verdict([(85, 90), (8, 10)], [90, 10])
    assert verdict["level"] == "weak"
    assert "accuracy 0.93 is not clearly better than always answering 'c0' (0.90; it would need above 0.96)" in (
        verdict["sentence"])


def test_always_answering_the_majority_is_no_better_than_guessing():
    verdict = _verdict([(90, 90), (0, 10)], [90, 10])
    assert verdict["level"] == "no better than guessing"
    assert verdict["sentence"].startswith("Validation accuracy 0.90 is not clearly better than always answering "
                                          "'c0' (0.90;")
    assert verdict["sentence"].endswith("on 100 images: the model is no better than guessing.")


def test_a_small_sample_needs_a_larger_margin():
    # 70 % right is weak on 100 images but within noise on 10 (bar 0.5 + 2 * sqrt(0.25 / 10) = 0.82).
    assert _verdict([(35, 50), (35, 50)], [30, 30])["level"] == "weak"
    assert _verdict([(4, 5), (3, 5)], [30, 30])["level"] == "no better than guessing"
    # With 9 of 10 images in one class no score could beat always answering it: the sentence says so.
    assert "(0.90; too few images to show it)" in _verdict([(9, 9), (0, 1)], [9, 1])["sentence"]


def test_suggestions_name_the_smallest_class_and_what_to_try():
    suggestions = _verdict([(90, 90), (0, 10)], [90, 10])["suggestions"]
    assert any("the training split has 10 ('c1') to 90 per class." in s for s in suggestions)
    assert any("--strategy full" in s for s in suggestions)
    assert any("transfer-studio backbones" in s for s in suggestions)


@pytest.mark.parametrize(
    ("y_true", "probabilities", "paths", "top_k"),
    [
        ([], np.zeros((0, 3)), [], 3),  # empty split
        ([0], np.array([[0.5, 0.5]]), ["x"], 3),  # wrong number of columns
        ([3], np.array([[0.2, 0.3, 0.5]]), ["x"], 3),  # class id out of range
        ([0], np.array([[0.2, 0.3, 0.5]]), ["x", "y"], 3),  # paths do not match samples
        ([0], np.array([[0.2, 0.3, 0.5]]), ["x"], 0),  # top_k below 1
    ],
)
def test_invalid_input_raises_value_error(y_true, probabilities, paths, top_k):
    with pytest.raises(ValueError):
        evaluate_predictions(LABELS, y_true, probabilities, paths, top_k=top_k)


def test_metrics_load_without_torch():
    # The CLI report and the GUI's evaluate page read metrics without paying for a torch import.
    code = "import sys, engine.evaluation.metrics, engine.evaluation.format; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO_ROOT
    )
    assert result.stdout.strip() == "False"


def _document() -> dict:
    split = evaluate_predictions(LABELS, Y_TRUE, PROBABILITIES, PATHS)
    document = evaluation_document(LABELS, split, split, train_counts=TRAIN_COUNTS)
    return json.loads(json.dumps(document))  # as read back from the file


def test_a_written_document_passes_the_check() -> None:
    document = _document()
    assert check_evaluation_document(document, LABELS) is document


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("labels"), "no list of labels"),
    (lambda d: d.pop("validation"), "no validation results"),
    (lambda d: d["validation"].pop("confusion_matrix"), "validation: confusion_matrix must be 3 x 3"),
    (lambda d: d["test"]["confusion_matrix"].pop(), "test: confusion_matrix must be 3 x 3"),
    (lambda d: d["validation"].update(accuracy="93%"), "accuracy is not a number"),
    (lambda d: d["validation"].update(count=True), "count is not a whole number"),
    (lambda d: d["validation"]["macro"].pop("f1"), "macro averages are missing"),
    (lambda d: d["validation"]["per_class"].pop(), "per_class must hold 3 rows"),
    (lambda d: d["validation"]["top_k_accuracy"].update({"2": None}), "top_k_accuracy"),
    (lambda d: d["validation"]["predictions"][0].update(predicted="fish"), "predictions must each hold"),
    (lambda d: d["validation"]["predictions"][1].pop("path"), "predictions must each hold"),
    (lambda d: d["validation"]["verdict"].update(level="great"), "validation: verdict.level must be one of good"),
    (lambda d: d["test"]["verdict"].pop("sentence"), "test: verdict.sentence must be text"),
    (lambda d: d["validation"]["verdict"].update(suggestions="more"), "verdict.suggestions must be a list"),
    (lambda d: d["validation"].update(verdict=None), "validation: verdict is not an object"),
    (lambda d: d["validation"]["baseline"].update(majority_label="fish"), "baseline.majority_label must be a label"),
    (lambda d: d["test"]["baseline"].pop("majority_accuracy"), "test: baseline.majority_accuracy must be a number"),
])
def test_edited_documents_are_refused_with_what_is_wrong(edit, message: str) -> None:  # noqa: ANN001
    document = _document()
    edit(document)
    with pytest.raises(ValueError, match=message):
        check_evaluation_document(document, LABELS)


def test_a_document_from_before_verdicts_passes_the_check() -> None:
    document = _document()
    for key in ("validation", "test"):
        del document[key]["baseline"], document[key]["verdict"]
    assert check_evaluation_document(document, LABELS) is document


def _calibrated_document() -> dict:
    logits = np.log(PROBABILITIES) * 2
    calibration = calibrate(logits, np.array(Y_TRUE), logits, np.array(Y_TRUE))
    split = evaluate_predictions(LABELS, Y_TRUE, PROBABILITIES, PATHS)
    document = evaluation_document(LABELS, split, split, train_counts=TRAIN_COUNTS, calibration=calibration)
    return json.loads(json.dumps(document))


def test_a_calibrated_document_passes_the_check_and_one_without_calibration_too() -> None:
    document = _calibrated_document()
    assert check_evaluation_document(document, LABELS) is document
    assert "calibration" not in _document()  # written without one, as before calibration existed
    assert check_evaluation_document(_document(), LABELS)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(temperature=0), "temperature must be a positive number"),
    (lambda c: c.pop("ece_after"), "ece_after is not a number"),
    (lambda c: c.update(unsure_threshold=1.5), "unsure_threshold must be a number from 0 to 1, or null"),
    (lambda c: c.pop("unsure_threshold"), "unsure_threshold must be"),
    (lambda c: c.update(reliability=None), "reliability must be a list of objects"),
    (lambda c: c["test"].pop("answered"), "test must hold count, answered"),
    (lambda c: c["test"].update(meets_target="yes"), "test must hold"),
    (lambda c: c["test"].pop("answered_accuracy"), "test must hold"),
])
def test_edited_calibrations_are_refused(edit, message: str) -> None:  # noqa: ANN001
    document = _calibrated_document()
    edit(document["calibration"])
    with pytest.raises(ValueError, match=f"calibration: {message}"):
        check_evaluation_document(document, LABELS)


def test_a_calibration_without_a_test_check_and_with_a_null_threshold_passes() -> None:
    document = _calibrated_document()
    del document["calibration"]["test"]
    document["calibration"]["unsure_threshold"] = None
    assert check_evaluation_document(document, LABELS) is document


def test_a_document_for_other_labels_is_refused() -> None:
    with pytest.raises(ValueError, match="not the run's"):
        check_evaluation_document(_document(), ["cat", "dog", "fish"])
