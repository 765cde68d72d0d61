"""The Doctor view on the Data page, end to end: the real doctor (Lite0) on generated photos with planted faults,
then its actions through the journal, each followed by the page's rescan.

Set TRANSFER_STUDIO_SCREENSHOTS=folder to keep the view's screenshot (README's come from there).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import skimage.data
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QLabel, QProgressBar, QPushButton, QTabWidget

from desktop.main_window import MainWindow
from desktop.widgets.doctor_view import DoctorView, FindingsTable
from engine.dataset.doctor import DoctorReport
from engine.dataset.journal import MoveRecord, read_history
from engine.dataset.sample_data import generate_sample_dataset
from engine.training.doctor_run import diagnose_folder

DOCTOR_TIMEOUT_MS = 120_000  # the first run of a session imports torch and loads Lite0 on the worker
SCAN_TIMEOUT_MS = 60_000


@dataclass(frozen=True)
class Planted:
    folder: Path  # the pristine folder: each test works on its own copy
    report: DoctorReport  # the doctor's report on it (which also fills the feature cache the tests' runs reuse)
    original: str  # below the folder, '/'-separated
    copy: str  # the original re-saved at JPEG quality 70 in another class
    swapped: str  # a triangle filed under circles
    off_topic: str  # a photo of an astronaut among the squares


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    """3 classes x 12 generated 160 px photos with a copy in another class, a wrong label and an off-topic photo."""
    folder = generate_sample_dataset(tmp_path_factory.mktemp("doctor-view") / "data", classes=3, per_class=12,
                                     seed=3, image_size=160)
    original, copy = "circles/circles_000.jpg", "squares/copy_circles_000.jpg"
    Image.open(folder / original).convert("RGB").save(folder / copy, quality=70)
    swapped = "circles/triangles_003.jpg"
    shutil.move(folder / "triangles/triangles_003.jpg", folder / swapped)
    off_topic = "squares/astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).resize((160, 160)).save(folder / off_topic, quality=90)
    return Planted(folder, diagnose_folder(folder), original, copy, swapped, off_topic)


@pytest.fixture
def data(planted: Planted, tmp_path: Path) -> Path:
    return Path(shutil.copytree(planted.folder, tmp_path / "data"))


def _files(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def _photos(folder: Path) -> list[str]:
    return sorted(name for name in _files(folder) if not name.startswith(".transfer-studio/"))


def _cells(table: FindingsTable, row: int) -> list[str]:
    return [table.items.item(row, column).text() for column in range(table.items.columnCount())]


def _row_of(table: FindingsTable, relative: str) -> int:
    rows = [row for row, finding in enumerate(table.findings) if any(p.endswith(relative) for p in finding.photos)]
    assert rows, f"{relative} is not in {table.objectName()}: {[_cells(table, r) for r in range(len(table.findings))]}"
    return rows[0]


def _open(window: MainWindow, qtbot, folder: Path) -> DoctorView:
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=SCAN_TIMEOUT_MS):
        window.open_dataset(folder)
    return window.data_page.doctor_view


def _run_doctor(view: DoctorView, qtbot, find) -> None:
    run = find("runDoctorButton", QPushButton)
    assert run.isEnabled()
    qtbot.mouseClick(run, Qt.MouseButton.LeftButton)
    assert view.running and not run.isEnabled() and find("cancelDoctorButton", QPushButton).isEnabled()
    qtbot.waitUntil(lambda: not view.running, timeout=DOCTOR_TIMEOUT_MS)
    assert view.report is not None, find("doctorStatusLabel", QLabel).text()


def _act(window: MainWindow, qtbot, action) -> None:  # noqa: ANN001
    """Run an action of the view and wait for the rescan that follows it."""
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=SCAN_TIMEOUT_MS):
        action()


def test_the_doctor_finds_the_planted_copy_and_exclude_keeps_the_original(
        window: MainWindow, find, qtbot, planted: Planted, data: Path) -> None:
    assert not find("runDoctorButton", QPushButton).isEnabled()  # no dataset yet
    view = _open(window, qtbot, data)
    _run_doctor(view, qtbot, find)

    status = find("doctorStatusLabel", QLabel).text()
    assert "1 near-duplicate group(s)" in status and "1 with conflicting labels" in status, status
    assert find("doctorProgressBar", QProgressBar).isHidden()
    queues = find("doctorQueues", QTabWidget)
    summary = planted.report.summary()
    assert [queues.tabText(i) for i in range(3)] == [
        "Near-duplicates (1)", f"Likely wrong labels ({summary['likely_wrong_labels']}"
        + (f" + {summary['possible_wrong_labels']} possible)" if summary["possible_wrong_labels"] else ")"),
        f"Outliers ({summary['outliers']})"]
    duplicates = find("duplicatesTable", FindingsTable)
    assert queues.currentWidget() is duplicates
    assert _cells(duplicates, 0)[:3] == ["conflicting labels", "circles, squares",
                                         f"{planted.original} · {planted.copy}"]
    assert _row_of(find("outliersTable", FindingsTable), planted.off_topic) == 0

    # The first group is selected: its photos side by side, the kept one first, thumbnails loaded on the worker.
    assert duplicates.selected_rows() == [0]
    assert [path for path, _ in view.preview_tiles] == [str(data / planted.original), str(data / planted.copy)]
    qtbot.waitUntil(lambda: all(not label.pixmap().isNull() for _, label in view.preview_tiles), timeout=10_000)

    if shots := os.environ.get("TRANSFER_STUDIO_SCREENSHOTS"):
        window.resize(1200, 800)
        qtbot.wait(100)
        Path(shots).mkdir(parents=True, exist_ok=True)
        assert window.grab().save(str(Path(shots) / "doctor-view.png"))

    exclude = find("excludeButton", QPushButton)
    _act(window, qtbot, lambda: qtbot.mouseClick(exclude, Qt.MouseButton.LeftButton))
    reason = f"near-duplicate of {planted.original}"
    excluded = json.loads((data / ".transfer-studio" / "excluded.json").read_text(encoding="utf-8"))["excluded"]
    assert [(entry["path"], entry["reason"]) for entry in excluded] == [(planted.copy, reason)]
    problems = window.data_page.problems
    rows = [[problems.item(r, c).text() for c in range(3)] for r in range(problems.rowCount())]
    assert ["excluded", reason, str(data / planted.copy)] in rows, rows
    assert "1 excluded" in window.data_page.status.text()
    assert (data / planted.original).is_file() and (data / planted.copy).is_file()  # nothing is deleted
    assert _cells(duplicates, 0)[-1] == "excluded 1 copy"
    assert not exclude.isEnabled()  # the group is handled; Undo reopens it
    assert find("doctorStatusLabel", QLabel).text().startswith("Excluded 1 photo(s)")


def test_move_to_class_then_undo_puts_the_photo_back(window: MainWindow, find, qtbot, planted: Planted, data: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    view = _open(window, qtbot, data)
    _run_doctor(view, qtbot, find)
    issues = find("labelIssuesTable", FindingsTable)
    find("doctorQueues", QTabWidget).setCurrentWidget(issues)
    row = _row_of(issues, planted.swapped)
    issues.selectRow(row)
    assert _cells(issues, row)[1:3] == ["circles", "triangles"]
    assert view.preview_title.text() == "Likely wrong label: filed under circles; the doctor suggests triangles."

    asked = []
    monkeypatch.setattr(QInputDialog, "getItem", lambda *args: asked.append(args[3:5]) or ("", False))
    qtbot.mouseClick(find("moveToClassButton", QPushButton), Qt.MouseButton.LeftButton)
    assert asked == [(["circles", "squares", "triangles"], 2)]  # the suggested class preselected; cancelled

    before = _photos(data)
    moved_to = "triangles/triangles_003.jpg"
    _act(window, qtbot, lambda: view.move_selected_to("triangles"))
    assert not (data / planted.swapped).exists() and (data / moved_to).is_file()
    last = read_history(data).undoable[-1]
    assert isinstance(last, MoveRecord) and (last.source, last.destination) == (planted.swapped, moved_to)
    assert _cells(issues, row)[-1] == "moved to triangles"
    assert window.data_page.report is not None and window.data_page.report.counts["train"]["triangles"] + \
        window.data_page.report.counts["val"]["triangles"] == 12
    assert sorted(set(before) - {planted.swapped} | {moved_to}) == _photos(data)

    _act(window, qtbot, lambda: qtbot.mouseClick(find("undoButton", QPushButton), Qt.MouseButton.LeftButton))
    assert (data / planted.swapped).is_file() and not (data / moved_to).exists()
    assert _photos(data) == before  # nothing lost, nothing duplicated
    assert _cells(issues, row)[-1] == ""  # open again
    assert find("doctorStatusLabel", QLabel).text() == f"Undone: {planted.swapped} is back in its folder."

    _act(window, qtbot, lambda: qtbot.mouseClick(find("undoButton", QPushButton), Qt.MouseButton.LeftButton))
    assert find("doctorStatusLabel", QLabel).text() == "Nothing to undo."
    assert _photos(data) == before


def test_bulk_exclude_makes_one_change_per_reason_and_undo_reverses_the_last(
        window: MainWindow, find, qtbot, planted: Planted, data: Path) -> None:
    view = _open(window, qtbot, data)
    _run_doctor(view, qtbot, find)
    issues = find("labelIssuesTable", FindingsTable)
    find("doctorQueues", QTabWidget).setCurrentWidget(issues)
    issues.selectAll()
    findings = issues.findings
    reasons = list(dict.fromkeys(finding.reason for finding in findings))  # in the order they are excluded
    assert len(findings) >= 2 and len(reasons) >= 2, [finding.reason for finding in findings]
    _act(window, qtbot, lambda: qtbot.mouseClick(find("excludeButton", QPushButton), Qt.MouseButton.LeftButton))
    excluded = json.loads((data / ".transfer-studio" / "excluded.json").read_text(encoding="utf-8"))["excluded"]
    expected = {(Path(finding.photos[0]).relative_to(data).as_posix(), finding.reason) for finding in findings}
    assert {(entry["path"], entry["reason"]) for entry in excluded} == expected
    assert all(_cells(issues, row)[-1] == "excluded" for row in range(len(findings)))
    assert len(read_history(data).undoable) == len(reasons)

    _act(window, qtbot, lambda: qtbot.mouseClick(find("undoButton", QPushButton), Qt.MouseButton.LeftButton))
    reopened = [row for row in range(len(findings)) if _cells(issues, row)[-1] == ""]
    assert reopened == [row for row, finding in enumerate(findings) if finding.reason == reasons[-1]]
    assert window.data_page.report is not None
    assert len(window.data_page.report.excluded) == len(findings) - len(reopened)


def test_opening_another_folder_during_an_action_is_not_undone_by_its_rescan(
        window: MainWindow, find, qtbot, planted: Planted, data: Path, make_dataset, tmp_path: Path) -> None:
    view = _open(window, qtbot, data)
    _run_doctor(view, qtbot, find)
    other = make_dataset(tmp_path / "other", {"a": 3, "b": 3})
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=SCAN_TIMEOUT_MS):
        qtbot.mouseClick(find("excludeButton", QPushButton), Qt.MouseButton.LeftButton)  # the planted copy
        window.open_dataset(other)  # queued behind the exclusion
    runner = window.runners["data"]
    qtbot.waitUntil(lambda: not runner.busy, timeout=SCAN_TIMEOUT_MS)
    assert window.data_page.report is not None and window.data_page.report.root == str(other.resolve())
    assert view.report is None and find("doctorStatusLabel", QLabel).text().startswith("The doctor finds")
    assert (data / ".transfer-studio" / "excluded.json").is_file()  # the exclusion itself was made


def test_a_journal_error_shows_in_the_status_label(window: MainWindow, find, qtbot, planted: Planted,
                                                   data: Path, tmp_path: Path) -> None:
    view = _open(window, qtbot, data)
    _run_doctor(view, qtbot, find)
    outliers = find("outliersTable", FindingsTable)
    find("doctorQueues", QTabWidget).setCurrentWidget(outliers)
    outliers.selectRow(_row_of(outliers, planted.off_topic))
    shutil.move(data / planted.off_topic, tmp_path / "elsewhere.jpg")  # gone since the doctor ran
    _act(window, qtbot, lambda: qtbot.mouseClick(find("excludeButton", QPushButton), Qt.MouseButton.LeftButton))
    status = find("doctorStatusLabel", QLabel).text()
    assert status.startswith("Could not exclude: ") and "nothing was excluded" in status, status
    assert _cells(outliers, 0)[-1] == ""
    assert not (data / ".transfer-studio" / "excluded.json").exists()


def test_cancelling_the_doctor_stops_it_and_changes_nothing(window: MainWindow, find, qtbot, tmp_path: Path) -> None:
    # Photos the session has not seen: their features are not cached, so the doctor is still busy when cancelled.
    folder = generate_sample_dataset(tmp_path / "fresh", classes=3, per_class=12, seed=11, image_size=160)
    before = _files(folder)
    view = _open(window, qtbot, folder)
    runner = window.runners["data"]
    with qtbot.waitSignal(runner.progress, timeout=DOCTOR_TIMEOUT_MS,
                          check_params_cb=lambda job, _event: job is view._doctor_job):
        qtbot.mouseClick(find("runDoctorButton", QPushButton), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(find("cancelDoctorButton", QPushButton), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not view.running, timeout=DOCTOR_TIMEOUT_MS)
    assert find("doctorStatusLabel", QLabel).text() == "Doctor stopped."
    assert view.report is None and all(not table.findings for table in view.tables())
    assert find("runDoctorButton", QPushButton).isEnabled() and not find("cancelDoctorButton", QPushButton).isEnabled()
    assert find("doctorProgressBar", QProgressBar).isHidden()
    assert _files(folder) == before
