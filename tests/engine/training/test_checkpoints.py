"""Checkpoints: a full disk (or quota) gives the one clear message; forged files are refused."""

import errno
from pathlib import Path

import pytest
import torch

from engine.training import checkpoints
from engine.training.checkpoints import CheckpointError, save_checkpoint


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_or_quota_says_so_and_keeps_the_previous_checkpoint(
        code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.zeros(1)}})
    previous = path.read_bytes()

    def full(*_args: object) -> None:
        raise OSError(code, "No space left")

    monkeypatch.setattr(checkpoints.torch, "save", full)
    with pytest.raises(CheckpointError, match="disk full while saving a checkpoint; the previous checkpoint is intact"):
        save_checkpoint(path, {"model": {}})
    assert path.read_bytes() == previous
