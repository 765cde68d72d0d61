"""The CLI's exit codes and one-line messages for bad input."""

import json
from pathlib import Path

from engine.cli import main


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


def test_evaluate_prints_metrics(trained_run: Path, capsys) -> None:
    assert main(["evaluate", str(trained_run)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "Confusion matrix" in out
