"""The Predict page with a stand-in predictor: thumbnails while a prediction runs, only its own jobs' events
count, and saving the results (the engine's CSV, off the GUI thread, a failed save said plainly)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from desktop.pages.predict import PredictPage
from desktop.predictor_app import PredictorWindow
from desktop.workers import Job
from engine.control import RunControl
from engine.events import BatchPredicted, EventSink
from engine.predict import Prediction
from engine.prediction_csv import predictions_csv


class HeldPredictor:
    """Classifies the first two photos at once, then holds the rest until ``release`` is set: a long prediction."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def predict_paths(self, paths: Sequence[Path], *, top_k: int, on_event: EventSink,
                      control: RunControl) -> list[Prediction]:
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
