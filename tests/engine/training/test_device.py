"""Device choice and host-to-device copies."""

import pytest
import torch

from engine.training.device import resolve_device, to_device


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
