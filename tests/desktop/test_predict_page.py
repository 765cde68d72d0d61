"""The Predict page with a stand-in predictor: thumbnails while a prediction runs, only its own jobs' events
count, and saving the results (the engine's CSV, off the GUI thread, a failed save said plainly). With the real
exported model: the heatmap toggle, and the selected photo's preview with its heatmap (superseded ones cancelled);
a model without heatmap outputs leaves the toggle off, saying why; corrections copied into the model's dataset
and the retrain request."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QFileDialog, QLabel, QPushButton

from desktop import jobs
from desktop.pages.predict import PredictPage
from desktop.predictor_app import PredictorWindow
from desktop.workers import Job
from engine.control import RunControl
from engine.corrections import Correction, read_corrections
from engine.events import BatchPredicted, EventSink
from engine.heatmaps import overlay
from engine.images import load_rgb
from engine.predict import Prediction
from engine.prediction_csv import predictions_csv
from engine.training import run_folder as rf


class HeldPredictor:
    """Classifies the first two photos at once, then holds the rest until ``release`` is set: a long prediction."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict_paths(self, paths: Sequence[Path], *, top_k: int, on_event: EventSink,
                      control: RunControl, heatmaps: bool = False) -> list[Prediction]:
        predictions = [Prediction(str(path), (("cat", 0.75), ("dog", 0.25))[:top_k]) for path in paths]
        on_event(BatchPredicted(tuple(predictions[:2]), 2, len(paths)))
        self.release.wait(60)
        control.check()
        on_event(BatchPredicted(tuple(predictions[2:]), len(paths), len(paths)))
        return predictions


@pytest.fixture
def page(predictor_window: PredictorWindow) -> Iterator[PredictPage]:
    predictor_window.page.predictor = HeldPredictor()
    yield predictor_window.page
    predictor_window.page.predictor.release.set()  # before the window closes, so the held prediction can stop


@pytest.fixture
def photos(tmp_path: Path, make_image) -> list[Path]:
    return [make_image(tmp_path / "photos" / f"{index}.png") for index in range(5)]


def test_thumbnails_appear_while_the_prediction_runs(page: PredictPage, qtbot, photos: list[Path]) -> None:
    page.classify(photos)
    rows = page.predictions_view.model()
    qtbot.waitUntil(lambda: rows.rowCount() == 2, timeout=30_000)
    qtbot.waitUntil(lambda: all(rows.index(row, 0).data(Qt.ItemDataRole.DecorationRole) is not None
                                for row in range(2)), timeout=10_000)
    assert page.cancel_button.isVisible()  # still classifying
    page.predictor.release.set()
    qtbot.waitUntil(lambda: rows.rowCount() == 5 and not page.cancel_button.isVisible(), timeout=30_000)


def test_a_late_batch_from_a_job_the_page_did_not_submit_is_ignored(page: PredictPage, qtbot,
                                                                     photos: list[Path]) -> None:
    page.classify(photos)
    rows = page.predictions_view.model()
    qtbot.waitUntil(lambda: rows.rowCount() == 2, timeout=30_000)
    stale = Job("Classifying an earlier drop", lambda _e, _c: None)
    late = BatchPredicted((Prediction("elsewhere.png", (("dog", 1.0),)),), 1, 1)
    page.runner.batch_predicted.emit(stale, late)
    page.runner.returned.emit(stale, [Prediction("other.png", (("dog", 1.0),))])
    assert rows.rowCount() == 2 and len(page.results) == 2


def _classified(page: PredictPage, qtbot, photos: list[Path]) -> None:
    page.predictor.release.set()
    page.classify(photos)
    qtbot.waitUntil(lambda: len(page.results) == len(photos) and not page.runner.busy, timeout=30_000)


def test_results_are_saved_as_the_engines_csv(page: PredictPage, qtbot, photos: list[Path], tmp_path: Path) -> None:
    _classified(page, qtbot, photos)
    out = tmp_path / "results" / "predictions.csv"
    page.save_results(out)
    qtbot.waitUntil(lambda: page.status.text().startswith("Saved"), timeout=30_000)
    assert out.read_text(encoding="utf-8") == predictions_csv(page.results, top_k=2)
    assert page.status.text() == f"Saved 5 result(s) to {out}"


def test_saving_where_no_file_can_be_written_says_so(page: PredictPage, qtbot, photos: list[Path],
                                                     tmp_path: Path) -> None:
    _classified(page, qtbot, photos)
    not_a_folder = tmp_path / "out" / "notes.txt"
    not_a_folder.parent.mkdir()
    not_a_folder.write_text("a file where a folder should be", encoding="utf-8")
    page.save_results(not_a_folder / "predictions.csv")
    qtbot.waitUntil(lambda: page.status.text().startswith("Could not save"), timeout=30_000)
    assert str(not_a_folder / "predictions.csv") in page.status.text()
    assert len(page.results) == 5 and page.save_button.isEnabled()
    assert list(not_a_folder.parent.iterdir()) == [not_a_folder]  # nothing half-written beside it


