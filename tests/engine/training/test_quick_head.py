"""The quick head's L-BFGS fit."""

import torch

from engine.training.quick_head import GPU_FIT_MIN_PHOTOS, fit_linear_head


def separable(photos: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    targets = torch.arange(photos) % 2
    features = torch.randn(photos, 8, generator=generator) + 3.0 * targets[:, None].float()
    return features, targets


def test_fits_a_separable_head_and_chooses_l2_from_the_candidates() -> None:
    features, targets = separable(120)
    weight, bias, l2 = fit_linear_head(features, targets, 2)
    assert ((features @ weight.T + bias).argmax(1) == targets).float().mean() > 0.95
    assert weight.shape == (2, 8) and bias.shape == (2,) and l2 > 0


def test_a_small_fit_stays_on_the_cpu_even_when_training_runs_on_cuda() -> None:
    """Below GPU_FIT_MIN_PHOTOS the GPU's per-step round trips cost more than the CPU's arithmetic; no tensor may
    move (this machine has no CUDA, so a move would raise)."""
    features, targets = separable(min(GPU_FIT_MIN_PHOTOS - 1, 200))
    weight, _bias, _l2 = fit_linear_head(features, targets, 2, device="cuda")
    assert weight.device.type == "cpu"
