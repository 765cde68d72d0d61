"""Training in several processes (torchrun): who this process is, and the few collectives the trainer needs.

``torchrun --nproc-per-node N -m engine.cli train ...`` starts N copies of ``train``; each reads its rank from the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT). They scan alike (rank 0's
split is broadcast to be sure), share the frozen and augmented passes (each computes a strided shard, gathered
once), split every training batch between them under DistributedDataParallel, and agree on every decision (stop,
best epoch, plan) from rank 0's figures. Rank 0 alone writes the run folder. Every collective has a timeout
(TIMEOUT_VARIABLE, default 120 s) and its failure (a killed process) becomes a DistributedError that says how to
resume. Outside torchrun (one process) each helper is the identity, so the single-process path pays nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from engine.control import Cancelled, RunControl
from engine.errors import BadInputError

TIMEOUT_VARIABLE = "TRANSFER_STUDIO_COLLECTIVE_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 120.0
T = TypeVar("T")


class DistributedError(RuntimeError):
    """Another process of the run died or stopped answering: this one stops too, with the run resumable."""


@dataclass(frozen=True, slots=True)
class Processes:
    """This process's place in the run: ``rank`` of ``world_size``; ``backend`` None when alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Whether this process writes the run folder and reports progress (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str) -> Processes:
    """Join the process group torchrun set up (gloo on CPUs, NCCL when ``device`` asks for CUDA and there is one),
    or Processes() when this process runs alone. Each CUDA process takes the GPU of its LOCAL_RANK."""
    if not launched_by_torchrun():
        return Processes()
    if dist.is_initialized():
        return current()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if cuda else "gloo"
    try:
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds()))
    except (RuntimeError, ValueError) as exc:
        raise BadInputError(f"could not join the other training processes ({exc}); start them with torchrun, "
                            "all with the same --nnodes, --nproc-per-node and --rdzv-endpoint") from exc
    return current()


def current() -> Processes:
    """This process's place (Processes() outside a process group)."""
    if not dist.is_available() or not dist.is_initialized():
        return Processes()
    return Processes(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")),
                     dist.get_backend())


def stop(*, together: bool = True) -> None:
    """Leave the process group (the end of a run in this process). ``together``: first wait for every process to
    get here, so that none tears its connections down while another still uses them (False after a failure: a dead
    process would never come). The DistributedDataParallel wrappers are collected first: their reducers hold the
    group, and freed at interpreter exit instead, gloo's threads abort the process ("terminate called without an
    active exception", seen once in four CI runs of a stopped two-process run)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        if together:
            with contextlib.suppress(DistributedError):  # the run has ended either way; its files say how
                _collective(dist.barrier, "leaving the run")
        dist.destroy_process_group()


def timeout_seconds() -> float:
    return float(os.environ.get(TIMEOUT_VARIABLE, DEFAULT_TIMEOUT_SECONDS))


def shard(indices: Sequence[int]) -> list[int]:
    """This process's share of ``indices``: every world_size-th from its rank (sizes differ by at most one)."""
    processes = current()
    return list(indices[processes.rank::processes.world_size])


def gather_shards(local: torch.Tensor, total: int) -> torch.Tensor:
    """Rows computed by every process on its ``shard`` of range(total), put back in order (every process gets
    all ``total`` rows, on the CPU)."""
    processes = current()
    if not processes.distributed:
        return local
    local = local.cpu()
    longest = -(-total // processes.world_size)
    padded = torch.zeros((longest, *local.shape[1:]), dtype=local.dtype)
    padded[:len(local)] = local
    parts = [torch.empty_like(padded) for _ in range(processes.world_size)]
    _collective(lambda: dist.all_gather(parts, padded), "gathering the shared pass")
    merged = torch.empty((total, *local.shape[1:]), dtype=local.dtype)
    for rank, part in enumerate(parts):
        count = len(range(rank, total, processes.world_size))
        merged[rank::processes.world_size] = part[:count]
    return merged


def sum_across(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over the processes."""
    if not current().distributed:
        return values
    total = values.detach().clone()
    _collective(lambda: dist.all_reduce(total), "adding up the epoch's figures")
    return total


def from_main(value: T) -> T:
    """Rank 0's ``value`` in every process (any picklable object): one decision for all."""
    if not current().distributed:
        return value
    box = [value]
    _collective(lambda: dist.broadcast_object_list(box, src=0), "sharing rank 0's decision")
    return box[0]


def gathered(value: T) -> list[T]:
    """Every process's ``value``, in rank order."""
    processes = current()
    if not processes.distributed:
        return [value]
    values: list[Any] = [None] * processes.world_size
    _collective(lambda: dist.all_gather_object(values, value), "gathering from every process")
    return values


class SharedStop(RunControl):
    """The stop of a run in several processes: ``check`` only notes a request (from ``cancel``, Ctrl-C or the
    stop file) and ``check_together``, called at the same points in every process (each training batch, each
    epoch), raises Cancelled everywhere once any process has one. Raising where only one process looks would
    leave the others waiting in a collective."""

    def __init__(self) -> None:
        super().__init__()
        self._requested = False

    def check(self) -> None:
        try:
            super().check()
        except Cancelled:
            self._requested = True

    def check_together(self) -> None:
        self.check()
        if float(sum_across(torch.tensor([float(self._requested)]))[0]) > 0:
            self.cancel()
            raise Cancelled()


def explained(exc: Exception) -> Exception:
    """``exc`` as a DistributedError when it is torch.distributed failing to reach another process (its
    collectives, or DistributedDataParallel's own gradient all-reduce), else ``exc`` itself."""
    if isinstance(exc, DistributedError) or not current().distributed:
        return exc
    if isinstance(exc, dist.DistBackendError) or any(mark in str(exc) for mark in _COMMUNICATION_FAILURES):
        return _stopped_answering(exc, "training")
    return exc


_COMMUNICATION_FAILURES = ("gloo", "NCCL", "Connection reset", "Connection closed", "timed out", "Timed out")


def _stopped_answering(exc: Exception, what: str) -> DistributedError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DistributedError(
        f"another training process stopped answering while {what} (it was killed, crashed, or took longer than "
        f"{timeout_seconds():g} s: {first}); this process stops too. The last checkpoint is intact: resume with the "
        "same command and --resume, with any number of processes")


def _collective(operation: Any, what: str) -> None:
    try:
        operation()
    except (RuntimeError, dist.DistBackendError) as exc:
        raise _stopped_answering(exc, what) from exc
