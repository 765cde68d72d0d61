"""The Predictor window (desktop.predictor_app): the Predict page alone, driven by drops on the window."""

from __future__ import annotations

import json
from pathlib import Path

from desktop.predictor_app import PredictorWindow, smoke_report


def test_drop_model_and_photos_on_the_window(predictor_window: PredictorWindow, drop, qtbot, exported_model: Path,
                                             trained_run: Path, tmp_path: Path, capsys) -> None:
    evaluation = json.loads((trained_run / "evaluation.json").read_text(encoding="utf-8"))
    photos = [Path(row["path"]) for row in evaluation["validation"]["predictions"][:3]]
    folder = tmp_path / "photos"
    folder.mkdir()
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")

    drop(predictor_window, [exported_model, *photos, folder])  # the model loads first, the photos wait for it
    page = predictor_window.page
    qtbot.waitUntil(lambda: len(page.results) == 4 and not predictor_window.runner.busy, timeout=60_000)
    assert [r.path for r in page.results[:3]] == [str(p) for p in photos]
    assert page.results[3].error and page.results[3].path == str(broken)
    assert predictor_window.windowTitle().startswith(f"{exported_model.name} — ")
    assert ("model", str(exported_model)) in predictor_window.settings.recent()

    assert smoke_report(predictor_window) == 0
    printed = capsys.readouterr().out
    assert f"{len(evaluation['labels'])} classes" in printed and "results: 4 (1 could not be read)" in printed


def test_a_model_that_fails_to_load_shows_in_the_page_and_the_notice(predictor_window: PredictorWindow, drop,
                                                                     qtbot, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    drop(predictor_window, [bad])
    page = predictor_window.page
    qtbot.waitUntil(lambda: not predictor_window.runner.busy and "Could not load" in page.model_info.text(),
                    timeout=60_000)
    assert predictor_window.notice.isVisible() and "bad.onnx" in predictor_window.notice.message.text()
    assert smoke_report(predictor_window) == 1
