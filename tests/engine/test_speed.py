"""Speed figures: measured on the session's exported model, recorded beside it, and forgotten when it changes."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from engine.control import Cancelled, RunControl
from engine.errors import BadInputError
from engine.events import Progress
from engine.run_files import EVALUATION_FILE, MODEL_FILE, RUN_FILE
from engine.speed import SPEED_FILE, measure_speed, read_speed, record_speed, validation_photos


@pytest.fixture
def exported_copy(trained_run: Path, exported_model: Path, tmp_path: Path) -> Path:
    """The run's files that speed reads, in a folder of this test's own."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for name in (RUN_FILE, EVALUATION_FILE):
        shutil.copy(trained_run / name, run_dir / name)
    shutil.copy(exported_model, run_dir / MODEL_FILE)
    return run_dir


def _validation_paths(run_dir: Path) -> list[str]:
    document = json.loads((run_dir / EVALUATION_FILE).read_text(encoding="utf-8"))
    return [p["path"] for p in document["validation"]["predictions"]]


def test_record_speed_times_the_validation_photos_and_reads_back(exported_copy: Path) -> None:
    events: list[object] = []
    started = time.perf_counter()
    figures = record_speed(exported_copy, on_event=events.append)
    elapsed = time.perf_counter() - started

    assert figures.images == len(_validation_paths(exported_copy)) > 0
    assert figures.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    # Real timings of parts of the call: 20 single runs, then the folder, each within the call's own time.
    assert 0 < figures.batch1_ms * 20 / 1000 < elapsed
    assert figures.images / figures.images_per_second < elapsed
    assert any(isinstance(e, Progress) and e.phase == "timing one image" and e.done == 20 for e in events)
    assert any(isinstance(e, Progress) and e.phase == "predicting" and e.done == figures.images for e in events)
    assert read_speed(exported_copy) == figures
    recorded = json.loads((exported_copy / SPEED_FILE).read_text(encoding="utf-8"))
    assert recorded["model"]["size_bytes"] == (exported_copy / MODEL_FILE).stat().st_size


def test_read_speed_forgets_figures_of_a_replaced_model(exported_copy: Path) -> None:
    assert read_speed(exported_copy) is None  # never measured
    photo = Path(_validation_paths(exported_copy)[0])
    assert record_speed(exported_copy, [photo]).images == 1
    assert read_speed(exported_copy) is not None
    model = exported_copy / MODEL_FILE
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # exported again, same size
    assert read_speed(exported_copy) is None
    record_speed(exported_copy, [photo])
    (exported_copy / SPEED_FILE).write_text("{\"batch1_ms\": ", encoding="utf-8")  # a torn or edited file
    assert read_speed(exported_copy) is None
    model.unlink()
    assert read_speed(exported_copy) is None


def test_unreadable_photos_are_left_out_of_the_throughput(exported_copy: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photo = Path(_validation_paths(exported_copy)[0])
    figures = measure_speed(exported_copy / MODEL_FILE, [broken, photo, broken], repeats=2)
    assert figures.images == 1
    with pytest.raises(BadInputError, match="none of the 2 images could be read"):
        measure_speed(exported_copy / MODEL_FILE, [broken, broken], repeats=2)


def test_bad_requests_name_the_file_and_the_fix(exported_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="no images"):
        measure_speed(exported_copy / MODEL_FILE, [])
    empty_run = tmp_path / "empty-run"
    empty_run.mkdir()
    with pytest.raises(BadInputError, match=r"empty-run: no exported model \(model.onnx\).*export the run first"):
        record_speed(empty_run)
    evaluation = exported_copy / EVALUATION_FILE
    document = json.loads(evaluation.read_text(encoding="utf-8"))
    for prediction in document["validation"]["predictions"]:
        prediction["path"] = str(tmp_path / "moved-away.jpg")
    evaluation.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(BadInputError, match="none of the run's validation photos are still on disk"):
        record_speed(exported_copy)
    evaluation.write_text("{}", encoding="utf-8")
    with pytest.raises(BadInputError, match="evaluation.json: damaged or edited"):
        validation_photos(exported_copy)
    assert not (exported_copy / SPEED_FILE).exists()


def test_validation_photos_keeps_those_on_disk_up_to_the_limit(exported_copy: Path) -> None:
    paths = _validation_paths(exported_copy)
    assert validation_photos(exported_copy, limit=3) == [Path(p) for p in paths[:3]]


def test_a_cancelled_measurement_stops(exported_copy: Path) -> None:
    control = RunControl()
    control.cancel()
    with pytest.raises(Cancelled):
        measure_speed(exported_copy / MODEL_FILE, [Path(_validation_paths(exported_copy)[0])], control=control)
