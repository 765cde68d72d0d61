"""The Evaluate page: the export can be cancelled and says truthfully what was (not) written; the split switch,
the mistakes' thumbnails (own thread, superseded ones cancelled) and double-click; only its own jobs' events count;
a selected mistake shown with what the exported model looked at (the model loaded once), or a word to export it."""

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QComboBox, QLabel, QPushButton

from desktop import jobs
from desktop.jobs import RunSnapshot
from desktop.main_window import MainWindow
from desktop.pages.evaluate import NO_MODEL_MESSAGE
from desktop.widgets.calibration_view import CalibrationView
from desktop.workers import Job
from engine.dataset.journal import MoveRecord, read_history
from engine.evaluation.calibration import calibrate
from engine.evaluation.metrics import evaluate_predictions, evaluation_document, mistakes
from engine.events import Progress
from engine.heatmaps import overlay
from engine.images import load_rgb
from engine.predict import Predictor
from engine.training import run_folder as rf


def test_export_can_be_cancelled_and_writes_nothing(window: MainWindow, find, qtbot, trained_run: Path,
                                                    tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    (run / rf.MODEL_FILE).unlink(missing_ok=True)
    runner = window.runners["evaluate"]
    with qtbot.waitSignal(runner.returned, timeout=60_000):
        window.open_run(run)
    export, cancel = find("exportButton", QPushButton), find("cancelExportButton", QPushButton)
    assert not cancel.isVisible()
    qtbot.mouseClick(export, Qt.MouseButton.LeftButton)
    assert cancel.isVisible() and not export.isEnabled()
    with qtbot.waitSignal(runner.aborted, timeout=60_000):
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not cancel.isVisible())
    assert window.evaluate_page.export_status.text().startswith("Export cancelled: nothing was written")
    assert not (run / rf.MODEL_FILE).exists() and export.isEnabled()
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_metric_names_are_not_cut_off(window: MainWindow, qtbot, trained_run: Path) -> None:
    with qtbot.waitSignal(window.runners["evaluate"].returned, timeout=60_000):
        window.open_run(trained_run)
    window.tabs.setCurrentWidget(window.evaluate_page)
    table = window.evaluate_page.metrics_table
    qtbot.waitUntil(lambda: table.isVisible())
    assert table.model().rowCount() >= 3  # classes, accuracy, macro average, balanced accuracy
    assert table.horizontalHeader().sectionSize(0) >= table.sizeHintForColumn(0) > 0


def _evaluation(right: int) -> dict:
    """20 cats and 20 dogs with ``right`` of each classified correctly; both labels 10 times in training."""
    truth = [0] * 20 + [1] * 20
    predicted = [0] * right + [1] * (20 - right) + [1] * right + [0] * (20 - right)
    split = evaluate_predictions(["cat", "dog"], truth, np.eye(2)[predicted], [f"{i}.png" for i in range(40)])
    return evaluation_document(["cat", "dog"], split, None, train_counts=[10, 10])


def test_verdict_warns_for_a_weak_model_and_is_hidden_for_an_old_run(window: MainWindow, find, make_run_info,
                                                                      tmp_path: Path) -> None:
    page = window.evaluate_page
    window.tabs.setCurrentWidget(page)
    label = find("verdictLabel", QLabel)
    weak = _evaluation(right=14)  # 0.70: above the noise bar (0.66) but not halfway from chance to 1 (0.75)
    assert weak["validation"]["verdict"]["level"] == "weak"
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], weak, None))
    assert label.isVisible() and page.verdict_icon.isVisible()
    assert "Warning: the model is weak" in label.text() and "--strategy full" in label.text()

    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], _evaluation(right=19), None))
    assert label.isVisible() and not page.verdict_icon.isVisible()
    assert label.text().startswith("Validation accuracy 0.95 clearly beats") and "Warning" not in label.text()

    old = _evaluation(right=14)
    del old["validation"]["verdict"], old["validation"]["baseline"]
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], old, None))
    assert not label.isVisible()


def _photo_split(folder: Path, make_image, right: int) -> dict:
    """Like ``_evaluation``'s split, on real photos in ``folder``: 40 - 2 * ``right`` mistakes."""
    truth = [0] * 20 + [1] * 20
    predicted = [0] * right + [1] * (20 - right) + [1] * right + [0] * (20 - right)
    photos = [str(make_image(folder / f"{index:02d}.png")) for index in range(40)]
    return evaluate_predictions(["cat", "dog"], truth, np.eye(2)[predicted], photos)


