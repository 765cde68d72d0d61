"""The one CSV format of prediction results (the CLI's --format csv and the app's Save results)."""

import csv
import io
from pathlib import Path

from engine.predict import Prediction
from engine.prediction_csv import predictions_csv, write_predictions_csv

PREDICTIONS = [
    Prediction("a, b.jpg", (("cat", 0.7), ("dog", 0.2), ("fox", 0.1))),
    Prediction("gone.jpg", (), "file not found"),
    Prediction("c.jpg", (("fox", 0.4), ("cat", 0.35)), unsure=True),
]


def test_header_rows_and_error_rows() -> None:
    rows = list(csv.reader(io.StringIO(predictions_csv(PREDICTIONS, 2))))
    assert rows == [
        ["path", "label", "confidence", "unsure", "top2_label", "top2_probability", "error"],
        ["a, b.jpg", "cat", "0.700000", "false", "dog", "0.200000", ""],
        ["gone.jpg", "", "", "", "", "", "file not found"],
        ["c.jpg", "fox", "0.400000", "true", "cat", "0.350000", ""],
    ]


def test_write_replaces_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("an older save")
    write_predictions_csv(PREDICTIONS, path, 3)
    assert path.read_text(encoding="utf-8") == predictions_csv(PREDICTIONS, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]

