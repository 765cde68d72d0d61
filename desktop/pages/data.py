"""Data page: choose, drop or generate a dataset folder; scan it on the worker; show classes and problems; run the
dataset doctor on it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStyle,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs, paths
from desktop.jobs import STRIP_IMAGES, ScanResult
from desktop.settings import AppSettings
from desktop.thumbnails import to_pixmap
from desktop.widgets.doctor_view import DoctorView
from desktop.widgets.progress import show_progress
from desktop.workers import Job, JobRunner
from engine.dataset.report import ScanReport
from engine.events import Progress

STRIP_HEIGHT = 48
SplitOptions = Callable[[], tuple[float, float, int]]  # val_split, test_split, seed


def _read_only_table(headers: list[str], parent: QWidget) -> tuple[QTableView, QStandardItemModel]:
    view = QTableView(parent)
    model = QStandardItemModel(0, len(headers), view)
    model.setHorizontalHeaderLabels(headers)
    view.setModel(model)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.horizontalHeader().setStretchLastSection(True)
    return view, model


def _cell(value: object, *, number: bool = False) -> QStandardItem:
    item = QStandardItem(str(value))
    item.setEditable(False)
    if number:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class DataPage(QWidget):
    dataset_opened = Signal(object)  # ScanReport

    def __init__(self, runner: JobRunner, settings: AppSettings, split_options: SplitOptions,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("dataPage")
        self.runner, self.settings, self.split_options = runner, settings, split_options
        self.report: ScanReport | None = None
        self._scan_job: Job | None = None
        self._sample_job: Job | None = None

        self.path_edit = QLineEdit(objectName="datasetPathEdit")
        self.path_edit.setPlaceholderText("A folder with one sub-folder of photos per class (or train/ and val/)")
        self.path_edit.setAcceptDrops(False)  # drops open the dataset through the window instead
        self.path_edit.returnPressed.connect(self.on_path_entered)
        choose = QPushButton("Choose folder…", objectName="chooseDatasetButton")
        choose.clicked.connect(self.on_choose_clicked)
        self.sample_button = QPushButton("Use sample data", objectName="sampleDataButton")
        self.sample_button.setToolTip("Generate the built-in 4-class dataset into your user data folder and open it")
        self.sample_button.clicked.connect(self.on_sample_clicked)
        self.progress = QProgressBar(objectName="scanProgressBar")
        self.progress.hide()
        self.status = QLabel(objectName="scanStatusLabel")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.status.setText("Choose a folder with one sub-folder per class, drop one on this window, "
                            "or use the sample data.")

        self.class_table, self.classes = _read_only_table(["Class", "Train", "Validation", "Test", "Examples"], self)
        self.class_table.setObjectName("classTable")
        self.class_table.setIconSize(QSize(STRIP_IMAGES * (STRIP_HEIGHT + 2), STRIP_HEIGHT))
        self.class_table.verticalHeader().setDefaultSectionSize(STRIP_HEIGHT + 8)
        self.class_table.setColumnHidden(3, True)  # "Test" shows only for datasets with a test split
        header = self.class_table.horizontalHeader()
        for column in range(4):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.report_view, self.problems = _read_only_table(["Kind", "Detail", "File"], self)
        self.report_view.setObjectName("scanReportView")
        self.report_view.setWordWrap(False)
        self.report_view.horizontalHeader().resizeSection(0, 110)
        self.report_view.horizontalHeader().resizeSection(1, 560)
        self.doctor_view = DoctorView(runner, split_options, self)
        self.doctor_view.rescan_requested.connect(self.open_dataset)  # an action changed the folder

        top = QHBoxLayout()
        top.addWidget(QLabel("Dataset folder:"))
        top.addWidget(self.path_edit, 1)
        top.addWidget(choose)
        top.addWidget(self.sample_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self._group("Classes", self.class_table))
        splitter.addWidget(self._group("Scan report: skipped files, imbalance and leakage", self.report_view))
        splitter.addWidget(self._group("Dataset doctor: near-duplicates, likely wrong labels and off-topic photos",
                                       self.doctor_view))
        splitter.setSizes([200, 120, 430])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(splitter, 1)

        runner.progress.connect(self.on_progress)
        runner.returned.connect(self.on_returned)
        runner.failed.connect(self.on_failed)
        runner.aborted.connect(self.on_aborted)
        runner.finished.connect(self.on_finished)

    @staticmethod
    def _group(title: str, widget: QWidget) -> QGroupBox:
        box = QGroupBox(title)
        QVBoxLayout(box).addWidget(widget)
        return box

    def open_dataset(self, folder: Path) -> None:
        """Scan ``folder`` on the worker; a scan or a doctor still running is stopped first."""
        folder = Path(folder).expanduser()
        self.path_edit.setText(str(folder))
        self.settings.remember_folder("dataset", folder)
        if self._scan_job is not None:
            self._scan_job.control.cancel()
        self.doctor_view.dataset_opening()
        val_split, test_split, seed = self.split_options()
        self._scan_job = self.runner.submit(jobs.scan(folder, val_split=val_split, test_split=test_split, seed=seed))
        self._busy(f"Scanning {folder} …")

    def _busy(self, text: str) -> None:
        self.status.setText(text)
        self.progress.setRange(0, 0)
        self.progress.show()

    @Slot()
    def on_path_entered(self) -> None:
        if self.path_edit.text().strip():
            self.open_dataset(Path(self.path_edit.text().strip()))

    @Slot()
    def on_choose_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a dataset folder", self.settings.last_folder("dataset"))
        if folder:
            self.open_dataset(Path(folder))

    @Slot()
    def on_sample_clicked(self) -> None:
        out = paths.new_sample_data_folder()
        self.sample_button.setEnabled(False)
        self._sample_job = self.runner.submit(jobs.sample_data(out))
        self._busy(f"Generating the sample dataset in {out} …")

    @Slot(object, object)
    def on_progress(self, job: Job, event: Progress) -> None:
        if job is not self._scan_job and job is not self._sample_job:
            return  # a superseded scan's last events
        show_progress(self.progress, event)
        self.progress.show()

    @Slot(object, object)
    def on_returned(self, job: Job, result: object) -> None:
        if job is self._sample_job:
            self.open_dataset(Path(result))  # type: ignore[arg-type]
        elif job is self._scan_job and isinstance(result, ScanResult):
            self.show_report(result)
            self.dataset_opened.emit(result.report)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._scan_job or job is self._sample_job:
            self.status.setText(f"Could not open this dataset: {message}")
            self.doctor_view.set_dataset(None)
            self.classes.removeRows(0, self.classes.rowCount())
            self.problems.removeRows(0, self.problems.rowCount())

    @Slot(object)
    def on_aborted(self, job: Job) -> None:
        if job is self._scan_job and not self.runner.busy:
            self.status.setText("Scan stopped.")

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._sample_job:
            self.sample_button.setEnabled(True)
        if not self.runner.busy:
            self.progress.hide()

    def show_report(self, result: ScanResult) -> None:
        report = self.report = result.report
        self.doctor_view.set_dataset(report)
        counts = report.counts
        totals = {split: sum(counts[split].values()) for split in counts}
        layout = "split folders as given" if report.layout == "pre-split" else "one folder per class"
        test = f", {totals['test']} test" if totals["test"] else ""
        skipped = f" · {len(report.skipped)} file(s) skipped" if report.skipped else ""
        excluded = f" · {len(report.excluded)} excluded" if report.excluded else ""
        self.status.setText(f"<b>{report.root}</b><br>{len(report.classes)} classes · {len(report.items)} usable "
                            f"images ({totals['train']} train, {totals['val']} validation{test}) · {layout}{skipped}"
                            f"{excluded}")
        self.classes.removeRows(0, self.classes.rowCount())
        for name in report.classes:
            strip = QStandardItem()
            strip.setEditable(False)
            if (array := result.strips.get(name)) is not None:
                strip.setData(to_pixmap(array), Qt.ItemDataRole.DecorationRole)
            self.classes.appendRow([_cell(name), *(_cell(counts[s][name], number=True) for s in ("train", "val",
                                                                                                  "test")), strip])
        self.class_table.setColumnHidden(3, not totals["test"])
        # The header's ResizeToContents mode kept the empty table's width here (Qt 6.11): measure once filled.
        self.class_table.resizeColumnToContents(0)
        self._fill_problems(report)

    def _fill_problems(self, report: ScanReport) -> None:
        self.problems.removeRows(0, self.problems.rowCount())
        style = self.style()
        warning = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning)
        skipped = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical)
        info = style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxInformation)

        def add(icon: object, kind: str, detail: str, path: str = "") -> None:
            first = _cell(kind)
            first.setIcon(icon)  # type: ignore[arg-type]
            detail_cell = _cell(detail)
            detail_cell.setToolTip(detail)
            self.problems.appendRow([first, detail_cell, _cell(path)])

        for message in report.warnings:
            add(warning, "warning", message)
        for a, b in report.leakage:
            add(warning, "leakage", f"identical to {b}", a)
        for file in report.skipped:
            add(skipped, "skipped", file.reason, file.path)
        for file in report.excluded:  # by the dataset's .transfer-studio/excluded.json
            add(info, "excluded", file.reason, file.path)
        if report.ignored_count:
            add(info, "ignored", f"{report.ignored_count} file(s) that are not images")
        if not self.problems.rowCount():
            add(info, "ok", f"all {len(report.items)} images are usable; no imbalance or leakage found")
