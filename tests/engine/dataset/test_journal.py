"""Moves, exclusions, undo and redo, and what a crash at each step leaves (no photo lost or doubled)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from engine.dataset import journal
from engine.dataset.dataset_folder import STATE_FOLDER, DatasetPathError
from engine.dataset.exclusions import read_exclusions
from engine.dataset.journal import (
    ExclusionRecord,
    JournalError,
    MoveError,
    MoveRecord,
    exclude,
    include,
    journal_file,
    move_to_class,
    read_history,
    recover,
    redo,
    undo,
)
from engine.dataset.scan import scan_dataset
from engine.dataset.validate import DatasetError, content_hash


class Crash(BaseException):
    """The process dying at this point: nothing after it runs, nothing catches it."""


def crash(*args, **kwargs):
    raise Crash()


def crash_on_done(append):
    """The journal's append, dying instead of writing a "done" line: after the change, before it is recorded."""

    def append_or_crash(path, line):
        if line["stage"] == "done":
            raise Crash()
        append(path, line)

    return append_or_crash


@pytest.fixture
def data(tmp_path: Path, make_dataset) -> Path:
    return make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3}).resolve()


def photos(root: Path) -> dict[str, bytes]:
    """Every file of the dataset but the journal's own, by path below it."""
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and STATE_FOLDER not in path.parts}


def lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in journal_file(root).read_text(encoding="utf-8").splitlines()]


def assert_settled(root: Path, before: dict[str, bytes]) -> None:
    """Every photo there exactly once, and every intent in the journal with exactly one outcome."""
    assert Counter(photos(root).values()) == Counter(before.values())
    outcomes = Counter(line["id"] for line in lines(root) if line["stage"] != "intent")
    assert outcomes == Counter(line["id"] for line in lines(root) if line["stage"] == "intent")


def test_move_then_undo_restores_the_exact_bytes_and_path(data: Path):
    before = photos(data)
    record = move_to_class(data, data / "cats" / "001.png", "birds")
    assert record == MoveRecord(1, "cats/001.png", "birds/001.png", content_hash(data / "birds" / "001.png"),
                                ("birds",), record.time)
    assert photos(data)["birds/001.png"] == before["cats/001.png"] and "cats/001.png" not in photos(data)
    assert [(line["id"], line["stage"]) for line in lines(data)] == [(1, "intent"), (1, "done")]
    assert lines(data)[0] | {"time": "t"} == {
        "version": 1, "id": 1, "stage": "intent", "op": "move", "source": "cats/001.png",
        "destination": "birds/001.png", "content_hash": record.content_hash, "folders_created": ["birds"],
        "time": "t", "undoes": None}
    [back] = undo(data)
    assert back.source == "birds/001.png" and back.destination == "cats/001.png" and back.undoes == 1
    assert photos(data) == before
    assert not (data / "birds").exists(), "the class folder the move made is removed once empty"
    assert scan_dataset(data).classes == ("cats", "dogs")
    assert_settled(data, before)


def test_a_taken_name_gets_a_number_and_nothing_is_overwritten(data: Path):
    before = photos(data)
    shutil.copy(data / "dogs" / "001.png", data / "dogs" / "000 (2).png")
    first = move_to_class(data, "cats/000.png", "dogs")
    assert first.destination == "dogs/000 (3).png"
    assert photos(data)["dogs/000.png"] == before["dogs/000.png"]
    assert photos(data)["dogs/000 (3).png"] == before["cats/000.png"]
    (data / "cats" / "000.png").write_bytes(b"a new photo")  # taking the name the moved photo came from
    assert [record.destination for record in undo(data)] == ["cats/000 (2).png"]
    assert (data / "cats" / "000.png").read_bytes() == b"a new photo"
    assert (data / "cats" / "000 (2).png").read_bytes() == before["cats/000.png"]


def test_a_pre_split_dataset_keeps_each_photo_in_its_split(tmp_path: Path, make_dataset):
    root = tmp_path / "data"
    make_dataset(root / "train", {"cats": 3, "dogs": 3})
    make_dataset(root / "val", {"cats": 1, "dogs": 1})
    assert move_to_class(root, "val/cats/000.png", "dogs").destination == "val/dogs/000 (2).png"
    assert move_to_class(root, "train/cats/001.png", "foxes").destination == "train/foxes/001.png"


