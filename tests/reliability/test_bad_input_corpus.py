"""The bad-input corpus through scan, train, evaluate and predict: the CLI in process, the real command, and the GUI.

Every case has one documented outcome (converted, skipped with its reason, or refused with a message naming the path)
and none ends in a traceback. The table below is the one in README's "What happens when things go wrong".
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QAbstractItemView

from engine.cli import main
from engine.training import run_folder as rf

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CONVERTED = "converted"
NOT_LISTED = "not listed"


@dataclass(frozen=True)
class Case:
    """A hostile input and its outcome for scan (and training) and for predict: CONVERTED, NOT_LISTED, or the reason
    the file is skipped with / the error its prediction row shows."""

    name: str
    file: str
    scan: str
    predict: str


def _case(name: str, file: str, outcome: str) -> Case:
    return Case(name, file, outcome, outcome)  # scan and predict share the one image loader


CASES = (
    _case("zero-byte file", "zero_byte.jpg", "empty file (0 bytes)"),
    _case("truncated JPEG", "truncated.jpg", "truncated or corrupt image data"),
    _case("truncated PNG", "truncated.png", "truncated or corrupt image data"),
    _case("text renamed to .jpg", "text.jpg", "not an image, or an unsupported format"),
    _case("HTML renamed to .jpg", "page.jpg", "not an image, or an unsupported format"),
    _case("PDF renamed to .jpg", "document.jpg", "not an image, or an unsupported format"),
    _case("decompression bomb", "bomb.png", "refused by the decompression-bomb guard"),
    _case("100000x1 strip", "line.png", "extreme aspect ratio"),
    _case("PNG named .jpg", "png_named.jpg", CONVERTED),
    _case("1x1 image", "one_pixel.png", CONVERTED),
    _case("10000x40 image", "wide.png", CONVERTED),
    _case("CMYK JPEG", "cmyk.jpg", CONVERTED),
    _case("16-bit grayscale PNG", "gray16.png", CONVERTED),
    _case("palette PNG with transparency", "palette_alpha.png", CONVERTED),
    _case("animated GIF", "animated.gif", CONVERTED),
    _case("EXIF-rotated photo", "exif_rotated.jpg", CONVERTED),
    # root reads a chmod 000 file anyway (permission checks are bypassed), so there it is converted
    _case("unreadable file (chmod 000)", "unreadable.png", CONVERTED if IS_ROOT else "permission denied"),
    _case("broken symlink", "broken_link.png", "file not found (deleted, moved, or a broken link)"),
    _case("symlink loop", "loop_a.jpg", "symbolic link loop"),
    _case("name with spaces", "photo with spaces.png", CONVERTED),
    _case("name with emoji", "emoji 🐱 photo.png", CONVERTED),
    _case("non-Latin name", "фото 写真 صورة.png", CONVERTED),
    Case("folder named like a photo", "album.jpg", NOT_LISTED, "folder contains no images"),
)
SKIPPED = {case.file: case.scan for case in CASES if case.scan not in (CONVERTED, NOT_LISTED)}


def _ids(case: Case) -> str:
    return case.name.replace(" ", "-")


def _noise(path: Path, rng: np.random.Generator, size: tuple[int, int] = (64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def hostile_dataset(write_bad_corpus_into: Callable[[Path], dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``hostile/``: every case (the shared bad corpus plus file-system oddities) and three good photos;
    ``good/``: four photos. Trainable once the bad files are skipped."""
    root = tmp_path_factory.mktemp("hostile") / "data"
    folder = root / "hostile"
    write_bad_corpus_into(folder)
    rng = np.random.default_rng(7)
    for index in range(4):
        _noise(root / "good" / f"{index}.png", rng)
    for name in ("good_0.png", "good_1.png", "good_2.png", "unreadable.png", "photo with spaces.png",
                 "emoji 🐱 photo.png", "фото 写真 صورة.png"):
        _noise(folder / name, rng, (40, 40))
    (folder / "unreadable.png").chmod(0)
    (folder / "broken_link.png").symlink_to(folder / "deleted.png")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    (folder / "album.jpg").mkdir()
    assert {case.file for case in CASES} <= {path.name for path in folder.iterdir()}
    return root


def _run_cli(*args: object) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def scanned(hostile_dataset: Path) -> dict:
    """`transfer-studio scan DATA --json`, in process."""
    code, out, err = _run_cli("scan", hostile_dataset, "--json")
    assert code == 0 and "Traceback" not in err
    return json.loads(out)


