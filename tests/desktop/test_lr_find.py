"""The learning-rate finder on the Train page: a sweep on a worker, its curve and suggestion, stopping, errors."""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QPushButton

from desktop import jobs
from desktop.main_window import MainWindow
from desktop.workers import Job
from engine.control import RunControl
from engine.events import EventSink, Progress
from engine.training.config import TrainConfig

TIMEOUT_MS = 240_000
STEPS = 20
SWEEP_PHASE = "learning-rate sweep"


@pytest.fixture
def short_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweeps of 20 steps instead of the engine's 200."""
    monkeypatch.setattr(jobs, "find_learning_rate", partial(jobs.find_learning_rate, steps=STEPS))


def _open_dataset(window: MainWindow, qtbot, folder: Path) -> None:
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        window.data_page.open_dataset(folder)
    window.tabs.setCurrentWidget(window.train_page)
    window.train_page.options_form.advanced.set_expanded(True)


@pytest.mark.usefixtures("short_sweep")
def test_the_sweep_shows_its_curve_and_the_suggestion_sets_the_learning_rate(window: MainWindow, find, qtbot,
                                                                            small_data: Path) -> None:
    _open_dataset(window, qtbot, small_data)
    find_button, start = find("findLearningRateButton", QPushButton), find("startButton", QPushButton)
    use, plot = find("useSuggestedLrButton", QPushButton), window.train_page.lr_find_panel.plot
    assert find("lrFindPlot") is plot and not plot.isVisible()
    with qtbot.waitSignal(window.runners["training"].returned, timeout=TIMEOUT_MS,
                          check_params_cb=lambda job, _result: job.description.startswith("Finding")) as returned:
        qtbot.mouseClick(find_button, Qt.MouseButton.LeftButton)
        assert find_button.text() == "Stop" and find_button.isEnabled()
        assert not start.isEnabled()  # no training while the sweep runs
    result = returned.args[1]
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    assert find_button.text() == "Find learning rate" and find_button.isEnabled()

    assert plot.isVisible() and plot.getPlotItem().getAxis("bottom").logMode
    rates, losses = plot.curves["smoothed"].getOriginalDataset()
    assert list(rates) == result.learning_rates and list(losses) == result.smoothed
    assert 3 <= len(rates) <= STEPS
    marked, _ = plot.curves["suggestion"].getOriginalDataset()
    assert list(marked) == [result.suggestion]

    shown = float(re.search(r"\d\.\de[-+]\d\d", find("lrSuggestionLabel", QLabel).text()).group())
    assert math.isfinite(shown) and shown == pytest.approx(result.suggestion, rel=0.05)
    assert use.text() == f"Use {shown:.1e}"
    qtbot.mouseClick(use, Qt.MouseButton.LeftButton)
    assert find("learningRateSpin", QDoubleSpinBox).value() == pytest.approx(shown)
    assert window.train_page.options_form.options()["lr"] == pytest.approx(shown)
    assert "suggested" in window.train_page.log_view.text()


@pytest.fixture
def held_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real sweep, paused after its first step, so that Stop lands mid-sweep whatever the machine's speed
    (cancel wakes a paused run, which then stops at its next check)."""
    make_job = jobs.find_learning_rate

    def held(data_dir: Path, config: TrainConfig, *, steps: int | None = None) -> Job:
        job = make_job(data_dir, config, steps=STEPS)
        sweep = job.function

        def run(on_event: EventSink, control: RunControl) -> object:
            def on_sweep_event(event: object) -> None:
                if isinstance(event, Progress) and event.phase == SWEEP_PHASE:
                    control.pause()  # before the event goes out: Stop, which answers it, must come after
                on_event(event)

            return sweep(on_sweep_event, control)

        job.function = run
        return job

    monkeypatch.setattr(jobs, "find_learning_rate", held)


@pytest.mark.usefixtures("held_sweep")
def test_stopping_the_sweep_leaves_the_page_usable(window: MainWindow, find, qtbot, small_data: Path) -> None:
    _open_dataset(window, qtbot, small_data)
    runner = window.runners["training"]
    find_button, start = find("findLearningRateButton", QPushButton), find("startButton", QPushButton)
    with qtbot.waitSignal(runner.progress, timeout=TIMEOUT_MS, check_params_cb=lambda _job, e: e.phase == SWEEP_PHASE):
        qtbot.mouseClick(find_button, Qt.MouseButton.LeftButton)
    assert not start.isEnabled()
    with qtbot.waitSignal(runner.aborted, timeout=60_000):
        qtbot.mouseClick(find_button, Qt.MouseButton.LeftButton)
        assert not find_button.isEnabled()  # stopping
    qtbot.waitUntil(start.isEnabled, timeout=10_000)
    assert find_button.isEnabled() and find_button.text() == "Find learning rate"
    assert not window.train_page.lr_find_panel.result_box.isVisible()
    assert "Learning-rate sweep stopped." in window.train_page.log_view.text()
    assert find("progressBar").format() == "Stopped"


def test_a_bad_folder_fails_as_a_message_and_no_dataset_disables_the_button(window: MainWindow, find, qtbot,
                                                                           tmp_path: Path) -> None:
    find_button = find("findLearningRateButton", QPushButton)
    assert not find_button.isEnabled()  # no dataset yet
    page = window.train_page
    page.set_dataset(tmp_path / "gone", "2 classes")  # e.g. deleted after it was scanned
    with qtbot.waitSignal(window.runners["training"].failed, timeout=TIMEOUT_MS,
                          check_params_cb=lambda job, *_: job.description.startswith("Finding")):
        qtbot.mouseClick(find_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(find_button.isEnabled, timeout=10_000)
    assert find("startButton", QPushButton).isEnabled()
    assert "Learning-rate sweep failed" in page.log_view.text()
    assert "Finding a learning rate for gone failed" in find("noticeText", QLabel).text()
