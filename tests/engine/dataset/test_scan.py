from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from engine.control import Cancelled, RunControl
from engine.dataset.journal import exclude, include
from engine.dataset.report import ScanReport, SkippedFile, format_scan_report
from engine.dataset.scan import scan_dataset
from engine.dataset.split import split_sizes, stratified_split
from engine.dataset.validate import DatasetError
from engine.events import Progress, WarningEvent


def splits_of(report: ScanReport) -> dict[str, str]:
    return {Path(item.path).name + "@" + report.classes[item.label]: item.split for item in report.items}


def test_class_folders_are_split_stratified(tmp_path: Path, make_dataset):
    make_dataset(tmp_path / "data", {"dog": 10, "cat": 10, "bird": 5})
    report = scan_dataset(tmp_path / "data", val_fraction=0.2, test_fraction=0.2, seed=3)
    assert report.layout == "class-folders"
    assert report.classes == ("bird", "cat", "dog")
    assert report.counts == {
        "train": {"bird": 3, "cat": 6, "dog": 6},
        "val": {"bird": 1, "cat": 2, "dog": 2},
        "test": {"bird": 1, "cat": 2, "dog": 2},
    }
    assert report.root == str((tmp_path / "data").resolve())
    assert {report.classes[item.label] for item in report.items} == {"bird", "cat", "dog"}
    assert all(Path(item.path).parent.name == report.classes[item.label] for item in report.items)
    assert report.skipped == () and report.warnings == () and report.leakage == ()


def test_split_is_deterministic_per_seed_whatever_the_listing_order(
    tmp_path: Path, make_dataset, monkeypatch
):
    make_dataset(tmp_path / "data", {"a": 20, "b": 20})
    first = splits_of(scan_dataset(tmp_path / "data", seed=1))
    real_walk = os.walk

    def reversed_walk(top, *args, **kwargs):
        for current, dirs, files in real_walk(top, *args, **kwargs):
            dirs.reverse()
            yield current, dirs, files[::-1]

    monkeypatch.setattr(os, "walk", reversed_walk)
    monkeypatch.setattr(Path, "iterdir", lambda self, real=Path.iterdir: reversed(list(real(self))))
    assert splits_of(scan_dataset(tmp_path / "data", seed=1)) == first
    assert splits_of(scan_dataset(tmp_path / "data", seed=2)) != first


def test_every_class_with_two_images_has_one_in_train_and_one_in_val(tmp_path: Path, make_dataset):
    make_dataset(tmp_path / "data", {"big": 40, "pair": 2, "trio": 3})
    report = scan_dataset(tmp_path / "data", val_fraction=0.1, test_fraction=0.1)
    assert report.counts["val"] == {"big": 4, "pair": 1, "trio": 1}
    assert report.counts["train"] == {"big": 32, "pair": 1, "trio": 1}
    assert report.counts["test"] == {"big": 4, "pair": 0, "trio": 1}


@pytest.mark.parametrize(
    ("count", "val", "test", "expected"),
    [
        (1, 0.2, 0.0, (0, 0)),
        (2, 0.2, 0.2, (1, 0)),
        (3, 0.2, 0.2, (1, 1)),
        (10, 0.25, 0.0, (3, 0)),
        (10, 0.5, 0.45, (5, 4)),
    ],
)
def test_split_sizes_keep_one_image_for_training(count, val, test, expected):
    assert split_sizes(count, val, test) == expected


def test_split_keeps_each_unit_together():
    units = {"a": [["a1", "a1-copy"], ["a2"], ["a3"], ["a4"]], "b": [["b1"], ["b2"]]}
    for seed in range(20):
        assignment = stratified_split(units, val_fraction=0.5, test_fraction=0.0, seed=seed)
        assert assignment["a1"] == assignment["a1-copy"]
        assert Counter(assignment[path] for path in ("b1", "b2")) == {"train": 1, "val": 1}


def test_hidden_and_non_image_files_are_ignored(tmp_path: Path, make_dataset, make_image):
    root = make_dataset(tmp_path / "data", {"a": 3, "b": 3})
    make_image(root / "a" / ".hidden.png")
    make_image(root / "a" / ".thumbnails" / "x.png")
    make_image(root / ".git" / "objects" / "y.png")
    (root / "a" / "notes.txt").write_text("hello")
    (root / "b" / "Thumbs.db").write_bytes(b"\x00" * 10)
    report = scan_dataset(root)
    assert report.classes == ("a", "b")
    assert len(report.items) == 6
    assert report.ignored_count == 2
    assert not any(part.startswith(".") for item in report.items for part in Path(item.path).parts)