@pytest.fixture(scope="module")
def predicted(hostile_dataset: Path, exported_model: Path) -> dict[str, dict]:
    """`transfer-studio predict MODEL hostile/ hostile/album.jpg --format json`, in process: rows by file name."""
    folder = hostile_dataset / "hostile"
    code, out, err = _run_cli("predict", exported_model, folder, folder / "album.jpg", "--format", "json")
    assert code == 0 and "Traceback" not in err
    return {Path(row["path"]).name: row for row in json.loads(out)}


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_scan_outcome(case: Case, scanned: dict) -> None:
    usable = {Path(item["path"]).name for item in scanned["items"]}
    skipped = {Path(file["path"]).name: file["reason"] for file in scanned["skipped"]}
    if case.scan == CONVERTED:
        assert case.file in usable and case.file not in skipped
    elif case.scan == NOT_LISTED:
        assert case.file not in usable and case.file not in skipped
    else:
        assert case.file not in usable and case.scan in skipped[case.file]


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_predict_outcome(case: Case, predicted: dict[str, dict]) -> None:
    row = predicted[case.file]
    if case.predict == CONVERTED:
        assert row["error"] is None and isinstance(row["label"], str)
        assert 0.0 <= row["confidence"] <= 1.0
    else:
        assert row["label"] is None and case.predict in row["error"]


