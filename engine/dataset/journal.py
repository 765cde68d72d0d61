"""Every change the app makes to a dataset folder, journalled in ``DATA/.transfer-studio/changes.jsonl``.

The changes are moving a photo to another class folder, and excluding photos or including them again. Each is an
"intent" line, appended and fsynced before anything changes, then a "done" line; a crash in between leaves an intent
without an outcome, which ``recover`` settles by looking at the folder (where the photo is, what excluded.json
holds). Every operation recovers first. Undo and redo are changes too (an intent naming the change it reverses), so
the journal is the whole history and is only ever appended to; no photo is deleted or overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.atomic import free_name
from engine.dataset.dataset_folder import STATE_FOLDER, DatasetPathError, dataset_root, relative_photo_path
from engine.dataset.exclusions import ExcludedPhoto, Exclusions, ExclusionsError, read_exclusions, write_exclusions
from engine.dataset.scan import SPLIT_FOLDER_NAMES, class_folder_of
from engine.dataset.validate import content_hash
from engine.errors import BadInputError
from engine.images import ImageLoadError
from engine.time_format import utc_now_iso

JOURNAL_FILE = "changes.jsonl"
FORMAT_VERSION = 1

_log = logging.getLogger(__name__)
_LOCK = threading.Lock()  # one change at a time in this process: each reads the journal, then appends to it


class JournalError(BadInputError):
    """The journal cannot be read or written; the message names it and the fix."""


class MoveError(BadInputError):
    """A photo that cannot be moved; it stays where it was."""


@dataclass(frozen=True, slots=True)
class MoveRecord:
    """A photo moved from ``source`` to ``destination``, both below the dataset folder, '/'-separated."""

    id: int
    source: str
    destination: str
    content_hash: str
    folders_created: tuple[str, ...]  # for the destination, outermost first; undo removes them once empty
    time: str
    undoes: int | None = None  # the change this one reverses: an undo, or the redo of an undo


@dataclass(frozen=True, slots=True)
class ExclusionRecord:
    """Photos excluded (``op`` "exclude") or included again ("include"), with their entries as they were."""

    id: int
    op: str
    photos: tuple[ExcludedPhoto, ...]
    time: str
    undoes: int | None = None


JournalRecord = MoveRecord | ExclusionRecord


@dataclass(frozen=True, slots=True)
class History:
    """What ``undo`` and ``redo`` would reverse, most recent last; a new change empties ``redoable``."""

    undoable: tuple[JournalRecord, ...] = ()
    redoable: tuple[JournalRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class _Journal:
    path: Path
    intents: tuple[JournalRecord, ...]  # in the order they were written
    outcomes: dict[int, str]  # change id -> "done" | "abandoned"; an intent without one is unsettled
    size: int  # bytes up to the end of the last complete line
    torn: bytes  # an incomplete last line: the app stopped while appending it

    def next_id(self) -> int:
        return max((record.id for record in self.intents), default=0) + 1


def journal_file(root: Path) -> Path:
    return root / STATE_FOLDER / JOURNAL_FILE


def read_history(data_dir: Path | str) -> History:
    """What can be undone and redone now (for the app's Undo and Redo); reads only, call ``recover`` first."""
    with _LOCK:
        return _history(_read_journal(dataset_root(data_dir)))


def recover(data_dir: Path | str) -> list[str]:
    """Settle the changes a crash interrupted, by where the photos are; returns (and logs) what was found.

    Call it when a dataset is opened, to show its messages; every operation here calls it first anyway.
    """
    with _LOCK:
        return _recover(dataset_root(data_dir))


def move_to_class(data_dir: Path | str, path: Path | str, new_class: str) -> MoveRecord:
    """Move a photo (absolute, or below ``data_dir``) into the folder of ``new_class``, made when needed.

    The photo keeps its split in a pre-split dataset (``train/cats/a.jpg`` -> ``train/dogs/a.jpg``) and its name,
    with " (2)" added where that name is taken: nothing is overwritten. MoveError names the photo when it cannot be
    moved; it is then where it was.
    """
    with _LOCK:
        root = dataset_root(data_dir)
        _recover(root)
        relative = relative_photo_path(root, path)
        source = root / relative
        if not os.path.lexists(source):
            raise MoveError(f"{source}: not found (moved or deleted since?); nothing was moved")
        if source.is_dir():
            raise MoveError(f"{source}: a folder, not a photo; choose the photo to move")
        _check_class_name(new_class)
        class_folder = class_folder_of(root, source)
        target = class_folder.parent / new_class
        if target == class_folder:
            raise MoveError(f"{source}: already in class {new_class!r}; nothing was moved")
        if target.parent == root and not target.exists() and new_class.lower() in SPLIT_FOLDER_NAMES:
            raise MoveError(f"{new_class!r}: a folder of that name would make the dataset look pre-split "
                            "(train/, val/, test/); choose another class name")
        destination = free_name(target, source.name)
        return _move(root, relative, destination.relative_to(root).as_posix())


def _check_class_name(name: str) -> None:
    """A class is a folder name: no slashes, no surrounding spaces, and not hidden (the scan ignores hidden ones)."""
    if not name or name != name.strip() or name.startswith(".") or "/" in name or "\\" in name:
        raise MoveError(f"{name!r}: not a usable class name (a folder name without slashes, not starting with a dot)")


def exclude(data_dir: Path | str, paths: Iterable[Path | str], reason: str) -> Exclusions:
    """Exclude photos (absolute, or below ``data_dir``) from scans and training; returns every exclusion now.

    ``reason`` is shown beside each photo in the scan report ("near-duplicate", "wrong label", "off-topic",
    "manual"). Photos already excluded keep their entry. Every path is checked before anything changes.
    """
    if not reason.strip() or "\n" in reason:
        raise ValueError(f"an exclusion needs a one-line reason, got {reason!r}")
    with _LOCK:
        root = dataset_root(data_dir)
        _recover(root)
        excluded = read_exclusions(root).by_path()
        time = utc_now_iso()
        added: dict[str, ExcludedPhoto] = {}
        for path in paths:
            relative = relative_photo_path(root, path)
            if relative in excluded or relative in added:
                continue
            if not (root / relative).is_file():
                raise DatasetPathError(f"{root / relative}: not a photo of the dataset (not found, or a folder); "
                                       "nothing was excluded")
            added[relative] = ExcludedPhoto(relative, reason.strip(), _hash_or_none(root / relative), time)
        if not added:
            return Exclusions.of(excluded.values())
        return _change_exclusions(root, "exclude", tuple(added.values()))[1]


def include(data_dir: Path | str, paths: Iterable[Path | str]) -> Exclusions:
    """Include excluded photos again (the reverse of ``exclude``); returns every exclusion left."""
    with _LOCK:
        root = dataset_root(data_dir)
        _recover(root)
        excluded = read_exclusions(root).by_path()
        relatives = sorted({relative_photo_path(root, path) for path in paths})
        removed = tuple(excluded[relative] for relative in relatives if relative in excluded)
        if not removed:
            return Exclusions.of(excluded.values())
        return _change_exclusions(root, "include", removed)[1]


def undo(data_dir: Path | str, count: int = 1) -> list[JournalRecord]:
    """Reverse the last ``count`` changes, latest first; returns the reversing changes, themselves journalled.

    Repeated calls walk further back; ``redo`` reverses an undo. A photo moved back to a name now taken gets " (2)".
    """
    return _reverse_last(data_dir, count, lambda history: history.undoable)


def redo(data_dir: Path | str, count: int = 1) -> list[JournalRecord]:
    """Reverse the last ``count`` undos (until a new change is made); returns the changes made."""
    return _reverse_last(data_dir, count, lambda history: history.redoable)


def _reverse_last(
    data_dir: Path | str, count: int, stack: Callable[[History], tuple[JournalRecord, ...]]
) -> list[JournalRecord]:
    if count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    with _LOCK:
        root = dataset_root(data_dir)
        _recover(root)
        targets = stack(_history(_read_journal(root)))[::-1][:count]
        return [_reverse(root, record) for record in targets]


def _reverse(root: Path, record: JournalRecord) -> JournalRecord:
    """Make the change that undoes ``record``: move the photo back, or restore the exclusions it changed."""
    if isinstance(record, MoveRecord):
        moved = root / record.destination
        if not os.path.lexists(moved):
            raise MoveError(f"{moved}: not found, so its move from {record.source} cannot be reversed (it was moved "
                            "or deleted outside Transfer Studio)")
        back = free_name((root / record.source).parent, PurePosixPath(record.source).name)
        return _move(root, record.destination, back.relative_to(root).as_posix(), record.id, record.folders_created)
    if record.op == "include":
        return _change_exclusions(root, "exclude", record.photos, record.id)[0]
    excluded = read_exclusions(root).by_path()
    photos = tuple(excluded[photo.path] for photo in record.photos if photo.path in excluded)
    return _change_exclusions(root, "include", photos, record.id)[0]


def _move(
    root: Path, source_path: str, destination_path: str, undoes: int | None = None,
    undone_folders: tuple[str, ...] = (),
) -> MoveRecord:
    """Journal and make one rename within the dataset; on failure the photo stays and made folders are removed."""
    source, destination = root / source_path, root / destination_path
    try:
        digest = content_hash(source)
    except ImageLoadError as exc:
        raise MoveError(f"{source}: cannot be moved ({exc.reason}); it stays where it is") from exc
    journal = _read_journal(root)
    record = MoveRecord(journal.next_id(), source_path, destination_path, digest,
                        _missing_folders(root, destination.parent), utc_now_iso(), undoes)

    def rename() -> None:
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(destination):  # appeared since the name was chosen; os.rename would replace it
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(destination))
            os.rename(source, destination)
        except OSError:
            _remove_empty_folders(root, record.folders_created)
            raise
        _fsync_folders(source.parent, destination.parent)
        _remove_empty_folders(root, undone_folders)

    try:
        _journalled(journal.path, record, rename)
    except OSError as exc:
        raise MoveError(f"{source}: could not be moved to {destination.parent} ({_reason(exc)}); it stays where it "
                        "was") from exc
    return record


