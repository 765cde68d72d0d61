"""distill(): a student of a trained run, stopped and resumed, on the teacher's split, compared in distillation.json;
and the distill and train --split-from commands."""

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.control import RunControl
from engine.events import EpochEnded
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.distillation import DISTILLATION_FILE, distill, without_teacher_dir
from engine.training.trainer import RunExistsError


def test_distillation_options_round_trip_through_run_json_and_are_checked() -> None:
    config = TrainConfig(teachers=("/runs/big", "/runs/ensemble"), split_from="/runs/big", distill_alpha=0.9,
                         distill_temperature=2.0)
    assert TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    for options, message in (({"distill_alpha": 1.5}, "distill_alpha"), ({"distill_temperature": 0.0}, "temperature"),
                             ({"teachers": ("",)}, "teachers must be run folders")):
        with pytest.raises(ValueError, match=message):
            TrainConfig(**options)
    with pytest.raises(ValueError, match="teachers"):
        TrainConfig.from_dict({"teachers": [1]})


@pytest.fixture
def teacher(trained_run: Path, exported_model: Path, tmp_path: Path) -> Path:
    """The session's trained run (exported already), copied: a distillation times it, writing speed.json there."""
    return shutil.copytree(trained_run, tmp_path / "teacher")


def _split(run: Path) -> dict[str, str]:
    report = rf.read_scan_report(rf.read_run(run))
    return {str(Path(item.path).relative_to(report.root)): item.split for item in report.items}


def test_a_stopped_distillation_resumes_and_compares_its_learned_student(teacher: Path, tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    out, control = tmp_path / "student", RunControl()

    def stop_after_the_first_fine_tune_epoch(event: object) -> None:
        if isinstance(event, EpochEnded) and event.epoch == 1:
            control.cancel()

    # One augmented view for both epochs: kept in the feature cache, so the student without a teacher reuses it.
    config = TrainConfig(epochs=2, augment_views=1, batch_size=16, early_stopping=0)
    stopped = distill([teacher], out, config, on_event=stop_after_the_first_fine_tune_epoch, control=control)
    assert stopped.status == "cancelled" and rf.read_run(out).status == "cancelled"
    assert not without_teacher_dir(out).exists() and not (out / DISTILLATION_FILE).exists()

    assert main(["distill", "--out", str(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert [m["epoch"] for m in rf.read_metrics(out)] == [0, 1, 2], "resumed after epoch 1, not started again"
    student, baseline = rf.read_run(out), rf.read_run(without_teacher_dir(out))
    assert student.config.teachers == (str(teacher),) and student.config.split_from == str(teacher)
    assert baseline.config.teachers == () and baseline.config == TrainConfig.from_dict(
        {**student.config.to_dict(), "teachers": []}), "the same student, options and seed, without a teacher"
    assert _split(out) == _split(without_teacher_dir(out)) == _split(teacher)

    evaluation = json.loads((out / rf.EVALUATION_FILE).read_text())
    assert evaluation["validation"]["accuracy"] >= 0.8, "learned: 3 classes, chance is 0.33"
    document = json.loads((out / DISTILLATION_FILE).read_text())
    assert (document["alpha"], document["temperature"]) == (0.5, 4.0)
    assert [(m["role"], m["run"]) for m in document["models"]] == [
        ("teacher", str(teacher)), ("student", str(out)), ("without_teacher", str(without_teacher_dir(out)))]
    for row in document["models"]:
        run = Path(row["run"])
        assert row["size_bytes"] == (run / rf.MODEL_FILE).stat().st_size
        assert row["validation_accuracy"] == json.loads((run / rf.EVALUATION_FILE).read_text())["validation"][
            "accuracy"]
        assert row["batch1_ms"] > 0 and row["images_per_second"] > 0 and row["backbone"] == "efficientnet_lite0"
        assert row["test_accuracy"] is None, "the teacher's split has no test photos"
    assert "student without a teacher" in printed and str(out / DISTILLATION_FILE) in printed

    with pytest.raises(RunExistsError, match="other options .*epochs"):
        distill([teacher], out, TrainConfig(epochs=3, augment_views=1, batch_size=16, early_stopping=0))


def test_distill_and_split_from_refuse_bad_input_in_one_line(teacher: Path, small_data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    def refused(*argv: str) -> str:
        assert main(list(argv)) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0
        return err

    out = str(tmp_path / "student")
    assert "--teacher RUN is required" in refused("distill", "--out", out)
    assert "already holds a run" in refused("distill", "--teacher", str(teacher), "--out", str(teacher))
    assert "feature-extract" in refused("distill", "--teacher", str(teacher), "--out", out,
                                        "--strategy", "feature-extract")
    assert "not a distillation" in refused("distill", "--out", str(teacher), "--resume")
    assert "differ" in refused("train", str(small_data), "--out", out, "--split-from", str(teacher))
    assert not Path(out).exists()
