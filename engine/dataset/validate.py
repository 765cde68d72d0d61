"""What makes a dataset usable: every file decodes, every class has enough images, no copies leak.

Each file is decoded once, in parallel, and its bytes hashed once; the hashes then find
byte-identical copies that would make validation accuracy dishonest.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TypeVar

from engine.control import RunControl
from engine.dataset.report import IMBALANCE_WARNING_RATIO, SPLITS
from engine.errors import BadInputError
from engine.events import EventSink, Progress, ignore_event
from engine.images import ImageLoadError, file_error_reason, load_rgb

MIN_IMAGES_PER_CLASS = 2
MIN_CLASSES = 2
PROGRESS_INTERVAL_S = 0.1
_HASH_CHUNK = 1 << 20

T = TypeVar("T")


class DatasetError(BadInputError):
    """A dataset that cannot be trained on; the message is one line naming the path and the fix."""


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def content_hash(path: Path | str) -> str:
    """Hash of the file's bytes: the identity used by the decoded cache and by leakage detection."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise ImageLoadError(path, file_error_reason(exc)) from exc
    return digest.hexdigest()


def decode_and_hash(path: Path) -> str:
    """Validation without a cache: prove the file decodes, then identify its bytes."""
    load_rgb(path)
    return content_hash(path)


def decode_in_parallel(
    paths: Sequence[Path],
    decode: Callable[[Path], T],
    *,
    phase: str,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
    workers: int | None = None,
) -> list[T | ImageLoadError]:
    """Run ``decode`` on every path in a thread pool; results in input order, failures as ImageLoadError.

    Pillow releases the GIL while decoding, so threads scale. Any exception from one file becomes that
    file's failure, so one odd file never stops a scan. Progress is throttled to about 10 events a second.
    """
    total = len(paths)
    results: dict[int, T | ImageLoadError] = {}
    started = last_event = time.monotonic()
    on_event(Progress(phase=phase, done=0, total=total))

    def run_one(path: Path) -> T | ImageLoadError:
        if control is not None:
            control.check()
        try:
            return decode(path)
        except ImageLoadError as exc:
            return exc
        except Exception as exc:  # a decoder bug on one odd file must not abort the whole scan
            return ImageLoadError(path, f"unexpected error while decoding ({type(exc).__name__}: {exc})")

    executor = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix=phase)
    try:
        futures = {executor.submit(run_one, path): index for index, path in enumerate(paths)}
        for done, future in enumerate(as_completed(futures), start=1):
            results[futures[future]] = future.result()  # re-raises Cancelled from a worker
            if control is not None:
                control.check()
            now = time.monotonic()
            if now - last_event >= PROGRESS_INTERVAL_S and done < total:
                last_event = now
                eta = (now - started) / done * (total - done)
                on_event(Progress(phase=phase, done=done, total=total, eta_seconds=eta))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    on_event(Progress(phase=phase, done=total, total=total, eta_seconds=0.0))
    return [results[index] for index in range(total)]


def check_class_counts(root: Path, class_counts: Mapping[str, int]) -> None:
    """Refuse datasets that cannot train a classifier, naming the first problem and its fix."""
    for name, count in sorted(class_counts.items()):
        if count < MIN_IMAGES_PER_CLASS:
            noun = "image" if count == 1 else "images"
            raise DatasetError(
                f"{root}: class {name!r} has {count} usable {noun}; each class needs at least "
                f"{MIN_IMAGES_PER_CLASS} (add photos or remove the folder)"
            )
    if len(class_counts) < MIN_CLASSES:
        found = f"only class {next(iter(class_counts))!r}" if class_counts else "no class folders"
        raise DatasetError(
            f"{root}: found {found}; a classifier needs at least {MIN_CLASSES} "
            "(put each class's photos in its own sub-folder)"
        )


def group_copies(hashes: Mapping[str, str]) -> list[list[str]]:
    """Groups (sorted) of two or more paths whose bytes are identical, from a path -> content hash map."""
    by_hash: dict[str, list[str]] = defaultdict(list)
    for path, digest in hashes.items():
        by_hash[digest].append(path)
    return sorted(sorted(paths) for paths in by_hash.values() if len(paths) > 1)


def leaked_pairs(copies: Sequence[Sequence[str]], split_of: Mapping[str, str]) -> list[tuple[str, str]]:
    """Pairs of identical files placed in different splits, the earlier split (train, val, test) first."""
    order = {split: index for index, split in enumerate(SPLITS)}
    pairs = []
    for group in copies:
        ordered = sorted(group, key=lambda path: (order[split_of[path]], path))
        pairs += [(a, b) for a, b in itertools.combinations(ordered, 2) if split_of[a] != split_of[b]]
    return pairs


def leakage_warning(pairs: Sequence[tuple[str, str]]) -> str | None:
    if not pairs:
        return None
    a, b = pairs[0]
    return (
        f"{len(pairs)} file(s) are byte-identical copies across splits (e.g. {a} and {b}); "
        "remove the copies so that validation accuracy is honest"
    )


def mixed_class_warning(copies: Sequence[Sequence[str]], class_of: Mapping[str, str]) -> str | None:
    """Warn about one photo filed under two classes: the model is asked to give it two labels."""
    mixed = [group for group in copies if len({class_of[path] for path in group}) > 1]
    if not mixed:
        return None
    example = " and ".join(f"{path} ({class_of[path]!r})" for path in mixed[0][:2])
    return (
        f"{len(mixed)} photo(s) appear in more than one class (e.g. {example}); keep each photo in one class"
    )


def imbalance_warning(train_counts: Mapping[str, int]) -> str | None:
    largest = max(train_counts, key=lambda name: (train_counts[name], name))
    smallest = min(train_counts, key=lambda name: (train_counts[name], name))
    ratio = train_counts[largest] / max(1, train_counts[smallest])
    if ratio <= IMBALANCE_WARNING_RATIO:
        return None
    return (
        f"classes are imbalanced: {largest!r} has {train_counts[largest]} training images, "
        f"{smallest!r} has {train_counts[smallest]} ({ratio:.1f}x); add photos to the smaller classes"
    )
