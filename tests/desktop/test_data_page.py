"""The Data page: class names fit their column; only its own jobs' progress moves the bar."""

from __future__ import annotations

from pathlib import Path

from desktop.main_window import MainWindow
from desktop.workers import Job
from engine.events import Progress


def test_class_names_are_not_cut_off(window: MainWindow, qtbot, make_dataset, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "shapes", {"circle": 4, "triangle": 4, "rounded rectangle": 4})
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        window.open_dataset(folder)
    table = window.data_page.class_table
    qtbot.waitUntil(table.isVisible)
    assert table.model().rowCount() == 3
    assert table.horizontalHeader().sectionSize(0) >= table.sizeHintForColumn(0) > 0


def test_progress_of_a_superseded_scan_is_ignored(window: MainWindow, qtbot, make_dataset, tmp_path: Path) -> None:
    folder = make_dataset(tmp_path / "shapes", {"circle": 2, "triangle": 2})
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        window.open_dataset(folder)
    progress = window.data_page.progress
    assert progress.isHidden()
    window.runners["data"].progress.emit(Job("Scanning an earlier folder", lambda _e, _c: None),
                                         Progress("validating", 3, 9))
    assert progress.isHidden() and progress.value() != 3


def test_excluded_photos_are_listed_with_their_reason(window: MainWindow, qtbot, make_dataset,
                                                      tmp_path: Path) -> None:
    from engine.dataset.journal import exclude

    folder = make_dataset(tmp_path / "shapes", {"circle": 4, "triangle": 4})
    victim = sorted((folder / "circle").iterdir())[0]
    exclude(folder, [victim], "near-duplicate")
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        window.open_dataset(folder)
    problems = window.data_page.problems
    rows = [[problems.item(r, c).text() for c in range(3)] for r in range(problems.rowCount())]
    assert ["excluded", "near-duplicate", str(victim)] in rows, rows
    assert "1 excluded" in window.data_page.status.text()
