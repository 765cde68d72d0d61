"""Atomic writes: all or nothing, and files as shareable as any other the user saves."""

import os
from pathlib import Path

import pytest

from engine.atomic import append_line_atomic, write_atomic, write_bytes_atomic


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    write_bytes_atomic(target, b"old")

    def fail(handle) -> None:  # noqa: ANN001
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        write_atomic(target, fail)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    write_bytes_atomic(target, b"x")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_append_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_line_atomic(path, '{"epoch": 0}')
    append_line_atomic(path, '{"epoch": 1}\n')
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'


def test_writes_work_without_fchmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has os.fchmod only from Python 3.13: every write must work, with the usual permissions, without it."""
    monkeypatch.delattr(os, "fchmod", raising=False)
    target = tmp_path / "run.json"
    write_bytes_atomic(target, b"{}")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.read_bytes() == b"{}" and target.stat().st_mode & 0o777 == 0o666 & ~umask
