"""Untrusted files: pickle payloads, lying ONNX metadata and edited run files are refused with a message, never run,
never half-loaded; in the CLI (exit 2, one line) and in the GUI (a message, and the app keeps working)."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
import torch

from engine.cli import main
from engine.onnx_metadata import METADATA_KEY
from engine.training import run_folder as rf


class _Payload:
    """Unpickling this creates ``marker``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204 - the pickle protocol
        return (open, (self.marker, "w"))


def _forge(path: Path, marker: Path, content: object | None = None) -> Path:
    """A torch.save file whose unpickling would run code (or, with ``content``, that plain content)."""
    torch.save({"model": _Payload(marker)} if content is None else content, path)
    return path


def _cli(*args: object) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return code, err.getvalue()


def test_a_pickle_payload_as_backbone_weights_is_refused(small_data: Path, tmp_path: Path, transfer_studio,
                                                        error_line: Callable[[str], str]) -> None:
    marker = tmp_path / "payload-ran"
    weights = _forge(tmp_path / "backbone.pth", marker)
    result = transfer_studio("train", small_data, "--out", tmp_path / "run", "--weights", weights)
    assert result.returncode == 2
    line = error_line(result.stderr)
    assert str(weights) in line and "not a usable weights file" in line
    assert "Only plain state dicts" in line
    assert not marker.exists() and not (tmp_path / "run").exists()


FORGED = {
    "best.pt with a pickle payload": (rf.BEST_FILE, None, "unreadable or unsafe checkpoint"),
    "best.pt that is not a checkpoint": (rf.BEST_FILE, {"model": [1, 2, 3]}, "not a Transfer Studio checkpoint"),
    "best.pt with another network's weights": (rf.BEST_FILE, {"model": {"weight": torch.zeros(2)}},
                                               "best.pt does not match run.json"),
    "last.pt with a pickle payload": (rf.LAST_FILE, None, "unreadable or unsafe checkpoint"),
    "last.pt with another network's weights": (rf.LAST_FILE, {"model": {"weight": torch.zeros(2)}, "epoch": 1},
                                               "last.pt: does not match this run"),
    "last.pt without its epoch": ("last.pt", "without epoch", "last.pt: does not match this run"),
}


@pytest.mark.parametrize("name", FORGED)
def test_a_forged_checkpoint_in_a_run_folder_is_refused(name: str, run_copy: Path,
                                                        error_line: Callable[[str], str]) -> None:
    file, content, message = FORGED[name]
    marker = run_copy / "payload-ran"
    if content == "without epoch":
        content = {key: value for key, value in torch.load(run_copy / file, weights_only=True).items()
                   if key != "epoch"}
    _forge(run_copy / file, marker, content)
    rf.update_run_file(run_copy, status="cancelled")  # a stopped run, so that resuming it is allowed
    commands = [["evaluate", run_copy], ["export", run_copy, "--out", run_copy / "new.onnx"]] \
        if file == rf.BEST_FILE else [["train", "--out", run_copy, "--resume"]]
    for args in commands:
        code, err = _cli(*args)
        assert code == 2, (args, err)
        line = error_line(err)
        assert message in line and str(run_copy) in line, (args, line)
    assert not marker.exists() and not (run_copy / "new.onnx").exists()


def _tampered(model: Path, out: Path, change: Callable[[dict], object]) -> Path:
    proto = onnx.load(str(model))
    entry = next(prop for prop in proto.metadata_props if prop.key == METADATA_KEY)
    changed = change(json.loads(entry.value))
    entry.value = changed if isinstance(changed, str) else json.dumps(changed)
    onnx.save(proto, str(out))
    return out


LYING_MODELS = {
    "metadata that is not JSON": (lambda doc: "{'labels': [oops", "is not valid JSON"),
    "metadata that is a list": (lambda doc: [doc], "must be a JSON object"),
    "one label more than outputs": (lambda doc: {**doc, "labels": [*doc["labels"], "extra"]},
                                    "lists 4 labels but the model's 'probabilities' output has 3 classes"),
    "one label fewer than outputs": (lambda doc: {**doc, "labels": doc["labels"][:2]},
                                     "lists 2 labels but the model's 'probabilities' output has 3 classes"),
    "a crop the graph does not take": (lambda doc: {**doc, "preprocessing": {**doc["preprocessing"], "crop": 128}},
                                       "does not match the metadata's N x 3 x 128 x 128"),
    "a newer metadata format": (lambda doc: {**doc, "format": 99}, "format 99 is not supported"),
}


