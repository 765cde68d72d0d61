"""How fast an exported model predicts: one image's latency and a folder's throughput, recorded beside the model.

Two numbers because they answer different questions: ``batch1_ms`` is what one photo waits for the network
(onnxruntime alone, the photo already decoded; on the CPU on one core, as the predictor runs each image), and
``images_per_second`` is what classifying a folder achieves, decoding and every core included. speed.json keeps the
model file's size and modification time, so a re-exported model reads as not measured rather than showing the old
model's numbers. onnxruntime only, and only to measure: reading the figures (a list of runs) loads neither it nor
torch.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.atomic import write_json_atomic
from engine.control import RunControl
from engine.errors import BadInputError
from engine.evaluation.metrics import read_evaluation_document
from engine.events import EventSink, Progress, ignore_event
from engine.images import ImageLoadError, preprocess_for_model
from engine.preprocessing import Preprocessing
from engine.run_files import EVALUATION_FILE, MODEL_FILE
from engine.time_format import utc_now_iso

SPEED_FILE = "speed.json"
DEFAULT_IMAGES = 64  # validation photos timed by default: a second or two on a laptop CPU, steady enough to compare
WARM_UP_RUNS = 3  # the first onnxruntime runs allocate and pick kernels; they are not what a user waits for


@dataclass(frozen=True, slots=True)
class SpeedFigures:
    """``batch1_ms``: median onnxruntime time for one preprocessed image; ``images_per_second``: the predictor over
    ``images`` files, decoding included; ``provider``: onnxruntime's execution provider; ``measured``: UTC time."""

    batch1_ms: float
    images_per_second: float
    images: int
    provider: str
    measured: str


def measure_speed(model: Path, images: Sequence[Path], *, repeats: int = 20, on_event: EventSink = ignore_event,
                  control: RunControl | None = None) -> SpeedFigures:
    """Time ``model`` (an exported .onnx) on ``images``: the median of ``repeats`` single-image runs after a warm-up,
    then the Predictor over every file. Unreadable files are left out of the throughput; none readable is an error.
    """
    if repeats < 1:
        raise BadInputError(f"repeats must be at least 1, got {repeats}")
    if not images:
        raise BadInputError(f"{model}: no images to time the model on; pass some photos")
    from engine.predict import Predictor

    predictor = Predictor(model)
    single = _first_readable(images, predictor.info.preprocessing)[None]
    for _ in range(WARM_UP_RUNS):
        predictor.probabilities(single)
    times = []
    for index in range(repeats):
        if control is not None:
            control.check()
        started = time.perf_counter()
        predictor.probabilities(single)
        times.append(time.perf_counter() - started)
        on_event(Progress("timing one image", index + 1, repeats))
    started = time.perf_counter()
    predictions = predictor.predict_paths(list(images), top_k=1, on_event=on_event, control=control)
    elapsed = time.perf_counter() - started
    predicted = sum(p.error is None for p in predictions)
    return SpeedFigures(batch1_ms=1000 * statistics.median(times), images_per_second=predicted / elapsed,
                        images=predicted, provider=predictor.provider, measured=utc_now_iso())


def _first_readable(images: Sequence[Path], preprocessing: Preprocessing) -> np.ndarray:
    for path in images:
        try:
            return preprocess_for_model(path, preprocessing)
        except ImageLoadError:
            continue
    raise BadInputError(f"none of the {len(images)} images could be read (the first: {images[0]}); pass photos "
                        "the model can classify")


def record_speed(run_dir: Path, images: Sequence[Path] | None = None, *, on_event: EventSink = ignore_event,
                 control: RunControl | None = None) -> SpeedFigures:
    """Measure the run's exported model and save the figures to speed.json. ``images`` None: up to 64 of the
    validation photos evaluation.json lists that still exist."""
    run_dir = Path(run_dir)
    model = run_dir / MODEL_FILE
    if not model.is_file():
        raise BadInputError(f"{run_dir}: no exported model ({MODEL_FILE}) to time; export the run first")
    if images is None:
        images = validation_photos(run_dir)
    figures = measure_speed(model, images, on_event=on_event, control=control)
    write_json_atomic(run_dir / SPEED_FILE, {**asdict(figures), "model": _model_signature(model)})
    return figures


def validation_photos(run_dir: Path, limit: int = DEFAULT_IMAGES) -> list[Path]:
    """Up to ``limit`` of the validation photos in the run's evaluation.json that are still on disk."""
    path = Path(run_dir) / EVALUATION_FILE
    try:
        document = read_evaluation_document(path)
    except OSError as exc:
        raise BadInputError(f"{path}: cannot read the run's evaluation ({exc.strerror or exc}); evaluate the run "
                            "first, or pass the photos to time") from exc
    except ValueError as exc:
        raise BadInputError(f"{path}: damaged or edited evaluation ({exc}); re-evaluate the run, or pass the "
                            "photos to time") from exc
    found = []
    for prediction in document["validation"]["predictions"]:
        if Path(prediction["path"]).is_file():
            found.append(Path(prediction["path"]))
            if len(found) == limit:
                break
    if not found:
        raise BadInputError(f"{path}: none of the run's validation photos are still on disk; pass the photos to time")
    return found


def read_speed(run_dir: Path) -> SpeedFigures | None:
    """The recorded figures, or None: never measured, unreadable, or the model was exported again since."""
    run_dir = Path(run_dir)
    try:
        document = json.loads((run_dir / SPEED_FILE).read_text(encoding="utf-8"))
        if document.get("model") != _model_signature(run_dir / MODEL_FILE):
            return None
        return _figures(document)
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return None


def _figures(document: dict[str, Any]) -> SpeedFigures:
    figures = SpeedFigures(batch1_ms=float(document["batch1_ms"]),
                           images_per_second=float(document["images_per_second"]),
                           images=int(document["images"]), provider=str(document["provider"]),
                           measured=str(document["measured"]))
    if not (figures.batch1_ms > 0 and figures.images_per_second > 0):
        raise ValueError("speeds must be positive")
    return figures


def _model_signature(model: Path) -> dict[str, int]:
    """What changes when the model is exported again (atomic writes replace the file: a new mtime)."""
    stat = model.stat()
    return {"size_bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
