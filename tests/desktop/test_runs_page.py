"""The Runs page: copies of the session's trained run listed as their files say, sorted, filtered and compared;
opened on the Evaluate page; moved to the trash (the trash stubbed at Qt's QFile.moveToTrash) only when they are run
folders; timed; combined into an ensemble; distilled through the Train page."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QFile, Qt
from PySide6.QtWidgets import QComboBox, QDialog, QDoubleSpinBox, QMessageBox, QPushButton, QTableView, QTableWidget

from desktop import paths
from desktop.main_window import MainWindow
from desktop.pages.runs import COLUMNS, PATH_ROLE, RunsPage
from engine.backbones.registry import DEFAULT_BACKBONE, list_backbones
from engine.run_files import EVALUATION_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE
from engine.speed import read_speed
from engine.time_format import format_duration
from engine.tradeoff_table import DISTILLATION_FILE, TradeOffRow, tradeoff_cells
from engine.training.config import TrainConfig
from engine.training.distillation import DistillResult

Runs = dict[str, Path]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()]


def _edit_run(run_dir: Path, **changes: Any) -> None:
    (run_dir / RUN_FILE).write_text(json.dumps({**_json(run_dir / RUN_FILE), **changes}), encoding="utf-8")


@pytest.fixture
def runs(trained_run: Path, exported_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runs:
    """A runs folder of this test's own: a and b copies of the trained run (weights, split and validation photos:
    they can be opened, timed and ensembled), a with its exported model and b with lower validation curves; c on a
    "birds" dataset whose first class is "zebras"; d with a torn run.json."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))  # platformdirs reads it on every call
    folder = paths.user_data_folder() / "runs"
    found = {name: folder / f"run-{name}" for name in "abcd"}
    for name in "ab":
        shutil.copytree(trained_run, found[name], ignore=shutil.ignore_patterns("last.pt", MODEL_FILE, "speed.json"))
    shutil.copy(exported_model, found["a"] / MODEL_FILE)
    _edit_run(found["a"], created="2026-03-01T09:00:00+00:00")
    _edit_run(found["b"], created="2026-03-02T09:00:00+00:00", best_val_accuracy=0.5)
    records = [{**m, "val_accuracy": m["val_accuracy"] / 2} for m in _metrics(found["b"])]
    (found["b"] / METRICS_FILE).write_text("".join(json.dumps(m) + "\n" for m in records), encoding="utf-8")
    found["c"].mkdir()
    first_label = _json(trained_run / RUN_FILE)["labels"][0]
    for file in (RUN_FILE, METRICS_FILE, EVALUATION_FILE):
        text = (trained_run / file).read_text(encoding="utf-8")
        (found["c"] / file).write_text(text.replace(f'"{first_label}"', '"zebras"'), encoding="utf-8")
    _edit_run(found["c"], created="2026-03-03T09:00:00+00:00", data_dir=str(tmp_path / "photos" / "birds"))
    found["d"].mkdir()
    (found["d"] / RUN_FILE).write_text('{"status": "comp', encoding="utf-8")
    return found


def _listed(window: MainWindow, qtbot) -> RunsPage:
    """The Runs page, shown, once it has read the list."""
    page = window.runs_page
    window.tabs.setCurrentWidget(page)
    page.refresh()
    qtbot.waitUntil(lambda: not page.listing, timeout=30_000)
    return page


def _rows(page: RunsPage) -> list[Path]:
    """The run folders in the table's order (sorted and filtered as shown)."""
    return [page.filtered.index(row, 0).data(PATH_ROLE) for row in range(page.filtered.rowCount())]


def _cells(page: RunsPage, run_dir: Path) -> dict[str, str]:
    row = _rows(page).index(run_dir)
    return {name: page.filtered.index(row, column).data() for column, name in enumerate(COLUMNS)}


def test_each_run_is_listed_with_its_files_values(window: MainWindow, qtbot, runs: Runs) -> None:
    page = _listed(window, qtbot)
    assert window.findChild(QTableView, "runsTable") is page.table
    assert set(_rows(page)) == set(runs.values())
    for name in "abc":
        run = _json(runs[name] / RUN_FILE)
        cells = _cells(page, runs[name])
        assert cells["Date"] == datetime.fromisoformat(run["created"]).astimezone().strftime("%Y-%m-%d %H:%M")
        assert cells["Dataset"] == Path(run["data_dir"]).name
        assert (cells["Backbone"], cells["Strategy"]) == (run["backbone"], run["config"]["strategy"])
        assert (cells["Kind"], cells["Status"]) == ("single", run["status"])
        assert cells["Best val acc"] == f"{run['best_val_accuracy']:.1%}"
        assert cells["Training time"] == format_duration(sum(m["seconds"] for m in _metrics(runs[name])))
        assert cells["Test acc"] == "" and cells["Latency"] == "" and cells["Throughput"] == ""
    assert _cells(page, runs["a"])["Model size"] == f"{(runs['a'] / MODEL_FILE).stat().st_size / 1e6:.1f} MB"
    assert _cells(page, runs["c"])["Model size"] == ""
    torn = _cells(page, runs["d"])
    assert torn["Status"] == "unreadable" and torn["Dataset"] == ""
    row = next(r for r in range(page.items.rowCount()) if page.items.item(r, 0).data(PATH_ROLE) == runs["d"])
    assert page.items.item(row, COLUMNS.index("Status")).toolTip().startswith(f"{runs['d'] / RUN_FILE}: not valid")


