"""Prediction results as CSV, the one format the CLI and the app save: a row per image, its top labels or its error."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.atomic import write_bytes_atomic

if TYPE_CHECKING:  # engine.predict loads onnxruntime, which writing text does not need
    from engine.predict import Prediction


def predictions_csv(predictions: Sequence[Prediction], top_k: int) -> str:
    """Header ``path,label,confidence,unsure,top2_label,top2_probability,...,topK_probability,error``, then one row
    per prediction (``unsure`` is true or false); a file that could not be read has its path and error, the other
    cells empty.

    ``top_k`` sets the columns: pass at most the model's number of labels, or the last columns stay empty.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "confidence", "unsure",
                     *(f"top{k}_{field}" for k in range(2, top_k + 1) for field in ("label", "probability")), "error"])
    for prediction in predictions:
        ranked = [cell for label, probability in prediction.top_k[:top_k] for cell in (label, f"{probability:.6f}")]
        ranked += [""] * (2 * top_k - len(ranked))
        unsure = "" if prediction.error is not None else str(prediction.unsure).lower()
        writer.writerow([prediction.path, *ranked[:2], unsure, *ranked[2:], prediction.error or ""])
    return buffer.getvalue()


def write_predictions_csv(predictions: Sequence[Prediction], path: Path, top_k: int) -> None:
    """Save ``predictions_csv`` (UTF-8) atomically: a failed save leaves any previous file at ``path`` whole."""
    write_bytes_atomic(path, predictions_csv(predictions, top_k).encode("utf-8"))
