"""The engine work the GUI runs, as Jobs for a JobRunner.

Engine modules that import torch or onnxruntime are imported inside the job functions, so they load on a
worker thread the first time they are needed and the window appears without waiting for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from desktop.thumbnails import THUMBNAIL_SIZE, load_thumbnail, thumbnail_strip
from desktop.workers import Job
from engine.backbones.registry import DEFAULT_BACKBONE
from engine.control import RunControl
from engine.dataset import journal
from engine.dataset.doctor import DoctorReport
from engine.dataset.exclusions import Exclusions
from engine.dataset.report import ScanReport
from engine.evaluation.metrics import read_evaluation_document
from engine.events import EventSink
from engine.heatmaps import overlay, photo_for_overlay
from engine.images import ImageLoadError
from engine.prediction_csv import write_predictions_csv
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.config import TrainConfig

STRIP_IMAGES = 6


@dataclass(frozen=True)
class ScanResult:
    report: ScanReport
    strips: dict[str, np.ndarray | None]  # class name -> thumbnail strip


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    family: str
    parameters: int
    size_mb: float
    weights: str  # "bundled" | "not installed" | "cached" | "download"


@dataclass(frozen=True)
class TrainingOptions:
    """What the train page can only learn with torch loaded: the device and the backbones' details."""

    device: str
    backbones: tuple[BackboneInfo, ...]


@dataclass(frozen=True)
class LoadedModel:
    predictor: Any  # engine.predict.Predictor
    heatmaps_unavailable: str | None  # why this model gives no heatmaps (exported before them, or its backbone)


@dataclass(frozen=True)
class PreviewImage:
    """A photo for a preview pane: RGB uint8 (a heatmap drawn over it if one was asked for), or None and the reason.
    ``prediction``: the engine.predict.Prediction the job made, when it classified the photo itself."""

    image: np.ndarray | None
    problem: str | None = None
    prediction: Any = None


@dataclass(frozen=True)
class RunSnapshot:
    """A run folder as the pages show it."""

    info: rf.RunInfo  # run.json
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    model_path: Path | None  # model.onnx in the run folder, if exported

    @property
    def run_dir(self) -> Path:
        return self.info.path

    @property
    def resumable(self) -> bool:
        return self.info.status in ("cancelled", "failed", "running") and (self.run_dir / rf.LAST_FILE).is_file()


def scan(folder: Path, *, val_split: float, test_split: float, seed: int) -> Job:
    def run(on_event: EventSink, control: RunControl) -> ScanResult:
        from engine.dataset.scan import scan_dataset

        report = scan_dataset(folder, val_fraction=val_split, test_fraction=test_split, seed=seed,
                              on_event=on_event, control=control)
        strips = {}
        for label, name in enumerate(report.classes):
            control.check()
            strips[name] = thumbnail_strip([i.path for i in report.items if i.label == label][:STRIP_IMAGES])
        return ScanResult(report, strips)

    return Job(f"Scanning {folder}", run)


def doctor(folder: Path, *, val_split: float, test_split: float, seed: int, backbone: str = DEFAULT_BACKBONE) -> Job:
    """The dataset doctor's DoctorReport on ``folder``, as ``transfer-studio doctor`` makes it (the default backbone),
    with the split the Data page previews: the leaks it flags are the ones a training run would have."""

    def run(on_event: EventSink, control: RunControl) -> DoctorReport:
        from engine.training.doctor_run import diagnose_folder

        config = TrainConfig(backbone=backbone, val_split=val_split, test_split=test_split, seed=seed)
        return diagnose_folder(folder, config, on_event=on_event, control=control)

    return Job(f"Running the dataset doctor on {folder}", run)


def exclude(folder: Path, paths_by_reason: Mapping[str, Sequence[Path | str]]) -> Job:
    """Exclude photos through the journal, one change per reason (Undo reverses one); returns every exclusion now."""

    def run(_on_event: EventSink, control: RunControl) -> Exclusions:
        excluded = Exclusions()
        for reason, paths in paths_by_reason.items():
            control.check()
            excluded = journal.exclude(folder, paths, reason)
        return excluded

    count = sum(len(paths) for paths in paths_by_reason.values())
    return Job(f"Excluding {count} photo(s) from {folder.name}", run)


