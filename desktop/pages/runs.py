"""Runs page: every run in the user's runs folder (and runs opened from elsewhere) in one sortable table; the selected
runs' validation curves overlaid and their per-class F1 side by side; open, delete (to the trash), time, combine into
an ensemble, or distill into a smaller model.

Listing reads three JSON files per run: summaries of 200 runs with 600 validation photos each took 118 to 187 ms
(2 shared cores, warm disk cache), 226 to 360 ms with their curves and F1, more than the GUI thread can spare; so the
list is read on the page's own thread and the GUI thread only fills the table.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import (
    QFile,
    QItemSelection,
    QItemSelectionModel,
    QRegularExpression,
    QSortFilterProxyModel,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QShowEvent, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop import paths
from desktop.settings import AppSettings
from desktop.widgets.distill_dialog import DistillDialog
from desktop.widgets.plots import MetricPlot
from desktop.widgets.progress import show_progress
from desktop.workers import Job, JobRunner
from engine.control import RunControl
from engine.events import EventSink, Progress
from engine.run_files import RUN_FILE
from engine.run_summary import (
    UNREADABLE,
    RunSummary,
    ValidationCurve,
    find_runs,
    per_class_f1,
    summarize_run,
    validation_curve,
)
from engine.speed import record_speed
from engine.time_format import format_duration
from engine.tradeoff_table import TradeOffRow, read_tradeoff, tradeoff_cells

COLUMNS = ("Date", "Dataset", "Backbone", "Strategy", "Kind", "Status", "Best val acc", "Test acc", "Training time",
           "Model size", "Latency", "Throughput")
DATE, DATASET = 0, 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
ADDED_RUNS_KEY = "runs/added"
# matplotlib's tab10: distinct hues that read on light and dark backgrounds.
CURVE_COLORS = tuple(QColor(c) for c in ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                                          "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"))
TRADEOFF_COLUMNS = ("Model", "Backbone", "Test acc", "Val acc", "Size", "Batch-1 latency", "Folder", "Run")
MISSING = float("-inf")  # sorts a number the run does not have below every real one


@dataclass(frozen=True, slots=True)
class RunDetails:
    """What the page shows of one run, read off the GUI thread."""

    summary: RunSummary
    curve: ValidationCurve
    f1: dict[str, float]
    tradeoff: tuple[TradeOffRow, ...] | None  # a distilled student's distillation.json


def _details(summary: RunSummary) -> RunDetails:
    return RunDetails(summary, validation_curve(summary.path), per_class_f1(summary.path),
                      read_tradeoff(summary.path))


def list_runs(folder: Path, added: Sequence[Path]) -> Job:
    """The runs under ``folder`` and the ``added`` ones elsewhere (those still there), as RunDetails."""

    def run(_on_event: EventSink, control: RunControl) -> list[RunDetails]:
        summaries = find_runs(folder, control=control)
        listed = {summary.path.resolve() for summary in summaries}
        summaries += [summarize_run(path) for path in added
                      if (path / RUN_FILE).is_file() and path.resolve() not in listed]
        details = []
        for summary in summaries:
            control.check()
            details.append(_details(summary))
        return details

    return Job(f"Listing the runs in {folder}", run)


def time_models(run_dirs: Sequence[Path]) -> Job:
    """Time each run's exported model on its validation photos (engine.speed); the runs' new RunDetails."""

    def run(on_event: EventSink, control: RunControl) -> list[RunDetails]:
        details = []
        for run_dir in run_dirs:
            record_speed(run_dir, on_event=on_event, control=control)
            details.append(_details(summarize_run(run_dir)))
        return details

    return Job(f"Measuring the speed of {len(run_dirs)} model(s)", run)


def combine_runs(members: Sequence[Path], out: Path) -> Job:
    """Combine ``members`` into a new ensemble run in ``out`` (engine.ensemble); the EnsembleResult."""

    def run(on_event: EventSink, control: RunControl) -> Any:
        from engine.ensemble import build_ensemble as build

        return build(members, out, on_event=on_event, control=control)

    return Job(f"Combining {len(members)} runs into an ensemble", run)


def _text(text: str, sort: object = None, tooltip: str = "") -> QStandardItem:
    item = QStandardItem(text)
    item.setEditable(False)
    item.setData(text if sort is None else sort, SORT_ROLE)
    if tooltip:
        item.setToolTip(tooltip)
    return item


def _number(value: float | None, text: str, tooltip: str = "") -> QStandardItem:
    item = _text(text if value is not None else "", MISSING if value is None else float(value), tooltip)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


def _percent(value: float | None) -> str:
    return f"{value:.1%}" if value is not None else ""


def _local_time(created: str | None) -> str:
    """run.json's UTC time in the user's time zone, to the minute."""
    if created is None:
        return ""
    try:
        return datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created


def _row(summary: RunSummary) -> list[QStandardItem]:
    speed = summary.speed
    speed_tip = (f"measured {_local_time(speed.measured)} on {speed.images} photos with {speed.provider}" if speed
                 else "not measured (Measure speed, for an exported model)")
    status_tip = summary.error or ""
    date = _text(_local_time(summary.created), summary.created or "", str(summary.path))
    date.setData(summary.path, PATH_ROLE)
    size = summary.model_size_bytes
    return [
        date, _text(summary.dataset or "", tooltip=summary.data_dir or ""), _text(summary.backbone or ""),
        _text(summary.strategy or ""), _text(summary.kind), _text(summary.status, tooltip=status_tip),
        _number(summary.best_val_accuracy, _percent(summary.best_val_accuracy)),
        _number(summary.test_accuracy, _percent(summary.test_accuracy)),
        _number(summary.training_seconds, format_duration(summary.training_seconds)),
        _number(size, f"{size / 1e6:.1f} MB" if size is not None else "", "model.onnx" if size else "not exported"),
        _number(speed.batch1_ms if speed else None, f"{speed.batch1_ms:.1f} ms" if speed else "", speed_tip),
        _number(speed.images_per_second if speed else None, f"{speed.images_per_second:.0f} img/s" if speed else "",
                speed_tip),
    ]


class RunsPage(QWidget):
    """``in_use(path)``: whether a job is writing into that run now (it is then not deleted)."""

    open_requested = Signal(object)  # Path of the run to show on the Evaluate page
    distill_requested = Signal(list, str, float, float)  # teacher run folders, student backbone, alpha, temperature

    def __init__(self, runner: JobRunner, work_runner: JobRunner, settings: AppSettings,
                 in_use: Callable[[Path], bool] = lambda _path: False, parent: QWidget | None = None) -> None:
        """``runner`` lists runs; ``work_runner`` times models and builds ensembles, so a list appears while they
        run."""
        super().__init__(parent)
        self.setObjectName("runsPage")
        self.runner, self.work_runner, self.settings, self.in_use = runner, work_runner, settings, in_use
        self.details: dict[Path, RunDetails] = {}
        self._list_job: Job | None = None
        self._speed_job: Job | None = None
        self._ensemble_job: tuple[Job, Path] | None = None
        self._curves: dict[Path, pg.PlotDataItem] = {}
        self._shown_curves: set[Path] = set()

        self.folder_label = QLabel(objectName="runsFolderLabel")
        self.folder_label.setWordWrap(True)  # a long path must not widen the window
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dataset_filter = QComboBox(objectName="runsDatasetFilter")
        self.dataset_filter.addItem("All datasets", None)
        self.dataset_filter.currentIndexChanged.connect(self.on_dataset_filter_changed)
        self.refresh_button = QPushButton("Refresh", objectName="refreshRunsButton")
        self.refresh_button.clicked.connect(self.refresh)
        self.add_button = QPushButton("Add run folder…", objectName="addRunButton")
        self.add_button.setToolTip("List a run folder that is not in the runs folder (remembered)")
        self.add_button.clicked.connect(self.on_add_clicked)

        self.items = QStandardItemModel(0, len(COLUMNS), self)
        self.items.setHorizontalHeaderLabels(list(COLUMNS))
        self.filtered = QSortFilterProxyModel(self)
        self.filtered.setSourceModel(self.items)
        self.filtered.setSortRole(SORT_ROLE)
        self.filtered.setFilterKeyColumn(DATASET)
        self.table = QTableView(objectName="runsTable")
        self.table.setModel(self.filtered)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(DATE, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().setVisible(False)
        self.table.selectionModel().selectionChanged.connect(self.on_selection_changed)
        self.table.doubleClicked.connect(self.on_open_clicked)

        self.open_button = QPushButton("Open on Evaluate", objectName="openRunButton")
        self.open_button.clicked.connect(self.on_open_clicked)
        self.delete_button = QPushButton("Move to trash…", objectName="deleteRunButton")
        self.delete_button.clicked.connect(self.on_delete_clicked)
        self.speed_button = QPushButton("Measure speed", objectName="measureSpeedButton")
        self.speed_button.setToolTip("Time the exported model on the run's validation photos: one photo's latency "
                                     "and a folder's throughput")
        self.speed_button.clicked.connect(self.on_measure_speed_clicked)
        self.ensemble_button = QPushButton("Combine into an ensemble…", objectName="ensembleButton")
        self.ensemble_button.setToolTip("A new run that averages the selected runs' predictions")
        self.ensemble_button.clicked.connect(self.on_ensemble_clicked)
        self.distill_button = QPushButton("Distill into a smaller model…", objectName="distillButton")
        self.distill_button.setToolTip("Train a small model that learns from the selected runs' predictions")
        self.distill_button.clicked.connect(self.on_distill_clicked)
        self.progress = QProgressBar(objectName="runsProgressBar")
        self.progress.hide()
        self.status = QLabel(objectName="runsStatusLabel")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.compare_plot = MetricPlot("Validation accuracy", "accuracy (%)", legend_offset=(-10, -10))
        self.compare_plot.setObjectName("runsComparePlot")
        self.f1_table = QTableWidget(0, 0, objectName="runsF1Table")
        self.f1_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tradeoff_table = QTableWidget(0, len(TRADEOFF_COLUMNS), objectName="distillationTable")
        self.tradeoff_table.setHorizontalHeaderLabels(TRADEOFF_COLUMNS)
        self.tradeoff_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.tradeoff_box = QGroupBox("Distillation: what the student gained and costs")
        QVBoxLayout(self.tradeoff_box).addWidget(self.tradeoff_table)
        self.tradeoff_box.hide()
        self._build_layout()

        runner.returned.connect(self.on_returned)
        runner.failed.connect(self.on_failed)
        runner.finished.connect(self.on_finished)
        work_runner.progress.connect(self.on_work_progress)
        work_runner.returned.connect(self.on_work_returned)
        work_runner.failed.connect(self.on_work_failed)
        work_runner.aborted.connect(self.on_work_aborted)
        work_runner.finished.connect(self.on_work_finished)
        self._show_folder()
        self._update_buttons()

    def _build_layout(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        top.addWidget(QLabel("Dataset:"))
        top.addWidget(self.dataset_filter)
        top.addWidget(self.refresh_button)
        top.addWidget(self.add_button)
        actions = QHBoxLayout()
        for button in (self.open_button, self.speed_button, self.ensemble_button, self.distill_button,
                       self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)
        f1_box = QGroupBox("Per-class F1 (validation)")
        QVBoxLayout(f1_box).addWidget(self.f1_table)
        compare = QSplitter(Qt.Orientation.Horizontal)
        compare.addWidget(self.compare_plot)
        compare.addWidget(f1_box)
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.table)
        body.addWidget(compare)
        body.setSizes([360, 260])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(body, 1)
        layout.addWidget(self.tradeoff_box)

    # --- the list ----------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the list again (a list being read is superseded)."""
        if self._list_job is not None:
            self._list_job.control.cancel()
        self._show_folder()
        self._list_job = self.runner.submit(list_runs(paths.runs_folder(), self.added_runs()))

    @property
    def listing(self) -> bool:
        """Whether the list is being read."""
        return self._list_job is not None

    def added_runs(self) -> list[Path]:
        added = self.settings.get(ADDED_RUNS_KEY, [])
        return [Path(p) for p in added if isinstance(p, str)] if isinstance(added, list) else []

    def add_run(self, run_dir: Path) -> None:
        """List ``run_dir`` from now on (remembered), unless it already is: it is in the runs folder."""
        run_dir = Path(run_dir)
        if run_dir.parent.resolve() != paths.runs_folder().resolve() and run_dir not in self.added_runs():
            self.settings.set(ADDED_RUNS_KEY, [*map(str, self.added_runs()), str(run_dir)])
        if self.isVisible():
            self.refresh()

    def show_runs(self, details: Sequence[RunDetails]) -> None:
        """Fill the table (the selection is kept, by run folder) and the dataset filter."""
        selected = set(self.selected_paths())
        self.details = {d.summary.path: d for d in details}
        self.table.setSortingEnabled(False)  # sorting while rows go in reorders them under the loop
        self.items.removeRows(0, self.items.rowCount())
        for d in details:
            self.items.appendRow(_row(d.summary))
        self.table.setSortingEnabled(True)
        self.table.resizeColumnsToContents()
        self._fill_dataset_filter()
        self.select_runs(selected)
        self._show_selection()

    def _replace_rows(self, details: Sequence[RunDetails]) -> None:
        """New details for runs already listed (after timing them), in place."""
        for d in details:
            self.details[d.summary.path] = d
            row = self._source_row(d.summary.path)
            if row is not None:
                for column, item in enumerate(_row(d.summary)):
                    self.items.setItem(row, column, item)
        self._show_selection()

    def _source_row(self, path: Path) -> int | None:
        for row in range(self.items.rowCount()):
            if self.items.item(row, DATE).data(PATH_ROLE) == path:
                return row
        return None

    def _fill_dataset_filter(self) -> None:
        current = self.dataset_filter.currentData()
        datasets = sorted({d.summary.dataset for d in self.details.values() if d.summary.dataset})
        self.dataset_filter.blockSignals(True)
        while self.dataset_filter.count() > 1:
            self.dataset_filter.removeItem(1)
        for name in datasets:
            self.dataset_filter.addItem(name, name)
        self.dataset_filter.setCurrentIndex(max(0, self.dataset_filter.findData(current)) if current else 0)
        self.dataset_filter.blockSignals(False)
        self._apply_filter()

    def _apply_filter(self) -> None:
        name = self.dataset_filter.currentData()
        self.filtered.setFilterRegularExpression(
            QRegularExpression(QRegularExpression.anchoredPattern(QRegularExpression.escape(name))) if name else "")

    def _show_folder(self) -> None:
        self.folder_label.setText(f"Runs in <b>{paths.runs_folder()}</b>"
                                  + (f" and {len(self.added_runs())} added" if self.added_runs() else ""))

    # --- selection ---------------------------------------------------------------------------------
    def selected_paths(self) -> list[Path]:
        """The selected runs' folders, in the table's order."""
        rows = sorted(index.row() for index in self.table.selectionModel().selectedRows(DATE))
        return [self.filtered.index(row, DATE).data(PATH_ROLE) for row in rows]

    def select_runs(self, paths: Collection[Path]) -> None:
        """Select the listed runs among ``paths`` (and no others)."""
        selection = QItemSelection()
        for row in range(self.filtered.rowCount()):
            if self.filtered.index(row, DATE).data(PATH_ROLE) in paths:
                selection.select(self.filtered.index(row, 0), self.filtered.index(row, len(COLUMNS) - 1))
        self.table.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def _selected_details(self) -> list[RunDetails]:
        return [self.details[path] for path in self.selected_paths() if path in self.details]

    def _show_selection(self) -> None:
        selected = self._selected_details()
        self._show_curves(selected)
        self._show_f1(selected)
        self._show_tradeoff(selected)
        self._update_buttons()

    def _show_curves(self, selected: Sequence[RunDetails]) -> None:
        """One curve per selected run, each created the first time its run is selected and then reused."""
        legend = self.compare_plot.legend
        wanted = {d.summary.path: d for d in selected}
        for path in self._shown_curves - set(wanted):
            self._curves[path].hide()
            legend.removeItem(self._curves[path])
        for path, d in wanted.items():
            curve = self._curves.get(path)
            if curve is None:
                color = CURVE_COLORS[len(self._curves) % len(CURVE_COLORS)]
                curve = self._curves[path] = self.compare_plot.add_curve(str(path), path.name, color)
            elif path not in self._shown_curves:
                curve.show()
                legend.addItem(curve, path.name)
            curve.setData(list(d.curve.epochs), [100 * a for a in d.curve.accuracy])
        self._shown_curves = set(wanted)

    def shown_curves(self) -> dict[Path, pg.PlotDataItem]:
        """The curves on the plot now, by run folder."""
        return {path: self._curves[path] for path in self._shown_curves}

    def _show_f1(self, selected: Sequence[RunDetails]) -> None:
        """Classes down, runs across; a run without a class leaves its cell blank."""
        labels = list(dict.fromkeys(label for d in selected for label in d.f1))
        self.f1_table.clear()
        self.f1_table.setRowCount(len(labels))
        self.f1_table.setColumnCount(len(selected))
        self.f1_table.setVerticalHeaderLabels(labels)
        self.f1_table.setHorizontalHeaderLabels([d.summary.name for d in selected])
        for column, d in enumerate(selected):
            for row, label in enumerate(labels):
                if label in d.f1:
                    item = QTableWidgetItem(f"{d.f1[label]:.3f}")
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    self.f1_table.setItem(row, column, item)

    def _show_tradeoff(self, selected: Sequence[RunDetails]) -> None:
        """The trade-off table of the one selected run that is a distilled student; hidden otherwise."""
        rows = selected[0].tradeoff if len(selected) == 1 else None
        self.tradeoff_box.setVisible(bool(rows))
        self.tradeoff_table.setRowCount(len(rows or ()))
        for row, tradeoff in enumerate(rows or ()):
            for column, text in enumerate(tradeoff_cells(tradeoff)):
                self.tradeoff_table.setItem(row, column, QTableWidgetItem(text))
        self.tradeoff_table.resizeColumnsToContents()

    def _update_buttons(self) -> None:
        selected = self._selected_details()
        readable = [d for d in selected if d.summary.status != UNREADABLE]
        completed = len(readable) == len(selected) and all(d.summary.status == "completed" for d in selected)
        self.open_button.setEnabled(len(readable) == 1 == len(selected))
        self.delete_button.setEnabled(bool(selected))
        self.speed_button.setEnabled(self._speed_job is None and bool(selected)
                                     and all(d.summary.model_size_bytes is not None for d in selected))
        self.ensemble_button.setEnabled(self._ensemble_job is None and len(selected) >= 2 and completed)
        self.distill_button.setEnabled(bool(selected) and completed)

    # --- actions -----------------------------------------------------------------------------------
    def delete_selected(self) -> None:
        """Move the selected run folders to the system trash after asking; only folders holding run.json."""
        selected = self.selected_paths()
        if not selected:
            return
        for path in selected:
            problem = (f"{path} has no {RUN_FILE}: it is not a run folder, so it was not deleted"
                       if not (path / RUN_FILE).is_file() else
                       f"{path} holds the runs folder itself, so it was not deleted"
                       if paths.runs_folder().resolve().is_relative_to(path.resolve()) else
                       f"{path} is being written now (trained here, or followed while another process trains it): "
                       "stop it first" if self.in_use(path) else None)
            if problem:
                self.status.setText(problem)
                return
        listing = "\n".join(str(path) for path in selected)
        answer = QMessageBox.question(
            self, "Move to the trash?",
            f"Move {'this run folder' if len(selected) == 1 else f'these {len(selected)} run folders'} to the "
            f"trash?\n\n{listing}\n\nYou can restore {'it' if len(selected) == 1 else 'them'} from the trash.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        if answer != QMessageBox.StandardButton.Yes:
            return
        failed = [path for path in selected if not QFile.moveToTrash(str(path))]
        trashed = [path for path in selected if path not in failed]
        kept_added = [str(p) for p in self.added_runs() if p not in trashed]
        self.settings.set(ADDED_RUNS_KEY, kept_added)
        self.show_runs([d for path, d in self.details.items() if path not in trashed])
        self.status.setText(f"Could not move {', '.join(map(str, failed))} to the trash (this system may have none "
                            "for that disk); delete it with your file manager." if failed else
                            f"Moved {len(trashed)} run folder(s) to the trash.")

    def measure_speed(self) -> None:
        selected = self.selected_paths()
        if self._speed_job is None and selected:
            self._speed_job = self.work_runner.submit(time_models(selected))
            self.status.setText(f"Timing {len(selected)} model(s) on their validation photos…")
            self._update_buttons()

    def build_ensemble(self) -> None:
        selected = self.selected_paths()
        if self._ensemble_job is None and len(selected) >= 2:
            out = paths.new_run_folder()
            self._ensemble_job = (self.work_runner.submit(combine_runs(selected, out)), out)
            self.status.setText(f"Combining {len(selected)} runs into an ensemble in {out}…")
            self._update_buttons()

    def ask_distill(self) -> DistillDialog | None:
        """Open the distillation dialog for the selected runs (the teachers); accepting it emits the request."""
        teachers = self.selected_paths()
        if not teachers:
            return None
        dialog = DistillDialog(teachers, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: self.distill_requested.emit(teachers, dialog.student(), dialog.alpha(),
                                                                    dialog.temperature()))
        dialog.open()
        return dialog

    # --- slots -------------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    @Slot()
    def on_runs_changed(self) -> None:
        """A run was trained, exported or built elsewhere: read the list again when it can be seen."""
        if self.isVisible():
            self.refresh()

    @Slot(int)
    def on_dataset_filter_changed(self, _index: int) -> None:
        self._apply_filter()
        self._show_selection()

    @Slot(QItemSelection, QItemSelection)
    def on_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._show_selection()

    @Slot()
    def on_add_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a run folder", self.settings.last_folder("run"))
        if not folder:
            return
        if not (Path(folder) / RUN_FILE).is_file():
            self.status.setText(f"{folder} has no {RUN_FILE}: pick a run folder (one that training wrote)")
            return
        self.settings.remember_folder("run", Path(folder).parent)
        self.add_run(Path(folder))
        self.refresh()

    @Slot()
    def on_open_clicked(self) -> None:
        selected = self.selected_paths()
        if len(selected) == 1:
            self.open_requested.emit(selected[0])

    @Slot()
    def on_delete_clicked(self) -> None:
        self.delete_selected()

    @Slot()
    def on_measure_speed_clicked(self) -> None:
        self.measure_speed()

    @Slot()
    def on_ensemble_clicked(self) -> None:
        self.build_ensemble()

    @Slot()
    def on_distill_clicked(self) -> None:
        self.ask_distill()

    @Slot(object, object)
    def on_returned(self, job: Job, result: list[RunDetails]) -> None:
        if job is self._list_job:
            self.show_runs(result)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._list_job:
            self.status.setText(f"Could not list the runs: {message}")

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._list_job:
            self._list_job = None

    def _owns(self, job: Job) -> bool:
        return job is self._speed_job or (self._ensemble_job is not None and job is self._ensemble_job[0])

    @Slot(object, object)
    def on_work_progress(self, job: Job, event: Progress) -> None:
        if self._owns(job):
            show_progress(self.progress, event)
            self.progress.show()

    @Slot(object, object)
    def on_work_returned(self, job: Job, result: Any) -> None:
        if job is self._speed_job:
            self._replace_rows(result)
            self.status.setText("; ".join(
                f"{d.summary.name}: {d.summary.speed.batch1_ms:.1f} ms per photo, "
                f"{d.summary.speed.images_per_second:.0f} photos/s" for d in result if d.summary.speed))
        elif self._ensemble_job is not None and job is self._ensemble_job[0]:
            self.status.setText(f"Ensemble saved in {self._ensemble_job[1]}")
            self.refresh()

    @Slot(object, str, str)
    def on_work_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._speed_job:
            self.status.setText(f"Could not measure the speed: {message}")
            self.refresh()  # the models timed before the failure have their figures
        elif self._ensemble_job is not None and job is self._ensemble_job[0]:
            self.status.setText(f"Could not build the ensemble: {message}")

    @Slot(object)
    def on_work_aborted(self, job: Job) -> None:
        if self._owns(job):
            self.status.setText("Stopped.")

    @Slot(object)
    def on_work_finished(self, job: Job) -> None:
        if job is self._speed_job:
            self._speed_job = None
        elif self._ensemble_job is not None and job is self._ensemble_job[0]:
            out = self._ensemble_job[1]
            self._ensemble_job = None
            if out.is_dir() and not any(out.iterdir()):  # failed or stopped before writing anything
                out.rmdir()
        else:
            return
        self.progress.hide()
        self._update_buttons()