def test_training_and_evaluation_skip_the_bad_files_with_their_reasons(hostile_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code, _out, err = _run_cli("train", hostile_dataset, "--out", run, "--strategy", "feature-extract",
                               "--batch-size", "4")
    assert code == 0, err
    assert "Traceback" not in err
    report = json.loads((run / rf.SCAN_REPORT_FILE).read_text(encoding="utf-8"))
    skipped = {Path(file["path"]).name: file["reason"] for file in report["skipped"]}
    assert set(skipped) == set(SKIPPED) | {"loop_b.jpg"}
    assert all(reason in skipped[name] for name, reason in SKIPPED.items())
    assert rf.read_run(run).status == "completed"

    code, out, err = _run_cli("evaluate", run, "--data", hostile_dataset)
    assert code == 0 and "Traceback" not in err
    words = " ".join(out.split())
    # every usable image of the folder is scored and the files training skipped are skipped again
    assert "== validation ==" in words and f"samples {len(report['items'])} accuracy" in words
    assert "Confusion matrix" in out


def _dataset(root: Path, classes: dict[str, list[str]], rng: np.random.Generator) -> Path:
    """Class folders of good photos ("good") and broken files ("bad"); a class with no entry is an empty folder."""
    for name, kinds in classes.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for index, kind in enumerate(kinds):
            if kind == "good":
                _noise(root / name / f"{index}.png", rng)
            else:
                (root / name / f"{index}.jpg").write_bytes(b"<html>not a photo</html>" if index % 2 else b"")
    return root


DATASETS = {
    "a class folder that is empty": ({"cats": ["good"] * 3, "dogs": []}, "class 'dogs' has 0 usable images"),
    "a dataset of only bad files": ({"cats": ["bad"] * 3, "dogs": ["bad"] * 2}, "class 'cats' has 0 usable images"),
    "one usable photo in a class": ({"cats": ["good"] * 3, "dogs": ["good", "bad"]},
                                    "class 'dogs' has 1 usable image"),
}


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("command", ["scan", "train"])
def test_untrainable_datasets_are_refused_naming_the_folder(name: str, command: str, tmp_path: Path,
                                                            error_line: Callable[[str], str]) -> None:
    classes, message = DATASETS[name]
    root = _dataset(tmp_path / "data", classes, np.random.default_rng(3))
    args = ["scan", root] if command == "scan" else ["train", root, "--out", tmp_path / "run"]
    code, _out, err = _run_cli(*args)
    assert code == 2
    line = error_line(err)
    assert message in line and str(root) in line and "each class needs at least 2" in line
    assert not (tmp_path / "run").exists()


# A folder where a file is expected, and the reverse: refused with exit 2 and a line naming the path.
WRONG_KIND = {
    "scan a photo instead of a folder": (lambda p: ["scan", p.photo], "not a folder", "photo"),
    "train on a photo instead of a folder": (lambda p: ["train", p.photo, "--out", p.tmp / "r"], "not a folder",
                                             "photo"),
    "train into a file instead of a folder": (lambda p: ["train", p.data, "--out", p.photo], "is a file, not a folder",
                                              "photo"),
    "a folder as --weights": (lambda p: ["train", p.data, "--out", p.tmp / "r", "--weights", p.data],
                              "is a folder; pass the weights file", "data"),
    "evaluate a photo instead of a run folder": (lambda p: ["evaluate", p.photo], "not a run folder", "photo"),
    "evaluate a dataset instead of a run folder": (lambda p: ["evaluate", p.data], "not a run folder", "data"),
    "export a photo instead of a run folder": (lambda p: ["export", p.photo], "not a run folder", "photo"),
    "evaluate --data a photo": (lambda p: ["evaluate", p.run, "--data", p.photo], "not a folder", "photo"),
    "resume a photo": (lambda p: ["train", "--out", p.photo, "--resume"], "not a run folder", "photo"),
    "a run folder as the model": (lambda p: ["predict", p.run, p.photo], "is a folder; pass the .onnx file", "run"),
    "a photo as the model": (lambda p: ["predict", p.photo, p.photo], "not a valid ONNX model", "photo"),
    "predict a folder without photos": (lambda p: ["predict", p.model, p.empty], "no images to predict", "empty"),
}


@dataclass(frozen=True)
class _Paths:
    tmp: Path
    data: Path
    photo: Path
    run: Path
    model: Path
    empty: Path


@pytest.mark.parametrize("name", WRONG_KIND)
def test_a_folder_for_a_file_and_the_reverse_are_refused(name: str, tmp_path: Path, small_data: Path,
                                                         trained_run: Path, exported_model: Path,
                                                         error_line: Callable[[str], str]) -> None:
    (tmp_path / "empty").mkdir()
    paths = _Paths(tmp_path, small_data, next(small_data.rglob("*.jpg")), trained_run, exported_model,
                   tmp_path / "empty")
    build_args, message, named = WRONG_KIND[name]
    code, _out, err = _run_cli(*build_args(paths))
    assert code == 2
    line = error_line(err)
    assert message in line and str(getattr(paths, named)) in line
    assert not (tmp_path / "r").exists()


def test_the_real_command_prints_no_traceback(hostile_dataset: Path, exported_model: Path, transfer_studio,
                                              error_line: Callable[[str], str]) -> None:
    scan = transfer_studio("scan", hostile_dataset)
    assert scan.returncode == 0 and "Traceback" not in scan.stderr
    lines = scan.stdout.splitlines()
    assert all(any(f"{name}: " in line and reason in line for line in lines) for name, reason in SKIPPED.items())

    folder = hostile_dataset / "hostile"
    predict = transfer_studio("predict", exported_model, folder, folder / "album.jpg", folder / "broken_link.png",
                              "--format", "csv")
    assert predict.returncode == 0 and "Traceback" not in predict.stderr
    assert all(reason in predict.stdout for reason in SKIPPED.values())
    assert "broken symbolic link" in predict.stdout  # named on the command line, not found in the folder

    refused = transfer_studio("scan", folder / "png_named.jpg")
    assert refused.returncode == 2
    assert str(folder / "png_named.jpg") in error_line(refused.stderr)


def test_the_gui_lists_every_bad_file_and_keeps_working(window, find, drop, qtbot, hostile_dataset: Path,
                                                        exported_model: Path, predicted: dict[str, dict]) -> None:
    window.tabs.setCurrentWidget(window.data_page)
    with qtbot.waitSignal(window.data_page.dataset_opened, timeout=60_000):
        drop(window, [hostile_dataset])
    problems = find("scanReportView", QAbstractItemView).model()
    rows = [[problems.index(r, c).data() for c in range(3)] for r in range(problems.rowCount())]
    skipped = {Path(path).name: detail for kind, detail, path in rows if kind == "skipped"}
    assert set(skipped) == set(SKIPPED) | {"loop_b.jpg"}
    assert all(reason in skipped[name] for name, reason in SKIPPED.items())
    assert find("startButton").isEnabled()

    with qtbot.waitSignal(window.predict_page.model_loaded, timeout=60_000):
        window.open_model(exported_model)
    folder = hostile_dataset / "hostile"
    drop(find("dropArea"), [folder, folder / "album.jpg"])
    view = find("predictionsView", QAbstractItemView).model()
    qtbot.waitUntil(lambda: view.rowCount() == len(predicted), timeout=120_000)
    results = {Path(p.path).name: p for p in window.predict_page.results}
    for case in CASES:
        if case.predict == CONVERTED:
            assert results[case.file].error is None, case.name
        else:
            assert case.predict in results[case.file].error, case.name
    assert not window.notice.isVisible()