def _change_exclusions(
    root: Path, op: str, photos: tuple[ExcludedPhoto, ...], undoes: int | None = None
) -> tuple[ExclusionRecord, Exclusions]:
    """Journal and write one change to excluded.json; returns the change and the exclusions now."""
    journal = _read_journal(root)
    record = ExclusionRecord(journal.next_id(), op, photos, utc_now_iso(), undoes)
    excluded = read_exclusions(root).by_path()
    for photo in photos:
        if op == "exclude":
            excluded[photo.path] = photo
        else:
            excluded.pop(photo.path, None)
    updated = Exclusions.of(excluded.values())
    try:
        _journalled(journal.path, record, lambda: write_exclusions(root, updated))
    except OSError as exc:
        raise ExclusionsError(f"{root / STATE_FOLDER}: cannot write the exclusions ({_reason(exc)}); nothing was "
                              "changed. Free space or fix the folder's permissions, and try again") from exc
    return record, updated


def _journalled(journal: Path, record: JournalRecord, change: Callable[[], None]) -> None:
    """Append the intent, make the change, append "done"; a change that fails with OSError is recorded as abandoned.

    Any other interruption (a crash, Ctrl-C) leaves the intent alone, for ``recover``.
    """
    _append(journal, _intent_line(record))
    try:
        change()
    except OSError as exc:
        _append(journal, _outcome_line(record.id, "abandoned", _reason(exc)))
        raise
    _append(journal, _outcome_line(record.id, "done"))


