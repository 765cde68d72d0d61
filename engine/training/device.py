"""Device choice and the mixed-precision settings that go with it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from engine.errors import BadInputError


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    device: str
    amp_dtype: torch.dtype | None  # None: full precision
    use_scaler: bool  # fp16 needs a GradScaler; bf16 does not
    channels_last: bool
    description: str


def resolve_device(requested: str) -> DeviceSetup:
    """auto = cuda > mps > cpu; an explicit device that is unavailable is an error, not a silent fallback."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError("--device cuda was requested but no CUDA GPU is available (use --device auto or cpu)")
        # Shapes repeat every batch, so cuDNN's one-off measurement of the fastest kernels per shape pays back
        # within an epoch; each new shape (a short last batch) is measured once per run.
        torch.backends.cudnn.benchmark = True
        bf16 = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(0)
        return DeviceSetup("cuda", torch.bfloat16 if bf16 else torch.float16, not bf16, True,
                           f"CUDA: {name} ({'bf16' if bf16 else 'fp16'} mixed precision)")
    if requested == "mps":
        if not _mps_available():
            raise BadInputError("--device mps was requested but Apple MPS is not available")
        return DeviceSetup("mps", None, False, False, "Apple MPS")
    return DeviceSetup("cpu", None, False, True, f"CPU ({torch.get_num_threads()} threads)")


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def to_device(tensor: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    """A tensor on the training device, channels_last for image-shaped (4-D) tensors where the device prefers it.

    Only a pageable CPU tensor bound for CUDA is pinned: the non-blocking copy is asynchronous only from pinned
    memory. Pinning is itself a copy, so a tensor already pinned (or not on the CPU, or bound elsewhere) is not.
    """
    if setup.device == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    tensor = tensor.to(setup.device, non_blocking=True)
    if setup.channels_last and tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    return tensor
