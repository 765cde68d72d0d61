import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import gc
import json
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage, QPixmap
from PySide6.QtWidgets import QMessageBox, QWidget

from desktop.main_window import MainWindow
from desktop.predictor_app import PredictorWindow
from desktop.settings import AppSettings
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.run_folder import RunInfo

Find = Callable[..., QWidget]
Drop = Callable[[QWidget, Sequence[Path]], None]
MakeRunInfo = Callable[..., RunInfo]
Pixels = Callable[[QPixmap], np.ndarray]


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def make_window(qtbot, settings: AppSettings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], MainWindow]]:
    """Create real main windows; at the end each is closed (every worker thread must stop) and deleted."""
    windows: list[MainWindow] = []

    def make() -> MainWindow:
        windows.append(MainWindow(settings))
        return windows[-1]

    yield make
    monkeypatch.setattr(QMessageBox, "question", lambda *_args, **_kwargs: QMessageBox.StandardButton.Yes)
    for main in windows:
        main.close()
        qtbot.waitUntil(lambda main=main: not any(r.running for r in main.runners.values()), timeout=120_000)
        main.deleteLater()
    windows.clear()
    # Delete them now, not during a later test's event processing.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


@pytest.fixture
def window(qtbot, make_window: Callable[[], MainWindow]) -> MainWindow:
    """The real main window, shown."""
    main = make_window()
    main.show()
    qtbot.waitExposed(main)
    return main


@pytest.fixture
def find(window: MainWindow) -> Find:
    """The window's child widget with this objectName (asserts that it exists)."""

    def find_child(name: str, kind: type = QWidget) -> QWidget:
        widget = window.findChild(kind, name)
        assert widget is not None, f"no {kind.__name__} named {name!r}"
        return widget

    return find_child


@pytest.fixture
def drop() -> Drop:
    """Drop files on a widget the way a file manager does."""

    def drop_files(target: QWidget, paths: Sequence[Path]) -> None:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
        event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                           Qt.KeyboardModifier.NoModifier)
        target.dropEvent(event)
        assert event.isAccepted()

    return drop_files


@pytest.fixture
def pixels() -> Pixels:
    """A pixmap's pixels as an H x W x 3 uint8 array, to compare with what the engine draws."""

    def rgb(pixmap: QPixmap) -> np.ndarray:
        image = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB888)
        rows = np.frombuffer(image.constBits(), dtype=np.uint8).reshape(image.height(), image.bytesPerLine())
        return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()

    return rgb


@pytest.fixture
def make_run_info() -> MakeRunInfo:
    """``make(path, **fields)``: a RunInfo as a two-class run's run.json gives it, with ``fields`` changed."""

    def make(path: Path, **fields: object) -> RunInfo:
        config = TrainConfig()
        values: dict[str, object] = {
            "path": path, "status": "completed", "config": config, "backbone": config.backbone,
            "labels": ("cat", "dog"), "data_dir": str(path.parent / "data"), "created": None, "device": None,
            "preprocessing": Preprocessing(256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
            "versions": {}, "dataset_counts": None, "plan": None, "best_epoch": None, "best_val_accuracy": None,
            "epochs_completed": None, "finished": None, "error": None, "raw": {}}
        return RunInfo(**{**values, **fields})

    return make


@pytest.fixture
def predictor_window(qtbot, settings: AppSettings) -> Iterator[PredictorWindow]:
    """The light predictor app's window, shown; closed after the test once every worker thread has ended."""
    window = PredictorWindow(settings)
    window.show()
    qtbot.waitExposed(window)
    yield window
    window.close()
    qtbot.waitUntil(lambda: not any(runner.running for runner in window.runner_list()), timeout=60_000)
    window.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)


@pytest.fixture
def own_run(trained_run: Path, exported_model: Path, tmp_path: Path) -> Path:
    """A copy of the session's exported run whose dataset is a private copy: corrections write into it."""
    run_dir, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(rf.read_run(trained_run).data_dir, data)
    run_dir.mkdir()
    shutil.copy(exported_model, run_dir / "model.onnx")
    document = json.loads((trained_run / rf.RUN_FILE).read_text(encoding="utf-8"))
    (run_dir / rf.RUN_FILE).write_text(json.dumps({**document, "data_dir": str(data)}), encoding="utf-8")
    return run_dir
