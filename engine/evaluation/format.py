"""Plain-text rendering of one evaluated split for the CLI (no third-party dependencies)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def format_metrics_table(split: dict[str, Any], labels: Sequence[str]) -> str:
    """Summary lines, a per-class table and the labelled confusion matrix, with aligned columns."""
    labels = [str(label) for label in labels]
    confusion = split["confusion_matrix"]
    if len(confusion) != len(labels):
        raise ValueError(f"confusion matrix has {len(confusion)} rows for {len(labels)} labels")
    macro = split["macro"]
    summary = [
        ["samples", str(split["count"])],
        ["accuracy", _number(split["accuracy"])],
        ["balanced accuracy", _number(split["balanced_accuracy"])],
        ["macro precision", _number(macro["precision"])],
        ["macro recall", _number(macro["recall"])],
        ["macro f1", _number(macro["f1"])],
    ]
    summary += [[f"top-{k} accuracy", _number(value)] for k, value in split["top_k_accuracy"].items()]

    per_class = _table(
        ["label", "precision", "recall", "f1", "support"],
        [
            [
                row["label"],
                _number(row["precision"]),
                _number(row["recall"]),
                _number(row["f1"]),
                str(row["support"]),
            ]
            for row in split["per_class"]
        ],
    )
    matrix = _table(
        ["true \\ predicted", *labels],
        [[label, *(str(count) for count in row)] for label, row in zip(labels, confusion, strict=True)],
    )
    return "\n".join(
        [
            *_table(None, summary),
            "",
            "Per class",
            *per_class,
            "",
            "Confusion matrix (rows = true label, columns = predicted label)",
            *matrix,
        ]
    )


def format_verdict(split: dict[str, Any], name: str) -> str:
    """The verdict sentence and, unless the model is good, a WARNING line and what to try; "" for older documents
    (written before verdicts existed)."""
    verdict = split.get("verdict")
    if verdict is None:
        return ""
    lines = [verdict["sentence"]]
    if verdict["level"] != "good":
        lines.append(f"WARNING: on the {name} split the model is {verdict['level']}; before relying on it, try:")
        lines += [f"  - {suggestion}" for suggestion in verdict["suggestions"]]
    return "\n".join(lines)


def format_calibration(document: dict[str, Any]) -> str:
    """The temperature, the calibration error it leaves, the unsure threshold and how it held on test; "" for
    documents written before calibration existed."""
    block = document.get("calibration")
    if block is None:
        return ""
    target, threshold = block["target_accuracy"], block["unsure_threshold"]
    if block.get("fitted", True):  # documents from before the flag were fitted (or kept T = 1 silently)
        lines = [f"Temperature {block['temperature']:.3f} (fitted on validation): expected calibration error "
                 f"{block['ece_before']:.3f} before, {block['ece_after']:.3f} after."]
    else:
        lines = [f"Temperature not fitted (no validation photo was wrong, so there is nothing to fit it on; "
                 f"probabilities are the plain softmax): expected calibration error {block['ece_before']:.3f}."]
    if threshold is None:
        lines.append(f"No confidence threshold reaches {target:.0%} accuracy on validation: no prediction will be "
                     f"marked unsure.")
    else:
        confidences = [p["confidence"] for p in document["validation"]["predictions"]]
        answered = sum(c >= threshold for c in confidences)
        lines.append(f"Unsure below confidence {threshold:.3f}: on validation the {answered} of {len(confidences)} "
                     f"photos at or above it reach {target:.0%} accuracy.")
    if test := block.get("test"):
        accuracy = test["answered_accuracy"]
        held = ("none is answered" if accuracy is None else
                f"{accuracy:.1%} of them are right (+/- {2 * test['standard_error']:.1%}; target {target:.0%}"
                f"{'' if test['meets_target'] else ', missed'})")
        lines.append(f"On test: expected calibration error {test['ece_before']:.3f} before, {test['ece_after']:.3f} "
                     f"after; {test['answered']} of {test['count']} photos answered ({test['coverage']:.0%}), "
                     f"{held}.")
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:.4f}"


def _table(header: list[str] | None, rows: list[list[str]]) -> list[str]:
    """Left-align the first column (names), right-align the rest (numbers), two spaces between columns."""
    all_rows = rows if header is None else [header, *rows]
    widths = [max(len(row[column]) for row in all_rows) for column in range(len(all_rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in all_rows
    ]
