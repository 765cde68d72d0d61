"""Device choice and host-to-device copies."""

import pytest
import torch

from engine.training.device import CHANNELS_LAST_MIN_PHOTOS, DeviceSetup, for_dataset, resolve_device, to_device


def test_cpu_copies_keep_values_and_make_images_channels_last() -> None:
    setup = resolve_device("cpu")
    images, labels = torch.randn(2, 3, 8, 8), torch.tensor([1, 0])
    moved = to_device(images, setup)
    assert torch.equal(moved, images) and moved.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(to_device(labels, setup), labels)


def test_an_unavailable_device_is_an_error_not_a_fallback() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_pins_only_a_pageable_cpu_tensor_bound_for_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pinning copies the tensor: worth it only before an asynchronous copy to CUDA, and only once."""
    pinned: list[torch.Tensor] = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: pinned.append(self) or self)
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *_args, **_kwargs: self)  # no GPU here: stay put
    cuda = DeviceSetup("cuda", torch.bfloat16, False, True, "fake CUDA")
    tensor = torch.randn(2, 3)
    to_device(tensor, resolve_device("cpu"))
    assert pinned == []
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: True)
    to_device(tensor, cuda)
    assert pinned == []
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda self: False)
    to_device(tensor, cuda)
    assert len(pinned) == 1


def test_images_follow_the_setups_layout_whatever_layout_they_arrive_in() -> None:
    """A channels_last input turns cuDNN's convolutions channels_last, so the default layout must be enforced."""
    default = DeviceSetup("cpu", None, False, False, "default layout")
    images = torch.randn(2, 3, 8, 8).contiguous(memory_format=torch.channels_last)
    moved = to_device(images, default)
    assert torch.equal(moved, images) and moved.is_contiguous()


@pytest.mark.parametrize("photos", [CHANNELS_LAST_MIN_PHOTOS - 1, CHANNELS_LAST_MIN_PHOTOS])
def test_cuda_uses_channels_last_only_for_runs_long_enough_to_repay_its_kernel_compilation(
        photos: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    cuda = DeviceSetup("cuda", torch.bfloat16, False, False, "CUDA: fake (bf16 mixed precision)")
    chosen = for_dataset(cuda, photos)
    large = photos >= CHANNELS_LAST_MIN_PHOTOS
    assert chosen.channels_last is large and torch.backends.cudnn.benchmark is large
    assert chosen.description.endswith("channels_last") is large
    cpu = resolve_device("cpu")
    assert for_dataset(cpu, photos) == cpu
