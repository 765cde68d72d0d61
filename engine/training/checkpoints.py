"""Checkpoints: written atomically, loaded with ``weights_only=True`` (tensors and plain values only)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from engine.atomic import DiskFullError, write_atomic
from engine.training.distributed import current, from_main


class CheckpointError(RuntimeError):
    pass


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    try:
        write_atomic(path, lambda handle: torch.save(payload, handle))
    except DiskFullError as exc:  # engine.atomic recognises a full disk and an exhausted quota
        raise CheckpointError(
            f"{path}: disk full while saving a checkpoint; the previous checkpoint is intact. "
            f"Free space on {path.parent} (old runs can be deleted) and resume with --resume."
        ) from exc
    except OSError as exc:
        raise CheckpointError(f"{path}: could not save checkpoint ({exc})") from exc


def load_checkpoint(path: Path, device: str = "cpu") -> dict[str, Any]:
    try:
        with warnings.catch_warnings():  # a forged file makes torch warn about its pickle protocol; we refuse it
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{path}: checkpoint not found") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint gets the same clear refusal
        raise CheckpointError(f"{path}: unreadable or unsafe checkpoint ({type(exc).__name__}); it was not "
                              "loaded") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{path}: not a Transfer Studio checkpoint")
    return payload


def load_checkpoint_in_every_process(path: Path, device: str) -> dict[str, Any] | None:
    """``path``'s checkpoint, None when there is none. In a distributed run rank 0 reads it (to the CPU) and every
    process gets that copy, so only rank 0's machine needs the run folder; alone, a plain load on ``device``."""
    if current().distributed:
        return from_main(load_checkpoint(path, "cpu") if current().main and path.exists() else None)
    return load_checkpoint(path, device) if path.exists() else None