@pytest.fixture
def two_splits(tmp_path: Path, make_image, make_run_info) -> RunSnapshot:
    """A run whose validation split has 12 mistakes and whose test split has 6."""
    validation = _photo_split(tmp_path / "val", make_image, right=14)
    test = _photo_split(tmp_path / "test", make_image, right=17)
    evaluation = evaluation_document(["cat", "dog"], validation, test, train_counts=[10, 10])
    return RunSnapshot(make_run_info(tmp_path), [], evaluation, None)


def _thumbnails_shown(view) -> bool:
    rows = view.model()
    return all(rows.index(row, 0).data(Qt.ItemDataRole.DecorationRole) is not None for row in range(rows.rowCount()))


def test_the_split_switch_shows_the_chosen_split(window: MainWindow, find, two_splits: RunSnapshot) -> None:
    page = window.evaluate_page
    page.show_snapshot(two_splits)
    combo = find("splitCombo", QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["Validation", "Test"]
    assert page.summary.text().startswith("<b>Validation: 70.0% accuracy</b>")
    assert page.mistakes_view.model().rowCount() == 12

    combo.setCurrentIndex(1)
    assert page.summary.text().startswith("<b>Test: 85.0% accuracy</b> (34 of 40 images)")
    assert page.mistakes_box.title() == "Misclassified test images, most confident first (6)"
    assert page.mistakes_view.paths() == [m["path"] for m in mistakes(two_splits.evaluation["test"])]
    assert page.metrics.rowCount() == 2 + 3
    assert page.confusion_view.model().index(0, 0).data() == "17"


def test_switching_the_split_cancels_the_superseded_thumbnails(window: MainWindow, qtbot, two_splits: RunSnapshot,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Job] = []
    make_job = jobs.thumbnails
    monkeypatch.setattr(jobs, "thumbnails", lambda paths: made.append(make_job(paths)) or made[-1])
    page = window.evaluate_page
    page.show_snapshot(two_splits)
    page.split_combo.setCurrentIndex(1)
    assert len(made) == 2 and made[0].control.cancelled and not made[1].control.cancelled
    qtbot.waitUntil(lambda: _thumbnails_shown(page.mistakes_view), timeout=30_000)


def test_thumbnails_load_while_an_export_runs(window: MainWindow, qtbot, two_splits: RunSnapshot) -> None:
    release = threading.Event()
    window.runners["evaluate"].submit(Job("Exporting (held)", lambda _e, _c: release.wait(60)))
    try:
        window.evaluate_page.show_snapshot(two_splits)
        qtbot.waitUntil(lambda: _thumbnails_shown(window.evaluate_page.mistakes_view), timeout=10_000)
    finally:
        release.set()


def test_double_clicking_a_mistake_opens_its_photo(window: MainWindow, qtbot, two_splits: RunSnapshot,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    page = window.evaluate_page
    window.tabs.setCurrentWidget(page)
    page.show_snapshot(two_splits)
    view = page.mistakes_view
    qtbot.waitUntil(view.isVisible)
    cell = view.visualRect(view.model().index(1, 4)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=cell)  # QTest's double-click is only its end
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=cell)
    assert opened == [mistakes(two_splits.evaluation["validation"])[1]["path"]]


def test_progress_of_another_job_does_not_move_the_export_bar(window: MainWindow, qtbot, make_run_info,
                                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()

    def held_export(_run_dir: Path, _out: Path | None = None, *, quantize: str | None = None) -> Job:
        def run(on_event, control) -> None:
            on_event(Progress("exporting the graph", 1, 3))
            release.wait(60)
            control.check()

        return Job("Exporting (held)", run)

    monkeypatch.setattr(jobs, "export", held_export)
    (tmp_path / rf.BEST_FILE).touch()
    page = window.evaluate_page
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], None, None))
    runner = window.runners["evaluate"]
    try:
        with qtbot.waitSignal(runner.progress, timeout=10_000):
            page.export()
        assert (page.export_progress.value(), page.export_progress.maximum()) == (1, 3)
        runner.progress.emit(Job("Opening an earlier run", lambda _e, _c: None), Progress("reading", 5, 9))
        assert (page.export_progress.value(), page.export_progress.maximum()) == (1, 3)
    finally:
        runner.cancel()
        release.set()


