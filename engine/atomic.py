"""Atomic file writes: write to a temporary file in the same folder, fsync, then rename over the target.

A crash or a full disk during the write leaves the previous file intact. A full disk is reported as
DiskFullError, whose message names the file and what to free.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_TEMPORARY_SUFFIX = ".tmp"
_OUT_OF_SPACE = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


class DiskFullError(OSError):
    """No space (or quota) left while writing a file; the previous version of the file is intact."""

    def __str__(self) -> str:
        return str(self.strerror)


def write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file beside ``path`` and rename it into place when it succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_name = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TEMPORARY_SUFFIX, dir=path.parent)
        # mkstemp makes 0600; a saved model or run should be shareable as usual. chmod on the path, not
        # os.fchmod: Windows has that only from Python 3.13 (and there chmod only sets the read-only flag).
        os.chmod(tmp_name, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_SPACE and not isinstance(exc, DiskFullError):
            raise DiskFullError(exc.errno, f"{path}: disk full, nothing was written and any previous version is "
                                           f"intact; free space on the disk that holds {path.parent} (old runs and "
                                           "exported models can be deleted) and try again") from exc
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that a killed process left in ``folder`` (they are never valid data)."""
    removed = []
    for path in Path(folder).glob(f".*{_TEMPORARY_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _read_umask() -> int:
    """Read once at import: os.umask can only be read by setting it, which is not thread-safe later."""
    current = os.umask(0o022)
    os.umask(current)
    return current


_UMASK = _read_umask()


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda handle: handle.write(data))


def write_json_atomic(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def append_line_atomic(path: Path, line: str) -> None:
    """Append one line by rewriting the file atomically, so a kill never leaves a torn line."""
    path = Path(path)
    previous = path.read_bytes() if path.exists() else b""
    write_bytes_atomic(path, previous + line.rstrip("\n").encode("utf-8") + b"\n")


def free_name(folder: Path, name: str) -> Path:
    """``folder/name``, or ``folder/stem (2).ext`` (3, 4, ...) where that is taken."""
    candidate, number = folder / name, 2
    stem, suffix = Path(name).stem, Path(name).suffix
    while os.path.lexists(candidate):
        candidate, number = folder / f"{stem} ({number}){suffix}", number + 1
    return candidate


def copy_without_overwriting(source: Path, folder: Path) -> Path:
    """Copy ``source`` into ``folder`` under its name, or a free one beside it; returns the copy's path.

    The bytes go to a temporary file first, so a crash leaves no half copy under a real name; the temporary file
    is then hard-linked to the free name, which fails rather than replace a file that appeared meanwhile (a
    rename would replace it on POSIX). Where the disk has no hard links (FAT), the name is checked, then renamed.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{source.name}.", suffix=_TEMPORARY_SUFFIX, dir=folder)
    temporary = Path(name)
    try:
        with os.fdopen(fd, "wb") as copy, source.open("rb") as original:
            shutil.copyfileobj(original, copy)
            copy.flush()
            os.fsync(copy.fileno())
        while True:
            target = free_name(folder, source.name)
            try:
                os.link(temporary, target)
            except FileExistsError:
                continue  # taken between the check and the link: the next free name
            except OSError:
                os.replace(temporary, target)
            return target
    except OSError as exc:
        if exc.errno in _OUT_OF_SPACE and not isinstance(exc, DiskFullError):
            raise DiskFullError(exc.errno, f"{folder}: disk full while copying {source.name}; nothing was "
                                           "overwritten; free space there and try again") from exc
        raise
    finally:
        temporary.unlink(missing_ok=True)
