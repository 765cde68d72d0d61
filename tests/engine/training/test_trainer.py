"""Training end to end on generated data: it learns, it records, it stops and resumes, it fails clearly."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.backbones.build import create_model
from engine.backbones.inference import load_trained_model
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.evaluation.calibration import fit_temperature, softmax
from engine.events import BatchProgress, EpochEnded, RunFailed, RunFinished, WarningEvent
from engine.training import fine_tune as fine_tune_module
from engine.training import preparation as preparation_module
from engine.training import run_folder as rf
from engine.training.checkpoints import load_checkpoint
from engine.training.config import TrainConfig
from engine.training.evaluate_run import evaluate_run, predict_logits
from engine.training.trainer import RunExistsError, train


def test_feature_extract_learns_held_out_data(sample_data: Path, tmp_path: Path) -> None:
    events: list = []
    result = train(sample_data, tmp_path / "run", TrainConfig(strategy="feature-extract"), on_event=events.append)
    assert result.status == "completed"
    evaluation = json.loads((tmp_path / "run" / rf.EVALUATION_FILE).read_text())
    assert evaluation["validation"]["accuracy"] >= 0.9
    assert evaluation["validation"]["count"] == len(evaluation["validation"]["predictions"]) >= 15
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [0]
    assert isinstance(events[-1], RunFinished)


def test_fine_tune_run_folder_is_complete(trained_run: Path) -> None:
    run = rf.read_run(trained_run)
    assert run.status == "completed"
    metrics = rf.read_metrics(trained_run)
    assert [m["epoch"] for m in metrics] == [0, 1, 2]
    assert [m["phase"] for m in metrics] == ["head", "fine-tune", "fine-tune"]
    assert all(0 < m["view_seconds"] < m["seconds"] for m in metrics[1:]) and rf.fine_tune_throughput(metrics) > 0
    assert run.best_val_accuracy == max(m["val_accuracy"] for m in metrics)
    assert run.epochs_completed == 3 and run.plan is not None and run.plan.epochs == 2
    assert {"torch", "torchvision", "transfer_studio"} <= set(run.versions)
    last = load_checkpoint(trained_run / rf.LAST_FILE)
    assert last["epoch"] == 2 and last["optimizer"] is not None and last["scheduler"] is not None
    assert load_checkpoint(trained_run / rf.BEST_FILE)["epoch"] == run.best_epoch
    model, _ = load_trained_model(trained_run)
    validation = rf.read_scan_report(run).split_items("val")
    predicted = predict_logits(model, validation, DecodedImageCache(run.preprocessing)).argmax(1)
    assert np.mean(predicted == [i.label for i in validation]) == pytest.approx(run.best_val_accuracy), (
        "best.pt, evaluated afresh on the recorded validation photos, scores the recorded best accuracy")
    evaluation = json.loads((trained_run / rf.EVALUATION_FILE).read_text())
    split = evaluation["validation"]
    assert split["accuracy"] >= 0.9
    assert {"accuracy", "balanced_accuracy", "macro", "per_class", "confusion_matrix", "top_k_accuracy",
            "predictions"} <= set(split)
    assert json.loads((trained_run / rf.SCAN_REPORT_FILE).read_text())["classes"] == evaluation["labels"]


def test_reevaluation_matches_training_evaluation(trained_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))  # evaluate_run rewrites evaluation.json
    saved = json.loads((run / rf.EVALUATION_FILE).read_text())
    again = evaluate_run(run)
    assert [p["predicted"] for p in again["validation"]["predictions"]] == [
        p["predicted"] for p in saved["validation"]["predictions"]]
    assert again["validation"]["accuracy"] == saved["validation"]["accuracy"]
    assert again["calibration"]["temperature"] == pytest.approx(saved["calibration"]["temperature"], rel=1e-3)
    elsewhere = evaluate_run(run, rf.read_run(run).data_dir)  # another folder: the run's temperature, not refitted
    assert "calibration" not in elsewhere
    confidence = {p["path"]: p["confidence"] for p in elsewhere["validation"]["predictions"]}
    assert [confidence[p["path"]] for p in saved["validation"]["predictions"]] == pytest.approx(
        [p["confidence"] for p in saved["validation"]["predictions"]], abs=1e-4)


def test_final_evaluation_is_calibrated_on_validation(trained_run: Path) -> None:
    """The temperature is fitted on the best model's validation logits, and the saved confidences use it."""
    run = rf.read_run(trained_run)
    evaluation = json.loads((trained_run / rf.EVALUATION_FILE).read_text())
    calibration = evaluation["calibration"]
    model, _ = load_trained_model(trained_run)
    validation = rf.read_scan_report(run).split_items("val")
    logits = predict_logits(model, validation, DecodedImageCache(run.preprocessing))
    truth = np.array([i.label for i in validation])
    assert calibration["fitted_on"] == "validation" and calibration["bins"] == 15
    assert calibration["temperature"] == pytest.approx(fit_temperature(logits, truth), rel=1e-3)
    assert calibration["temperature"] != 1.0, "this run has a validation mistake to fit on"
    assert calibration["ece_after"] <= calibration["ece_before"]
    saved = {p["path"]: p["confidence"] for p in evaluation["validation"]["predictions"]}
    calibrated = softmax(logits, calibration["temperature"]).max(axis=1)
    assert [saved[i.path] for i in validation] == pytest.approx(calibrated.tolist(), abs=1e-4)
    threshold = calibration["unsure_threshold"]
    assert threshold is not None and threshold in saved.values()
    answered = [p["true"] == p["predicted"] for p in evaluation["validation"]["predictions"]
                if p["confidence"] >= threshold]
    assert np.mean(answered) >= calibration["target_accuracy"]
    assert "test" not in calibration  # no test split


