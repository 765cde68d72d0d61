"""A run's recorded split kept over a fresh scan: nothing moves between splits, changes are reported."""

import pytest

from engine.dataset.report import ImageItem, ScanReport
from engine.dataset.split import keep_recorded_split
from engine.dataset.validate import DatasetError
from engine.events import WarningEvent


def _report(root: str, items: list[tuple[str, int, str]], leakage: tuple = ()) -> ScanReport:
    return ScanReport(root, "class-folders", ("cat", "dog"),
                      tuple(ImageItem(f"{root}/{path}", label, split) for path, label, split in items), leakage=leakage)


def test_the_recorded_split_is_kept_and_changes_are_reported() -> None:
    recorded = _report("/old", [("cat/1.png", 0, "val"), ("cat/2.png", 0, "train"), ("cat/3.png", 0, "train"),
                                ("dog/1.png", 1, "val"), ("dog/2.png", 1, "train")],
                       leakage=(("/old/cat/2.png", "/old/cat/1.png"), ("/old/dog/2.png", "/old/dog/1.png")))
    # The folder moved, cat/3.png was deleted and cat/4.png added; a fresh split would put cat/2.png in val.
    current = _report("/new", [("cat/1.png", 0, "train"), ("cat/2.png", 0, "val"), ("cat/4.png", 0, "train"),
                               ("dog/1.png", 1, "train"), ("dog/2.png", 1, "val")])
    events: list = []
    kept = keep_recorded_split(recorded, current, events.append)
    assert [(i.path, i.label, i.split) for i in kept.items] == [
        ("/new/cat/1.png", 0, "val"), ("/new/cat/2.png", 0, "train"), ("/new/dog/1.png", 1, "val"),
        ("/new/dog/2.png", 1, "train")]
    assert kept.leakage == (("/new/cat/2.png", "/new/cat/1.png"), ("/new/dog/2.png", "/new/dog/1.png"))
    messages = [e.message for e in events if isinstance(e, WarningEvent)]
    assert len(messages) == 2 and list(kept.warnings) == messages
    assert "1 photo(s) added" in messages[0] and "/new/cat/4.png" in messages[0]
    assert "1 photo(s) of this run's split are gone" in messages[1] and "/old/cat/3.png" in messages[1]


def test_an_unchanged_folder_keeps_its_split_silently() -> None:
    recorded = _report("/d", [("cat/1.png", 0, "val"), ("cat/2.png", 0, "train"), ("dog/1.png", 1, "val"),
                              ("dog/2.png", 1, "train")])
    events: list = []
    assert keep_recorded_split(recorded, recorded, events.append).items == recorded.items and events == []


def test_a_folder_without_the_recorded_photos_is_refused() -> None:
    recorded = _report("/d", [("cat/1.png", 0, "val"), ("cat/2.png", 0, "train"), ("dog/1.png", 1, "val"),
                              ("dog/2.png", 1, "train")])
    other = _report("/other", [("cat/a.png", 0, "val"), ("cat/2.png", 0, "train"), ("dog/b.png", 1, "train")])
    with pytest.raises(DatasetError, match="none of this run's val photos are there"):
        keep_recorded_split(recorded, other, lambda _event: None)
