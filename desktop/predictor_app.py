"""Transfer Studio Predictor: the Predict page alone in its own window, for the light bundle that has no torch.

Everything imported here (the page, its jobs, the worker, ``engine.predict``) is torch-free; the packaging test
checks that in a fresh interpreter, and the bundle proves it by being built without torch installed.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QVBoxLayout, QWidget

from desktop.app import run_window
from desktop.pages.predict import PredictPage
from desktop.settings import AppSettings
from desktop.widgets.notice import NoticeBar
from desktop.worker_window import WorkerWindow
from desktop.workers import Job, JobRunner

APP_NAME = "Transfer Studio Predictor"


class PredictorWindow(WorkerWindow):
    """The Predict page with its JobRunners; photos, folders and .onnx files can be dropped anywhere on it."""

    def __init__(self, settings: AppSettings | None = None) -> None:
        super().__init__()
        self.setObjectName("predictorWindow")
        self.setWindowTitle(APP_NAME)
        self.settings = settings or AppSettings()
        self.runner = JobRunner("predict", self)
        self.file_runner = JobRunner("predictFiles", self)
        self.page = PredictPage(self.runner, self.file_runner, self.settings)
        self.page.model_loaded.connect(self.on_model_loaded)
        for runner in self.runner_list():
            runner.failed.connect(self.on_job_failed)
        self.notice = NoticeBar()
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addWidget(self.notice)
        layout.addWidget(self.page, 1)
        self.setCentralWidget(central)
        geometry = self.settings.geometry("predictor")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(900, 680)

    def open_paths(self, dropped: Sequence[Path]) -> None:
        """An .onnx loads as the model; everything else is classified (once the model has loaded)."""
        self.page.on_paths_dropped(list(dropped))

    def runner_list(self) -> list[JobRunner]:
        return [self.runner, self.file_runner]

    def show_stopping(self, message: str) -> None:
        self.page.status.setText(message)

    def save_state(self) -> None:
        self.settings.set_geometry("predictor", self.saveGeometry())
        self.settings.qsettings.sync()

    # --- slots -------------------------------------------------------------------------------------
    @Slot(object)
    def on_model_loaded(self, path: Path) -> None:
        self.settings.add_recent("model", path)
        self.setWindowTitle(f"{Path(path).name} — {APP_NAME}")

    @Slot(object, str, str)
    def on_job_failed(self, job: Job, message: str, details: str) -> None:
        self.show_error(f"{job.description} failed: {message}", details)


def smoke_report(window: PredictorWindow) -> int | None:
    """Print the model line and the results once the worker is idle; exit 1 if a requested model did not load."""
    if window.runner.busy:
        return None
    page = window.page
    print(f"model: {page.model_info.text()}", flush=True)
    print(f"results: {len(page.results)} ({sum(1 for r in page.results if r.error)} could not be read)", flush=True)
    return 0 if page.predictor is not None or not page.model_edit.text() else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="transfer-studio-predictor",
                                     description=f"{APP_NAME}: classify photos with an exported model. "
                                                 "'transfer-studio-predictor predict --help' for the command line.")
    parser.add_argument("photos", type=Path, nargs="*", help="photos or folders to classify once the model loads")
    parser.add_argument("--model", type=Path, default=None, help="the .onnx model to load at start")
    parser.add_argument("--smoke-seconds", type=float, default=None,
                        help="show the window for N seconds, print the model and results, and exit (smoke test)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)

    def create_window() -> PredictorWindow:
        window = PredictorWindow()
        if options.model is not None:
            window.page.load_model(options.model)
        window.page.classify(options.photos)
        return window

    return run_window(APP_NAME, create_window, smoke_seconds=options.smoke_seconds, smoke_report=smoke_report)