def test_sorting_and_the_dataset_filter(window: MainWindow, qtbot, runs: Runs) -> None:
    page = _listed(window, qtbot)
    assert _rows(page) == [runs[n] for n in "cbad"]  # newest first; the run without a date last
    page.table.sortByColumn(COLUMNS.index("Best val acc"), Qt.SortOrder.AscendingOrder)
    values = [_json(p / RUN_FILE)["best_val_accuracy"] for p in _rows(page)[1:]]
    assert _rows(page)[0] == runs["d"] and values == sorted(values) and values[0] == 0.5
    page.table.sortByColumn(COLUMNS.index("Dataset"), Qt.SortOrder.DescendingOrder)
    assert [_cells(page, p)["Dataset"] for p in _rows(page)] == ["data", "data", "birds", ""]

    combo = window.findChild(QComboBox, "runsDatasetFilter")
    assert [combo.itemText(i) for i in range(combo.count())] == ["All datasets", "birds", "data"]
    combo.setCurrentIndex(combo.findData("birds"))
    assert _rows(page) == [runs["c"]]
    combo.setCurrentIndex(combo.findData("data"))
    assert set(_rows(page)) == {runs["a"], runs["b"]}
    page.refresh()  # a new list keeps the filter
    qtbot.waitUntil(lambda: not page.listing, timeout=30_000)
    assert combo.currentData() == "data" and set(_rows(page)) == {runs["a"], runs["b"]}
    combo.setCurrentIndex(0)
    assert len(_rows(page)) == 4


def test_selected_runs_are_compared_curve_by_curve_and_class_by_class(window: MainWindow, qtbot,
                                                                      runs: Runs) -> None:
    page = _listed(window, qtbot)
    page.select_runs({runs["a"], runs["b"]})
    curves = page.shown_curves()
    assert set(curves) == {runs["a"], runs["b"]} and len(page.compare_plot.legend.items) == 2
    for name in "ab":
        xs, ys = curves[runs[name]].getData()
        records = _metrics(runs[name])
        assert list(xs) == [m["epoch"] for m in records]
        assert list(ys) == pytest.approx([100 * m["val_accuracy"] for m in records])
    evaluation = _json(runs["a"] / EVALUATION_FILE)
    a_f1 = {row["label"]: f"{row['f1']:.3f}" for row in evaluation["validation"]["per_class"]}
    c_f1 = {("zebras" if label == evaluation["labels"][0] else label): f1 for label, f1 in a_f1.items()}
    assert _f1_columns(page) == {"run-b": a_f1, "run-a": a_f1}  # b's curves were edited, not its evaluation
    assert list(_f1_columns(page)) == ["run-b", "run-a"]  # the table's order: newest first

    page.select_runs({runs["a"], runs["c"]})  # c calls the first class "zebras": each run has its own rows only
    assert _f1_columns(page) == {"run-c": c_f1, "run-a": a_f1}
    assert page.f1_table.rowCount() == len(evaluation["labels"]) + 1

    b_curve = curves[runs["b"]]
    page.select_runs({runs["a"]})
    assert list(page.shown_curves()) == [runs["a"]] and len(page.compare_plot.legend.items) == 1
    assert not b_curve.isVisible()
    page.select_runs({runs["b"]})
    assert page.shown_curves()[runs["b"]] is b_curve and b_curve.isVisible()  # created once, then reused


def _f1_columns(page: RunsPage) -> dict[str, dict[str, str]]:
    """The F1 table as run -> class -> text, blank cells left out."""
    table = page.f1_table
    return {table.horizontalHeaderItem(column).text(): {
        table.verticalHeaderItem(row).text(): table.item(row, column).text()
        for row in range(table.rowCount()) if table.item(row, column) is not None}
        for column in range(table.columnCount())}


