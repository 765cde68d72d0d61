"""A run's recorded split kept over a fresh scan: nothing moves between splits, changes are reported."""

import pytest

from engine.dataset.report import ImageItem, ScanReport
from engine.dataset.split import keep_groups_together, keep_recorded_split
from engine.dataset.validate import DatasetError
from engine.events import Info, WarningEvent


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


def _class_folders(per_class: int) -> ScanReport:
    """Two classes of ``per_class`` photos split 60/20/20 as the scan would, each photo its own unit."""
    items = [(f"{name}/{index:02d}.png", label, "train") for label, name in enumerate(("cat", "dog"))
             for index in range(per_class)]
    return keep_groups_together(_report("/d", items), [], val_fraction=0.2, test_fraction=0.2, seed=0,
                                on_event=lambda _event: None)


def test_near_duplicate_groups_of_one_class_end_up_on_one_side() -> None:
    plain = _class_folders(20)
    split_of = {item.path: item.split for item in plain.items}
    # Groups that the plain split cuts: a validation photo with training photos of its class, a test with a val.
    cat_val = [i.path for i in plain.items if i.label == 0 and i.split == "val"][0]
    cat_train = [i.path for i in plain.items if i.label == 0 and i.split == "train"][:2]
    dog_test = [i.path for i in plain.items if i.label == 1 and i.split == "test"][0]
    dog_val = [i.path for i in plain.items if i.label == 1 and i.split == "val"][0]
    groups = [(cat_val, *cat_train), (dog_test, dog_val)]
    assert all(len({split_of[path] for path in group}) > 1 for group in groups)
    events: list = []
    grouped = keep_groups_together(plain, groups, val_fraction=0.2, test_fraction=0.2, seed=0,
                                   on_event=events.append)
    split_of = {item.path: item.split for item in grouped.items}
    assert all(len({split_of[path] for path in group}) == 1 for group in groups)
    assert grouped.near_duplicates == tuple(groups)
    assert {path for path in split_of} == {item.path for item in plain.items}
    for split in ("val", "test"):  # still stratified by units: 4 of a class's 18 or 19, one may be a group of 3
        assert all(4 <= count <= 6 for count in grouped.counts[split].values()), grouped.counts
    assert any(isinstance(e, Info) and "2 near-duplicate group(s)" in e.message for e in events)
    assert not grouped.warnings
    assert ScanReport.from_dict(grouped.to_dict()).near_duplicates == grouped.near_duplicates


def test_groups_that_the_split_cannot_join_are_reported() -> None:
    """Across classes a stratified split cannot keep a group together; given train/ and val/ folders stay."""
    plain = _class_folders(10)
    cat_train = next(i.path for i in plain.items if i.label == 0 and i.split == "train")
    dog_val = next(i.path for i in plain.items if i.label == 1 and i.split == "val")
    events: list = []
    across = keep_groups_together(plain, [(cat_train, dog_val)], val_fraction=0.2, test_fraction=0.2, seed=0,
                                  on_event=events.append)
    assert [i.split for i in across.items] == [i.split for i in plain.items]
    assert "span classes" in across.warnings[-1] and cat_train in across.warnings[-1]
    pre_split = ScanReport("/p", "pre-split", ("cat", "dog"), (
        ImageItem("/p/train/cat/1.png", 0, "train"), ImageItem("/p/val/cat/1b.png", 0, "val"),
        ImageItem("/p/train/dog/1.png", 1, "train"), ImageItem("/p/val/dog/1.png", 1, "val")),
        given_splits=("train", "val"))
    kept = keep_groups_together(pre_split, [("/p/train/cat/1.png", "/p/val/cat/1b.png")], val_fraction=0.2,
                                test_fraction=0.0, seed=0, on_event=events.append)
    assert set(kept.items) == set(pre_split.items)
    assert "split folders as given" in kept.warnings[-1]
    assert sum(isinstance(e, WarningEvent) for e in events) == 2


def test_the_validation_photos_set_aside_from_a_train_folder_are_set_aside_again_around_the_groups() -> None:
    """train/ and test/ given (the ultrasound layout): test stays, validation is carved from train/ again."""
    items = [ImageItem(f"/p/{split}/{name}/{index}.png", label, split) for label, name in enumerate(("a", "b"))
             for split, count in (("train", 10), ("test", 3)) for index in range(count)]
    given = ScanReport("/p", "pre-split", ("a", "b"), tuple(items), given_splits=("train", "test"))
    carved = keep_groups_together(given, [], val_fraction=0.2, test_fraction=0.2, seed=1,
                                  on_event=lambda _event: None)
    val = [item.path for item in carved.items if item.split == "val"]
    train = [item.path for item in carved.items if item.split == "train" and "/a/" in item.path]
    group = (val[0], *train[:3])
    grouped = keep_groups_together(carved, [group], val_fraction=0.2, test_fraction=0.2, seed=1,
                                   on_event=lambda _event: None)
    split_of = {item.path: item.split for item in grouped.items}
    assert len({split_of[path] for path in group}) == 1 and not grouped.warnings
    assert [p for p, s in split_of.items() if s == "test"] == [i.path for i in items if i.split == "test"]
    # "a" has 7 units (the group of 4 and 6 photos): 1 unit set aside, 1 photo or the group; "b" 2 of its 10
    assert grouped.counts["val"]["a"] in (1, 4) and grouped.counts["val"]["b"] == 2
