"""Copying predicted photos into class folders: originals kept, nothing overwritten, a manifest of what went where."""

import errno
import json
import os
from pathlib import Path

import pytest

from engine.atomic import copy_without_overwriting
from engine.control import Cancelled, RunControl
from engine.events import Progress
from engine.predict import Prediction
from engine.sort_into import UNSURE_FOLDER, sort_into_folders


def _photo(folder: Path, name: str, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(content)
    return folder / name


def _prediction(path: Path, label: str, confidence: float = 0.9, unsure: bool = False) -> Prediction:
    return Prediction(str(path), ((label, confidence), ("other", 1 - confidence)), unsure=unsure)


def test_photos_are_copied_by_label_unsure_ones_aside_and_the_manifest_lists_them(tmp_path: Path) -> None:
    cat = _photo(tmp_path / "inbox", "a.jpg", b"cat")
    dog = _photo(tmp_path / "inbox", "b.jpg", b"dog")
    vague = _photo(tmp_path / "inbox", "c.jpg", b"?")
    out = tmp_path / "sorted"
    events: list = []
    result = sort_into_folders([_prediction(cat, "cat"), _prediction(dog, "dog"),
                                _prediction(vague, "cat", 0.4, unsure=True)], out, on_event=events.append)
    assert (out / "cat" / "a.jpg").read_bytes() == b"cat" and (out / "dog" / "b.jpg").read_bytes() == b"dog"
    assert (out / UNSURE_FOLDER / "c.jpg").read_bytes() == b"?" and not (out / "cat" / "c.jpg").exists()
    assert all(p.read_bytes() for p in (cat, dog, vague))  # the originals stay
    assert (result.copied, result.unsure, result.failed) == (3, 1, ())
    manifest = json.loads(Path(result.manifest).read_text())
    assert manifest["format"] == 1 and manifest["failed"] == []
    assert [(Path(p["source"]).name, Path(p["copy"]).relative_to(out).as_posix(), p["label"], p["unsure"])
            for p in manifest["photos"]] == [("a.jpg", "cat/a.jpg", "cat", False), ("b.jpg", "dog/b.jpg", "dog", False),
                                             ("c.jpg", "_unsure/c.jpg", "cat", True)]
    assert [e.done for e in events if isinstance(e, Progress)] == [0, 1, 2, 3]
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left


def test_a_taken_name_gets_a_number_and_the_file_there_is_untouched(tmp_path: Path) -> None:
    out = tmp_path / "sorted"
    _photo(out / "cat", "a.jpg", b"already here")
    first = _photo(tmp_path / "one", "a.jpg", b"first")
    second = _photo(tmp_path / "two", "a.jpg", b"second")
    result = sort_into_folders([_prediction(first, "cat"), _prediction(second, "cat")], out)
    assert (out / "cat" / "a.jpg").read_bytes() == b"already here"
    assert (out / "cat" / "a (2).jpg").read_bytes() == b"first"
    assert (out / "cat" / "a (3).jpg").read_bytes() == b"second"
    again = sort_into_folders([], out)  # a second manifest does not replace the first
    assert Path(again.manifest).name == "sort-manifest (2).json" and Path(result.manifest).is_file()


def test_failed_photos_are_listed_and_the_rest_are_copied(tmp_path: Path) -> None:
    good = _photo(tmp_path / "in", "good.jpg", b"ok")
    gone = tmp_path / "in" / "gone.jpg"
    out = tmp_path / "out"
    result = sort_into_folders([Prediction(str(tmp_path / "broken.jpg"), (), error="not an image"),
                                _prediction(gone, "cat"), _prediction(good, "../escape"), _prediction(good, "dog")],
                               out)
    assert result.copied == 1 and (out / "dog" / "good.jpg").is_file()
    reasons = dict(result.failed)
    assert reasons[str(tmp_path / "broken.jpg")] == "not an image"
    assert "not found" in reasons[str(gone)] and "cannot be a folder name" in reasons[str(good)]
    assert not (tmp_path / "escape").exists()
    assert len(json.loads(Path(result.manifest).read_text())["failed"]) == 3


def test_cancel_stops_between_photos_and_still_writes_the_manifest(tmp_path: Path) -> None:
    photos = [_photo(tmp_path / "in", f"{i}.jpg", b"x") for i in range(3)]
    control, out = RunControl(), tmp_path / "out"

    def cancel_after_first(event: object) -> None:
        if isinstance(event, Progress) and event.done == 1:
            control.cancel()

    with pytest.raises(Cancelled):
        sort_into_folders([_prediction(p, "cat") for p in photos], out, on_event=cancel_after_first, control=control)
    manifest = json.loads((out / "sort-manifest.json").read_text())
    assert [Path(p["copy"]).name for p in manifest["photos"]] == ["0.jpg"]
    assert sorted(p.name for p in (out / "cat").iterdir()) == ["0.jpg"]


def test_without_hard_links_the_copy_still_takes_a_free_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """FAT disks have no hard links: the copy is renamed into a name checked to be free."""

    def no_links(*_args: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    source = _photo(tmp_path / "in", "a.jpg", b"new")
    _photo(tmp_path / "out", "a.jpg", b"old")
    copy = copy_without_overwriting(source, tmp_path / "out")
    assert copy.name == "a (2).jpg" and copy.read_bytes() == b"new"
    assert (tmp_path / "out" / "a.jpg").read_bytes() == b"old"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a (2).jpg", "a.jpg"]
