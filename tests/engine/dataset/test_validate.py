from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from engine.control import Cancelled, RunControl
from engine.dataset.validate import (
    DatasetError,
    check_class_counts,
    content_hash,
    decode_and_hash,
    decode_in_parallel,
    group_copies,
    imbalance_warning,
    leaked_pairs,
)
from engine.events import Progress
from engine.images import ImageLoadError


def test_results_keep_input_order_and_failures_become_data(tmp_path: Path):
    paths = [tmp_path / f"{index}.jpg" for index in range(30)]

    def decode(path: Path) -> str:
        index = int(path.stem)
        time.sleep(0.001 * (index % 3))
        if index == 7:
            raise ImageLoadError(path, "bad seven")
        if index == 8:
            raise ZeroDivisionError("decoder bug")
        return path.stem

    results = decode_in_parallel(paths, decode, phase="validating", workers=4)
    assert [r for r in results if isinstance(r, str)] == [str(i) for i in range(30) if i not in (7, 8)]
    assert results[7].reason == "bad seven"
    assert "ZeroDivisionError" in results[8].reason and results[8].path == str(paths[8])


def test_progress_is_throttled_and_ends_complete(tmp_path: Path):
    events: list[Progress] = []
    decode_in_parallel(
        [tmp_path / f"{i}" for i in range(500)], str, phase="validating", on_event=events.append
    )
    assert len(events) <= 5
    assert events[0].done == 0 and events[-1].done == events[-1].total == 500


def test_cancel_stops_before_every_file_is_decoded(tmp_path: Path):
    control = RunControl()
    decoded = []

    def decode(path: Path) -> str:
        decoded.append(path)
        if len(decoded) == 5:
            control.cancel()
        return "ok"

    with pytest.raises(Cancelled):
        decode_in_parallel(
            [tmp_path / f"{i}" for i in range(200)], decode, phase="validating", control=control
        )
    assert len(decoded) < 200


class _ObservedResume(threading.Event):
    """RunControl's resume event, telling the test when a worker starts waiting on it."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        if not self.is_set():
            self.waiting.set()
        return super().wait(timeout)


def test_pause_blocks_workers_until_resumed(tmp_path: Path):
    control = RunControl()
    control._resume = resume = _ObservedResume()  # cleared: paused
    results = []
    worker = threading.Thread(
        target=lambda: results.append(decode_in_parallel([tmp_path / "a"], str, phase="v", control=control))
    )
    worker.start()
    assert resume.waiting.wait(timeout=5), "the worker waits for the run to be resumed"
    assert results == [] and control.paused
    control.resume()
    worker.join(timeout=5)
    assert results == [[str(tmp_path / "a")]]


def test_decode_and_hash_identifies_bytes(tmp_path: Path, make_image):
    first = make_image(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(first.read_bytes())
    assert decode_and_hash(first) == decode_and_hash(tmp_path / "b.png") == content_hash(first)
    assert content_hash(make_image(tmp_path / "c.png")) != content_hash(first)
    with pytest.raises(ImageLoadError, match="file not found"):
        content_hash(tmp_path / "gone.png")


def test_class_count_rules():
    check_class_counts(Path("/d"), {"a": 2, "b": 9})
    with pytest.raises(DatasetError, match="/d: class 'a' has 1 usable image; each class needs at least 2"):
        check_class_counts(Path("/d"), {"a": 1, "b": 9})
    with pytest.raises(DatasetError, match="only class 'a'"):
        check_class_counts(Path("/d"), {"a": 5})
    assert issubclass(DatasetError, ValueError)


def test_copies_are_grouped_and_cross_split_pairs_ordered():
    hashes = {"v/x": "h1", "t/x": "h1", "t/y": "h2", "t/z": "h3", "t/z2": "h3"}
    copies = group_copies(hashes)
    assert copies == [["t/x", "v/x"], ["t/z", "t/z2"]]
    split_of = {"v/x": "val", "t/x": "train", "t/z": "train", "t/z2": "train"}
    assert leaked_pairs(copies, split_of) == [("t/x", "v/x")]
    assert leaked_pairs([["s/1", "v/1", "a/1"]], {"s/1": "test", "v/1": "val", "a/1": "train"}) == [
        ("a/1", "v/1"),
        ("a/1", "s/1"),
        ("v/1", "s/1"),
    ]


def test_imbalance_warning_threshold():
    assert imbalance_warning({"a": 30, "b": 10}) is None
    message = imbalance_warning({"a": 31, "b": 10, "c": 20})
    assert message is not None and "'a' has 31" in message and "'b' has 10" in message
