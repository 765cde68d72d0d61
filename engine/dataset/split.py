"""Seeded, stratified train/val/test split that does not depend on the order the filesystem lists files; and a
run's recorded split kept over a fresh scan of its folder."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from engine.dataset.report import SPLITS, ScanReport
from engine.dataset.validate import DatasetError
from engine.events import EventSink, Info, WarningEvent


def stratified_split(
    units_by_class: Mapping[str, Sequence[Sequence[str]]],
    *,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> dict[str, str]:
    """Map every path to "train", "val" or "test", class by class.

    A unit is a group of paths that must stay together (byte-identical copies, so that a copy never
    ends up on both sides). Each class with at least two units gets at least one in val and one in
    train, and one in test when ``test_fraction`` > 0 and it has three. Each class shuffles with its
    own seed derived from ``seed`` and its name, so adding a class does not reshuffle the others.
    """
    assignment: dict[str, str] = {}
    for name, units in units_by_class.items():
        ordered = sorted((sorted(unit) for unit in units), key=lambda unit: unit[0])
        random.Random(f"{seed}:{name}").shuffle(ordered)
        n_val, n_test = split_sizes(len(ordered), val_fraction, test_fraction)
        for index, unit in enumerate(ordered):
            split = "val" if index < n_val else "test" if index < n_val + n_test else "train"
            assignment.update(dict.fromkeys(unit, split))
    return assignment


def split_sizes(count: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """How many of ``count`` units go to val and to test, keeping at least one for training."""
    n_val = max(1, _round(count * val_fraction)) if val_fraction > 0 and count >= 2 else 0
    n_test = max(1, _round(count * test_fraction)) if test_fraction > 0 and count >= 2 + (n_val > 0) else 0
    while n_val + n_test >= count > 0:
        if n_test > 1 or n_val == 0:  # test gives way first: validation steers training
            n_test -= 1
        else:
            n_val -= 1
    return n_val, n_test


def _round(value: float) -> int:
    """Round half up: Python's round() rounds half to even, which would surprise users (2.5 -> 2)."""
    return int(value + 0.5)


def keep_recorded_split(recorded: ScanReport, current: ScanReport, on_event: EventSink) -> ScanReport:
    """``current`` (a fresh scan of the folder ``recorded`` was made from, same classes) with ``recorded``'s split.

    Splitting again would reshuffle every class that changed (one photo added moves former training photos into
    validation), so a run keeps its split: photos added since are left out and photos gone or no longer readable
    are skipped, each reported with a count and an example. Photos match by their path below the dataset folder,
    so a moved folder keeps its split too; a folder without any of the recorded training or validation photos is
    refused (DatasetError).
    """
    now = {Path(item.path).relative_to(current.root): item.path for item in current.items}
    was = {Path(item.path).relative_to(recorded.root): item for item in recorded.items}
    path_now = {item.path: now[key] for key, item in was.items() if key in now}
    kept = tuple(replace(item, path=path_now[item.path]) for item in recorded.items if item.path in path_now)
    if missing := [split for split in ("train", "val") if not any(item.split == split for item in kept)]:
        raise DatasetError(f"{current.root}: none of this run's {' or '.join(missing)} photos are there; use the "
                           "folder the run was trained on, or start a new run")
    added = [path for key, path in now.items() if key not in was]
    removed = [item.path for item in recorded.items if item.path not in path_now]
    messages = []
    if added:
        messages.append(f"{current.root}: {len(added)} photo(s) added since this run's split was recorded are left "
                        f"out, so that its validation photos stay the same (for example {added[0]}); start a new "
                        "run to use them")
    if removed:
        messages.append(f"{current.root}: {len(removed)} photo(s) of this run's split are gone or unreadable and "
                        f"are skipped (for example {removed[0]})")
    for message in messages:
        on_event(WarningEvent(message))
    return replace(
        current,
        layout=recorded.layout,
        classes=recorded.classes,
        items=kept,
        warnings=(*current.warnings, *messages),
        leakage=tuple((path_now[a], path_now[b]) for a, b in recorded.leakage if a in path_now and b in path_now),
        near_duplicates=tuple(group for group in (tuple(path_now[p] for p in g if p in path_now)
                                                  for g in recorded.near_duplicates) if len(group) > 1),
    )


def keep_groups_together(report: ScanReport, groups: Sequence[Sequence[str]], *, val_fraction: float,
                         test_fraction: float, seed: int, on_event: EventSink) -> ScanReport:
    """``report`` split again so that each near-duplicate group's photos of one class share a side, with the
    groups recorded in ``near_duplicates``: a resized or re-saved copy on the other side of the split would
    score its twin and inflate the validation accuracy a person trusts.

    The scan's own share is split again (class folders, or what it set aside from train/); splits given as
    folders stay, and a group across them is reported. So is a group filed under several classes: a split that is
    stratified per class cannot keep it together (the doctor lists it as conflicting labels).
    """
    group_of = {path: index for index, group in enumerate(groups) for path in group}
    given = set(report.given_splits) - {"train"}
    by_class: dict[str, dict[object, list[str]]] = {}
    for item in report.items:
        if item.split not in given:
            unit = (group_of[item.path], item.label) if item.path in group_of else item.path
            by_class.setdefault(report.classes[item.label], {}).setdefault(unit, []).append(item.path)
    split_of = {item.path: item.split for item in report.items}
    split_of.update(stratified_split(
        {name: list(units.values()) if len(units) >= 2 else [[p] for u in units.values() for p in u]
         for name, units in by_class.items()},
        val_fraction=0.0 if "val" in given else val_fraction, test_fraction=0.0 if "test" in given else test_fraction,
        seed=seed))
    moved = sum(split_of[item.path] != item.split for item in report.items)
    items = sorted((replace(item, split=split_of[item.path]) for item in report.items),
                   key=lambda item: (SPLITS.index(item.split), item.label, item.path))
    across = [group for group in groups if len({split_of[path] for path in group}) > 1]
    warnings = list(report.warnings)
    if groups:
        on_event(Info(f"split: {len(groups)} near-duplicate group(s) ({sum(map(len, groups))} photos) kept on one "
                      f"side of the split where their class allows; {moved} photo(s) changed side"))
    if across:
        example = " and ".join(sorted(across[0], key=lambda path: (SPLITS.index(split_of[path]), path))[:2])
        message = (f"{report.root}: {len(across)} near-duplicate group(s) span classes or the split folders as "
                   f"given (e.g. {example}), so the split cannot keep them on one side; the validation accuracy "
                   "may be optimistic: run the dataset doctor and exclude the copies")
        warnings.append(message)
        on_event(WarningEvent(message))
    return replace(report, items=tuple(items), warnings=tuple(warnings),
                   leakage=tuple((a, b) for a, b in report.leakage if split_of[a] != split_of[b]),
                   near_duplicates=tuple(tuple(group) for group in groups))
