"""Reading a run's records: run.json as a validated RunInfo, the recorded split, the metrics."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from engine.dataset.report import ImageItem, ScanReport
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.recipe import FineTunePlan


def test_fine_tune_throughput_is_total_images_over_total_seconds() -> None:
    records = [{"phase": "head", "images_per_second": 1000.0, "seconds": 1.0},
               {"phase": "fine-tune", "images_per_second": 10.0, "seconds": 2.0},  # computed a view: slow
               {"phase": "fine-tune", "images_per_second": 100.0, "seconds": 1.0}]
    assert rf.fine_tune_throughput(records) == 40.0  # (20 + 100) images / 3 s, not the mean of the rates (55)
    assert rf.fine_tune_throughput(records[:1]) is None


def _document(**changes: object) -> dict:
    return {"status": "cancelled", "created": "2026-01-01T00:00:00+00:00", "data_dir": "/data",
            "config": TrainConfig(epochs=3).to_dict(), "backbone": "efficientnet_lite0", "labels": ["a", "b"],
            "preprocessing": {"resize": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3,
                              "interpolation": "bicubic"},
            "dataset": {"counts": {"train": {"a": 6, "b": 5}, "val": {"a": 2, "b": 1}, "test": {"a": 0, "b": 0}}},
            "versions": {"torch": "2"}, "device": "CPU (2 threads)",
            "plan": FineTunePlan("shallow", 5, 3, 2, 3, False, "as asked").to_dict(),
            "best_epoch": 2, "best_val_accuracy": 1, "epochs_completed": 3, "finished": "2026-01-01T00:01:00+00:00",
            **changes}


def test_run_info_gives_every_field_readers_use_typed(tmp_path: Path) -> None:
    rf.write_run_file(tmp_path, _document())
    info = rf.read_run(tmp_path)
    assert info.plan == FineTunePlan("shallow", 5, 3, 2, 3, False, "as asked")
    assert info.dataset_counts == {"train": {"a": 6, "b": 5}, "val": {"a": 2, "b": 1}, "test": {"a": 0, "b": 0}}
    assert (info.best_epoch, info.best_val_accuracy, info.epochs_completed) == (2, 1.0, 3)
    assert isinstance(info.best_val_accuracy, float) and info.error is None
    assert (info.backbone, info.device, info.versions, info.created) == (
        "efficientnet_lite0", "CPU (2 threads)", {"torch": "2"}, "2026-01-01T00:00:00+00:00")
    rf.write_run_file(tmp_path, {k: v for k, v in _document().items() if k not in ("plan", "best_epoch", "dataset")})
    started = rf.read_run(tmp_path)
    assert (started.plan, started.best_epoch, started.dataset_counts) == (None, None, None)


@pytest.mark.parametrize("changes", [
    {"plan": {**FineTunePlan("shallow", 5, 3, 2, 3, False, "x").to_dict(), "epochs": "three"}},
    {"plan": {"depth": "shallow"}},
    {"dataset": {"counts": {"train": {"a": 6}}}},
    {"dataset": {"counts": {"holdout": {"a": 6, "b": 5}}}},
    {"best_epoch": True},
    {"best_val_accuracy": "high"},
    {"error": 3},
])
def test_run_info_refuses_edited_fields(tmp_path: Path, changes: dict) -> None:
    rf.write_run_file(tmp_path, _document(**changes))
    with pytest.raises(rf.RunFolderError, match="damaged or edited run file, refused"):
        rf.read_run(tmp_path)


def test_the_recorded_split_must_name_the_run_s_classes(tmp_path: Path) -> None:
    rf.write_run_file(tmp_path, _document())
    info = rf.read_run(tmp_path)
    with pytest.raises(rf.RunFolderError, match="recorded split"):
        rf.read_scan_report(info)
    report = ScanReport("/data", "class-folders", ("a", "c"), (ImageItem("/data/a/1.png", 0, "train"),))
    (tmp_path / rf.SCAN_REPORT_FILE).write_text(json.dumps(report.to_dict()))
    with pytest.raises(rf.RunFolderError, match="differ from run.json"):
        rf.read_scan_report(info)
    (tmp_path / rf.SCAN_REPORT_FILE).write_text(json.dumps(replace(report, classes=("a", "b")).to_dict()))
    assert rf.read_scan_report(info).items == report.items


def test_run_folder_reads_without_torch() -> None:
    """The GUI reads runs through RunInfo before (and without) loading torch."""
    code = "import engine.training.run_folder, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