def test_nested_folders_and_unusual_names_are_found(tmp_path: Path, make_image):
    root = tmp_path / "my photos"
    make_image(root / "café ☕" / "2023" / "summer" / "фото 1 🐱.png")
    make_image(root / "café ☕" / "IMG 0002.JPG", fmt="JPEG")
    make_image(root / "日本" / "写真.Png")
    make_image(root / "日本" / "deep" / "er" / "x.TIFF", fmt="TIFF")
    report = scan_dataset(root)
    assert report.classes == ("café ☕", "日本")
    names = {Path(item.path).name for item in report.items}
    assert names == {"IMG 0002.JPG", "x.TIFF", "写真.Png", "фото 1 🐱.png"}
    assert report.skipped == () and report.ignored_count == 0


def test_bad_files_are_skipped_with_reasons_and_good_ones_kept(tmp_path: Path, make_dataset, bad_corpus):
    root = make_dataset(tmp_path / "data", {"a": 2, "b": 2})
    for _name, (path, _loads) in bad_corpus.items():
        shutil.copy(path, root / "a" / path.name)
    report = scan_dataset(root, workers=2)
    skipped = {Path(file.path).name: file.reason for file in report.skipped}
    assert set(skipped) == {name for name, (_path, loads) in bad_corpus.items() if not loads}
    assert "decompression-bomb" in skipped["bomb.png"] and "empty" in skipped["zero_byte.jpg"]
    loaded = {Path(item.path).name for item in report.items}
    assert {name for name, (_path, loads) in bad_corpus.items() if loads} <= loaded
    text = format_scan_report(report)
    assert all(f"{file.path}: {file.reason}" in text for file in report.skipped)


def test_pre_split_layout_is_used_as_given(tmp_path: Path, make_dataset):
    make_dataset(tmp_path / "data" / "Train", {"cat": 4, "dog": 3})
    make_dataset(tmp_path / "data" / "VALIDATION", {"cat": 2, "dog": 1})
    make_dataset(tmp_path / "data" / "test", {"cat": 1, "dog": 1})
    report = scan_dataset(tmp_path / "data", val_fraction=0.5)
    assert report.layout == "pre-split"
    assert report.counts == {
        "train": {"cat": 4, "dog": 3},
        "val": {"cat": 2, "dog": 1},
        "test": {"cat": 1, "dog": 1},
    }
    assert all(Path(item.path).parent.parent.name.lower().startswith(item.split[:3]) for item in report.items)


def test_pre_split_without_val_sets_part_of_train_aside(tmp_path: Path, make_dataset):
    make_dataset(tmp_path / "data" / "train", {"cat": 10, "dog": 10})
    make_dataset(tmp_path / "data" / "test", {"cat": 2, "dog": 2})
    report = scan_dataset(tmp_path / "data", val_fraction=0.2)
    assert report.layout == "pre-split"
    assert report.counts["val"] == {"cat": 2, "dog": 2} and report.counts["test"] == {"cat": 2, "dog": 2}
    assert any("no val folder" in message for message in report.warnings)


def test_leakage_between_train_and_val_is_reported(tmp_path: Path, make_dataset):
    root = tmp_path / "data"
    make_dataset(root / "train", {"cat": 3, "dog": 3})
    make_dataset(root / "val", {"cat": 2, "dog": 2})
    original, copy = root / "train" / "cat" / "000.png", root / "val" / "cat" / "copy.png"
    shutil.copy(original, copy)
    report = scan_dataset(root)
    assert report.leakage == ((str(original), str(copy)),)
    assert any("byte-identical" in message for message in report.warnings)


def test_copies_within_a_class_stay_in_one_split(tmp_path: Path, make_dataset):
    root = make_dataset(tmp_path / "data", {"a": 6, "b": 6})
    for index in range(3):
        shutil.copy(root / "a" / "000.png", root / "a" / f"copy{index}.png")
    for seed in range(5):
        assert scan_dataset(root, val_fraction=0.5, seed=seed).leakage == ()


