"""The main window: five pages, menus and shortcuts, status bar, drops, settings, and the close protocol."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

from PySide6 import __version__ as pyside_version
from PySide6.QtCore import QTimer, QUrl, Slot, qVersion
from PySide6.QtGui import (
    QAction,
    QDesktopServices,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QFileDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs, paths
from desktop.jobs import RunSnapshot, TrainingOptions
from desktop.pages.data import DataPage
from desktop.pages.evaluate import EvaluatePage
from desktop.pages.predict import PredictPage
from desktop.pages.runs import RunsPage
from desktop.pages.train import TrainPage
from desktop.settings import AppSettings
from desktop.widgets.notice import NoticeBar
from desktop.worker_window import WorkerWindow
from desktop.workers import Job, JobRunner
from engine import __version__
from engine.dataset.report import ScanReport
from engine.errors import BadInputError
from engine.training.run_folder import RUN_FILE, read_run


def _package_version(*names: str) -> str:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"


class MainWindow(WorkerWindow):
    """Constructible without a running event loop, so tests can drive it by objectName."""

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle("Transfer Studio")
        self.settings = settings or AppSettings()
        self.runners = {name: JobRunner(name, self) for name in ("data", "training", "evaluate", "predict",
                                                                  "evaluateThumbnails", "predictFiles", "runs",
                                                                  "runsWork")}
        self.device = ""
        self._options_job: Job | None = None

        self.train_page = TrainPage(self.runners["training"], self.settings)
        self.data_page = DataPage(self.runners["data"], self.settings, self.train_page.options_form.split_options)
        self.evaluate_page = EvaluatePage(self.runners["evaluate"], self.runners["evaluateThumbnails"], self.settings)
        self.predict_page = PredictPage(self.runners["predict"], self.runners["predictFiles"], self.settings)
        self.runs_page = RunsPage(self.runners["runs"], self.runners["runsWork"], self.settings,
                                  lambda run_dir: (self.train_page.training or self.train_page.following)
                                  and self.train_page.run_dir == run_dir)
        self.tabs = QTabWidget(objectName="mainTabs")
        self.tabs.setDocumentMode(True)
        for page, title in ((self.data_page, "Data"), (self.train_page, "Train"),
                            (self.evaluate_page, "Evaluate"), (self.predict_page, "Predict"),
                            (self.runs_page, "Runs")):
            self.tabs.addTab(page, title)
        self.notice = NoticeBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 0)
        layout.addWidget(self.notice)
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)

        self.activity_label = QLabel("Ready", objectName="activityLabel")
        self.device_label = QLabel("Device: detecting…", objectName="deviceLabel")
        self.statusBar().addWidget(self.activity_label, 1)
        self.statusBar().addPermanentWidget(self.device_label)
        self._build_menus()
        self._connect()
        self._restore_settings()

    # --- construction ------------------------------------------------------------------------------
    def _action(self, menu: QMenu, text: str, slot: object, shortcut: QKeySequence | str | None = None) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        return action

    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self._action(file_menu, "Open &dataset…", self.on_open_dataset, "Ctrl+O")
        self._action(file_menu, "Open &run…", self.on_open_run, "Ctrl+Shift+O")
        self._action(file_menu, "Open &model…", self.on_open_model, "Ctrl+M")
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.setObjectName("recentMenu")
        self.recent_menu.aboutToShow.connect(self.on_recent_menu_about_to_show)
        file_menu.addSeparator()
        self._action(file_menu, "&Export model as…", self.on_export_as, "Ctrl+Shift+E")
        self._action(file_menu, "&Save results…", self.predict_page.on_save_clicked, QKeySequence.StandardKey.Save)
        file_menu.addSeparator()
        self._action(file_menu, "&Quit", self.close, "Ctrl+Q")  # StandardKey.Quit is empty on Windows and bare X11
        view_menu = self.menuBar().addMenu("&View")
        for index in range(self.tabs.count()):
            self._action(view_menu, self.tabs.tabText(index), lambda _=False, i=index: self.tabs.setCurrentIndex(i),
                         f"Ctrl+{index + 1}")
        help_menu = self.menuBar().addMenu("&Help")
        self._action(help_menu, "Show &log folder", self.on_show_log_folder)
        self._action(help_menu, "&About Transfer Studio", self.on_about)

    def _connect(self) -> None:
        self.data_page.dataset_opened.connect(self.on_dataset_opened)
        self.train_page.run_ended.connect(self.on_run_ended)
        self.evaluate_page.run_opened.connect(self.on_run_opened)
        self.evaluate_page.model_exported.connect(self.on_model_exported)
        self.predict_page.model_loaded.connect(self.on_model_loaded)
        self.predict_page.retrain_requested.connect(self.on_retrain_requested)
        self.runs_page.open_requested.connect(self.open_run)
        self.runs_page.distill_requested.connect(self.on_distill_requested)
        self.runners["training"].finished.connect(self.runs_page.on_runs_changed)
        self.evaluate_page.model_exported.connect(self.runs_page.on_runs_changed)
        for runner in self.runners.values():
            runner.started.connect(self.on_activity_changed)
            runner.finished.connect(self.on_activity_changed)
            runner.failed.connect(self.on_job_failed)
        self.runners["training"].returned.connect(self.on_training_runner_returned)

    def _restore_settings(self) -> None:
        geometry = self.settings.geometry("geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 820)
        state = self.settings.geometry("state")
        if state is not None:
            self.restoreState(state)
        tab = self.settings.get("window/tab", 0)
        self.tabs.setCurrentIndex(tab if isinstance(tab, int) else 0)

    def runner_list(self) -> list[JobRunner]:
        return list(self.runners.values())

    def confirm_close(self) -> bool:
        """While training, ask first: the run stops but stays resumable."""
        if not self.train_page.training:
            return True
        answer = QMessageBox.question(
            self, "Stop training?",
            "Training is still running. Stop it and quit?\n\nThe run is saved and can be resumed later "
            "(File → Open run…, then “Resume run” on the Train page).",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def show_stopping(self, message: str) -> None:
        self.activity_label.setText(message)

    def save_state(self) -> None:
        self.settings.set_geometry("geometry", self.saveGeometry())
        self.settings.set_geometry("state", self.saveState())
        self.settings.set("window/tab", self.tabs.currentIndex())
        self.settings.set("train/options", self.train_page.options_form.options())
        self.settings.qsettings.sync()

    # --- opening things ----------------------------------------------------------------------------
    def open_dataset(self, folder: Path) -> None:
        self.tabs.setCurrentWidget(self.data_page)
        self.data_page.open_dataset(folder)

    def open_run(self, run_dir: Path) -> None:
        self.tabs.setCurrentWidget(self.evaluate_page)
        self.evaluate_page.open_run(run_dir)

    def open_model(self, path: Path) -> None:
        self.tabs.setCurrentWidget(self.predict_page)
        self.predict_page.load_model(path)

    def open_paths(self, dropped: list[Path]) -> None:
        """Route dropped files: an .onnx loads as the model; on the Predict page everything else is classified;
        elsewhere a run folder opens, a single folder becomes the dataset, and photos go to the Predict page."""
        models = [p for p in dropped if p.suffix.lower() == ".onnx"]
        rest = [p for p in dropped if p.suffix.lower() != ".onnx"]
        if models:
            self.open_model(models[0])
        if not rest:
            return
        first = rest[0]
        if models or self.tabs.currentWidget() is self.predict_page:
            self.predict_page.classify(rest)
        elif first.is_dir() and (first / RUN_FILE).is_file():
            self.open_run(first)
        elif first.is_dir() and len(rest) == 1:
            self.open_dataset(first)
        else:
            self.tabs.setCurrentWidget(self.predict_page)
            self.predict_page.classify(rest)

    # --- events ------------------------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._options_job is None:
            # After the first paint: this job imports torch on the training thread.
            QTimer.singleShot(0, self.on_request_training_options)

    # --- slots -------------------------------------------------------------------------------------
    @Slot()
    def on_request_training_options(self) -> None:
        if self._options_job is None and not self._stopping:
            self._options_job = self.runners["training"].submit(jobs.training_options())

    @Slot(object, object)
    def on_training_runner_returned(self, job: Job, result: object) -> None:
        if job is self._options_job and isinstance(result, TrainingOptions):
            self.device = result.device
            self.device_label.setText(f"Device: {result.device}")
            self.train_page.options_form.apply_training_options(result)

    @Slot(object)
    def on_activity_changed(self, _job: Job) -> None:
        running = [r.current.description for r in self.runners.values() if r.current is not None]
        if not self._stopping:
            self.activity_label.setText(" · ".join(running) + "…" if running else "Ready")

    @Slot(object, str, str)
    def on_job_failed(self, job: Job, message: str, details: str) -> None:
        self.show_error(f"{job.description} failed: {message}", details)

    @Slot(object)
    def on_dataset_opened(self, report: ScanReport) -> None:
        root = Path(report.root)
        self.settings.add_recent("dataset", root)
        total = len(report.items)
        self.train_page.set_dataset(root, f"{len(report.classes)} classes, {total} images "
                                          f"({', '.join(report.classes[:6])}{'…' if len(report.classes) > 6 else ''})")

    @Slot(object, str)
    def on_run_ended(self, run_dir: Path, status: str) -> None:
        self.settings.add_recent("run", run_dir)
        if status == "completed":
            self.evaluate_page.open_run(run_dir)

    @Slot(object)
    def on_run_opened(self, snapshot: RunSnapshot) -> None:
        self.settings.add_recent("run", snapshot.run_dir)
        self.runs_page.add_run(snapshot.run_dir)
        self.train_page.show_run(snapshot)
        if self.train_page.following and self.train_page.run_dir == snapshot.run_dir:
            self.tabs.setCurrentWidget(self.train_page)  # a run another process trains: its live curves are there
        if snapshot.model_path is not None and self.predict_page.predictor is None:
            self.predict_page.load_model(snapshot.model_path)

    @Slot(object)
    def on_model_exported(self, path: Path) -> None:
        self.predict_page.load_model(path)

    @Slot(object)
    def on_model_loaded(self, path: Path) -> None:
        self.settings.add_recent("model", path)

    @Slot(object)
    def on_retrain_requested(self, run_dir: Path) -> None:
        """A new run like ``run_dir``'s, on its dataset with the corrections the Predict page added to it."""
        try:
            info = read_run(run_dir)
        except BadInputError as exc:
            self.notice.show_message(str(exc))
            return
        if info.kind == "ensemble":  # its options are its first member's: retraining them would make one model
            self.notice.show_message("An ensemble is not trained itself: retrain its members, then combine them "
                                     "again (transfer-studio ensemble).")
            return
        if self.train_page.retrain(info):
            self.tabs.setCurrentWidget(self.train_page)
        else:
            self.notice.show_message("Training is busy: stop it, or wait for it to end, then retrain.")

    @Slot(list, str, float, float)
    def on_distill_requested(self, teachers: list[Path], student: str, alpha: float, temperature: float) -> None:
        """A smaller student trained from the Runs page's selected teachers, live on the Train page."""
        try:
            started = self.train_page.distill(teachers, student, alpha, temperature)
        except BadInputError as exc:
            self.notice.show_message(str(exc))
            return
        if started:
            self.tabs.setCurrentWidget(self.train_page)
        else:
            self.notice.show_message("Training is busy: stop it, or wait for it to end, then distill.")

    @Slot()
    def on_open_dataset(self) -> None:
        self.tabs.setCurrentWidget(self.data_page)
        self.data_page.on_choose_clicked()

    @Slot()
    def on_open_run(self) -> None:
        runs = paths.runs_folder()
        start = self.settings.last_folder("run") if self.settings.get("folders/run") else str(runs)
        folder = QFileDialog.getExistingDirectory(self, "Open a run folder", start)
        if folder:
            self.settings.remember_folder("run", Path(folder).parent)
            self.open_run(Path(folder))

    @Slot()
    def on_open_model(self) -> None:
        self.tabs.setCurrentWidget(self.predict_page)
        self.predict_page.on_open_model_clicked()

    @Slot()
    def on_export_as(self) -> None:
        if self.evaluate_page.snapshot is None:
            self.show_error("Export needs a trained run: train one, or open a run folder first.")
            return
        default = str(Path(self.settings.last_folder("export")) / f"{self.evaluate_page.snapshot.run_dir.name}.onnx")
        path, _ = QFileDialog.getSaveFileName(self, "Export model as", default, "ONNX models (*.onnx)")
        if path:
            self.settings.remember_folder("export", Path(path))
            self.tabs.setCurrentWidget(self.evaluate_page)
            self.evaluate_page.export(Path(path))

    @Slot()
    def on_recent_menu_about_to_show(self) -> None:
        self.recent_menu.clear()
        openers = {"dataset": self.open_dataset, "run": self.open_run, "model": self.open_model}
        for kind, path in self.settings.recent():
            action = self.recent_menu.addAction(f"{kind.capitalize()}: {path}")
            action.triggered.connect(lambda _=False, k=kind, p=path: openers[k](Path(p)))
        if self.recent_menu.isEmpty():
            self.recent_menu.addAction("No recent items").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear recent items").triggered.connect(self.settings.clear_recent)

    @Slot()
    def on_show_log_folder(self) -> None:
        folder = paths.log_file().parent
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    @Slot()
    def on_about(self) -> None:
        import pyqtgraph

        versions = [("Transfer Studio", __version__), ("Python", platform.python_version()), ("Qt", qVersion()),
                    ("PySide6", pyside_version), ("pyqtgraph", pyqtgraph.__version__),
                    ("PyTorch", _package_version("torch")), ("torchvision", _package_version("torchvision")),
                    ("ONNX Runtime", _package_version("onnxruntime-gpu", "onnxruntime"))]
        rows = "".join(f"<tr><td>{name}</td><td>{version}</td></tr>" for name, version in versions)
        QMessageBox.about(self, "About Transfer Studio",
                          f"<h3>Transfer Studio {__version__}</h3><p>Turn a folder of photos into an image "
                          f"classifier.</p><table>{rows}</table><p>Compute device: {self.device or 'detecting…'}"
                          f"</p><p>Log file: {paths.log_file()}</p>")
