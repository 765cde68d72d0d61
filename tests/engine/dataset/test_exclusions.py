"""excluded.json: what it holds, that a damaged one is refused with the fix; only the dataset's photos go in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.dataset.dataset_folder import STATE_FOLDER, DatasetPathError
from engine.dataset.exclusions import ExcludedPhoto, Exclusions, ExclusionsError, exclusions_file, read_exclusions
from engine.dataset.journal import exclude, include
from engine.dataset.scan import scan_dataset
from engine.dataset.validate import content_hash
from engine.errors import BadInputError


@pytest.fixture
def data(tmp_path: Path, make_dataset) -> Path:
    return make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3}).resolve()


def test_no_file_means_no_exclusions(data: Path):
    assert read_exclusions(data) == Exclusions()
    assert not (data / STATE_FOLDER).exists()


def test_excluded_json_names_each_photo_below_the_dataset_with_its_hash_reason_and_time(data: Path):
    nested = data / "cats" / "2023" / "x.png"
    nested.parent.mkdir()
    nested.write_bytes((data / "cats" / "000.png").read_bytes() + b"!")
    exclusions = exclude(data, [data / "cats" / "001.png", "cats/2023/x.png"], "near-duplicate")
    on_disk = json.loads(exclusions_file(data).read_text(encoding="utf-8"))
    assert on_disk["version"] == 1
    assert [(entry["path"], entry["reason"]) for entry in on_disk["excluded"]] == [
        ("cats/001.png", "near-duplicate"), ("cats/2023/x.png", "near-duplicate")]
    assert on_disk["excluded"][0]["content_hash"] == content_hash(data / "cats" / "001.png")
    assert on_disk["excluded"][0]["time"].endswith("+00:00")
    assert read_exclusions(data) == exclusions
    assert sorted(os.listdir(data / STATE_FOLDER)) == ["changes.jsonl", "excluded.json"], "no temporary file left"


def test_include_reverses_exclude_and_ignores_photos_that_were_not_excluded(data: Path):
    exclude(data, ["cats/000.png", "dogs/000.png"], "off-topic")
    exclude(data, ["cats/000.png"], "wrong label")  # already excluded: keeps its first reason
    assert [(p.path, p.reason) for p in read_exclusions(data).photos] == [
        ("cats/000.png", "off-topic"), ("dogs/000.png", "off-topic")]
    left = include(data, [data / "cats" / "000.png", "cats/001.png"])
    assert [photo.path for photo in left.photos] == ["dogs/000.png"] == [p.path for p in read_exclusions(data).photos]
    assert (data / "cats" / "000.png").is_file(), "excluding never touches the photo"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "damaged exclusions file"),
        (b"\x89PNG\r\n\x1a\n\x00\xff", "cannot be read"),
        ('{"version": 1, "excluded": [{"path": 3, "reason": "x", "content_hash": null, "time": "t"}]}', "TypeError"),
        ('{"version": 1, "excluded": [{"path": "cats/000.png"}]}', "KeyError"),
        ('["version", 1]', "damaged exclusions file"),
        ('{"version": 2, "excluded": []}', "written by a newer Transfer Studio"),
    ],
)
def test_a_damaged_file_is_refused_naming_it_and_the_fix(data: Path, content: str | bytes, expected: str):
    path = exclusions_file(data)
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for attempt in (lambda: read_exclusions(data), lambda: scan_dataset(data), lambda: exclude(data, ["cats/000.png"],
                                                                                                 "manual")):
        with pytest.raises(ExclusionsError) as caught:
            attempt()
        message = str(caught.value)
        assert isinstance(caught.value, BadInputError)
        assert message.startswith(f"{path}: ") and expected in message and "delete it" in message
    assert path.read_bytes() == (content if isinstance(content, bytes) else content.encode()), "left for the user"


def test_only_existing_photos_of_the_dataset_can_be_excluded(tmp_path: Path, data: Path, make_image):
    outside = make_image(tmp_path / "elsewhere" / "x.png")
    (data / "link").symlink_to(outside.parent, target_is_directory=True)
    for path, expected in [
        (outside, "not inside the dataset folder"),
        ("../elsewhere/x.png", "not inside the dataset folder"),
        ("link/x.png", "not inside the dataset folder"),
        (data, "the dataset folder itself"),
        (f"{STATE_FOLDER}/excluded.json", f"inside {STATE_FOLDER}"),
        ("cats/missing.png", "not found"),
        ("cats", "not found, or a folder"),
    ]:
        with pytest.raises(DatasetPathError, match=expected):
            exclude(data, ["dogs/000.png", path], "manual")
    assert read_exclusions(data) == Exclusions(), "a batch with one bad path changes nothing"
    with pytest.raises(ValueError, match="one-line reason"):
        exclude(data, ["dogs/000.png"], " ")


def test_excluded_photo_entries_round_trip():
    photo = ExcludedPhoto("a/b.png", "manual", None, "2026-01-01T00:00:00+00:00")
    assert Exclusions.of([photo, photo]).to_dict() == {"version": 1, "excluded": [
        {"path": "a/b.png", "reason": "manual", "content_hash": None, "time": "2026-01-01T00:00:00+00:00"}]}
    assert ExcludedPhoto.from_dict(Exclusions.of([photo]).to_dict()["excluded"][0]) == photo