def test_an_int8_failure_still_offers_the_float_model_and_says_why(window: MainWindow, qtbot, trained_run: Path,
                                                                   tmp_path: Path, monkeypatch) -> None:
    """export_onnx wrote and checked model.onnx, then the int8 step failed: the Predict page must get the float
    model (it is on disk) and the page must say the int8 model was not written."""
    import engine.export
    from engine.export import ExportResult, QuantizationError

    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    written = ExportResult(str(run / rf.MODEL_FILE), 1000, {"max_abs_diff": 1e-6, "top1_agreement": 1.0, "images": 4},
                           None, None, 0.1)

    def int8_fails(*_args, **_kwargs):  # noqa: ANN002, ANN003, ANN202
        raise QuantizationError("the int8 model failed its parity check (agreement 0.41)", written)

    monkeypatch.setattr(engine.export, "export_onnx", int8_fails)
    runner, page = window.runners["evaluate"], window.evaluate_page
    with qtbot.waitSignal(runner.returned, timeout=60_000):
        window.open_run(run)
    with qtbot.waitSignal(page.model_exported, timeout=60_000) as exported:
        page.export()
    assert exported.args == [Path(written.path)]
    status = page.export_status.text()
    assert "Saved" in status and "int8 model failed its parity check" in status


def test_calibration_plots_and_sentence_follow_the_runs_calibration(window: MainWindow, find, make_run_info,
                                                                    tmp_path: Path) -> None:
    """Over-confident logits (3x too large): the view shows the fitted temperature, the reliability bins and the
    unsure threshold; a run from before calibration says it has none."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 400)
    margin = rng.normal(1.0, 1.0, 400)  # P(right) = sigmoid(margin) when calibrated
    right = rng.random(400) < 1 / (1 + np.exp(-margin))
    logits = np.zeros((400, 2))
    logits[np.arange(400), np.where(right, truth, 1 - truth)] = 3 * np.abs(margin)
    evaluation = _evaluation(right=18)
    evaluation["calibration"] = calibrate(logits, truth)
    page = window.evaluate_page
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], evaluation, None))
    view = find("calibrationView", CalibrationView)
    text = find("calibrationSummaryLabel", QLabel).text()
    assert f"T = {evaluation['calibration']['temperature']:.2f}" in text and "marked unsure" in text, text
    assert evaluation["calibration"]["temperature"] > 1.5  # the logits were over-confident
    xs, ys = view.reliability.curves["model"].getData()
    used = [b for b in evaluation["calibration"]["reliability"] if b["count"]]
    assert list(xs) == [b["confidence"] for b in used] and list(ys) == [b["accuracy"] for b in used]
    assert view.threshold_line.isVisible()
    assert view.threshold_line.value() == pytest.approx(evaluation["calibration"]["unsure_threshold"])

    no_mistakes = {**evaluation, "calibration": calibrate(logits[right], np.where(right, truth, 1 - truth)[right])}
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], no_mistakes, None))
    assert "not temperature-scaled" in find("calibrationSummaryLabel", QLabel).text()

    page.show_snapshot(RunSnapshot(make_run_info(tmp_path), [], _evaluation(right=18), None))
    assert "no calibration" in find("calibrationSummaryLabel", QLabel).text()
    assert len(view.reliability.curves["model"].getData()[0] or []) == 0 and not view.threshold_line.isVisible()


@pytest.fixture
def exported_mistakes(trained_run: Path, exported_model: Path, tmp_path: Path) -> RunSnapshot:
    """The shared exported run, its evaluation replaced by one where a wide copy of a validation photo and three
    validation photos were all misclassified (the run itself may have no mistakes)."""
    evaluation = json.loads((trained_run / rf.EVALUATION_FILE).read_text(encoding="utf-8"))
    labels = evaluation["labels"]
    rows = evaluation["validation"]["predictions"][:3]
    wide = tmp_path / "wide.png"
    Image.open(rows[0]["path"]).convert("RGB").resize((320, 160)).save(wide)
    paths = [str(wide), *(row["path"] for row in rows)]
    truth = [labels.index(rows[0]["true"]), *(labels.index(row["true"]) for row in rows)]
    wrong = [(label + 1) % len(labels) for label in truth]
    split = evaluate_predictions(labels, truth, np.eye(len(labels))[wrong], paths)
    document = evaluation_document(labels, split, None, train_counts=[10] * len(labels))
    return RunSnapshot(rf.read_run(trained_run), [], document, exported_model)


def test_a_selected_mistake_shows_what_the_model_looked_at(window: MainWindow, qtbot, find, pixels,
                                                           exported_mistakes: RunSnapshot,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Job] = []
    make_job = jobs.load_predictor
    monkeypatch.setattr(jobs, "load_predictor", lambda path: loads.append(make_job(path)) or loads[-1])
    page = window.evaluate_page
    window.tabs.setCurrentWidget(page)
    page.show_snapshot(exported_mistakes)
    preview = find("mistakeHeatmapPreview", QLabel)
    view = page.mistakes_view
    assert view.model().rowCount() == 4 and preview.source.isNull()

    view.selectRow(0)
    qtbot.waitUntil(lambda: not preview.source.isNull(), timeout=60_000)
    shown = preview.pixmap()
    assert not shown.isNull() and shown.width() / shown.height() == pytest.approx(320 / 160, rel=0.02)
    predictor = Predictor(exported_mistakes.model_path, device="cpu")
    expected = predictor.predict_paths([view.path_at(0)], top_k=1, heatmaps=True)[0]
    drawn = overlay(load_rgb(view.path_at(0)), np.asarray(expected.heatmap, dtype=np.float32),
                    predictor.info.preprocessing)
    assert np.array_equal(pixels(preview.source), np.asarray(drawn))
    assert find("mistakeHeatmapCaption", QLabel).text() == (f"Where the model saw “{expected.label}” "
                                                            f"({expected.confidence:.1%})")

    view.selectRow(2)  # the model stays loaded
    size = load_rgb(view.path_at(2)).size  # square: the wide photo's preview is gone
    qtbot.waitUntil(lambda: (preview.source.width(), preview.source.height()) == size, timeout=60_000)
    assert len(loads) == 1


def test_without_an_exported_model_the_preview_asks_for_one(window: MainWindow, find, two_splits: RunSnapshot,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    loads: list[Path] = []
    monkeypatch.setattr(jobs, "load_predictor", loads.append)
    page = window.evaluate_page
    window.tabs.setCurrentWidget(page)
    page.show_snapshot(two_splits)
    page.mistakes_view.selectRow(0)
    preview = find("mistakeHeatmapPreview", QLabel)
    assert preview.text() == NO_MODEL_MESSAGE and preview.pixmap().isNull() and not loads


def test_a_mistake_relabelled_moves_the_photo_in_the_dataset_through_the_journal(
        window: MainWindow, qtbot, make_image, make_run_info, tmp_path: Path) -> None:
    data = tmp_path / "data"  # make_run_info's data_dir for tmp_path / "run"
    photos = [str(make_image(data / name / f"{name}-{i}.png")) for name in ("cat", "dog") for i in range(3)]
    # dog-0.png is filed under dog/ but the model says cat, and the person agrees: it is a cat.
    split = evaluate_predictions(["cat", "dog"], [0, 0, 0, 1, 1, 1], np.eye(2)[[0, 0, 0, 0, 1, 1]], photos)
    evaluation = evaluation_document(["cat", "dog"], split, None, train_counts=[3, 3])
    page = window.evaluate_page
    page.show_snapshot(RunSnapshot(make_run_info(tmp_path / "run"), [], evaluation, None))
    assert page.mistakes_view.path_at(0) == photos[3]
    page.relabel(0, "cat")
    qtbot.waitUntil(lambda: page.export_status.text().startswith(("Moved", "Could not")), timeout=30_000)
    assert (data / "cat" / "dog-0.png").is_file() and not Path(photos[3]).exists()
    assert page.mistakes_view.items.item(0, 1).text() == "cat (moved)"
    assert [(r.source, r.destination) for r in read_history(data).undoable] == [("dog/dog-0.png", "cat/dog-0.png")]


def test_a_relabel_that_ends_after_the_split_changed_marks_no_row(window: MainWindow, two_splits: RunSnapshot,
                                                                  tmp_path: Path) -> None:
    page = window.evaluate_page
    page.show_snapshot(two_splits)
    pending = Job("Moving a photo", lambda _e, _c: None)
    page._relabels[pending] = (0, "dog")
    page.split_combo.setCurrentIndex(1)  # the test split: other rows
    first = page.mistakes_view.items.item(0, 1).text()
    moved = MoveRecord(1, "cat/a.png", "dog/a.png", "hash", (), "2026-11-30T00:00:00+00:00")
    page.thumbnail_runner.returned.emit(pending, [moved])
    assert page.mistakes_view.items.item(0, 1).text() == first
    assert page.export_status.text().startswith("Moved cat/a.png to dog/a.png")
