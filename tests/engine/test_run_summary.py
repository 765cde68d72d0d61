"""Run summaries: the session's trained run as its files say, and copies of it edited, damaged or half-written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.run_files import EVALUATION_FILE, METRICS_FILE, MODEL_FILE, RUN_FILE
from engine.run_summary import INTERRUPTED, UNREADABLE, find_runs, per_class_f1, summarize_run, validation_curve
from engine.speed import read_speed, record_speed

CopyRun = Callable[..., Path]


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def copy_run(trained_run: Path, tmp_path: Path) -> CopyRun:
    """``copy(name, **run_changes)``: the trained run's JSON files under ``tmp_path/runs/name``, run.json changed."""

    def copy(name: str = "run", **run_changes: Any) -> Path:
        run_dir = tmp_path / "runs" / name
        run_dir.mkdir(parents=True)
        for file in (RUN_FILE, METRICS_FILE, EVALUATION_FILE):
            shutil.copy(trained_run / file, run_dir / file)
        if run_changes:
            (run_dir / RUN_FILE).write_text(json.dumps({**_json(run_dir / RUN_FILE), **run_changes}), encoding="utf-8")
        return run_dir

    return copy


def test_a_trained_run_is_summarized_as_its_files_say(trained_run: Path) -> None:
    run = _json(trained_run / RUN_FILE)
    summary = summarize_run(trained_run)
    assert summary.path == trained_run and summary.name == trained_run.name
    assert summary.status == run["status"] == "completed" and summary.error is None
    assert summary.created == run["created"]
    assert summary.data_dir == run["data_dir"] and summary.dataset == Path(run["data_dir"]).name
    assert summary.backbone == run["backbone"] and summary.strategy == run["config"]["strategy"]
    assert summary.kind == "single"
    assert summary.best_val_accuracy == run["best_val_accuracy"]
    assert summary.test_accuracy is None  # the fixture's run has no test split
    assert summary.training_seconds == pytest.approx(sum(m["seconds"] for m in _metrics(trained_run)))
    model = trained_run / MODEL_FILE  # another test may have exported it: either way the summary follows the file
    assert summary.model_size_bytes == (model.stat().st_size if model.is_file() else None)


def test_model_size_speed_and_test_accuracy_come_from_their_files(copy_run: CopyRun, exported_model: Path) -> None:
    run_dir = copy_run()
    shutil.copy(exported_model, run_dir / MODEL_FILE)
    photo = _json(run_dir / EVALUATION_FILE)["validation"]["predictions"][0]["path"]
    figures = record_speed(run_dir, [Path(photo)])
    evaluation = _json(run_dir / EVALUATION_FILE)
    evaluation["test"] = {**evaluation["validation"], "accuracy": 0.625}
    (run_dir / EVALUATION_FILE).write_text(json.dumps(evaluation), encoding="utf-8")

    summary = summarize_run(run_dir)
    assert summary.model_size_bytes == exported_model.stat().st_size
    assert summary.speed == figures == read_speed(run_dir)
    assert summary.test_accuracy == 0.625
    assert summary.status == "completed"


def test_kind_follows_run_json_and_distillation_teachers(copy_run: CopyRun, trained_run: Path) -> None:
    ensemble = summarize_run(copy_run("ensemble", kind="ensemble"))
    assert ensemble.kind == "ensemble" and ensemble.strategy is None  # its copied config's strategy is not its own
    config = _json(trained_run / RUN_FILE)["config"]
    assert summarize_run(copy_run("student", config={**config, "teachers": ["/runs/a"]})).kind == "distilled"
    assert summarize_run(copy_run("plain", config={**config, "teachers": []})).kind == "single"


def test_a_run_still_starting_or_stopped_before_an_epoch_has_no_results(copy_run: CopyRun) -> None:
    run_dir = copy_run(status="running", best_val_accuracy=-1, finished=None)
    (run_dir / METRICS_FILE).unlink()
    (run_dir / EVALUATION_FILE).unlink()
    summary = summarize_run(run_dir)
    assert (summary.status, summary.best_val_accuracy, summary.training_seconds) == ("running", None, None)
    assert summary.error is None and summary.model_size_bytes is None and summary.speed is None


def test_training_time_falls_back_to_created_to_finished(copy_run: CopyRun) -> None:
    run_dir = copy_run(created="2026-01-31T12:00:00+00:00", finished="2026-01-31T12:01:30+00:00")
    (run_dir / METRICS_FILE).unlink()
    assert summarize_run(run_dir).training_seconds == 90.0