@pytest.mark.parametrize(
    ("path", "new_class", "error", "expected"),
    [
        ("../elsewhere.png", "dogs", DatasetPathError, "not inside the dataset folder"),
        ("cats/000.png", "../outside", MoveError, "not a usable class name"),
        ("cats/000.png", "a/b", MoveError, "not a usable class name"),
        ("cats/000.png", ".hidden", MoveError, "not a usable class name"),
        ("cats/000.png", "", MoveError, "not a usable class name"),
        ("cats/000.png", "cats", MoveError, "already in class 'cats'"),
        ("cats/000.png", "Train", MoveError, "would make the dataset look pre-split"),
        ("cats/missing.png", "dogs", MoveError, "not found"),
        ("cats", "dogs", MoveError, "a folder, not a photo"),
        (f"{STATE_FOLDER}/changes.jsonl", "dogs", DatasetPathError, f"inside {STATE_FOLDER}"),
        ("loose.png", "dogs", DatasetError, "not inside a class folder"),
    ],
)
def test_moves_outside_the_dataset_or_to_odd_classes_are_refused(data: Path, path, new_class, error, expected):
    (data.parent / "elsewhere.png").write_bytes(b"x")
    (data / "loose.png").write_bytes(b"x")
    before = photos(data)
    with pytest.raises(error, match=expected):
        move_to_class(data, path, new_class)
    assert photos(data) == before and not journal_file(data).exists()


def test_a_failed_move_leaves_the_photo_where_it_was(data: Path, monkeypatch):
    before = photos(data)

    def refuse(source, destination):
        raise PermissionError(13, "Permission denied", str(source))

    monkeypatch.setattr(os, "rename", refuse)
    with pytest.raises(MoveError, match=r"cats/000\.png: could not be moved to .*birds \(Permission denied\); it "
                                        "stays where it was"):
        move_to_class(data, "cats/000.png", "birds")
    assert photos(data) == before and not (data / "birds").exists()
    assert [(line["id"], line["stage"]) for line in lines(data)] == [(1, "intent"), (1, "abandoned")]
    assert read_history(data).undoable == ()


def test_a_crash_before_the_rename_is_rolled_back(data: Path, monkeypatch):
    before = photos(data)
    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(Crash):
        move_to_class(data, "cats/000.png", "birds")
    monkeypatch.undo()
    assert (data / "birds").is_dir() and lines(data)[-1]["stage"] == "intent"
    [message] = recover(data)
    assert "interrupted move of cats/000.png to birds/000.png was not done" in message
    assert photos(data) == before and not (data / "birds").exists()
    assert lines(data)[-1]["stage"] == "abandoned" and read_history(data).undoable == ()
    assert recover(data) == [], "settled once"
    assert_settled(data, before)


def test_a_crash_after_the_rename_is_completed_and_can_be_undone(data: Path, monkeypatch, caplog):
    before = photos(data)
    monkeypatch.setattr(journal, "_append", crash_on_done(journal._append))
    with pytest.raises(Crash):
        move_to_class(data, "cats/000.png", "birds")
    monkeypatch.undo()
    assert "birds/000.png" in photos(data) and lines(data)[-1]["stage"] == "intent"
    with caplog.at_level(logging.WARNING, logger="engine.dataset.journal"):
        undone = undo(data)  # recovers first: the move is found done, so it is the one undone
    assert "was done: the photo is at its destination" in caplog.text
    assert [record.undoes for record in undone] == [1]
    assert photos(data) == before and not (data / "birds").exists()
    assert_settled(data, before)


def test_a_crash_between_an_undo_and_its_done_line_still_removes_the_folder_it_emptied(data: Path, monkeypatch):
    before = photos(data)
    move_to_class(data, "cats/000.png", "birds")
    monkeypatch.setattr(os, "rmdir", crash)
    with pytest.raises(Crash):
        undo(data)
    monkeypatch.undo()
    assert photos(data) == before and (data / "birds").is_dir()
    recover(data)
    assert not (data / "birds").exists() and read_history(data).redoable[-1].undoes == 1
    assert_settled(data, before)


def test_a_photo_at_both_or_neither_path_is_kept_and_reported(data: Path):
    before = photos(data)
    digest = content_hash(data / "cats" / "000.png")
    for change_id, source in ((1, "cats/000.png"), (2, "cats/001.png")):
        intent = {"version": 1, "id": change_id, "stage": "intent", "op": "move", "source": source,
                  "destination": f"dogs/{change_id}.png", "content_hash": digest, "folders_created": [],
                  "time": "t", "undoes": None}
        journal_file(data).parent.mkdir(exist_ok=True)
        with open(journal_file(data), "a", encoding="utf-8") as handle:
            handle.write(json.dumps(intent) + "\n")
    shutil.copy(data / "cats" / "000.png", data / "dogs" / "1.png")  # a copy: impossible with a rename
    os.rename(data / "cats" / "001.png", data.parent / "away.png")  # moved outside by hand
    both, neither = recover(data)
    assert "both paths hold the photo, and both are kept" in both
    assert "at neither path" in neither
    assert (data / "cats" / "000.png").read_bytes() == (data / "dogs" / "1.png").read_bytes() == before["cats/000.png"]
    assert [line["stage"] for line in lines(data)[2:]] == ["abandoned", "abandoned"]


