"""`transfer-studio export` and `predict`: agreement with evaluation.json, output formats, exit codes."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

from engine.cli import main


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`transfer-studio export RUN --out FILE`, once per module: the file and what the command printed."""
    out = tmp_path_factory.mktemp("cli_export") / "exported.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(trained_run), "--out", str(out)]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def cli_model(exported: tuple[Path, str]) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def validation(trained_run: Path) -> list[dict]:
    return json.loads((trained_run / "evaluation.json").read_text(encoding="utf-8"))["validation"]["predictions"]


def test_export_prints_parity(trained_run: Path, exported: tuple[Path, str]) -> None:
    model, printed = exported
    assert model.is_file() and str(model) in printed
    assert "top-1 agreement 100.0%" in printed and "max |logit difference|" in printed
    report = json.loads((trained_run / "export_parity.json").read_text(encoding="utf-8"))
    assert report["model"] == str(model) and report["passed"] and report["top1_agreement"] == 1.0


def test_predict_agrees_with_evaluation_json(cli_model: Path, validation: list[dict], capsys) -> None:
    paths = [p["path"] for p in validation]
    assert main(["predict", str(cli_model), *paths, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in rows] == paths
    for row, expected in zip(rows, validation, strict=True):
        assert row["error"] is None
        assert row["label"] == expected["predicted"]
        assert row["confidence"] == pytest.approx(expected["confidence"], abs=1e-3)


def test_json_schema_with_an_error_row(cli_model: Path, validation: list[dict], tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert main(["predict", str(cli_model), validation[0]["path"], str(broken), "--format", "json",
                 "--top-k", "2"]) == 0
    good, bad = json.loads(capsys.readouterr().out)
    assert set(good) == set(bad) == {"path", "label", "confidence", "top_k", "error"}
    assert [set(entry) for entry in good["top_k"]] == [{"label", "probability"}] * 2
    assert good["top_k"][0] == {"label": good["label"], "probability": good["confidence"]}
    assert bad["error"] and bad["label"] is None and bad["confidence"] is None and bad["top_k"] == []


def test_csv_header_and_rows(cli_model: Path, validation: list[dict], tmp_path: Path, capsys) -> None:
    out = tmp_path / "results.csv"
    paths = [p["path"] for p in validation[:3]]
    assert main(["predict", str(cli_model), *paths, str(tmp_path / "gone.jpg"), "--format", "csv",
                 "--output", str(out)]) == 0
    assert "results.csv" in capsys.readouterr().err
    rows = list(csv.reader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert rows[0] == ["path", "label", "confidence", "top2_label", "top2_probability", "top3_label",
                       "top3_probability", "error"]
    assert [row[0] for row in rows[1:4]] == paths and all(row[-1] == "" for row in rows[1:4])
    assert rows[4][0].endswith("gone.jpg") and rows[4][1] == "" and rows[4][-1] == "file not found"
    assert 0.0 <= float(rows[1][2]) <= 1.0


def test_table_shows_label_confidence_and_runners_up(cli_model: Path, validation: list[dict], capsys) -> None:
    first = validation[0]
    assert main(["predict", str(cli_model), first["path"]]) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split() == ["file", "label", "confidence", "runners-up"]
    assert row.startswith(first["path"]) and first["predicted"] in row and "%" in row
    assert row.count("%") == 3  # confidence and two runners-up


def test_predict_bad_model_and_no_inputs_exit_2(cli_model: Path, tmp_path: Path, capsys) -> None:
    fake = tmp_path / "fake.onnx"
    fake.write_text("nope")
    assert main(["predict", str(fake), str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "fake.onnx" in err and err.count("\n") == 0
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(cli_model), str(tmp_path / "empty"), str(tmp_path / "gone.jpg")]) == 2
    err = capsys.readouterr().err.strip()
    assert "no images" in err and "gone.jpg" in err and err.count("\n") == 0


def test_export_errors(tmp_path: Path, trained_run: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["export", str(tmp_path / "no-run")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["export", str(trained_run), "--opset", "9", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "opset" in capsys.readouterr().err

    import engine.export

    def failing(*_args: object, **_kwargs: object) -> None:
        raise engine.export.ExportError("onnxruntime disagrees with PyTorch")

    monkeypatch.setattr(engine.export, "export_onnx", failing)
    assert main(["export", str(trained_run)]) == 1
    assert "export failed: onnxruntime disagrees" in capsys.readouterr().err
