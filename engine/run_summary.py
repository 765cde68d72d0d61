"""One line per run for a list of runs: what was trained on what, how it did, how big and fast it is.

A folder of runs holds whatever users and killed processes left: half-written runs, edited files, runs from older
versions. Listing them must never fail, so every reader here turns a problem into a value (a summary whose status
is "unreadable" with the reason, an empty curve) instead of raising. The files are read as JSON directly, without
``engine.training.run_folder``, whose imports reach torch: a list of runs should not load it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.control import RunControl
from engine.evaluation.metrics import read_evaluation_document
from engine.run_files import EVALUATION_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE, training_process_gone
from engine.speed import SpeedFigures, read_speed

UNREADABLE = "unreadable"
INTERRUPTED = "interrupted"  # run.json says "running" but the process it names on this machine is gone


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run as a list shows it; a value the files do not give is None. ``kind``: "single", "ensemble" (run.json
    says so) or "distilled" (trained from teachers). ``status``: run.json's, or "unreadable" with ``error`` saying
    why, or "interrupted" (run.json says "running" but its process on this machine is gone, ``error`` says so);
    ``error`` also holds a failed run's own message. ``training_seconds``: the epochs' total, else created to
    finished. ``speed``: the recorded figures of the current model.onnx."""

    path: Path
    name: str
    created: str | None
    dataset: str | None  # the data folder's name
    data_dir: str | None
    backbone: str | None
    strategy: str | None
    kind: str
    status: str
    best_val_accuracy: float | None
    test_accuracy: float | None
    training_seconds: float | None
    model_size_bytes: int | None
    speed: SpeedFigures | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ValidationCurve:
    """Validation accuracy and loss per epoch (epoch 0: the quick head), from metrics.jsonl."""

    epochs: tuple[int, ...]
    accuracy: tuple[float, ...]
    loss: tuple[float, ...]


class _Damaged(ValueError):
    """A run file that cannot be read as documented; the message names the file and what is wrong."""


def find_runs(folder: Path, *, control: RunControl | None = None) -> list[RunSummary]:
    """Every run folder (one holding run.json) directly under ``folder``, by name; none when it does not exist.
    ``control`` is checked between runs (a few hundred take a few hundred milliseconds)."""
    try:
        children = sorted(Path(folder).iterdir())
    except OSError:
        return []
    summaries = []
    for child in children:
        if not child.name.startswith(".") and (child / RUN_FILE).is_file():
            if control is not None:
                control.check()
            summaries.append(summarize_run(child))
    return summaries


def summarize_run(path: Path) -> RunSummary:
    """The run at ``path``; never raises: a damaged or half-written folder is summarized as far as it can be read,
    with status "unreadable" and the reason."""
    path = Path(path)
    known: dict[str, Any] = {"path": path, "name": path.name, "created": None, "dataset": None, "data_dir": None,
                             "backbone": None, "strategy": None, "kind": "single", "status": UNREADABLE,
                             "best_val_accuracy": None, "test_accuracy": None, "training_seconds": None,
                             "model_size_bytes": _size(path / MODEL_FILE), "speed": read_speed(path), "error": None}
    try:
        run, finished, labels = _read_run_file(path)
        known.update(run)
        known["training_seconds"] = _training_seconds(_read_metrics(path), known["created"], finished)
        known["test_accuracy"] = _test_accuracy(path, labels)
    except _Damaged as exc:
        known.update(status=UNREADABLE, error=str(exc))
    return RunSummary(**known)


def validation_curve(path: Path) -> ValidationCurve:
    """The run's validation curve; empty when it has no readable metrics."""
    try:
        records = [r for r in _read_metrics(Path(path))
                   if _is_number(r.get("val_accuracy")) and _is_number(r.get("val_loss"))]
    except _Damaged:
        records = []
    return ValidationCurve(tuple(r["epoch"] for r in records), tuple(float(r["val_accuracy"]) for r in records),
                           tuple(float(r["val_loss"]) for r in records))


def per_class_f1(path: Path, split: str = "validation") -> dict[str, float]:
    """Label -> F1 on ``split`` ("validation" or "test") from evaluation.json; empty when the run has no readable
    evaluation of that split."""
    try:
        document = _read_evaluation(Path(path), None)
    except _Damaged:
        return {}
    if document is None or split not in document:
        return {}
    return {row["label"]: float(row["f1"]) for row in document[split]["per_class"]}