def move_to_class(folder: Path, paths: Sequence[Path | str], new_class: str) -> Job:
    """Move photos into ``new_class``'s folder through the journal, one change per photo; returns the MoveRecords.

    Stops at the first photo that cannot be moved (the MoveError names it); those before it stay moved.
    """

    def run(_on_event: EventSink, control: RunControl) -> list[journal.MoveRecord]:
        records = []
        for path in paths:
            control.check()
            records.append(journal.move_to_class(folder, path, new_class))
        return records

    return Job(f"Moving {len(paths)} photo(s) to {new_class}", run)


def undo(folder: Path, count: int = 1) -> Job:
    """Reverse the dataset's last ``count`` journalled changes; returns the changes that reversed them (none: there
    was nothing to undo)."""

    def run(_on_event: EventSink, _control: RunControl) -> list[journal.JournalRecord]:
        return journal.undo(folder, count)

    return Job(f"Undoing the last change to {folder.name}", run)


def sample_data(out_dir: Path) -> Job:
    def run(on_event: EventSink, control: RunControl) -> Path:
        from engine.dataset.sample_data import generate_sample_dataset

        return generate_sample_dataset(out_dir, on_event=on_event, control=control)

    return Job("Generating the sample dataset", run)


def training_options() -> Job:
    def run(_on_event: EventSink, _control: RunControl) -> TrainingOptions:
        from engine.backbones.registry import list_backbones
        from engine.training.device import resolve_device

        backbones = tuple(BackboneInfo(s.name, s.family, s.parameters(), s.file_size_mb(), s.weights_state())
                          for s in list_backbones())
        return TrainingOptions(resolve_device("auto").description, backbones)

    return Job("Detecting the compute device", run)


def train(data_dir: Path | None, run_dir: Path, config: TrainConfig | None, *, resume: bool = False) -> Job:
    """``config`` None: the run folder's own (a resumed run)."""

    def run(on_event: EventSink, control: RunControl) -> Any:
        from engine.training.trainer import train as train_run

        return train_run(data_dir, run_dir, config, resume=resume, on_event=on_event, control=control)

    return Job(f"{'Resuming' if resume else 'Training'} {run_dir.name}", run)


def find_learning_rate(data_dir: Path, config: TrainConfig, *, steps: int | None = None) -> Job:
    """``steps`` None: the engine's default sweep length."""

    def run(on_event: EventSink, control: RunControl) -> Any:
        from engine.training import lr_find

        return lr_find.find_learning_rate(data_dir, config, steps=lr_find.STEPS if steps is None else steps,
                                          on_event=on_event, control=control)

    return Job(f"Finding a learning rate for {data_dir.name}", run)


def read_run(run_dir: Path) -> Job:
    def run(_on_event: EventSink, _control: RunControl) -> RunSnapshot:
        info = rf.read_run(run_dir)
        evaluation_file = run_dir / rf.EVALUATION_FILE
        evaluation = None
        if evaluation_file.is_file():
            try:
                evaluation = read_evaluation_document(evaluation_file, info.labels)
            except ValueError as exc:
                raise rf.RunFolderError(f"{evaluation_file}: damaged or edited, refused ({exc}); rewrite it with "
                                        f"'transfer-studio evaluate {run_dir}'") from exc
        model = run_dir / rf.MODEL_FILE
        return RunSnapshot(info, rf.read_metrics(run_dir), evaluation, model if model.is_file() else None)

    return Job(f"Opening run {run_dir.name}", run)


def export(run_dir: Path, out: Path | None = None, *, quantize: str | None = None) -> Job:
    """Returns the ExportResult; when only the int8 step failed, the float model's, after a warning saying so
    (the float model was written and checked, so the app must offer it rather than report a failed export)."""

    def run(on_event: EventSink, control: RunControl) -> Any:
        from engine.events import WarningEvent
        from engine.export import QuantizationError, export_onnx

        try:
            return export_onnx(run_dir, out, quantize=quantize, on_event=on_event, control=control)
        except QuantizationError as exc:
            on_event(WarningEvent(str(exc)))
            return exc.float_export

    return Job(f"Exporting {run_dir.name} to ONNX", run)


def load_predictor(model_path: Path) -> Job:
    """The LoadedModel: the Predictor, and why it gives no heatmaps if it does not."""

    def run(_on_event: EventSink, _control: RunControl) -> LoadedModel:
        from engine.predict import Predictor

        predictor = Predictor(model_path)
        return LoadedModel(predictor, predictor.heatmaps_unavailable())

    return Job(f"Loading {model_path.name}", run)


