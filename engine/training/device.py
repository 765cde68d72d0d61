"""Device choice and the mixed-precision settings that go with it."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from engine.errors import BadInputError

# Training photos from which a CUDA run uses channels_last (see ``for_dataset``).
CHANNELS_LAST_MIN_PHOTOS = 10_000


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    device: str
    amp_dtype: torch.dtype | None  # None: full precision
    use_scaler: bool  # fp16 needs a GradScaler; bf16 does not
    channels_last: bool
    description: str


def resolve_device(requested: str) -> DeviceSetup:
    """auto = cuda > mps > cpu; an explicit device that is unavailable is an error, not a silent fallback.

    CUDA starts in the default memory layout with cuDNN's heuristics; ``for_dataset`` switches a large run over.
    """
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise BadInputError("--device cuda was requested but no CUDA GPU is available (use --device auto or cpu)")
        torch.backends.cudnn.benchmark = False
        bf16 = torch.cuda.is_bf16_supported()
        name = torch.cuda.get_device_name(0)
        return DeviceSetup("cuda", torch.bfloat16 if bf16 else torch.float16, not bf16, False,
                           f"CUDA: {name} ({'bf16' if bf16 else 'fp16'} mixed precision)")
    if requested == "mps":
        if not _mps_available():
            raise BadInputError("--device mps was requested but Apple MPS is not available")
        return DeviceSetup("mps", None, False, False, "Apple MPS")
    return DeviceSetup("cpu", None, False, True, f"CPU ({torch.get_num_threads()} threads)")


def for_dataset(setup: DeviceSetup, photos: int) -> DeviceSetup:
    """``setup`` for a run that trains on ``photos`` photos: on CUDA, channels_last with cuDNN's benchmark from
    CHANNELS_LAST_MIN_PHOTOS up, the default layout with its heuristics below.

    On an H200 (bench/cuda_first_call.py) channels_last runs Lite0 1.6x faster in inference and 2.4x in training,
    but cuDNN compiles its kernels for that layout at every new batch shape: 2-4 s a shape in inference and
    10-22 s in training, against 0.1-0.3 s in the default layout. The stall pays back after roughly 100,000
    training images, which a default run over 10,000 photos reaches.
    """
    if setup.device != "cuda":
        return setup
    channels_last = photos >= CHANNELS_LAST_MIN_PHOTOS
    torch.backends.cudnn.benchmark = channels_last  # measures each shape once: pays back only on long runs
    description = f"{setup.description}, channels_last" if channels_last else setup.description
    return replace(setup, channels_last=channels_last, description=description)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def to_device(tensor: torch.Tensor, setup: DeviceSetup) -> torch.Tensor:
    """A tensor on the training device; an image-shaped (4-D) one in the setup's memory layout, which every
    convolution then follows (cuDNN picks channels_last when its input is, whatever the weights).

    Only a pageable CPU tensor bound for CUDA is pinned: the non-blocking copy is asynchronous only from pinned
    memory. Pinning is itself a copy, so a tensor already pinned (or not on the CPU, or bound elsewhere) is not.
    """
    if setup.device == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    tensor = tensor.to(setup.device, non_blocking=True)
    if tensor.dim() == 4:
        layout = torch.channels_last if setup.channels_last else torch.contiguous_format
        tensor = tensor.contiguous(memory_format=layout)
    return tensor