def _read_run_file(path: Path) -> tuple[dict[str, Any], str | None, list[str] | None]:
    """RunSummary's fields that run.json gives, then its finishing time and labels (for the readers after it)."""
    run_file = path / RUN_FILE
    try:
        raw = json.loads(run_file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise _Damaged(f"{run_file}: missing (not a run folder, or a run that is just starting)") from exc
    except OSError as exc:
        raise _Damaged(f"{run_file}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise _Damaged(f"{run_file}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise _Damaged(f"{run_file}: not a run file (no object at the top)")
    config = _entry(raw, "config", dict, run_file) or {}
    status = _entry(raw, "status", str, run_file)
    if status is None:
        raise _Damaged(f"{run_file}: no status")
    data_dir = _entry(raw, "data_dir", str, run_file)
    teachers = _entry(config, "teachers", list, run_file)
    labels = _entry(raw, "labels", list, run_file)
    best = _entry(raw, "best_val_accuracy", (int, float), run_file)
    # An ensemble copies its first member's config (strategy, teachers): its own kind comes first, and it was not
    # trained with any strategy.
    kind = _entry(raw, "kind", str, run_file) or ("distilled" if teachers else "single")
    run = dict(
        created=_entry(raw, "created", str, run_file), data_dir=data_dir,
        dataset=Path(data_dir).name if data_dir else None,
        backbone=_entry(raw, "backbone", str, run_file) or _entry(config, "backbone", str, run_file),
        strategy=None if kind == "ensemble" else _entry(config, "strategy", str, run_file), kind=kind,
        status=status, best_val_accuracy=float(best) if best is not None and best >= 0 else None,  # -1: no epoch
        error=_entry(raw, "error", str, run_file))
    if training_process_gone(raw):
        process = raw["process"]
        run.update(status=INTERRUPTED, error=f"run.json says running, but its process ({process['pid']} on this "
                                             "machine) is gone: it was killed or crashed. Resume it (Train page, or "
                                             f"transfer-studio train --out {path} --resume)")
    return run, _entry(raw, "finished", str, run_file), labels


def _entry(document: dict[str, Any], key: str, kind: type | tuple[type, ...], file: Path) -> Any:
    """``document[key]`` when it is a ``kind`` (a bool is no number), None when absent or null."""
    value = document.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise _Damaged(f"{file}: {key} has an invalid value {value!r}")
    return value


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    metrics_file = path / METRICS_FILE
    try:
        lines = metrics_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _Damaged(f"{metrics_file}: cannot be read ({exc.strerror or exc})") from exc
    try:
        records = [json.loads(line) for line in lines if line.strip()]
    except ValueError as exc:
        raise _Damaged(f"{metrics_file}: a line is not valid JSON ({exc})") from exc
    if not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records):
        raise _Damaged(f"{metrics_file}: every line must be an object with an integer epoch")
    return records


def _training_seconds(records: list[dict[str, Any]], created: str | None, finished: str | None) -> float | None:
    seconds = [r["seconds"] for r in records if _is_number(r.get("seconds"))]
    if seconds:
        return float(sum(seconds))
    if created and finished:
        try:
            return max(0.0, (datetime.fromisoformat(finished) - datetime.fromisoformat(created)).total_seconds())
        except (TypeError, ValueError):  # unparsable, or one with a time zone and one without
            return None
    return None


def _read_evaluation(path: Path, labels: list[str] | None) -> dict[str, Any] | None:
    evaluation_file = path / EVALUATION_FILE
    try:
        return read_evaluation_document(evaluation_file, labels)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Damaged(f"{evaluation_file}: cannot be read ({exc.strerror or exc})") from exc
    except ValueError as exc:
        raise _Damaged(f"{evaluation_file}: damaged or edited ({exc})") from exc


def _test_accuracy(path: Path, labels: list[str] | None) -> float | None:
    document = _read_evaluation(path, labels)
    if document is None or "test" not in document:
        return None
    return float(document["test"]["accuracy"])


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
