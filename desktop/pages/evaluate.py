"""Evaluate page: a run's metrics, confusion matrix and most confident mistakes; ONNX export.

A selected mistake is shown with the heatmap of the class the model predicted, when the run has an exported model
with heatmaps: the model loads once (per exported model) on the thumbnail thread, which then classifies the one
photo and draws the overlay, so nothing waits behind an export and the GUI thread only shows the result.
"""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPoint, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs
from desktop.jobs import RunSnapshot
from desktop.settings import AppSettings
from desktop.widgets.calibration_view import CalibrationView
from desktop.widgets.confusion_matrix import ConfusionMatrixView
from desktop.widgets.image_table import ImageTable
from desktop.widgets.photo_preview import beside_preview
from desktop.widgets.progress import show_progress
from desktop.workers import Job, JobRunner
from engine.evaluation.metrics import mistakes
from engine.events import Progress
from engine.training.run_folder import BEST_FILE, MODEL_FILE

MAX_THUMBNAILS = 500
NO_MODEL_MESSAGE = "Export the model to see what it looked at in the selected photo"
SPLIT_NAMES = {"validation": "Validation", "test": "Test"}


def _number(value: float | int | None, *, percent: bool = False) -> QStandardItem:
    text = "" if value is None else f"{value:.1%}" if percent else f"{value:.3f}" if isinstance(value, float) \
        else str(value)
    item = QStandardItem(text)
    item.setEditable(False)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _name(text: str, *, bold: bool = False) -> QStandardItem:
    item = QStandardItem(text)
    item.setEditable(False)
    if bold:
        font = QFont()
        font.setBold(True)
        item.setFont(font)
    return item


def _parity_text(parity: dict[str, Any] | None) -> str:
    if not parity:
        return "not checked against PyTorch"
    return (f"matches PyTorch: max |Δ| {parity.get('max_abs_diff', float('nan')):.1e}, top-1 agreement "
            f"{parity.get('top1_agreement', float('nan')):.1%} on {parity.get('images', '?')} images")


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


