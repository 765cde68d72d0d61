"""Seeded, stratified train/val/test split that does not depend on the order the filesystem lists files."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence


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