def _recover(root: Path) -> list[str]:
    journal = _read_journal(root)
    messages = []
    if journal.torn:
        try:
            with open(journal.path, "r+b") as handle:
                handle.truncate(journal.size)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise JournalError(f"{journal.path}: cannot be repaired ({_reason(exc)}); check its permissions") from exc
        messages.append(f"{journal.path}: ignored an incomplete last line, written as the app stopped: "
                        f"{journal.torn[:80]!r}")
    intents = {record.id: record for record in journal.intents}
    for record in journal.intents:
        if record.id not in journal.outcomes:
            done, message = _settle(root, record, intents)
            _append(journal.path, _outcome_line(record.id, "done" if done else "abandoned", message))
            messages.append(f"{root}: {message}")
    for message in messages:
        _log.warning(message)
    return messages


def _settle(root: Path, record: JournalRecord, intents: dict[int, JournalRecord]) -> tuple[bool, str]:
    """Whether an interrupted change took effect, judged by the folder, and a sentence saying what was found."""
    if isinstance(record, ExclusionRecord):
        excluded = read_exclusions(root).by_path()  # excluded.json is replaced atomically: all of a change or none
        if record.op == "exclude":
            done = all(excluded.get(photo.path) == photo for photo in record.photos)
        else:
            done = not any(photo.path in excluded for photo in record.photos)
        return done, f"the interrupted {record.op} of {len(record.photos)} photo(s) was {'' if done else 'not '}done"
    source, destination = root / record.source, root / record.destination
    at_source = os.path.lexists(source)
    # the photo, or an unreadable file where only the photo can be (a move's destination is a name nobody used)
    moved = os.path.lexists(destination) and _hash_or_none(destination) in (record.content_hash, None)
    name = f"the interrupted move of {record.source} to {record.destination}"
    if moved and not at_source:
        undone = intents.get(record.undoes) if record.undoes is not None else None
        _remove_empty_folders(root, undone.folders_created if isinstance(undone, MoveRecord) else ())
        return True, f"{name} was done: the photo is at its destination"
    _remove_empty_folders(root, record.folders_created)
    if moved:
        return False, f"{name}: both paths hold the photo, and both are kept; remove the copy you do not want"
    if at_source:
        return False, f"{name} was not done: the photo is still at {record.source}"
    return False, f"{name}: the photo is at neither path (moved or deleted outside Transfer Studio)"


def _history(journal: _Journal) -> History:
    """Replay the done changes: a change reversing the last undoable one is an undo, the last redoable a redo."""
    undoable: list[JournalRecord] = []
    redoable: list[JournalRecord] = []
    for record in journal.intents:
        if journal.outcomes.get(record.id) != "done":
            continue
        if undoable and record.undoes == undoable[-1].id:
            undoable.pop()
            redoable.append(record)
        elif redoable and record.undoes == redoable[-1].id:
            redoable.pop()
            undoable.append(record)
        else:
            undoable.append(record)
            redoable.clear()
    return History(tuple(undoable), tuple(redoable))


