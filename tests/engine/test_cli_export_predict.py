"""`transfer-studio export` and `predict`: agreement with evaluation.json, output formats, exit codes.

Exporting writes export_parity.json into the run folder, so this module exports from its own copy of the shared run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import main


@pytest.fixture(scope="module")
def run_dir(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("cli_export") / "run"))


@pytest.fixture(scope="module")
def exported(run_dir: Path) -> tuple[Path, str]:
    """`transfer-studio export RUN --out FILE --quantize int8`, once per module: the file and what it printed."""
    out = run_dir.parent / "exported.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", str(run_dir), "--out", str(out), "--quantize", "int8"]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def cli_model(exported: tuple[Path, str]) -> Path:
    return exported[0]


@pytest.fixture(scope="module")
def validation(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "evaluation.json").read_text(encoding="utf-8"))["validation"]["predictions"]


def test_export_prints_parity(run_dir: Path, exported: tuple[Path, str]) -> None:
    model, printed = exported
    assert model.is_file() and str(model) in printed
    assert "top-1 agreement 100.0%" in printed and "max |logit difference|" in printed
    report = json.loads((run_dir / "export_parity.json").read_text(encoding="utf-8"))
    assert report["model"] == str(model) and report["passed"] and report["top1_agreement"] == 1.0


def test_export_int8_writes_and_reports_the_smaller_model(run_dir: Path, exported: tuple[Path, str]) -> None:
    model, printed = exported
    quantized = model.with_name("exported.int8.onnx")
    line = next(line for line in printed.splitlines() if "int8 model" in line)
    assert str(quantized) in line and "top-1 agreement" in line
    assert quantized.stat().st_size * 3 < model.stat().st_size
    report = json.loads((run_dir / "export_parity.json").read_text(encoding="utf-8"))
    assert report["int8"]["model"] == str(quantized)


def test_int8_failure_names_the_float_model_it_wrote(run_dir: Path, exported: tuple[Path, str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import onnx

    import engine.export

    def failing(*_args: object) -> None:
        raise engine.export.ExportError("int8 quantization failed: RuntimeError: boom")

    monkeypatch.setattr(engine.export, "export_proto", lambda *_args: onnx.load(exported[0]))  # skip tracing
    monkeypatch.setattr(engine.export, "_write_int8", failing)
    out = tmp_path / "m.onnx"
    assert main(["export", str(run_dir), "--out", str(out), "--quantize", "int8"]) == 1
    printed = capsys.readouterr()
    assert f"exported {out}" in printed.out and "top-1 agreement 100.0%" in printed.out
    assert f"{out} was written" in printed.err and "boom" in printed.err and "nothing was written" not in printed.err
    assert out.is_file() and not (tmp_path / "m.int8.onnx").exists()


def test_predict_agrees_with_evaluation_json(cli_model: Path, validation: list[dict], capsys) -> None:
    paths = [p["path"] for p in validation]
    assert main(["predict", str(cli_model), *paths, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in rows] == paths
    for row, expected in zip(rows, validation, strict=True):
        assert row["error"] is None
        assert row["label"] == expected["predicted"]
        assert row["confidence"] == pytest.approx(expected["confidence"], abs=1e-3)  # both temperature-scaled


def test_predict_marks_unsure_below_the_runs_threshold_unless_told_otherwise(
        cli_model: Path, run_dir: Path, validation: list[dict], capsys) -> None:  # noqa: ANN001
    threshold = json.loads((run_dir / "evaluation.json").read_text(encoding="utf-8"))["calibration"]["unsure_threshold"]
    paths = [p["path"] for p in validation]
    assert main(["predict", str(cli_model), *paths, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["unsure"] for row in rows] == [row["confidence"] < threshold for row in rows]
    assert any(row["unsure"] for row in rows), "the shared run's validation mistake is below its threshold"
    assert main(["predict", str(cli_model), *paths, "--format", "json", "--min-confidence", "0"]) == 0
    assert not any(row["unsure"] for row in json.loads(capsys.readouterr().out))
    assert main(["predict", str(cli_model), paths[0], "--min-confidence", "1.5"]) == 2
    assert "--min-confidence" in capsys.readouterr().err


def test_predict_sort_into_copies_by_class_and_unsure_aside(cli_model: Path, validation: list[dict], tmp_path: Path,
                                                            capsys) -> None:
    paths = [p["path"] for p in validation]
    out = tmp_path / "sorted"
    assert main(["predict", str(cli_model), *paths, "--format", "json", "--sort-into", str(out)]) == 0
    captured = capsys.readouterr()
    rows = json.loads(captured.out)
    unsure = sum(row["unsure"] for row in rows)
    assert f"{len(rows)} photos copied into class folders in {out} ({unsure} unsure)" in captured.err
    for row in rows:
        folder = out / ("_unsure" if row["unsure"] else row["label"])
        assert (folder / Path(row["path"]).name).read_bytes() == Path(row["path"]).read_bytes()
    manifest = json.loads((out / "sort-manifest.json").read_text(encoding="utf-8"))
    assert [photo["source"] for photo in manifest["photos"]] == paths and all(Path(p).is_file() for p in paths)
    assert main(["predict", str(cli_model), paths[0], "--sort-into", str(out / "sort-manifest.json")]) == 2


def test_json_schema_with_an_error_row(cli_model: Path, validation: list[dict], tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")
    assert main(["predict", str(cli_model), validation[0]["path"], str(broken), "--format", "json",
                 "--top-k", "2"]) == 0
    good, bad = json.loads(capsys.readouterr().out)
    assert set(good) == set(bad) == {"path", "label", "confidence", "unsure", "top_k", "error"}
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
    assert rows[0] == ["path", "label", "confidence", "unsure", "top2_label", "top2_probability", "top3_label",
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


def test_predict_starts_without_the_other_commands(cli_model: Path, validation: list[dict]) -> None:
    """The predict command builds only its own parser: the training modules behind the others stay unloaded."""
    code = ("import sys; from engine.cli import main; "
            f"assert main(['predict', {str(cli_model)!r}, {validation[0]['path']!r}, '--format', 'csv']) == 0; "
            "loaded = sorted(m for m in sys.modules if m.startswith(('engine.training', 'engine.dataset', 'torch'))); "
            "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


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


def test_export_errors(tmp_path: Path, run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert main(["export", str(tmp_path / "no-run")]) == 2
    assert "not a run folder" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--opset", "9", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "opset" in capsys.readouterr().err

    import engine.export

    def failing(*_args: object, **_kwargs: object) -> None:
        raise engine.export.ExportError("onnxruntime disagrees with PyTorch")

    monkeypatch.setattr(engine.export, "export_onnx", failing)
    assert main(["export", str(run_dir)]) == 1
    assert "export failed: onnxruntime disagrees" in capsys.readouterr().err