def test_undo_and_redo_walk_the_history_and_a_new_change_ends_redo(data: Path):
    before = photos(data)
    move_to_class(data, "cats/000.png", "dogs")
    exclude(data, ["dogs/001.png"], "near-duplicate")
    move_to_class(data, "cats/001.png", "dogs")
    assert [type(record) for record in read_history(data).undoable] == [MoveRecord, ExclusionRecord, MoveRecord]
    undo(data)
    [include_again] = undo(data)
    assert isinstance(include_again, ExclusionRecord) and include_again.op == "include"
    assert read_exclusions(data).photos == ()
    assert len(scan_dataset(data).items) == 6
    [exclude_again] = redo(data)  # undo of the undo
    assert exclude_again.op == "exclude" and exclude_again.photos == include_again.photos
    assert [Path(file.path).name for file in scan_dataset(data).excluded] == ["001.png"]
    history = read_history(data)
    assert len(history.undoable) == 2 and len(history.redoable) == 1
    include(data, ["dogs/001.png"])  # a new change: the move left undone cannot be redone any more
    assert read_history(data).redoable == ()
    assert redo(data) == []
    assert len(undo(data, 10)) == 3 and photos(data) == before and read_exclusions(data).photos == ()
    assert undo(data) == [] and len(read_history(data).redoable) == 3


def test_undo_of_a_photo_moved_away_by_hand_names_it_and_changes_nothing(data: Path):
    move_to_class(data, "cats/000.png", "dogs")
    os.rename(data / "dogs" / "000 (2).png", data.parent / "away.png")
    with pytest.raises(MoveError, match=r"dogs/000 \(2\)\.png: not found, so its move from cats/000\.png cannot be "):
        undo(data)
    assert len(read_history(data).undoable) == 1


def test_a_crash_while_excluding_leaves_the_exclusions_all_before_or_all_after(data: Path, monkeypatch):
    exclude(data, ["cats/000.png"], "manual")
    monkeypatch.setattr(journal, "write_exclusions", crash)
    with pytest.raises(Crash):
        exclude(data, ["cats/001.png", "dogs/000.png"], "off-topic")
    monkeypatch.undo()
    [message] = recover(data)
    assert "interrupted exclude of 2 photo(s) was not done" in message
    assert [photo.path for photo in read_exclusions(data).photos] == ["cats/000.png"]

    monkeypatch.setattr(journal, "_append", crash_on_done(journal._append))
    with pytest.raises(Crash):
        include(data, ["cats/000.png"])
    monkeypatch.undo()
    [message] = recover(data)
    assert "interrupted include of 1 photo(s) was done" in message
    assert read_exclusions(data).photos == ()
    [undone] = undo(data)  # the include, found done, is what undo reverses
    assert undone.op == "exclude" and [photo.path for photo in read_exclusions(data).photos] == ["cats/000.png"]
    assert_settled(data, photos(data))


def test_a_torn_last_line_is_ignored_with_a_warning_and_cut_off(data: Path, caplog):
    move_to_class(data, "cats/000.png", "birds")
    with open(journal_file(data), "ab") as handle:
        handle.write(b'{"version": 1, "id": 2, "stage": "int')  # the app died while appending
    assert len(read_history(data).undoable) == 1
    with caplog.at_level(logging.WARNING, logger="engine.dataset.journal"):
        [message] = recover(data)
    assert "ignored an incomplete last line" in message and message in caplog.text
    assert journal_file(data).read_bytes().endswith(b"}\n") and len(lines(data)) == 2
    assert [record.id for record in undo(data)] == [2]
    assert [(line["id"], line["stage"]) for line in lines(data)] == [(1, "intent"), (1, "done"), (2, "intent"),
                                                                      (2, "done")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"not json", "line 2 is damaged"),
        (b'{"version": 1, "id": 9, "stage": "done", "time": "t"}', "line 2 is damaged"),
        (b'{"version": 1, "id": 2, "stage": "intent", "op": "delete", "time": "t", "undoes": null}', "unknown change"),
        (b'{"version": 7, "id": 2, "stage": "intent"}', "written by a newer Transfer Studio"),
    ],
)
def test_a_damaged_journal_is_refused_naming_the_line_and_the_fix(data: Path, line: bytes, expected: str):
    exclude(data, ["cats/000.png"], "manual")
    journal_file(data).write_bytes(journal_file(data).read_bytes().splitlines(keepends=True)[0] + line + b"\n")
    before = photos(data)
    for attempt in (lambda: read_history(data), lambda: undo(data), lambda: move_to_class(data, "cats/001.png", "x")):
        with pytest.raises(JournalError, match=expected) as caught:
            attempt()
        assert str(caught.value).startswith(f"{journal_file(data)}: ")
    assert photos(data) == before