def _read_journal(root: Path) -> _Journal:
    """Parse the journal; an incomplete last line is left out, a damaged complete one refused (JournalError)."""
    path = journal_file(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return _Journal(path, (), {}, 0, b"")
    except OSError as exc:
        raise JournalError(f"{path}: cannot be read ({_reason(exc)}); check its permissions") from exc
    *lines, torn = data.split(b"\n")
    intents: dict[int, JournalRecord] = {}
    outcomes: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            if entry["version"] > FORMAT_VERSION:
                raise JournalError(f"{path}: written by a newer Transfer Studio (format {entry['version']}); update "
                                   "Transfer Studio to change this dataset")
            if entry["stage"] == "intent" and entry["id"] not in intents:
                intents[entry["id"]] = _record_from_line(entry)
            elif entry["stage"] in ("done", "abandoned") and entry["id"] in intents:
                outcomes[entry["id"]] = entry["stage"]
            else:
                raise ValueError(f"unexpected {entry['stage']!r} line for change {entry['id']}")
        except JournalError:
            raise
        except (ValueError, KeyError, TypeError) as exc:
            raise JournalError(f"{path}: line {number} is damaged ({type(exc).__name__}: {exc}); repair that line, "
                               "or rename the file to start a new journal (photos stay where they are; only the "
                               "undo history is lost)") from exc
    return _Journal(path, tuple(intents.values()), outcomes, len(data) - len(torn), torn)


def _record_from_line(entry: dict[str, Any]) -> JournalRecord:
    undoes = entry["undoes"]
    if not isinstance(entry["id"], int) or not (undoes is None or isinstance(undoes, int)):
        raise TypeError("id and undoes must be whole numbers")
    if entry["op"] == "move":
        return MoveRecord(entry["id"], str(entry["source"]), str(entry["destination"]), str(entry["content_hash"]),
                          tuple(str(folder) for folder in entry["folders_created"]), str(entry["time"]), undoes)
    if entry["op"] in ("exclude", "include"):
        photos = tuple(ExcludedPhoto.from_dict(photo) for photo in entry["photos"])
        return ExclusionRecord(entry["id"], entry["op"], photos, str(entry["time"]), undoes)
    raise ValueError(f"unknown change {entry['op']!r}")


def _intent_line(record: JournalRecord) -> dict[str, Any]:
    line: dict[str, Any] = {"version": FORMAT_VERSION, "id": record.id, "stage": "intent"}
    if isinstance(record, MoveRecord):
        line |= {"op": "move", "source": record.source, "destination": record.destination,
                 "content_hash": record.content_hash, "folders_created": list(record.folders_created)}
    else:
        line |= {"op": record.op, "photos": [asdict(photo) for photo in record.photos]}
    return line | {"time": record.time, "undoes": record.undoes}


def _outcome_line(change_id: int, stage: str, note: str | None = None) -> dict[str, Any]:
    line = {"version": FORMAT_VERSION, "id": change_id, "stage": stage, "time": utc_now_iso()}
    return line if note is None else line | {"note": note}


def _append(path: Path, line: dict[str, Any]) -> None:
    """Append one line and fsync it, so that it is on disk before the change it announces is made."""
    data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        path.parent.mkdir(exist_ok=True)
        created = not path.exists()
        with open(path, "ab") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise JournalError(f"{path}: cannot be written ({_reason(exc)}); free space or fix the permissions of "
                           f"{path.parent} and try again (an interrupted change is settled then)") from exc
    if created:
        _fsync_folders(path.parent)


def _missing_folders(root: Path, folder: Path) -> tuple[str, ...]:
    missing = []
    while not os.path.lexists(folder):
        missing.append(folder.relative_to(root).as_posix())
        folder = folder.parent
    return tuple(reversed(missing))


def _remove_empty_folders(root: Path, folders: tuple[str, ...]) -> None:
    """Remove folders a move made, innermost first, where they are empty (os.rmdir never removes anything else)."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            os.rmdir(root / folder)


def _fsync_folders(*folders: Path) -> None:
    """Make renames and new files durable before they are journalled as done (POSIX: Windows cannot open a folder)."""
    if os.name == "nt":
        return
    for folder in set(folders):
        try:
            descriptor = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError:  # a file system that cannot sync folders; the rename itself is still atomic
            pass


def _hash_or_none(path: Path) -> str | None:
    try:
        return content_hash(path)
    except ImageLoadError:
        return None


def _reason(exc: OSError) -> str:
    """The system's words for an OSError (DiskFullError's own message names a file the caller names already)."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