def predict(predictor: Any, inputs: Sequence[Path], *, heatmaps: bool = False) -> Job:
    """Expand folders, classify every image, and keep one result per input file (errors included).
    ``heatmaps``: each prediction also gets its top class's heatmap (a few floats: the overlay is made on demand)."""

    def run(on_event: EventSink, control: RunControl) -> list[Any]:
        from engine.predict import expand_inputs

        paths, errors = expand_inputs(list(inputs))
        predictions = predictor.predict_paths(paths, top_k=3, on_event=on_event, control=control,
                                              heatmaps=heatmaps) if paths else []
        return [*predictions, *errors]

    return Job(f"Classifying {len(inputs)} item(s)", run)


def save_predictions(predictions: Sequence[Any], path: Path) -> Job:
    """The engine's prediction CSV (atomic), with columns for as many top labels as the results have."""

    def run(_on_event: EventSink, _control: RunControl) -> Path:
        write_predictions_csv(predictions, path, top_k=max((len(p.top_k) for p in predictions), default=1))
        return path

    return Job(f"Saving {len(predictions)} result(s) to {path.name}", run)


def add_correction(run_dir: Path, photo: str, label: str, predicted: str | None) -> Job:
    """Copy ``photo`` into the run's dataset as ``label`` (engine.corrections); the Correction."""

    def run(_on_event: EventSink, _control: RunControl) -> Any:
        from engine.corrections import add_correction as add

        return add(run_dir, photo, label, predicted)

    return Job(f"Adding {Path(photo).name} to the dataset as {label}", run)


def sort_into_folders(predictions: Sequence[Any], folder: Path) -> Job:
    """Copy the predicted photos into one folder per class under ``folder`` (engine.sort_into); the SortResult."""

    def run(on_event: EventSink, control: RunControl) -> Any:
        from engine.sort_into import sort_into_folders as sort

        return sort(predictions, folder, on_event=on_event, control=control)

    return Job(f"Copying {len(predictions)} photo(s) into class folders in {folder}", run)


def photo_preview(path: str, heatmap: Sequence[Sequence[float]] | None = None,
                  preprocessing: Preprocessing | None = None) -> Job:
    """The photo for a preview pane, with ``heatmap`` (a Prediction's, from a model with ``preprocessing``) drawn
    over it when given: a PreviewImage."""

    def run(_on_event: EventSink, control: RunControl) -> PreviewImage:
        return _draw_preview(path, heatmap, preprocessing, control)

    return Job(f"Showing {Path(path).name}", run)


def mistake_heatmap(predictor: Any, path: str) -> Job:
    """Classify one photo with heatmaps (``predictor`` must have them) and draw the predicted class's heatmap over
    it: a PreviewImage with its Prediction."""

    def run(_on_event: EventSink, control: RunControl) -> PreviewImage:
        prediction = predictor.predict_paths([path], top_k=1, heatmaps=True, control=control)[0]
        if prediction.error is not None:
            return PreviewImage(None, prediction.error, prediction)
        preview = _draw_preview(path, prediction.heatmap, predictor.info.preprocessing, control)
        return replace(preview, prediction=prediction)

    return Job(f"Finding what the model looked at in {Path(path).name}", run)


def _draw_preview(path: str, heatmap: Sequence[Sequence[float]] | None, preprocessing: Preprocessing | None,
                  control: RunControl) -> PreviewImage:
    """The photo as large as the overlay files ``predict --heatmaps`` writes, with the heatmap over it if given;
    an unreadable photo is a PreviewImage with its reason, not a failed job."""
    try:
        photo = photo_for_overlay(path)
    except ImageLoadError as exc:
        return PreviewImage(None, exc.reason)
    control.check()  # a superseded preview stops before drawing
    if heatmap is not None and preprocessing is not None:
        photo = overlay(photo, np.asarray(heatmap, dtype=np.float32), preprocessing)
    return PreviewImage(np.asarray(photo, dtype=np.uint8))


def thumbnails(paths: Sequence[str], size: int = THUMBNAIL_SIZE) -> Job:
    def run(_on_event: EventSink, control: RunControl) -> dict[str, np.ndarray | None]:
        result = {}
        for path in paths:
            control.check()
            result[path] = load_thumbnail(path, size)
        return result

    return Job(f"Loading {len(paths)} thumbnail(s)", run)