def test_a_test_split_checks_the_unsure_threshold(small_data: Path, tmp_path: Path) -> None:
    train(small_data, tmp_path / "run", TrainConfig(strategy="feature-extract", device="cpu", test_split=0.25))
    evaluation = json.loads((tmp_path / "run" / rf.EVALUATION_FILE).read_text())
    calibration, predictions = evaluation["calibration"], evaluation["test"]["predictions"]
    threshold = calibration["unsure_threshold"] or 0.0
    answered = [p["true"] == p["predicted"] for p in predictions if p["confidence"] >= threshold]
    check = calibration["test"]
    assert check["count"] == len(predictions) >= 4 and check["answered"] == len(answered)
    assert check["coverage"] == len(answered) / len(predictions)
    assert check["answered_accuracy"] == (np.mean(answered) if answered else None)


def test_fine_tune_leaves_frozen_stages_and_all_batchnorm_statistics_untouched(
        small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    boundaries = []
    real_epoch = fine_tune_module.train_one_epoch

    def checked_epoch(model, first_trainable, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        stats = real_epoch(model, first_trainable, *args, **kwargs)
        frozen = list(model.stages[:first_trainable].parameters())
        assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
        assert all(p.grad is not None for p in model.stages[first_trainable:].parameters())
        boundaries.append(first_trainable)
        return stats

    monkeypatch.setattr(fine_tune_module, "train_one_epoch", checked_epoch)
    train(small_data, tmp_path / "run", TrainConfig(epochs=2, batch_size=4, early_stopping=0))
    assert len(boundaries) == 2
    pretrained = create_model("efficientnet_lite0", 2).state_dict()
    trained = load_checkpoint(tmp_path / "run" / rf.LAST_FILE)["model"]
    frozen = [k for k in pretrained if k.startswith("stages.") and int(k.split(".")[1]) < boundaries[0]]
    statistics = [k for k in pretrained if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert frozen and statistics
    assert all(torch.equal(trained[k], pretrained[k]) for k in frozen + statistics)
    top = [k for k in pretrained if k.startswith(f"stages.{boundaries[0]}.") and k.endswith("weight")]
    assert any(not torch.equal(trained[k], pretrained[k]) for k in top), "the unfrozen stages did train"


def test_compile_option_trains_the_same_model_as_eager(small_data: Path, tmp_path: Path) -> None:
    """torch.compile is opt-in: it must give the eager run's results (to float tolerance) and loadable files."""
    from torch._dynamo.utils import counters

    config = TrainConfig(epochs=1, batch_size=4, early_stopping=0, device="cpu")
    counters.clear()
    eager = train(small_data, tmp_path / "eager", config)
    assert counters["frames"]["ok"] == 0
    events: list = []
    compiled = train(small_data, tmp_path / "compiled", TrainConfig(**{**config.to_dict(), "compile": True}),
                     on_event=events.append)
    assert compiled.status == "completed"
    assert counters["frames"]["ok"] > 0, "dynamo compiled the trainable stages' frames"
    assert any("torch.compile" in getattr(e, "message", "") for e in events)
    losses = [[m["train_loss"] for m in rf.read_metrics(tmp_path / run)] for run in ("eager", "compiled")]
    assert losses[1] == pytest.approx(losses[0], rel=2e-2)  # inductor reorders float sums: up to 1.1% seen
    assert compiled.best_val_accuracy == eager.best_val_accuracy
    assert set(load_checkpoint(tmp_path / "compiled" / rf.BEST_FILE)["model"]) == set(
        load_checkpoint(tmp_path / "eager" / rf.BEST_FILE)["model"]), "compiling must not rename the weights"


def test_full_strategy_trains_every_stage_on_fresh_augmentations(small_data: Path, tmp_path: Path) -> None:
    events: list = []
    result = train(small_data, tmp_path / "run", TrainConfig(strategy="full", epochs=1, batch_size=4,
                                                             early_stopping=0, batchnorm="train"),
                   on_event=events.append)
    assert result.status == "completed"
    assert [m["phase"] for m in rf.read_metrics(tmp_path / "run")] == ["head", "full"]
    assert not [e for e in events if "augmented view" in getattr(e, "message", "")], "nothing frozen to cache"
    pretrained = create_model("efficientnet_lite0", 2).state_dict()
    trained = load_checkpoint(tmp_path / "run" / rf.LAST_FILE)["model"]
    stem = "stages.0._conv_stem.weight"
    assert not torch.equal(trained[stem], pretrained[stem]), "the stem trained"
    statistics = [k for k in pretrained if k.endswith("running_mean")]
    assert any(not torch.equal(trained[k], pretrained[k]) for k in statistics), "batchnorm='train' updates them"


def test_existing_run_is_not_overwritten(trained_run: Path, sample_data: Path) -> None:
    with pytest.raises(RunExistsError, match="--resume"):
        train(sample_data, trained_run)


def _cancel_at(epoch: int, control: RunControl, seen: list):  # noqa: ANN202
    def sink(event: object) -> None:
        seen.append(event)
        if isinstance(event, BatchProgress) and event.epoch == epoch:
            control.cancel()

    return sink


def test_cancel_mid_epoch_then_resume_continues_at_next_epoch(small_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=3, batch_size=4, early_stopping=0)
    control, seen = RunControl(), []
    result = train(small_data, tmp_path / "run", config, on_event=_cancel_at(2, control, seen), control=control)
    assert result.status == "cancelled"
    assert rf.read_run(tmp_path / "run").status == "cancelled"
    assert [m["epoch"] for m in rf.read_metrics(tmp_path / "run")] == [0, 1]
    assert load_checkpoint(tmp_path / "run" / rf.LAST_FILE)["epoch"] == 1
    plan = rf.read_run(tmp_path / "run").plan

    events: list = []
    resumed = train(None, tmp_path / "run", resume=True, on_event=events.append)
    assert resumed.status == "completed"
    assert [e.epoch for e in events if isinstance(e, EpochEnded)] == [2, 3]
    assert all(e.epochs == 3 for e in events if isinstance(e, EpochEnded))
    assert rf.read_run(tmp_path / "run").plan == plan, "the resumed run follows the recorded plan"
    assert [m["epoch"] for m in rf.read_metrics(tmp_path / "run")] == [0, 1, 2, 3]
    assert rf.read_run(tmp_path / "run").status == "completed"


def test_crash_while_saving_keeps_previous_checkpoint(small_data: Path, tmp_path: Path, monkeypatch) -> None:
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, handle, *args, **kwargs):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] > 2:  # epoch 0 writes best.pt and last.pt; the next save crashes half-way
            handle.write(b"partial")
            raise OSError("simulated crash while writing")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(Exception, match="simulated crash"):
        train(small_data, tmp_path / "run", TrainConfig(epochs=2, batch_size=4))
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(tmp_path / "run" / rf.LAST_FILE)["epoch"] == 0
    assert rf.read_run(tmp_path / "run").status == "failed"
    assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]