def test_copy_into_class_folders_from_the_button(page: PredictPage, qtbot, photos: list[Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The photos are copied by class, an unsure one into _unsure/, the originals stay, and the page says so."""
    _classified(page, qtbot, photos)
    page.results[1] = replace(page.results[1], unsure=True)
    out = tmp_path / "sorted"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *_args, **_kwargs: str(out))
    assert page.sort_button.isEnabled()
    qtbot.mouseClick(page.sort_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: page.status.text().startswith(("Copied", "Could not")), timeout=30_000)
    assert page.status.text() == (f"Copied 5 photo(s) into class folders in {out} (1 unsure, in _unsure/); "
                                  "manifest: sort-manifest.json")
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["0.png", "2.png", "3.png", "4.png"]
    assert [p.name for p in (out / "_unsure").iterdir()] == ["1.png"]
    assert all(photo.is_file() for photo in photos)
    assert (out / "cat" / "0.png").read_bytes() == photos[0].read_bytes()


def _expected_overlay(page: PredictPage, row: int) -> np.ndarray:
    """The engine's overlay of row ``row``'s heatmap on its photo (smaller than the preview's limit: full size)."""
    prediction = page.results[row]
    heatmap = np.asarray(prediction.heatmap, dtype=np.float32)
    return np.asarray(overlay(load_rgb(prediction.path), heatmap, page.predictor.info.preprocessing))


@pytest.fixture
def real_page(predictor_window: PredictorWindow, qtbot, exported_model: Path) -> PredictPage:
    """The page with the session's exported model (it has heatmap outputs) loaded."""
    page = predictor_window.page
    page.load_model(exported_model)
    qtbot.waitUntil(lambda: page.predictor is not None and not page.runner.busy, timeout=60_000)
    return page


@pytest.fixture
def odd_photos(tmp_path: Path, make_image) -> list[Path]:
    """A wide, a tall and a square photo."""
    return [make_image(tmp_path / "odd" / name, size=size)
            for name, size in (("wide.png", (320, 200)), ("tall.png", (200, 300)), ("square.png", (240, 240)))]


def test_the_selected_photo_is_shown_with_its_heatmap(real_page: PredictPage, qtbot, odd_photos: list[Path],
                                                      pixels) -> None:
    page = real_page
    toggle = page.findChild(QCheckBox, "heatmapToggle")
    preview = page.findChild(QLabel, "heatmapPreview")
    assert toggle.isEnabled() and not toggle.isChecked()
    qtbot.mouseClick(toggle, Qt.MouseButton.LeftButton)
    assert toggle.isChecked()
    page.classify(odd_photos)
    qtbot.waitUntil(lambda: len(page.results) == 3 and not page.runner.busy, timeout=60_000)
    assert all(np.asarray(p.heatmap).shape == (7, 7) for p in page.results)  # 224 crop, stride 32

    page.predictions_view.selectRow(0)
    qtbot.waitUntil(lambda: not preview.source.isNull(), timeout=30_000)
    shown = preview.pixmap()
    assert not shown.isNull() and shown.width() / shown.height() == pytest.approx(320 / 200, rel=0.02)
    assert np.array_equal(pixels(preview.source), _expected_overlay(page, 0))
    assert page.preview_caption.text() == (f"wide.png: where the model saw “{page.results[0].label}” "
                                           f"({page.results[0].confidence:.1%})")

    toggle.setChecked(False)  # the plain photo
    plain = np.asarray(load_rgb(odd_photos[0]))
    qtbot.waitUntil(lambda: np.array_equal(pixels(preview.source), plain), timeout=30_000)

    page.on_clear_clicked()
    assert preview.source.isNull() and preview.pixmap().isNull()


def test_a_superseded_preview_is_cancelled(real_page: PredictPage, qtbot, odd_photos: list[Path], pixels,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    page = real_page
    page.heatmap_toggle.setChecked(True)
    page.classify(odd_photos)
    qtbot.waitUntil(lambda: len(page.results) == 3 and not page.runner.busy, timeout=60_000)
    made: list[Job] = []
    make_job = jobs.photo_preview
    monkeypatch.setattr(jobs, "photo_preview", lambda *args: made.append(make_job(*args)) or made[-1])
    page.predictions_view.selectRow(0)
    page.predictions_view.selectRow(1)
    assert len(made) == 2 and made[0].control.cancelled and not made[1].control.cancelled
    qtbot.waitUntil(lambda: not page.file_runner.busy, timeout=30_000)
    assert np.array_equal(pixels(page.preview.source), _expected_overlay(page, 1))
    assert page.preview.pixmap().width() / page.preview.pixmap().height() == pytest.approx(200 / 300, rel=0.02)


def test_a_model_without_heatmaps_turns_the_toggle_off_and_says_why(real_page: PredictPage, qtbot,
                                                                    exported_model: Path, tmp_path: Path,
                                                                    odd_photos: list[Path], pixels,
                                                                    without_heatmaps) -> None:
    page = real_page
    page.heatmap_toggle.setChecked(True)
    page.load_model(without_heatmaps(exported_model, tmp_path / "old.onnx"))
    qtbot.waitUntil(lambda: Path(page.predictor.info.path).name == "old.onnx" and not page.runner.busy,
                    timeout=60_000)
    toggle = page.heatmap_toggle
    assert not toggle.isEnabled() and not toggle.isChecked()
    assert toggle.toolTip().startswith("No heatmaps: this model was exported before heatmaps existed")
    assert "export it again" in toggle.toolTip()

    page.classify(odd_photos[:1])  # classifies as before, and the preview shows the plain photo
    qtbot.waitUntil(lambda: len(page.results) == 1 and not page.runner.busy, timeout=60_000)
    assert page.results[0].heatmap is None and page.results[0].error is None
    page.predictions_view.selectRow(0)
    plain = np.asarray(load_rgb(odd_photos[0]))
    qtbot.waitUntil(lambda: not page.preview.source.isNull(), timeout=30_000)
    assert np.array_equal(pixels(page.preview.source), plain)


def test_a_correction_copies_the_photo_into_the_dataset_and_enables_retraining(
        predictor_window: PredictorWindow, qtbot, own_run: Path, odd_photos: list[Path]) -> None:
    page = predictor_window.page
    page.load_model(own_run / "model.onnx")
    qtbot.waitUntil(lambda: page.predictor is not None and not page.runner.busy, timeout=60_000)
    page.classify(odd_photos)
    qtbot.waitUntil(lambda: len(page.results) == 3 and not page.runner.busy, timeout=60_000)
    retrain = page.findChild(QPushButton, "retrainButton")
    assert not retrain.isEnabled()  # nothing corrected yet
    labels = page.predictor.info.labels
    page.predictions_view.selectRow(1)
    predictor_window.activateWindow()
    page.predictions_view.setFocus()
    qtbot.waitUntil(page.predictions_view.hasFocus, timeout=5_000)
    qtbot.keyClick(page.predictions_view, Qt.Key.Key_2)  # the tall photo is of class 2
    qtbot.waitUntil(lambda: page.status.text().startswith(("Added", "Could not")), timeout=30_000)
    data = Path(rf.read_run(own_run).data_dir)
    assert (data / labels[1] / "tall.png").read_bytes() == odd_photos[1].read_bytes() and odd_photos[1].is_file()
    assert [(c.label, Path(c.photo).name) for c in read_corrections(own_run)] == [(labels[1], "tall.png")]
    assert page.predictions_view.items.item(1, 1).text() == f"tall.png → {labels[1]} ✓"
    assert retrain.isEnabled()
    with qtbot.waitSignal(page.retrain_requested, timeout=5_000) as requested:
        qtbot.mouseClick(retrain, Qt.MouseButton.LeftButton)
    assert requested.args == [own_run]


def test_corrections_need_the_models_run_folder(real_page: PredictPage, qtbot, odd_photos: list[Path],
                                                exported_model: Path, tmp_path: Path) -> None:
    alone = tmp_path / "alone" / "model.onnx"
    alone.parent.mkdir()
    shutil.copy(exported_model, alone)
    page = real_page
    page.load_model(alone)
    qtbot.waitUntil(lambda: page.predictor is not None and not page.runner.busy, timeout=60_000)
    page.classify(odd_photos[:1])
    qtbot.waitUntil(lambda: len(page.results) == 1 and not page.runner.busy, timeout=60_000)
    page.correct([0], page.predictor.info.labels[0])
    assert "open the model.onnx in its run folder" in page.status.text()
    assert not page.findChild(QPushButton, "retrainButton").isEnabled()


def test_a_correction_that_ends_after_clear_is_counted_without_marking_a_row(page: PredictPage, qtbot,
                                                                           photos: list[Path]) -> None:
    _classified(page, qtbot, photos)
    page._run_dir = Path("/run")  # as if the model came from its run folder
    pending = Job("Adding a photo", lambda _e, _c: None)
    page._corrections[pending] = 0
    page.on_clear_clicked()
    page.on_clear_clicked()  # twice: still pending, still row-less
    correction = Correction(str(photos[0]), "dog", "cat", "/data/dog/0.png", "2026-11-30T00:00:00+00:00")
    page.file_runner.returned.emit(pending, correction)  # a stale row 0 would now be nobody's
    assert page.status.text().startswith("Added 0.png to the dataset as “dog”") and page.retrain_button.isEnabled()
    assert page.predictions_view.items.rowCount() == 0