@pytest.fixture(scope="module")
def lying_models(exported_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("lying")
    return {name: _tampered(exported_model, folder / f"model-{index}.onnx", change)
            for index, (name, (change, _message)) in enumerate(LYING_MODELS.items())}


@pytest.mark.parametrize("name", LYING_MODELS)
def test_a_model_with_lying_metadata_is_refused_by_predict(name: str, lying_models: dict[str, Path],
                                                           small_data: Path,
                                                           error_line: Callable[[str], str]) -> None:
    code, err = _cli("predict", lying_models[name], small_data)
    assert code == 2
    line = error_line(err)
    assert str(lying_models[name]) in line and LYING_MODELS[name][1] in line


NONSENSE_RUN_FILES = {
    "not JSON": "{ this is not json",
    "binary garbage": "\x00\xff\xfe garbage",
    "an empty file": "",
    "a JSON list": "[1, 2, 3]",
    "another program's JSON": json.dumps({"hello": "world"}),
    "labels that are numbers": lambda doc: {**doc, "labels": [1, 2, 3]},
    "a config that is a string": lambda doc: {**doc, "config": "fast please"},
    "an unknown option": lambda doc: {**doc, "config": {**doc["config"], "turbo": True}},
    "a crop that is text": lambda doc: {**doc, "preprocessing": {**doc["preprocessing"], "crop": "big"}},
    "no data folder": lambda doc: {**doc, "data_dir": None},
    "an invented status": lambda doc: {**doc, "status": "paused-forever"},
}


def _write_nonsense(run: Path, name: str) -> None:
    nonsense = NONSENSE_RUN_FILES[name]
    path = run / rf.RUN_FILE
    if callable(nonsense):
        nonsense = json.dumps(nonsense(json.loads(path.read_text(encoding="utf-8"))))
    path.write_bytes(nonsense.encode("latin-1"))


@pytest.mark.parametrize("name", NONSENSE_RUN_FILES)
def test_an_edited_run_file_is_refused_not_half_loaded(name: str, run_copy: Path,
                                                       error_line: Callable[[str], str]) -> None:
    _write_nonsense(run_copy, name)
    before = {path.name: path.read_bytes() for path in run_copy.iterdir() if path.is_file()}
    for args in (["evaluate", run_copy], ["export", run_copy, "--out", run_copy / "new.onnx"],
                 ["train", "--out", run_copy, "--resume"]):
        code, err = _cli(*args)
        assert code == 2, (args, err)
        line = error_line(err)
        assert f"{run_copy / rf.RUN_FILE}: damaged or edited run file, refused" in line, (args, line)
    assert {path.name: path.read_bytes() for path in run_copy.iterdir() if path.is_file()} == before  # untouched


def test_an_edited_metrics_file_is_refused(run_copy: Path, error_line: Callable[[str], str]) -> None:
    (run_copy / rf.METRICS_FILE).write_text('{"epoch": 0}\n{"epoch": "one", "loss": [\n', encoding="utf-8")
    rf.update_run_file(run_copy, status="cancelled")
    code, err = _cli("train", "--out", run_copy, "--resume")
    assert code == 2
    assert f"{run_copy / rf.METRICS_FILE}: damaged or edited metrics file, refused" in error_line(err)


def test_the_gui_refuses_untrusted_files_with_a_message_and_keeps_working(window, find, qtbot, run_copy: Path,
                                                                          lying_models: dict[str, Path],
                                                                          exported_model: Path,
                                                                          trained_run: Path) -> None:
    predict_runner, evaluate_runner = window.runners["predict"], window.runners["evaluate"]
    for name, model in lying_models.items():
        with qtbot.waitSignal(predict_runner.failed, timeout=60_000):
            window.open_model(model)
        assert find("modelInfoLabel").text().startswith(f"Could not load this model: {model}"), name
        assert LYING_MODELS[name][1] in window.notice.message.text(), name
        assert window.predict_page.predictor is None

    _write_nonsense(run_copy, "labels that are numbers")
    with qtbot.waitSignal(evaluate_runner.failed, timeout=60_000):
        window.open_run(run_copy)  # File → Open run
    assert "damaged or edited run file, refused" in window.evaluate_page.run_label.text()
    assert window.evaluate_page.snapshot is None and not find("exportButton").isEnabled()
    evaluation = Path(shutil.copytree(trained_run, run_copy.parent / "bad-evaluation"))
    document = json.loads((trained_run / rf.EVALUATION_FILE).read_text(encoding="utf-8"))
    del document["validation"]["confusion_matrix"]  # the right outer shape, a field missing inside
    for text, reason in (('{"labels": ["a"], "validation": 3}', "not the run's"),
                         (json.dumps(document), "confusion_matrix must be")):
        (evaluation / rf.EVALUATION_FILE).write_text(text, encoding="utf-8")
        with qtbot.waitSignal(evaluate_runner.failed, timeout=60_000):
            window.open_run(evaluation)
        message = window.notice.message.text()
        assert f"{evaluation / rf.EVALUATION_FILE}: damaged or edited, refused" in message and reason in message
        assert window.evaluate_page.snapshot is None

    with qtbot.waitSignal(evaluate_runner.returned, timeout=60_000):
        window.open_run(trained_run)  # a good run still opens, and the good model still loads and predicts
    assert window.evaluate_page.snapshot.run_dir == trained_run
    with qtbot.waitSignal(window.predict_page.model_loaded, timeout=60_000):
        window.open_model(exported_model)
    window.predict_page.classify([next(Path(rf.read_run(trained_run).data_dir).rglob("*.jpg"))])
    qtbot.waitUntil(lambda: len(window.predict_page.results) == 1, timeout=60_000)


def test_the_gui_refuses_a_forged_checkpoint_when_exporting(window, qtbot, run_copy: Path) -> None:
    marker = run_copy / "payload-ran"
    _forge(run_copy / rf.BEST_FILE, marker)
    with qtbot.waitSignal(window.evaluate_page.run_opened, timeout=60_000):
        window.open_run(run_copy)
    with qtbot.waitSignal(window.runners["evaluate"].failed, timeout=60_000):
        window.evaluate_page.export(run_copy / "new.onnx")
    assert "unreadable or unsafe checkpoint" in window.evaluate_page.export_status.text()
    assert not marker.exists() and not (run_copy / "new.onnx").exists()