def test_same_photo_in_two_classes_is_warned(tmp_path: Path, make_dataset):
    root = make_dataset(tmp_path / "data", {"a": 3, "b": 3})
    shutil.copy(root / "a" / "000.png", root / "b" / "also-a.png")
    report = scan_dataset(root)
    assert any("more than one class" in message for message in report.warnings)


def test_imbalance_is_measured_and_warned(tmp_path: Path, make_dataset):
    report = scan_dataset(make_dataset(tmp_path / "data", {"many": 40, "few": 5}))
    assert report.imbalance_ratio == 32 / 4
    assert any("imbalanced" in message for message in report.warnings)
    balanced = scan_dataset(make_dataset(tmp_path / "even", {"x": 10, "y": 8}))
    assert not any("imbalanced" in message for message in balanced.warnings)


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class folders"),
        ({"only": 3}, "only class 'only'"),
        ({"a": 3, "b": 1}, "class 'b' has 1 usable image;"),
        ({"a": 3, "empty": 0}, "class 'empty' has 0 usable images"),
    ],
)
def test_untrainable_datasets_are_refused(tmp_path: Path, make_dataset, layout, message):
    root = make_dataset(tmp_path / "data", layout)
    root.mkdir(exist_ok=True)
    with pytest.raises(DatasetError, match=message) as caught:
        scan_dataset(root)
    assert "\n" not in str(caught.value) and str(root) in str(caught.value)


def test_a_class_left_with_one_usable_image_is_refused(tmp_path: Path, make_dataset):
    root = make_dataset(tmp_path / "data", {"a": 3, "b": 1})
    (root / "b" / "broken.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"class 'b' has 1 usable image; each class needs at least 2"):
        scan_dataset(root)


def test_missing_folder_and_file_are_refused(tmp_path: Path):
    with pytest.raises(DatasetError, match="folder not found"):
        scan_dataset(tmp_path / "nowhere")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "file.txt")


def test_invalid_fractions_are_refused(tmp_path: Path):
    for val, test in [(0.0, 0.0), (1.0, 0.0), (0.5, 0.5), (0.2, -0.1)]:
        with pytest.raises(ValueError, match="fractions"):
            scan_dataset(tmp_path, val_fraction=val, test_fraction=test)


def test_report_round_trips_through_json(tmp_path: Path, make_dataset):
    root = make_dataset(tmp_path / "data", {"a": 5, "b": 4})
    (root / "a" / "bad.jpg").write_bytes(b"nope")
    report = scan_dataset(root, test_fraction=0.2)
    data = json.loads(json.dumps(report.to_dict()))
    assert ScanReport.from_dict(data) == report
    assert data["skipped"] == [{"path": str(root / "a" / "bad.jpg"), "reason": report.skipped[0].reason}]
    keys = {"root", "layout", "classes", "counts", "imbalance_ratio", "items", "skipped", "ignored_count"}
    assert set(data) == keys | {"warnings", "leakage", "excluded", "near_duplicates", "given_splits"}
    assert sum(len(report.split_items(split)) for split in ("train", "val", "test")) == 9
    with pytest.raises(ValueError, match="invalid scan report"):
        ScanReport.from_dict({"root": "x"})
    data["items"][0]["split"] = "holdout"
    with pytest.raises(ValueError, match="split must be one of"):
        ScanReport.from_dict(data)


def test_text_report_lists_counts_and_warnings(tmp_path: Path, make_dataset):
    report = scan_dataset(make_dataset(tmp_path / "data", {"many": 40, "few": 5}))
    text = format_scan_report(report)
    assert "many" in text and "few" in text and "total" in text and "imbalanced" in text
    assert "test" not in text.splitlines()[2]  # no test column without test images


def test_progress_and_warnings_are_emitted(tmp_path: Path, make_dataset):
    events = []
    scan_dataset(make_dataset(tmp_path / "data", {"many": 40, "few": 5}), on_event=events.append)
    progress = [event for event in events if isinstance(event, Progress)]
    assert [event.phase for event in progress if event.phase == "scanning"] == ["scanning", "scanning"]
    validating = [event for event in progress if event.phase == "validating"]
    assert validating[-1].done == validating[-1].total == 45
    assert any(isinstance(event, WarningEvent) and "imbalanced" in event.message for event in events)


