"""Predict page: load an ONNX model once, classify dropped photos and folders on the worker, save a CSV.

Results arrive batch by batch (BatchPredicted), so rows appear while the rest is classified, a large drop never
adds thousands of rows in one go, and "Stop" keeps what was done. Thumbnails, the selected photo's preview and
saving run on a second runner, so they never wait behind a prediction.

With "Heatmaps" on, each prediction keeps its small class activation map (7 x 7 floats for a 224 crop); the
overlay on the photo is drawn for the selected row only, when it is selected, and only the latest one is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QModelIndex, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut, QStandardItem
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QProgressBar,
    QPushButton,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs
from desktop.settings import AppSettings
from desktop.widgets.drop_area import DropArea
from desktop.widgets.image_table import ImageTable
from desktop.widgets.photo_preview import beside_preview
from desktop.widgets.probability_bars import TOP_K_ROLE, ProbabilityBarsDelegate
from desktop.widgets.progress import show_progress
from desktop.workers import Job, JobRunner
from engine.events import BatchPredicted, Progress
from engine.heatmaps import evidence_note
from engine.images import IMAGE_EXTENSIONS
from engine.preprocessing import Preprocessing
from engine.training.run_folder import RUN_FILE

PHOTO_FILTER = f"Images ({' '.join(f'*{ext}' for ext in sorted(IMAGE_EXTENSIONS))});;All files (*)"
HEATMAP_TIP = ("Also find where the model looked in each photo (the class activation map of its top class); "
               "select a result to see it over the photo")
NO_MODEL_TIP = "Open a model first: heatmaps come from the model"


class PredictPage(QWidget):
    model_loaded = Signal(object)  # Path
    retrain_requested = Signal(object)  # the loaded model's run folder, after corrections were added

    def __init__(self, runner: JobRunner, file_runner: JobRunner, settings: AppSettings,
                 parent: QWidget | None = None) -> None:
        """``file_runner``: short file jobs (thumbnails, saving the results) on their own thread."""
        super().__init__(parent)
        self.setObjectName("predictPage")
        self.runner, self.file_runner, self.settings = runner, file_runner, settings
        self.predictor: Any = None  # engine.predict.Predictor, created once per model on the worker
        self.results: list[Any] = []  # engine.predict.Prediction, in table order
        self._load_job: Job | None = None
        self._predict_jobs: set[Job] = set()
        self._rows_shown: dict[Job, int] = {}  # per prediction job: results already shown from its batches
        self._thumbnail_jobs: set[Job] = set()
        self._saves: dict[Job, tuple[Path, int]] = {}  # save job -> its file and number of results
        self._sorts: dict[Job, Path] = {}  # copy-into-class-folders job -> its folder
        self._waiting: list[Path] = []  # dropped while the model was still loading
        self._heatmaps_unavailable: str | None = NO_MODEL_TIP  # why there are no heatmaps (None: the model has them)
        self._heatmap_jobs: dict[Job, Preprocessing] = {}  # prediction job asking for heatmaps -> its model's
        self._result_preprocessing: list[Preprocessing | None] = []  # per result: where its heatmap lies (None: none)
        self._preview_job: Job | None = None  # the selected row's photo, being drawn
        self._preview_caption = ""  # shown with that photo once it arrives
        self._run_dir: Path | None = None  # the loaded model's run folder (corrections go to its dataset)
        self._corrections: dict[Job, int | None] = {}  # correction job -> its row (None: the rows were cleared)
        self._corrected = 0  # corrections added since the model loaded

        self.model_edit = QLineEdit(objectName="modelPathEdit")
        self.model_edit.setReadOnly(True)
        self.model_edit.setAcceptDrops(False)
        self.model_edit.setPlaceholderText("Export a model on the Evaluate page, or open an .onnx file")
        open_model = QPushButton("Open model…", objectName="openModelButton")
        open_model.clicked.connect(self.on_open_model_clicked)
        self.heatmap_toggle = QCheckBox("Heatmaps", objectName="heatmapToggle")
        self.heatmap_toggle.toggled.connect(self.on_heatmap_toggled)
        self.model_info = QLabel(objectName="modelInfoLabel")
        self.model_info.setWordWrap(True)
        self.drop_area = DropArea("Drop photos or folders here (or anywhere on this page) to classify them")
        self.drop_area.setObjectName("dropArea")
        self.drop_area.paths_dropped.connect(self.on_paths_dropped)
        add_photos = QPushButton("Add photos…", objectName="addPhotosButton")
        add_photos.clicked.connect(self.on_add_photos_clicked)
        add_folder = QPushButton("Add folder…", objectName="addFolderButton")
        add_folder.clicked.connect(self.on_add_folder_clicked)
        drop_buttons = QHBoxLayout()
        drop_buttons.addStretch(1)
        drop_buttons.addWidget(add_photos)
        drop_buttons.addWidget(add_folder)
        drop_buttons.addStretch(1)
        self.drop_area.layout_.addLayout(drop_buttons)
        self.progress = QProgressBar(objectName="predictProgressBar")
        self.progress.hide()
        self.cancel_button = QPushButton("Stop", objectName="cancelPredictButton")
        self.cancel_button.setToolTip("Stop classifying after the current batch; the results so far are kept")
        self.cancel_button.clicked.connect(self.on_cancel_clicked)
        self.cancel_button.hide()
        self.status = QLabel(objectName="predictStatusLabel")
        self.status.setWordWrap(True)
        self.predictions_view = ImageTable(["File", "Top 3 predictions"])
        self.predictions_view.setObjectName("predictionsView")
        self.predictions_view.setItemDelegateForColumn(2, ProbabilityBarsDelegate(self.predictions_view))
        self.predictions_view.horizontalHeader().resizeSection(1, 220)
        self.predictions_view.selectionModel().currentRowChanged.connect(self.on_current_row_changed)
        self.predictions_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.predictions_view.customContextMenuRequested.connect(self.on_context_menu)
        for number in range(1, 10):  # key N: the selected photos are of class N (the menu shows the numbers)
            shortcut = QShortcut(QKeySequence(str(number)), self.predictions_view)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.activated.connect(lambda n=number: self.correct_selected(n - 1))
        results, self.preview, self.preview_caption = beside_preview(self.predictions_view, "heatmapPreview")
        results.setObjectName("predictSplitter")
        self.save_button = QPushButton("Save results…", objectName="saveResultsButton")
        self.save_button.clicked.connect(self.on_save_clicked)
        self.clear_button = QPushButton("Clear", objectName="clearResultsButton")
        self.clear_button.clicked.connect(self.on_clear_clicked)
        self.sort_button = QPushButton("Copy into class folders…", objectName="sortIntoFoldersButton")
        self.sort_button.setToolTip("Copy each photo into a folder named after its class (unsure ones into "
                                    "_unsure/); the originals stay where they are and nothing is overwritten")
        self.sort_button.clicked.connect(self.on_sort_clicked)
        self.retrain_button = QPushButton("Retrain with corrections", objectName="retrainButton")
        self.retrain_button.setToolTip("Train a new run with the same options on the dataset, now with the photos "
                                       "you corrected (right-click a result, or press its class's number)")
        self.retrain_button.clicked.connect(self.on_retrain_clicked)

        model_row = QHBoxLayout()
        model_row.addWidget(QLabel("Model:"))
        model_row.addWidget(self.model_edit, 1)
        model_row.addWidget(open_model)
        model_row.addWidget(self.heatmap_toggle)
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.clear_button)
        bottom.addWidget(self.sort_button)
        bottom.addWidget(self.retrain_button)
        bottom.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addLayout(model_row)
        layout.addWidget(self.model_info)
        layout.addWidget(self.drop_area)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        layout.addLayout(progress_row)
        layout.addWidget(results, 1)
        layout.addLayout(bottom)

        runner.progress.connect(self.on_progress)
        runner.batch_predicted.connect(self.on_batch_predicted)
        runner.returned.connect(self.on_returned)
        runner.failed.connect(self.on_failed)
        runner.aborted.connect(self.on_aborted)
        runner.finished.connect(self.on_finished)
        file_runner.returned.connect(self.on_file_job_returned)
        file_runner.failed.connect(self.on_file_job_failed)
        file_runner.finished.connect(self.on_file_job_finished)
        self._update_buttons()
        self._update_heatmap_toggle()
        self._show_preview()

    # --- actions -----------------------------------------------------------------------------------
    def load_model(self, path: Path) -> None:
        """Create the predictor on the worker; it is reused for every prediction until another model loads."""
        path = Path(path)
        self.settings.remember_folder("model", path)
        self.model_edit.setText(str(path))
        self.model_info.setText("Loading the model…")
        self._load_job = self.runner.submit(jobs.load_predictor(path))
        self.heatmap_toggle.setEnabled(False)  # until the model says whether it has heatmaps; ticked stays ticked
        self.heatmap_toggle.setToolTip("Loading the model…")

    def classify(self, paths: Sequence[Path]) -> None:
        if not paths:
            return
        if self._load_job is not None:
            self._waiting.extend(paths)
            return
        if self.predictor is None:
            self.status.setText("Open a model first: export one on the Evaluate page, or use “Open model…”.")
            return
        self.settings.remember_folder("photos", Path(paths[0]))
        heatmaps = self.heatmap_toggle.isEnabled() and self.heatmap_toggle.isChecked()
        job = self.runner.submit(jobs.predict(self.predictor, list(paths), heatmaps=heatmaps))
        self._predict_jobs.add(job)
        if heatmaps:
            self._heatmap_jobs[job] = self.predictor.info.preprocessing
        self._rows_shown[job] = 0
        self.progress.setRange(0, 0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.status.setText(f"Classifying {len(paths)} item(s)…")

    def cancel(self) -> None:
        """Stop every prediction job after its current batch; rows already shown stay."""
        for job in self._predict_jobs:
            job.control.cancel()
        if self._predict_jobs:
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after the current batch…")

    def save_results(self, path: Path) -> None:
        """Write the results so far as the engine's CSV, atomically, on the file runner."""
        path = Path(path)
        job = self.file_runner.submit(jobs.save_predictions(tuple(self.results), path))
        self._saves[job] = (path, len(self.results))
        self.status.setText(f"Saving {len(self.results)} result(s) to {path}…")

    def sort_into_folders(self, folder: Path) -> None:
        """Copy the results so far into class folders under ``folder``, on the file runner."""
        folder = Path(folder)
        job = self.file_runner.submit(jobs.sort_into_folders(tuple(self.results), folder))
        self._sorts[job] = folder
        self.status.setText(f"Copying {len(self.results)} photo(s) into class folders in {folder}…")

    def _add_results(self, predictions: Sequence[Any], preprocessing: Preprocessing | None = None) -> None:
        """``preprocessing``: that of the model that made the predictions' heatmaps (None: they have none)."""
        # A pixmap (not an icon) keeps its own size instead of the table's thumbnail size.
        error_icon = self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(16, 16)
        for prediction in predictions:
            cell = QStandardItem()
            if prediction.error:
                cell.setText(prediction.error)
                cell.setData(error_icon, Qt.ItemDataRole.DecorationRole)
            else:
                cell.setData([(str(label), float(p)) for label, p in prediction.top_k], TOP_K_ROLE)
                unsure = " · unsure" if prediction.unsure else ""  # below the model's calibrated threshold
                cell.setText(f"{prediction.label} ({prediction.confidence:.1%}){unsure}")
                if prediction.unsure:
                    cell.setToolTip("Unsure: below the confidence from which this model reached its target "
                                    "accuracy on its validation photos; check this one yourself")
            self.predictions_view.add_row(str(prediction.path), [Path(prediction.path).name, cell])
        self.results.extend(predictions)
        self._result_preprocessing.extend([preprocessing] * len(predictions))
        paths = [str(p.path) for p in predictions if not p.error]  # thumbnails follow in a job per batch
        if paths:
            self._thumbnail_jobs.add(self.file_runner.submit(jobs.thumbnails(paths)))
        errors = sum(1 for p in self.results if p.error)
        unsure = sum(1 for p in self.results if p.unsure)
        self.status.setText(f"{len(self.results)} result(s)" + (f", {unsure} unsure" if unsure else "")
                            + (f", {errors} could not be read" if errors else ""))
        self._update_buttons()

    def _update_buttons(self) -> None:
        self.save_button.setEnabled(bool(self.results))
        self.clear_button.setEnabled(bool(self.results))
        self.sort_button.setEnabled(bool(self.results))
        self.retrain_button.setEnabled(self._run_dir is not None and self._corrected > 0)

    def correct(self, rows: Sequence[int], label: str) -> None:
        """Add the photos of ``rows`` to the loaded model's dataset as ``label`` (copied, on the file runner)."""
        if self._run_dir is None:
            self.status.setText("Corrections go to the model's own dataset: open the model.onnx in its run folder.")
            return
        for row in rows:
            prediction = self.results[row]
            if prediction.error is None:
                job = self.file_runner.submit(jobs.add_correction(self._run_dir, prediction.path, label,
                                                                  prediction.label))
                self._corrections[job] = row

    def correct_selected(self, index: int) -> None:
        """The selected photos are of the loaded model's class number ``index`` (a key press)."""
        labels = self.predictor.info.labels if self.predictor is not None else ()
        rows = sorted({i.row() for i in self.predictions_view.selectionModel().selectedRows()})
        if index < len(labels) and rows:
            self.correct(rows, labels[index])

    def _update_heatmap_toggle(self) -> None:
        """Enabled only for a loaded model with heatmap outputs; otherwise off, its tooltip saying why."""
        unavailable = self._heatmaps_unavailable
        self.heatmap_toggle.setEnabled(unavailable is None)
        if unavailable is not None:
            self.heatmap_toggle.setChecked(False)
        self.heatmap_toggle.setToolTip(HEATMAP_TIP if unavailable is None else f"No heatmaps: {unavailable}")

    def _show_preview(self) -> None:
        """The current row's photo, with its heatmap when the toggle is on and it has one, drawn on the file runner;
        the request it supersedes is cancelled (and its result ignored, if it was already being drawn)."""
        if self._preview_job is not None:
            self._preview_job.control.cancel()
            self._preview_job = None
        heatmaps = self.heatmap_toggle.isChecked()
        row = self.predictions_view.currentIndex().row()
        if not 0 <= row < len(self.results):
            self.preview.show_message("Select a result to see its photo"
                                      + (" and where the model looked" if heatmaps else ""))
            self.preview_caption.clear()
            return
        prediction, preprocessing = self.results[row], self._result_preprocessing[row]
        name = Path(prediction.path).name
        if prediction.error:
            self.preview.show_message(f"{name} could not be read: {prediction.error}")
            self.preview_caption.clear()
            return
        shown = heatmaps and prediction.heatmap is not None and preprocessing is not None
        if shown:
            note = evidence_note(np.asarray(prediction.heatmap), prediction.label)
            self._preview_caption = (f"{name}: {note} ({prediction.confidence:.1%})" if note else
                                     f"{name}: where the model saw “{prediction.label}” ({prediction.confidence:.1%})")
        elif heatmaps:
            self._preview_caption = f"{name}: classified without heatmaps; classify it again to see them"
        else:
            self._preview_caption = f"{name}: {prediction.label} ({prediction.confidence:.1%})"
        self._preview_job = self.file_runner.submit(
            jobs.photo_preview(prediction.path, prediction.heatmap if shown else None, preprocessing))

    # --- slots -------------------------------------------------------------------------------------
    @Slot(list)
    def on_paths_dropped(self, paths: list[Path]) -> None:
        models = [p for p in paths if p.suffix.lower() == ".onnx"]
        if models:
            self.load_model(models[0])
        self.classify([p for p in paths if p.suffix.lower() != ".onnx"])

    @Slot()
    def on_open_model_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open an ONNX model", self.settings.last_folder("model"),
                                              "ONNX models (*.onnx);;All files (*)")
        if path:
            self.load_model(Path(path))

    @Slot()
    def on_add_photos_clicked(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Photos to classify", self.settings.last_folder("photos"),
                                                PHOTO_FILTER)
        self.classify([Path(f) for f in files])

    @Slot()
    def on_add_folder_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A folder of photos to classify",
                                                  self.settings.last_folder("photos"))
        if folder:
            self.classify([Path(folder)])

    @Slot()
    def on_save_clicked(self) -> None:
        default = str(Path(self.settings.last_folder("results")) / "predictions.csv")
        path, _ = QFileDialog.getSaveFileName(self, "Save results", default, "CSV files (*.csv)")
        if path:
            self.settings.remember_folder("results", Path(path))
            self.save_results(Path(path))

    @Slot()
    def on_sort_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Copy into class folders in…",
                                                  self.settings.last_folder("sorted"))
        if folder:
            self.settings.remember_folder("sorted", Path(folder))
            self.sort_into_folders(Path(folder))

    @Slot(QPoint)
    def on_context_menu(self, position: QPoint) -> None:
        row = self.predictions_view.indexAt(position).row()
        if row < 0 or self.predictor is None or self.results[row].error is not None:
            return
        rows = sorted({i.row() for i in self.predictions_view.selectionModel().selectedRows()} | {row})
        menu = QMenu(self)
        if self._run_dir is None:
            menu.addAction("Corrections need the model's run folder: open model.onnx from its run").setEnabled(False)
        else:
            predicted = self.results[row].label
            menu.addAction(f"Right: it is {predicted}").triggered.connect(lambda: self.correct(rows, predicted))
            menu.addSeparator()
            for number, label in enumerate(self.predictor.info.labels, start=1):
                action = menu.addAction(f"It is {label}\t{number}" if number < 10 else f"It is {label}")
                action.triggered.connect(lambda _=False, chosen=label: self.correct(rows, chosen))
        menu.exec(self.predictions_view.viewport().mapToGlobal(position))

    @Slot()
    def on_retrain_clicked(self) -> None:
        if self._run_dir is not None:
            self.retrain_requested.emit(self._run_dir)

    @Slot()
    def on_cancel_clicked(self) -> None:
        self.cancel()

    @Slot()
    def on_clear_clicked(self) -> None:
        for job in self._thumbnail_jobs:  # their rows are gone
            job.control.cancel()
        self._thumbnail_jobs.clear()
        self.results.clear()
        self._result_preprocessing.clear()
        self._corrections = dict.fromkeys(self._corrections)  # still counted when done; their rows are gone
        self.predictions_view.clear_rows()
        self.status.clear()
        self._update_buttons()
        self._show_preview()

    @Slot(bool)
    def on_heatmap_toggled(self, _checked: bool) -> None:
        self._show_preview()

    @Slot(QModelIndex, QModelIndex)
    def on_current_row_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_preview()

    @Slot(object, object)
    def on_progress(self, job: Job, event: Progress) -> None:
        if job in self._predict_jobs:
            show_progress(self.progress, event)

    @Slot(object, object)
    def on_batch_predicted(self, job: Job, event: BatchPredicted) -> None:
        if job in self._predict_jobs:
            self._add_results(event.predictions, self._heatmap_jobs.get(job))
            self._rows_shown[job] += len(event.predictions)

    @Slot(object, object)
    def on_returned(self, job: Job, result: Any) -> None:
        if job is self._load_job:
            self.predictor = result.predictor
            info = self.predictor.info
            labels = ", ".join(info.labels)
            self.model_info.setText(f"{len(info.labels)} classes: {labels} · backbone {info.backbone} · "
                                    f"running on {self.predictor.provider}")
            self._heatmaps_unavailable = result.heatmaps_unavailable
            self._update_heatmap_toggle()
            model = Path(info.path)
            self._run_dir = model.parent if (model.parent / RUN_FILE).is_file() else None
            self._corrected = 0
            self._update_buttons()
            self.model_loaded.emit(Path(info.path))
        elif job in self._predict_jobs:
            self._add_results(result[self._rows_shown[job]:])  # inputs that named no image (not in a batch)

    @Slot(object, object)
    def on_file_job_returned(self, job: Job, result: Any) -> None:
        if job in self._thumbnail_jobs:
            self.predictions_view.set_thumbnails(result)
        elif job is self._preview_job:
            self.preview.show_drawn(result.image, result.problem)
            self.preview_caption.setText(self._preview_caption)
        elif job in self._saves:
            path, count = self._saves[job]
            self.status.setText(f"Saved {count} result(s) to {path}")
        elif job in self._corrections:
            row, self._corrected = self._corrections[job], self._corrected + 1
            if row is not None:
                name = self.predictions_view.items.item(row, 1)
                name.setText(f"{Path(result.photo).name} → {result.label} ✓")
                name.setToolTip(f"Copied into the dataset as {result.copy}")
            self.status.setText(f"Added {Path(result.copy).name} to the dataset as “{result.label}” · "
                                f"{self._corrected} correction(s): Retrain with corrections to use them")
            self._update_buttons()
        elif job in self._sorts:
            failed = f", {len(result.failed)} not copied (listed in it)" if result.failed else ""
            self.status.setText(f"Copied {result.copied} photo(s) into class folders in {result.folder} "
                                f"({result.unsure} unsure, in _unsure/){failed}; manifest: "
                                f"{Path(result.manifest).name}")

    @Slot(object, str, str)
    def on_file_job_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._preview_job:
            self.preview.show_drawn(None, message)
        elif job in self._saves:
            path, _count = self._saves[job]
            self.status.setText(f"Could not save the results to {path}: {message}")
        elif job in self._sorts:
            self.status.setText(f"Could not copy into {self._sorts[job]}: {message}")
        elif job in self._corrections:
            self.status.setText(f"Could not add the correction: {message}")

    @Slot(object)
    def on_file_job_finished(self, job: Job) -> None:
        if job is self._preview_job:
            self._preview_job = None
        self._thumbnail_jobs.discard(job)
        self._saves.pop(job, None)
        self._sorts.pop(job, None)
        self._corrections.pop(job, None)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._load_job:
            self.predictor = None
            self.model_info.setText(f"Could not load this model: {message}")
            self._heatmaps_unavailable = NO_MODEL_TIP
            self._update_heatmap_toggle()
        elif job in self._predict_jobs:
            self.status.setText(f"Classification failed: {message}")

    @Slot(object)
    def on_aborted(self, job: Job) -> None:
        if job in self._predict_jobs:
            self.status.setText(f"Stopped: {len(self.results)} result(s) kept; drop the photos again to classify "
                                "the rest.")

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._load_job:
            self._load_job = None
            waiting, self._waiting = self._waiting, []
            self.classify(waiting)
        self._predict_jobs.discard(job)
        self._rows_shown.pop(job, None)
        self._heatmap_jobs.pop(job, None)
        if not self._predict_jobs:
            self.progress.hide()
            self.cancel_button.hide()