class EvaluatePage(QWidget):
    run_opened = Signal(object)  # RunSnapshot
    model_exported = Signal(object)  # Path of the .onnx file

    def __init__(self, runner: JobRunner, thumbnail_runner: JobRunner, settings: AppSettings,
                 parent: QWidget | None = None) -> None:
        """``thumbnail_runner``: thumbnails and the mistakes' heatmaps are made on their own thread, so they appear
        while an export runs."""
        super().__init__(parent)
        self.setObjectName("evaluatePage")
        self.runner, self.thumbnail_runner, self.settings = runner, thumbnail_runner, settings
        self.snapshot: RunSnapshot | None = None
        self._open_job: Job | None = None
        self._export_job: Job | None = None
        self._export_target: tuple[Path, tuple[int, int] | None] | None = None  # the .onnx and its stat before
        self._export_warnings: list[str] = []
        self._thumbnail_job: Job | None = None
        self._heatmap_model_path: Path | None = None  # the exported model loaded (or loading) for the heatmaps
        self._heatmap_model: jobs.LoadedModel | None = None
        self._heatmap_model_problem: str | None = None  # why it could not be loaded
        self._heatmap_load_job: Job | None = None
        self._mistake_job: Job | None = None  # the selected mistake's heatmap, being made
        self._relabels: dict[Job, tuple[int | None, str]] = {}  # mistake moved -> (row: None once it is gone, class)

        self.run_label = QLabel("No run yet: train a model, or open a run folder (File → Open run…).",
                                objectName="evaluateRunLabel")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.split_combo = QComboBox(objectName="splitCombo")
        self.split_combo.currentIndexChanged.connect(self.on_split_changed)
        self.export_button = QPushButton("Export ONNX model", objectName="exportButton")
        self.export_button.setToolTip("Write model.onnx into the run folder and check it against PyTorch; "
                                      "the Predict page then uses it (Ctrl+E)")
        self.export_button.setShortcut("Ctrl+E")
        self.export_button.clicked.connect(self.on_export_clicked)
        self.cancel_export_button = QPushButton("Cancel export", objectName="cancelExportButton")
        self.cancel_export_button.setToolTip("Stop the export after its current step; nothing half-written is kept")
        self.cancel_export_button.clicked.connect(self.on_cancel_export_clicked)
        self.cancel_export_button.hide()
        self.quantize_check = QCheckBox("also int8", objectName="quantizeCheck")
        self.quantize_check.setToolTip("Also write a smaller int8 model (model.int8.onnx), checked the same way")
        self.folder_button = QPushButton("Show run folder", objectName="showRunFolderButton")
        self.folder_button.clicked.connect(self.on_folder_clicked)
        self.export_progress = QProgressBar(objectName="exportProgressBar")
        self.export_progress.hide()
        self.export_status = QLabel(objectName="exportStatusLabel")
        self.export_status.setWordWrap(True)
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel(objectName="summaryLabel")
        self.summary.setWordWrap(True)
        self.verdict_icon = QLabel(objectName="verdictIcon")
        self.verdict_icon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(32))
        self.verdict = QLabel(objectName="verdictLabel")
        self.verdict.setWordWrap(True)
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.verdict_box = QFrame(objectName="verdictBox")
        verdict_row = QHBoxLayout(self.verdict_box)
        verdict_row.addWidget(self.verdict_icon, 0, Qt.AlignmentFlag.AlignTop)
        verdict_row.addWidget(self.verdict, 1)
        self.verdict_box.hide()

        self.metrics_table = QTableView(objectName="metricsTable")
        self.metrics = QStandardItemModel(0, 5, self.metrics_table)
        self.metrics.setHorizontalHeaderLabels(["", "Precision", "Recall", "F1", "Support"])
        self.metrics_table.setModel(self.metrics)
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.metrics_table.verticalHeader().setVisible(False)
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.metrics_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.confusion_view = ConfusionMatrixView()
        self.confusion_view.setObjectName("confusionMatrixView")
        self.mistakes_view = ImageTable(["True", "Predicted", "Confidence", "File"])
        self.mistakes_view.setObjectName("mistakesView")
        self.mistakes_view.setToolTip("Double-click to open the photo")
        self.mistakes_view.selectionModel().currentRowChanged.connect(self.on_current_mistake_changed)
        self.mistakes_view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.mistakes_view.customContextMenuRequested.connect(self.on_mistake_menu)
        mistakes_split, self.mistake_preview, self.mistake_caption = beside_preview(self.mistakes_view,
                                                                                   "mistakeHeatmapPreview")
        mistakes_split.setObjectName("mistakesSplitter")
        self.mistakes_box = QGroupBox("Misclassified images, most confident first")
        self.calibration_view = CalibrationView()

        header = QHBoxLayout()
        header.addWidget(self.run_label, 1)
        header.addWidget(QLabel("Split:"))
        header.addWidget(self.split_combo)
        header.addWidget(self.folder_button)
        header.addWidget(self.export_button)
        header.addWidget(self.cancel_export_button)
        header.addWidget(self.quantize_check)
        top = QSplitter(Qt.Orientation.Horizontal)
        top.addWidget(self._group("Metrics", self.metrics_table))
        top.addWidget(self._group("Confusion matrix (rows: true class, columns: predicted)", self.confusion_view))
        QVBoxLayout(self.mistakes_box).addWidget(mistakes_split)
        bottom = QSplitter(Qt.Orientation.Horizontal)
        bottom.addWidget(self.mistakes_box)
        bottom.addWidget(self._group("Can its confidence be trusted?", self.calibration_view))
        bottom.setSizes([500, 500])  # room for the mistakes' heatmap beside their table
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(top)
        body.addWidget(bottom)
        body.setSizes([320, 260])
        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.export_progress)
        layout.addWidget(self.export_status)
        layout.addWidget(self.summary)
        layout.addWidget(self.verdict_box)
        layout.addWidget(body, 1)

        runner.progress.connect(self.on_progress)
        runner.returned.connect(self.on_returned)
        runner.warning.connect(self.on_warning)
        runner.failed.connect(self.on_failed)
        runner.aborted.connect(self.on_aborted)
        runner.finished.connect(self.on_finished)
        thumbnail_runner.returned.connect(self.on_thumbnail_runner_returned)
        thumbnail_runner.failed.connect(self.on_thumbnail_runner_failed)
        thumbnail_runner.finished.connect(self.on_thumbnail_runner_finished)
        self._update_buttons()
        self._show_mistake_heatmap()

    @staticmethod
    def _group(title: str, widget: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        QVBoxLayout(box).addWidget(widget)
        return box

    def open_run(self, run_dir: Path) -> None:
        self._open_job = self.runner.submit(jobs.read_run(Path(run_dir)))

    def export(self, out: Path | None = None) -> None:
        """Export the shown run (to ``out``, default ``model.onnx`` in the run folder) and check parity."""
        if self.snapshot is None or self._export_job is not None:
            return
        quantize = "int8" if self.quantize_check.isChecked() else None
        self._export_warnings = []
        self._export_job = self.runner.submit(jobs.export(self.snapshot.run_dir, out, quantize=quantize))
        self.export_status.setText("Exporting to ONNX and checking it against the PyTorch model…")
        self.export_progress.setRange(0, 0)
        self.export_progress.show()
        target = out or self.snapshot.run_dir / MODEL_FILE
        self._export_target = (target, _signature(target))
        self.cancel_export_button.setEnabled(True)
        self.cancel_export_button.show()
        self._update_buttons()

    def _update_buttons(self) -> None:
        # An ensemble has no weights of its own: its members' are exported into one graph.
        has_weights = self.snapshot is not None and (self.snapshot.info.kind == "ensemble"
                                                     or (self.snapshot.run_dir / BEST_FILE).is_file())
        self.export_button.setEnabled(has_weights and self._export_job is None)
        self.folder_button.setEnabled(self.snapshot is not None)

    def show_snapshot(self, snapshot: RunSnapshot) -> None:
        self.snapshot = snapshot
        self._forget_heatmap_model()
        info = snapshot.info
        best_text = ""
        if info.kind == "ensemble":
            best_text = f", ensemble of {len(info.members)} runs"
        elif info.best_val_accuracy is not None and info.best_val_accuracy >= 0:  # -1: stopped before an epoch
            best_text = f", best epoch {info.best_epoch} ({info.best_val_accuracy:.1%})"
        self.run_label.setText(f"<b>{snapshot.run_dir.name}</b> · {info.backbone} · {info.status}{best_text}"
                               f"<br>{snapshot.run_dir}")
        self.export_status.setText(f"Exported model: {snapshot.model_path}" if snapshot.model_path else "")
        self.split_combo.blockSignals(True)
        self.split_combo.clear()
        for key, name in SPLIT_NAMES.items():
            if snapshot.evaluation and key in snapshot.evaluation:
                self.split_combo.addItem(name, key)
        self.split_combo.blockSignals(False)
        self._show_split()
        self.calibration_view.show_calibration((snapshot.evaluation or {}).get("calibration"))
        self._update_buttons()

    def _show_split(self) -> None:
        key = self.split_combo.currentData()
        evaluation = self.snapshot.evaluation if self.snapshot else None
        self.metrics.removeRows(0, self.metrics.rowCount())
        self.mistakes_view.clear_rows()
        self._relabels = {job: (None, label) for job, (_row, label) in self._relabels.items()}
        if self._thumbnail_job is not None:  # the rows it decodes for are gone
            self._thumbnail_job.control.cancel()
            self._thumbnail_job = None
        if not evaluation or key is None:
            self._show_verdict(None)
            self.confusion_view.set_matrix([], [])
            self.summary.setText("This run has no evaluation: it was stopped before it finished. Resume it on the "
                                 "Train page." if self.snapshot else "")
            return
        split = evaluation[key]
        self._show_verdict(split.get("verdict"))
        self._fill_metrics(split)
        self.confusion_view.set_matrix(evaluation["labels"], split["confusion_matrix"])
        top_k = ", ".join(f"top-{k} {v:.1%}" for k, v in split.get("top_k_accuracy", {}).items() if k != "1")
        correct = round(split["accuracy"] * split["count"])
        self.summary.setText(f"<b>{SPLIT_NAMES[key]}: {split['accuracy']:.1%} accuracy</b> ({correct} of "
                             f"{split['count']} images) · balanced accuracy {split['balanced_accuracy']:.1%}"
                             + (f" · {top_k}" if top_k else ""))
        wrong = mistakes(split)
        name = SPLIT_NAMES[key].lower()
        self.mistakes_box.setTitle(f"Misclassified {name} images, most confident first ({len(wrong)})" if wrong
                                   else f"Misclassified {name} images: none, every image was classified correctly")
        for mistake in wrong:
            self.mistakes_view.add_row(mistake["path"], [mistake["true"], mistake["predicted"],
                                                         _number(mistake["confidence"], percent=True),
                                                         Path(mistake["path"]).name])
        if wrong:
            self._thumbnail_job = self.thumbnail_runner.submit(
                jobs.thumbnails([m["path"] for m in wrong[:MAX_THUMBNAILS]]))
        self._show_mistake_heatmap()

    def _forget_heatmap_model(self) -> None:
        """Another run, or a new export: the model is loaded again when a mistake is next selected."""
        if self._heatmap_load_job is not None:
            self._heatmap_load_job.control.cancel()
        self._heatmap_model_path = self._heatmap_model = self._heatmap_model_problem = self._heatmap_load_job = None

    def _show_mistake_heatmap(self) -> None:
        """The selected mistake with the heatmap of its predicted class. The first selection loads the exported
        model (the load's return comes back here); the request this one supersedes is cancelled."""
        if self._mistake_job is not None:
            self._mistake_job.control.cancel()
            self._mistake_job = None
        self.mistake_caption.clear()
        row = self.mistakes_view.currentIndex().row()
        model_path = self.snapshot.model_path if self.snapshot is not None else None
        if row < 0:
            self.mistake_preview.show_message("Select a misclassified photo to see what the model looked at"
                                              if model_path is not None else NO_MODEL_MESSAGE)
            return
        if model_path is None:
            self.mistake_preview.show_message(NO_MODEL_MESSAGE)
            return
        if self._heatmap_model_path != model_path:
            self._forget_heatmap_model()
            self._heatmap_model_path = model_path
            self._heatmap_load_job = self.thumbnail_runner.submit(jobs.load_predictor(model_path))
        if self._heatmap_model_problem is not None:
            self.mistake_preview.show_message(f"Could not load {model_path.name}: {self._heatmap_model_problem}")
        elif self._heatmap_model is None:
            self.mistake_preview.show_message(f"Loading {model_path.name}…")
        elif self._heatmap_model.heatmaps_unavailable is not None:
            self.mistake_preview.show_message(f"No heatmaps: {self._heatmap_model.heatmaps_unavailable}")
        else:
            path = self.mistakes_view.path_at(row)
            self._mistake_job = self.thumbnail_runner.submit(jobs.mistake_heatmap(self._heatmap_model.predictor,
                                                                                  path))

    def _show_verdict(self, verdict: dict[str, Any] | None) -> None:
        """Plain when the model is good; a framed warning with what to try otherwise; hidden for older runs."""
        self.verdict_box.setVisible(verdict is not None)
        if verdict is None:
            return
        warn = verdict["level"] != "good"
        self.verdict_icon.setVisible(warn)
        self.verdict_box.setFrameShape(QFrame.Shape.StyledPanel if warn else QFrame.Shape.NoFrame)
        text = html.escape(verdict["sentence"])
        if warn:
            tries = "".join(f"<li>{html.escape(suggestion)}</li>" for suggestion in verdict["suggestions"])
            text = (f"<b>Warning: the model is {html.escape(verdict['level'])} on this split.</b> {text}"
                    f"<br>Try:<ul>{tries}</ul>")
        self.verdict.setText(text)

    def _fill_metrics(self, split: dict[str, Any]) -> None:
        for row in split["per_class"]:
            self.metrics.appendRow([_name(row["label"]), _number(row["precision"]), _number(row["recall"]),
                                    _number(row["f1"]), _number(row["support"])])
        macro = split["macro"]
        self.metrics.appendRow([_name("accuracy", bold=True), _number(None), _number(None),
                                _number(split["accuracy"]), _number(split["count"])])
        self.metrics.appendRow([_name("macro average", bold=True), _number(macro["precision"]),
                                _number(macro["recall"]), _number(macro["f1"]), _number(split["count"])])
        self.metrics.appendRow([_name("balanced accuracy", bold=True), _number(None),
                                _number(split["balanced_accuracy"]), _number(None), _number(split["count"])])
        # The header's ResizeToContents mode kept the empty table's 26 px here (Qt 6.11): measure once filled.
        self.metrics_table.resizeColumnToContents(0)

    @Slot(int)
    def on_split_changed(self, _index: int) -> None:
        self._show_split()

    @Slot(QModelIndex, QModelIndex)
    def on_current_mistake_changed(self, _current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_mistake_heatmap()

    @Slot()
    def on_export_clicked(self) -> None:
        self.export()

    @Slot()
    def on_cancel_export_clicked(self) -> None:
        if self._export_job is not None:
            self._export_job.control.cancel()
            self.cancel_export_button.setEnabled(False)
            self.export_status.setText("Cancelling the export after its current step…")

    @Slot()
    def on_folder_clicked(self) -> None:
        if self.snapshot is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.snapshot.run_dir)))

    @Slot(object, object)
    def on_progress(self, job: Job, event: Progress) -> None:
        if job is self._export_job:
            show_progress(self.export_progress, event)

    @Slot(object, object)
    def on_returned(self, job: Job, result: Any) -> None:
        if job is self._open_job:
            self.show_snapshot(result)
            self.run_opened.emit(result)
        elif job is self._export_job:
            self._show_export(result)

    def relabel(self, row: int, label: str) -> None:
        """The mistake in ``row`` is really ``label``: move the photo to that class folder in the dataset, through
        the dataset's journal (Undo on the Data page's doctor view); the next run trains on it so."""
        if self.snapshot is None:
            return
        job = self.thumbnail_runner.submit(jobs.move_to_class(Path(self.snapshot.info.data_dir),
                                                              [self.mistakes_view.path_at(row)], label))
        self._relabels[job] = (row, label)

    @Slot(QPoint)
    def on_mistake_menu(self, position: QPoint) -> None:
        row = self.mistakes_view.indexAt(position).row()
        if row < 0 or self.snapshot is None:
            return
        menu = QMenu(self)
        for label in self.snapshot.info.labels:
            menu.addAction(f"Its class is really {label}: move it there").triggered.connect(
                lambda _=False, chosen=label: self.relabel(row, chosen))
        menu.exec(self.mistakes_view.viewport().mapToGlobal(position))

    @Slot(object, object)
    def on_thumbnail_runner_returned(self, job: Job, result: Any) -> None:
        if job in self._relabels:
            row, label = self._relabels.pop(job)
            moved = result[0]
            if row is not None:
                self.mistakes_view.items.item(row, 1).setText(f"{label} (moved)")
            self.export_status.setText(f"Moved {moved.source} to {moved.destination} in the dataset; the next run "
                                       "trains on it as " + label + " (undo: the dataset doctor's Undo)")
        elif job is self._thumbnail_job:
            self.mistakes_view.set_thumbnails(result)
        elif job is self._heatmap_load_job:
            self._heatmap_model = result
            self._show_mistake_heatmap()
        elif job is self._mistake_job:
            self.mistake_preview.show_drawn(result.image, result.problem)
            prediction = result.prediction
            if prediction is not None and prediction.label is not None:
                self.mistake_caption.setText(f"Where the model saw “{prediction.label}” ({prediction.confidence:.1%})")

    @Slot(object, str, str)
    def on_thumbnail_runner_failed(self, job: Job, message: str, _details: str) -> None:
        if job in self._relabels:
            self._relabels.pop(job)
            self.export_status.setText(f"Could not move the photo: {message}")
        elif job is self._heatmap_load_job:
            self._heatmap_model_problem = message
            self._show_mistake_heatmap()
        elif job is self._mistake_job:
            self.mistake_preview.show_drawn(None, message)

    @Slot(object)
    def on_thumbnail_runner_finished(self, job: Job) -> None:
        if job is self._heatmap_load_job:
            self._heatmap_load_job = None
        elif job is self._mistake_job:
            self._mistake_job = None

    def _show_export(self, result: Any) -> None:
        lines = [f"Saved <b>{result.path}</b> ({result.size_bytes / 1e6:.1f} MB, {result.seconds:.1f} s) · "
                 f"{_parity_text(result.parity)}. The Predict page now uses it."]
        if result.quantized_path:
            lines.append(f"int8 model: {result.quantized_path} · {_parity_text(result.quantized_parity)}")
        lines += [f"Warning: {html.escape(message)}" for message in self._export_warnings]
        self.export_status.setText("<br>".join(lines))
        path = Path(result.path)
        if self.snapshot is not None and path.parent == self.snapshot.run_dir:
            self.snapshot = replace(self.snapshot, model_path=path)
            self._forget_heatmap_model()  # the file may have been replaced: load the new one
            self._show_mistake_heatmap()
        self.model_exported.emit(path)

    @Slot(object, str)
    def on_warning(self, job: Job, message: str) -> None:
        """The export's warnings (an int8 model that failed its checks) stay under its result."""
        if job is self._export_job:
            self._export_warnings.append(message)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._export_job:
            self.export_status.setText(f"Export failed: {message}")
        elif job is self._open_job:
            self.run_label.setText(f"Could not open the run: {message}")

    @Slot(object)
    def on_aborted(self, job: Job) -> None:
        if job is self._export_job and self._export_target is not None:
            target, before = self._export_target
            self.export_status.setText(
                f"Export cancelled while quantizing: {target.name} was saved and checked, the int8 model was not."
                if _signature(target) != before else
                f"Export cancelled: nothing was written (an earlier {target.name}, if any, is unchanged).")

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._export_job:
            self._export_job = None
            self.export_progress.hide()
            self.cancel_export_button.hide()
            self._update_buttons()