def test_open_shows_the_run_on_the_evaluate_page(window: MainWindow, qtbot, runs: Runs) -> None:
    page = _listed(window, qtbot)
    button = window.findChild(QPushButton, "openRunButton")
    page.select_runs({runs["d"]})
    assert not button.isEnabled()  # unreadable
    page.select_runs({runs["a"], runs["b"]})
    assert not button.isEnabled()
    page.select_runs({runs["a"]})
    with qtbot.waitSignal(window.evaluate_page.run_opened, timeout=60_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.evaluate_page
    assert window.evaluate_page.snapshot.run_dir == runs["a"]


def test_a_run_opened_from_elsewhere_is_listed_and_remembered(window: MainWindow, qtbot, runs: Runs,
                                                              tmp_path: Path) -> None:
    elsewhere = tmp_path / "backup" / "old-run"
    shutil.copytree(runs["c"], elsewhere)
    with qtbot.waitSignal(window.evaluate_page.run_opened, timeout=60_000):
        window.open_run(elsewhere)
    page = _listed(window, qtbot)
    assert elsewhere in _rows(page) and page.added_runs() == [elsewhere]


@pytest.fixture
def trash(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """QFile.moveToTrash replaced (it records the paths, and answers ``result``); the confirmation answered Yes."""
    record: dict[str, Any] = {"trashed": [], "questions": [], "result": True}

    def move_to_trash(path: str) -> bool:
        record["trashed"].append(path)
        return record["result"]

    def question(_parent: object, _title: str, text: str, *_args: object) -> QMessageBox.StandardButton:
        record["questions"].append(text)
        return QMessageBox.StandardButton.Yes

    monkeypatch.setattr(QFile, "moveToTrash", staticmethod(move_to_trash))
    monkeypatch.setattr(QMessageBox, "question", question)
    return record


def test_delete_moves_only_run_folders_to_the_trash_after_asking(window: MainWindow, qtbot, runs: Runs,
                                                                 trash: dict[str, Any]) -> None:
    page = _listed(window, qtbot)
    button = window.findChild(QPushButton, "deleteRunButton")
    page.select_runs({runs["b"]})
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert trash["trashed"] == [str(runs["b"])] and str(runs["b"]) in trash["questions"][0]
    assert runs["b"] not in _rows(page) and len(_rows(page)) == 3

    (runs["c"] / RUN_FILE).unlink()  # no longer a run folder: refused, without asking
    page.select_runs({runs["c"]})
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert trash["trashed"] == [str(runs["b"])] and len(trash["questions"]) == 1
    assert "has no run.json: it is not a run folder" in page.status.text() and runs["c"] in _rows(page)

    trash["result"] = False  # the system has no trash for that disk: reported, the row stays
    page.select_runs({runs["a"]})
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert trash["trashed"][-1] == str(runs["a"]) and runs["a"] in _rows(page)
    assert page.status.text().startswith(f"Could not move {runs['a']} to the trash")


def test_measure_speed_fills_the_rows_figures(window: MainWindow, qtbot, runs: Runs) -> None:
    page = _listed(window, qtbot)
    button = window.findChild(QPushButton, "measureSpeedButton")
    page.select_runs({runs["a"], runs["c"]})
    assert not button.isEnabled()  # c has no exported model
    page.select_runs({runs["a"]})
    with qtbot.waitSignal(window.runners["runsWork"].finished, timeout=60_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    figures = read_speed(runs["a"])
    assert figures is not None
    cells = _cells(page, runs["a"])
    assert cells["Latency"] == f"{figures.batch1_ms:.1f} ms"
    assert cells["Throughput"] == f"{figures.images_per_second:.0f} img/s"


def test_two_runs_combine_into_a_listed_ensemble(window: MainWindow, qtbot, runs: Runs) -> None:
    page = _listed(window, qtbot)
    button = window.findChild(QPushButton, "ensembleButton")
    page.select_runs({runs["a"]})
    assert not button.isEnabled()
    page.select_runs({runs["a"], runs["b"]})
    with qtbot.waitSignal(window.runners["runsWork"].finished, timeout=120_000):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert page.status.text().startswith("Ensemble saved in "), page.status.text()
    out = Path(page.status.text().removeprefix("Ensemble saved in "))
    qtbot.waitUntil(lambda: not page.listing and out in _rows(page), timeout=30_000)
    cells = _cells(page, out)
    assert (cells["Kind"], cells["Status"]) == ("ensemble", "completed")
    assert cells["Best val acc"] == f"{_json(out / EVALUATION_FILE)['validation']['accuracy']:.1%}"

    # Opened on the Evaluate page, the ensemble (no best.pt of its own) exports like any run: one parity-checked graph.
    page.select_runs({out})
    qtbot.mouseClick(window.findChild(QPushButton, "openRunButton"), Qt.MouseButton.LeftButton)
    evaluate = window.evaluate_page
    qtbot.waitUntil(lambda: evaluate.snapshot is not None and evaluate.snapshot.run_dir == out, timeout=30_000)
    assert "ensemble of 2 runs" in evaluate.run_label.text()
    export = window.findChild(QPushButton, "exportButton")
    assert export.isEnabled()
    with qtbot.waitSignal(evaluate.model_exported, timeout=180_000) as exported:
        qtbot.mouseClick(export, Qt.MouseButton.LeftButton)
    assert exported.args == [out / MODEL_FILE] and _json(out / "export_parity.json")["passed"]


def test_distill_asks_for_the_student_and_trains_it_on_the_train_page(window: MainWindow, qtbot, runs: Runs,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[list[Path], Path, TrainConfig, bool]] = []

    def distill(teachers: list[Path], out: Path, config: TrainConfig, *, baseline: bool,
                **_sinks: Callable[..., Any]) -> DistillResult:  # the engine's own tests train students for real
        calls.append((teachers, out, config, baseline))
        shutil.copytree(runs["a"], out, dirs_exist_ok=True)  # stands in for the trained student
        return DistillResult("completed", str(out), None, ())

    monkeypatch.setattr("engine.training.distillation.distill", distill)
    page = _listed(window, qtbot)
    page.select_runs({runs["a"], runs["b"]})
    qtbot.mouseClick(window.findChild(QPushButton, "distillButton"), Qt.MouseButton.LeftButton)
    dialog = page.findChild(QDialog, "distillDialog")
    student, alpha = dialog.findChild(QComboBox, "distillStudentCombo"), dialog.findChild(QDoubleSpinBox,
                                                                                           "distillAlphaSpin")
    temperature = dialog.findChild(QDoubleSpinBox, "distillTemperatureSpin")
    defaults = TrainConfig()
    assert (student.currentData(), alpha.value(), temperature.value()) == (
        DEFAULT_BACKBONE, defaults.distill_alpha, defaults.distill_temperature)
    other = next(spec.name for spec in list_backbones() if spec.name != DEFAULT_BACKBONE)
    student.setCurrentIndex(student.findData(other))
    alpha.setValue(0.7)
    temperature.setValue(2.5)
    with qtbot.waitSignal(page.distill_requested, timeout=5_000) as request:
        dialog.accept()
    assert request.args == [[runs["b"], runs["a"]], other, 0.7, 2.5]  # in the table's order: newest first

    assert window.tabs.currentWidget() is window.train_page
    qtbot.waitUntil(lambda: bool(calls) and not window.train_page.training, timeout=60_000)
    teachers, out, config, baseline = calls[0]
    assert teachers == [runs["b"], runs["a"]] and baseline
    assert out == window.train_page.run_dir and out.parent == runs["a"].parent
    teacher = TrainConfig.from_dict(_json(runs["b"] / RUN_FILE)["config"])  # the first teacher's options
    assert config.backbone == other and config.teachers == (str(runs["b"]), str(runs["a"]))
    assert (config.distill_alpha, config.distill_temperature) == (0.7, 2.5)
    # The student is what the Evaluate page shows at the end (not the student trained without a teacher after it).
    qtbot.waitUntil(lambda: window.evaluate_page.snapshot is not None
                    and window.evaluate_page.snapshot.run_dir == out, timeout=30_000)
    assert (config.val_split, config.seed, config.epochs) == (teacher.val_split, teacher.seed, teacher.epochs)


def test_a_distilled_students_tradeoff_table_shows_when_it_alone_is_selected(window: MainWindow, qtbot,
                                                                              runs: Runs) -> None:
    rows = [TradeOffRow("teacher", str(runs["b"]), "efficientnet_lite2", 0.95, 1.0, 19_400_000, 10.1, 165.0),
            TradeOffRow("student", str(runs["a"]), "efficientnet_lite0", 0.9, 0.906, 13_600_000, 4.6, 309.0)]
    (runs["a"] / DISTILLATION_FILE).write_text(json.dumps({"models": [asdict(row) for row in rows]}),
                                               encoding="utf-8")
    page = _listed(window, qtbot)
    table = page.findChild(QTableWidget, "distillationTable")
    page.select_runs({runs["a"]})
    assert page.tradeoff_box.isVisible()
    shown = [tuple(table.item(r, c).text() for c in range(table.columnCount())) for r in range(table.rowCount())]
    assert shown == [tradeoff_cells(row) for row in rows]
    assert "19.4 MB" in shown[0] and "4.6 ms" in shown[1]
    page.select_runs({runs["a"], runs["b"]})
    assert not page.tradeoff_box.isVisible()
    page.select_runs({runs["b"]})  # no distillation.json
    assert not page.tradeoff_box.isVisible()
