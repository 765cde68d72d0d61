"""The GUI's engine jobs, run directly (no thread): what they hand to the pages."""

from __future__ import annotations

from pathlib import Path

from desktop import jobs
from engine.control import RunControl
from engine.events import ignore_event
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.recipe import FineTunePlan


def test_read_run_hands_over_the_engines_typed_run_info(tmp_path: Path) -> None:
    config = TrainConfig(epochs=4)
    plan = FineTunePlan("shallow", 5, 4, 2, 3, False, "the quick head fits")
    rf.write_run_file(tmp_path, {
        "status": "cancelled", "data_dir": str(tmp_path / "data"), "config": config.to_dict(),
        "backbone": config.backbone, "labels": ["cat", "dog"],
        "preprocessing": Preprocessing(256, 224, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)).to_dict(),
        "plan": plan.to_dict(), "best_epoch": 2, "best_val_accuracy": 0.75})
    (tmp_path / rf.LAST_FILE).touch()
    snapshot = jobs.read_run(tmp_path).function(ignore_event, RunControl())
    assert snapshot.info == rf.read_run(tmp_path) and snapshot.info.plan == plan
    assert snapshot.run_dir == tmp_path and snapshot.resumable
    assert snapshot.metrics == [] and snapshot.evaluation is None and snapshot.model_path is None