@pytest.mark.skipif(os.name == "nt", reason="on Windows a gone process cannot be told")
def test_a_running_run_whose_process_is_gone_is_interrupted(copy_run: CopyRun) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run = copy_run("killed", status="running", process={"host": socket.gethostname(), "pid": child.pid})
    summary = summarize_run(run)
    assert summary.status == INTERRUPTED and f"its process ({child.pid} on this machine) is gone" in summary.error
    assert f"--out {run} --resume" in summary.error
    alive = copy_run("alive", status="running", process={"host": socket.gethostname(), "pid": os.getpid()})
    assert summarize_run(alive).status == "running"


def test_a_failed_run_keeps_its_message(copy_run: CopyRun) -> None:
    summary = summarize_run(copy_run(status="failed", error="CUDA out of memory"))
    assert (summary.status, summary.error) == ("failed", "CUDA out of memory")


@pytest.mark.parametrize(("file", "content", "reason"), [
    (RUN_FILE, '{"status": "compl', "not valid JSON"),
    (RUN_FILE, "[1, 2]", "not a run file"),
    (RUN_FILE, None, "missing"),
    (METRICS_FILE, '{"epoch": 0}\n{"epo', "a line is not valid JSON"),
    (METRICS_FILE, '{"epoch": "one"}\n', "every line must be an object with an integer epoch"),
    (EVALUATION_FILE, '{"labels": ["a", "b"]}', "damaged or edited"),
])
def test_a_damaged_run_is_unreadable_with_the_reason(copy_run: CopyRun, file: str, content: str | None,
                                                     reason: str) -> None:
    run_dir = copy_run()
    if content is None:
        (run_dir / file).unlink()
    else:
        (run_dir / file).write_text(content, encoding="utf-8")
    summary = summarize_run(run_dir)
    assert summary.status == UNREADABLE
    assert summary.error.startswith(f"{run_dir / file}: {reason}")


def test_a_field_of_the_wrong_type_is_named(copy_run: CopyRun) -> None:
    summary = summarize_run(copy_run(best_val_accuracy="high"))
    assert summary.status == UNREADABLE
    assert "best_val_accuracy has an invalid value 'high'" in summary.error
    assert summary.backbone is None  # nothing half-read is shown as if it were sound


def test_find_runs_lists_the_run_folders_directly_under(copy_run: CopyRun, tmp_path: Path) -> None:
    second, first = copy_run("b-run"), copy_run("a-run")
    (first.parent / "not-a-run").mkdir()
    (first.parent / ".hidden").mkdir()
    (first.parent / ".hidden" / RUN_FILE).write_text("{}", encoding="utf-8")
    (first.parent / "notes.txt").write_text("hello", encoding="utf-8")
    (first / "nested").mkdir()
    shutil.copy(first / RUN_FILE, first / "nested" / RUN_FILE)
    summaries = find_runs(first.parent)
    assert [s.path for s in summaries] == [first, second]
    assert all(s.status == "completed" for s in summaries)
    assert find_runs(tmp_path / "no-such-folder") == []


def test_validation_curve_and_per_class_f1_are_the_files_values(trained_run: Path, copy_run: CopyRun) -> None:
    records = _metrics(trained_run)
    curve = validation_curve(trained_run)
    assert curve.epochs == tuple(m["epoch"] for m in records)
    assert curve.accuracy == tuple(m["val_accuracy"] for m in records)
    assert curve.loss == tuple(m["val_loss"] for m in records)
    evaluation = _json(trained_run / EVALUATION_FILE)
    assert per_class_f1(trained_run) == {row["label"]: row["f1"] for row in evaluation["validation"]["per_class"]}
    assert list(per_class_f1(trained_run)) == evaluation["labels"]
    assert per_class_f1(trained_run, "test") == {}

    damaged = copy_run()
    (damaged / METRICS_FILE).write_text("garbage\n", encoding="utf-8")
    (damaged / EVALUATION_FILE).write_text("garbage", encoding="utf-8")
    assert validation_curve(damaged).epochs == ()
    assert per_class_f1(damaged) == {}


def test_listing_runs_loads_no_torch(trained_run: Path) -> None:
    code = (f"import sys; from engine.run_summary import find_runs; runs = find_runs({str(trained_run.parent)!r}); "
            "assert runs and runs[0].status == 'completed', runs; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
