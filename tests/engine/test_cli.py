"""The CLI: exit codes and one-line messages for bad input, help texts, and the smaller commands end to end."""

import json
import shutil
import sys
from pathlib import Path

import pytest

from engine.cli import main

COMMANDS = ("scan", "sample-data", "backbones", "train", "lr-find", "evaluate", "export", "predict", "demo")


def test_scan_missing_folder_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["scan", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err


def test_train_one_class_exits_2(tmp_path: Path, make_dataset, capsys) -> None:
    data = make_dataset(tmp_path / "data", {"only": 4})
    assert main(["train", str(data), "--out", str(tmp_path / "run")]) == 2
    assert "class" in capsys.readouterr().err


def test_train_unknown_backbone_exits_2(small_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(small_data), "--out", str(tmp_path / "run"), "--backbone", "resnet1000"]) == 2
    assert "resnet18" in capsys.readouterr().err


def test_scan_json_report(small_data: Path, capsys) -> None:
    assert main(["scan", str(small_data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["classes"]) == {"circles", "squares"} and report["skipped"] == []
    assert {"classes", "counts", "skipped", "warnings"} <= set(report)


def test_backbones_table_lists_weight_states(capsys) -> None:
    assert main(["backbones"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "bundled" in out and "resnet50" in out


def test_evaluate_prints_metrics(trained_run: Path, tmp_path: Path, capsys) -> None:
    run = shutil.copytree(trained_run, tmp_path / "run")  # evaluate rewrites evaluation.json: not the shared run
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "Confusion matrix" in out


def test_invalid_training_options_exit_2(small_data: Path, tmp_path: Path, capsys) -> None:
    assert main(["train", str(small_data), "--out", str(tmp_path / "run"), "--lr", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "learning rate must be positive" in err and err.count("\n") == 0


def test_a_value_error_from_inside_the_code_keeps_its_traceback(small_data: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the engine's bad-input errors become exit 2: a ValueError from deep inside torch is a bug to report."""
    import engine.dataset.scan

    def broken(*_args: object, **_kwargs: object) -> None:
        raise ValueError("expected input batch_size (3) to match target batch_size (2)")

    monkeypatch.setattr(engine.dataset.scan, "scan_dataset", broken)
    with pytest.raises(ValueError, match="batch_size"):
        main(["scan", str(small_data)])


def _help(capsys: pytest.CaptureFixture, *argv: str) -> str:
    """The help text of ``transfer-studio ARGV --help``, with argparse's line wrapping undone."""
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_top_level_help_speaks_to_users(capsys) -> None:
    text = _help(capsys)
    assert "``" not in text and "desktop.launcher" not in text
    assert "photos" in text and "classifier" in text
    assert "no arguments" in text and "window" in text
    for command in COMMANDS:
        assert f"transfer-studio {command}" in text, command
    assert "130" in text and "--resume" in text


def test_command_help_gives_each_option_its_default_and_what_it_does(capsys) -> None:
    text = _help(capsys, "train")
    assert "--optimizer {adamw,sgd} optimizer of the fine-tune" in text and "(default: adamw)" in text
    assert "--class-weighting {auto,on,off}" in text and "(default: auto)" in text
    assert "--batch-size BATCH_SIZE images per training step; 0: chosen for the device" in text
    assert "(default: 0)" in text
    assert "--early-stopping EARLY_STOPPING" in text and "(default: -1)" in text
    assert "(default: None)" not in text and "(default: False)" not in text
    text = _help(capsys, "predict")
    assert "--top-k TOP_K" in text and "(default: 3)" in text and "--format {table,csv,json}" in text


def test_choice_lists_come_from_the_training_config(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import engine.training.config as config

    monkeypatch.setattr(config, "OPTIMIZERS", ("adamw", "sgd", "lion"))
    monkeypatch.setattr(config, "CLASS_WEIGHTING", ("auto", "always"))
    text = _help(capsys, "train")
    assert "--optimizer {adamw,sgd,lion}" in text and "--class-weighting {auto,always}" in text


def test_export_quantize_choices_are_the_exporters(capsys) -> None:
    from engine.export import QUANTIZE_CHOICES

    assert f"--quantize {{{','.join(QUANTIZE_CHOICES)}}}" in _help(capsys, "export")


def test_ensemble_weights_choices_are_the_ensemble_builders(capsys) -> None:
    from engine.ensemble import WEIGHTINGS

    assert f"--weights {{{','.join(WEIGHTINGS)}}}" in _help(capsys, "ensemble")


def test_compile_is_refused_in_the_bundled_app(small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys) -> None:
    """The full bundle leaves out triton and has no C++ compiler: torch.compile cannot work there."""
    assert "--compile" in _help(capsys, "train")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert "--compile" not in _help(capsys, "train")
    assert main(["train", str(small_data), "--out", str(tmp_path / "run"), "--compile"]) == 2
    err = capsys.readouterr().err
    assert "--compile" in err and "bundle" in err and "pip" in err
    assert not (tmp_path / "run").exists()


def test_sample_data_writes_the_dataset(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sample"
    assert main(["sample-data", str(out), "--classes", "3", "--per-class", "4"]) == 0
    assert f"wrote 3 classes x 4 images to {out}" in capsys.readouterr().out
    classes = sorted(p for p in out.iterdir() if p.is_dir())
    assert len(classes) == 3 and all(len(list(c.iterdir())) == 4 for c in classes)
    assert main(["scan", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == []


def test_demo_generates_trains_exports_and_predicts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import functools

    import engine.dataset.sample_data as sample_data

    small = functools.partial(sample_data.generate_sample_dataset, classes=2, per_class=8, image_size=96)
    monkeypatch.setattr(sample_data, "generate_sample_dataset", small)  # the demo's own data, smaller
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"demo run saved in {tmp_path / 'run'}" in out and "== validation ==" in out
    assert "onnxruntime vs PyTorch: max |logit difference|" in out
    predictions = out.split("== predictions of", 1)[1].splitlines()[2:]
    assert len(predictions) == 4 and (tmp_path / "run" / "model.onnx").is_file()


def test_a_test_folder_is_evaluated_end_to_end(tmp_path: Path, make_image, capsys) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    for split, count in (("train", 6), ("val", 3), ("test", 4)):
        for label, color in (("red", (220, 30, 30)), ("blue", (30, 30, 220))):
            for index in range(count):
                make_image(data / split / label / f"{index}.png", size=(48, 48), color=color)
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--strategy", "feature-extract"]) == 0
    assert "== test ==" in capsys.readouterr().out
    evaluation = json.loads((run / "evaluation.json").read_text(encoding="utf-8"))
    assert len(evaluation["test"]["predictions"]) == 8 and len(evaluation["validation"]["predictions"]) == 6
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.index("== validation ==") < out.index("== test ==") < out.index("== calibration ==")
    assert "On test: expected calibration error" in out and "8 photos answered" in out