def test_cancel_stops_the_scan_between_class_folders(tmp_path: Path, make_dataset):
    control, events = RunControl(), []

    def cancel_after_the_first_folder(event: object) -> None:
        events.append(event)
        if isinstance(event, Progress) and event.phase == "scanning":
            control.cancel()

    with pytest.raises(Cancelled):
        scan_dataset(make_dataset(tmp_path / "data", {"a": 3, "b": 3, "c": 3}), control=control,
                     on_event=cancel_after_the_first_folder)
    assert [(e.phase, e.message) for e in events] == [("scanning", "a")], "stopped before listing b or decoding"


def test_an_unreadable_sub_folder_is_listed_as_skipped(tmp_path: Path, make_dataset, make_image, monkeypatch):
    root = make_dataset(tmp_path / "data", {"a": 3, "b": 3})
    locked = make_image(root / "a" / "locked" / "x.png").parent
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path) == locked:  # tests may run as root, where chmod would not stop the read
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    report = scan_dataset(root)
    assert [(file.path, file.reason) for file in report.skipped] == [
        (str(locked), "cannot read the folder (Permission denied)")
    ]
    assert len(report.items) == 6


def test_pre_split_problems_are_explained(tmp_path: Path, make_dataset, make_image):
    root = tmp_path / "data"
    make_dataset(root / "train", {"cat": 4, "dog": 4})
    make_dataset(root / "val", {"cat": 2})
    make_dataset(root / "extras", {"misc": 2})
    make_image(root / "train" / "stray.png")
    report = scan_dataset(root, test_fraction=0.25)
    assert report.counts["test"] == {"cat": 1, "dog": 1} and report.counts["val"] == {"cat": 2, "dog": 0}
    assert report.ignored_count == 1
    joined = "\n".join(report.warnings)
    for expected in (
        "extras: ignored",
        "not inside a class folder",
        "'dog' has no validation images",
        "no test folder",
    ):
        assert expected in joined
    make_dataset(root / "test", {"bird": 2})
    with pytest.raises(DatasetError, match="class 'bird' has no usable training images"):
        scan_dataset(root)


def test_excluded_photos_are_left_out_and_listed_with_their_reason_until_included(tmp_path: Path, make_dataset):
    root = make_dataset(tmp_path / "data", {"cats": 4, "dogs": 4}).resolve()
    (root / "dogs" / "broken.png").write_bytes(b"not an image")
    exclude(root, ["cats/001.png"], "near-duplicate")
    exclude(root, [root / "dogs" / "broken.png", "dogs/002.png"], "off-topic")
    report = scan_dataset(root)
    assert report.classes == ("cats", "dogs"), ".transfer-studio is never a class"
    assert sum(sum(counts.values()) for counts in report.counts.values()) == 6
    assert report.excluded == (SkippedFile(str(root / "cats" / "001.png"), "near-duplicate"),
                               SkippedFile(str(root / "dogs" / "002.png"), "off-topic"),
                               SkippedFile(str(root / "dogs" / "broken.png"), "off-topic"))
    assert report.skipped == (), "an excluded file is not even decoded"
    assert {file.path for file in report.excluded}.isdisjoint(item.path for item in report.items)
    assert ScanReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    text = format_scan_report(report)
    assert "Excluded 3 photo(s)" in text and f"{root / 'cats' / '001.png'}: near-duplicate" in text
    include(root, ["cats/001.png", "dogs/002.png"])
    report = scan_dataset(root)
    assert len(report.items) == 8 and [Path(f.path).name for f in report.excluded] == ["broken.png"]


def test_a_photo_changed_since_it_was_excluded_is_used_again_with_a_warning(tmp_path: Path, make_dataset, make_image):
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3}).resolve()
    exclude(root, ["cats/000.png", "cats/001.png"], "off-topic")
    make_image(root / "cats" / "000.png", size=(30, 20))  # a new photo that reuses the name
    report = scan_dataset(root)
    assert [Path(file.path).name for file in report.excluded] == ["001.png"]
    assert str(root / "cats" / "000.png") in {item.path for item in report.items}
    assert any("000.png: excluded (off-topic) but its content has changed" in message for message in report.warnings)


def test_a_report_saved_before_exclusions_existed_still_reads(tmp_path: Path, make_dataset):
    data = scan_dataset(make_dataset(tmp_path / "data", {"a": 3, "b": 3})).to_dict()
    del data["excluded"]
    assert ScanReport.from_dict(data).excluded == ()