def test_non_finite_loss_stops_with_advice(small_data: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(fine_tune_module, "training_loss",
                        lambda *_, **__: lambda logits, targets, teacher: logits.sum() * float("nan"))
    events: list = []
    with pytest.raises(Exception, match="Lower the learning rate"):
        train(small_data, tmp_path / "run", TrainConfig(epochs=1, batch_size=4), on_event=events.append)
    assert isinstance(events[-1], RunFailed) and "learning rate" in events[-1].message


def test_same_seed_same_result_on_cpu(small_data: Path, tmp_path: Path) -> None:
    config = TrainConfig(epochs=1, batch_size=4, device="cpu")
    first = train(small_data, tmp_path / "a", config)
    second = train(small_data, tmp_path / "b", config)
    metrics_a, metrics_b = rf.read_metrics(tmp_path / "a"), rf.read_metrics(tmp_path / "b")
    assert [m["train_loss"] for m in metrics_a] == [m["train_loss"] for m in metrics_b]
    assert first.best_val_accuracy == second.best_val_accuracy


def test_edited_run_file_is_refused(trained_run: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(trained_run, copy)
    document = json.loads((copy / rf.RUN_FILE).read_text())
    document["config"]["epochs"] = "many"
    (copy / rf.RUN_FILE).write_text(json.dumps(document))
    with pytest.raises(rf.RunFolderError, match="refused"):
        evaluate_run(copy)


def _inject_out_of_memory(monkeypatch, above: int) -> None:  # noqa: ANN001
    """Make the trainable top of the network fail like a GPU would for batches larger than ``above``."""
    from engine.training import loop

    real = loop.run_stages

    def run_stages(model, stages, images):  # noqa: ANN001, ANN202
        if torch.is_grad_enabled() and images.shape[0] > above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, stages, images)

    monkeypatch.setattr(loop, "run_stages", run_stages)


def test_out_of_memory_halves_batch_size_and_continues(small_data: Path, tmp_path: Path, monkeypatch) -> None:
    _inject_out_of_memory(monkeypatch, above=2)
    events: list = []
    result = train(small_data, tmp_path / "run", TrainConfig(epochs=2, batch_size=8, early_stopping=0),
                   on_event=events.append)
    assert result.status == "completed"
    warnings = [e.message for e in events if type(e).__name__ == "WarningEvent" and "out of memory" in e.message]
    assert warnings == ["out of memory during epoch 1: retrying it with batch size 4",
                        "out of memory during epoch 1: retrying it with batch size 2"]
    assert [m["epoch"] for m in rf.read_metrics(tmp_path / "run")] == [0, 1, 2]


def test_out_of_memory_at_batch_size_one_stops_clearly(small_data: Path, tmp_path: Path, monkeypatch) -> None:
    _inject_out_of_memory(monkeypatch, above=0)
    with pytest.raises(RuntimeError, match="even with batch size 1"):
        train(small_data, tmp_path / "run", TrainConfig(epochs=1, batch_size=2))
    assert rf.read_run(tmp_path / "run").status == "failed"


def test_files_deleted_after_the_scan_are_skipped_with_a_warning(small_data: Path, tmp_path: Path,
                                                                  monkeypatch) -> None:
    import shutil

    from engine.dataset import scan as scan_module

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    victims = sorted((data / "circles").iterdir())[:2]
    real_scan = scan_module.scan_dataset

    def scan_then_delete(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        report = real_scan(*args, **kwargs)
        for victim in victims:
            victim.unlink()
        return report

    monkeypatch.setattr(preparation_module, "scan_dataset", scan_then_delete)
    events: list = []
    result = train(data, tmp_path / "run", TrainConfig(epochs=1, batch_size=4), on_event=events.append)
    assert result.status == "completed"
    skipped = {e.message.split(":")[0] for e in events if type(e).__name__ == "WarningEvent" and "skipped" in e.message}
    assert skipped == {f"skipped {v}" for v in victims}


def test_cancel_while_scanning_ends_cancelled_without_a_run(small_data: Path, tmp_path: Path) -> None:
    control, events = RunControl(), []

    def sink(event: object) -> None:
        events.append(event)
        if type(event).__name__ == "Progress" and event.phase == "validating":
            control.cancel()

    result = train(small_data, tmp_path / "run", TrainConfig(), on_event=sink, control=control)
    assert result.status == "cancelled" and result.evaluation is None
    assert isinstance(events[-1], RunFinished) and events[-1].status == "cancelled"
    assert not (tmp_path / "run" / rf.RUN_FILE).exists()


def _recorded_split(run_dir: Path, split: str) -> list[str]:
    report = json.loads((run_dir / rf.SCAN_REPORT_FILE).read_text())
    return sorted(item["path"] for item in report["items"] if item["split"] == split)


def test_resume_keeps_the_recorded_split_and_reports_new_photos(small_data: Path, tmp_path: Path,
                                                                 make_image) -> None:  # noqa: ANN001
    import shutil

    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(small_data, data)
    control = RunControl()
    train(data, run, TrainConfig(epochs=2, batch_size=4, early_stopping=0), on_event=_cancel_at(2, control, []),
          control=control)
    recorded, recorded_val = (run / rf.SCAN_REPORT_FILE).read_text(), _recorded_split(run, "val")
    added = make_image(data / "circles" / "added.png", size=(96, 96))

    events: list = []
    assert train(None, run, resume=True, on_event=events.append).status == "completed"
    evaluation = json.loads((run / rf.EVALUATION_FILE).read_text())
    assert sorted(p["path"] for p in evaluation["validation"]["predictions"]) == recorded_val
    assert (run / rf.SCAN_REPORT_FILE).read_text() == recorded, "the record stays what the run was split into"
    warnings = [e.message for e in events if isinstance(e, WarningEvent)]
    assert [m for m in warnings if "1 photo" in m and str(added) in m], warnings


def test_cancel_during_the_final_evaluation_keeps_the_best_epoch_and_resumes_to_evaluate(
        small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.training import trainer as trainer_module

    run, control = tmp_path / "run", RunControl()
    real_load, real_prune = trainer_module.load_checkpoint_in_every_process, trainer_module.prune
    pruned: list = []

    def stop_while_evaluating(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        control.cancel()  # Stop pressed as the final evaluation restores the best weights
        control.check()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "load_checkpoint_in_every_process", stop_while_evaluating)
    monkeypatch.setattr(trainer_module, "prune",
                        lambda folder, limit: pruned.append(folder) or real_prune(folder, limit))
    events: list = []
    result = train(small_data, run, TrainConfig(epochs=1, batch_size=4, early_stopping=0), on_event=events.append,
                   control=control)
    metrics = rf.read_metrics(run)
    best = [m for m in metrics if m["is_best"]][-1]
    assert (result.status, result.best_epoch, result.best_val_accuracy, result.epochs_run) == (
        "cancelled", best["epoch"], best["val_accuracy"], 2)
    assert isinstance(events[-1], RunFinished) and events[-1].best_epoch == best["epoch"]
    assert rf.read_run(run).status == "cancelled" and not (run / rf.EVALUATION_FILE).exists()
    assert len(pruned) == 2, "the caches are kept under their limit after a stop too"

    monkeypatch.undo()
    events = []
    resumed = train(None, run, resume=True, on_event=events.append)
    assert resumed.status == "completed" and resumed.best_epoch == best["epoch"]
    assert not [e for e in events if isinstance(e, EpochEnded)], "nothing left to train: resuming only evaluates"
    assert [m["epoch"] for m in rf.read_metrics(run)] == [0, 1]
    assert json.loads((run / rf.EVALUATION_FILE).read_text())["validation"]["accuracy"] == pytest.approx(
        best["val_accuracy"])


def test_a_failure_right_after_run_json_is_written_marks_the_run_failed(small_data: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.training import trainer as trainer_module

    real_write = trainer_module.write_json_atomic

    def failing_write(path: Path, document: object) -> None:
        if Path(path).name == rf.SCAN_REPORT_FILE:
            raise OSError("simulated: the disk went away")
        real_write(path, document)

    monkeypatch.setattr(trainer_module, "write_json_atomic", failing_write)
    with pytest.raises(OSError, match="simulated"):
        train(small_data, tmp_path / "run", TrainConfig(epochs=1, batch_size=4))
    run = rf.read_run(tmp_path / "run")
    assert run.status == "failed" and "simulated" in (run.error or "")
