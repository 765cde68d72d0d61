import numpy as np
import pytest
import torch

from engine.images import normalize_crop
from engine.preprocessing import Preprocessing
from engine.training.augment import AUGMENT_PRESETS, build_train_transform

IMAGENET = Preprocessing(resize=40, crop=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


def _cached_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A uint8 HWC array like the decoded cache holds (shorter side already resized)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(pixels).permute(2, 0, 1)


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
@pytest.mark.parametrize(("height", "width"), [(40, 57), (61, 40), (40, 40)])
def test_every_preset_gives_a_normalised_float32_crop(preset, height, width):
    """Uniform noise: pixels in [0, 1] have mean 1/2 and std 1/sqrt(12) before normalising with ImageNet's
    statistics. Augmentation moves them (interpolation smooths, colour ops shift), but an output that was not
    normalised, or was normalised twice, is far outside these bounds."""
    mean, std = np.array(IMAGENET.mean), np.array(IMAGENET.std)
    transform = build_train_transform(preset, IMAGENET)
    outputs = []
    for seed in range(20):
        torch.manual_seed(seed)
        outputs.append(transform(_as_tensor(_cached_image(height, width, seed))))
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.float32 for o in outputs)
    values = torch.stack(outputs).numpy()
    lowest, highest = values.min(axis=(0, 2, 3)), values.max(axis=(0, 2, 3))
    assert np.all(lowest >= -mean / std - 1e-5) and np.all(highest <= (1 - mean) / std + 1e-5)  # from [0, 1]
    channel_means = values.mean(axis=(2, 3)).mean(axis=0)
    std_ratios = values.std(axis=(2, 3)).mean(axis=0) / (1 / np.sqrt(12) / std)
    np.testing.assert_allclose(channel_means, (0.5 - mean) / std, atol=0.4)
    assert np.all((std_ratios > 0.4) & (std_ratios < 1.1)), std_ratios


@pytest.mark.parametrize(
    ("height", "width", "crop"), [(40, 57, 32), (57, 41, 32), (40, 40, 32), (256, 259, 224)]
)
def test_none_is_the_evaluation_transform(height, width, crop):
    pixels = _cached_image(height, width)
    if height == 256:
        pixels[:, :, :] = np.arange(256, dtype=np.uint8)[:, None, None]  # every pixel value in every channel
    preprocessing = Preprocessing(resize=min(height, width), crop=crop, mean=IMAGENET.mean, std=IMAGENET.std)
    output = build_train_transform("none", preprocessing)(_as_tensor(pixels))
    np.testing.assert_allclose(output.numpy(), normalize_crop(pixels, preprocessing), rtol=0, atol=1e-6)


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_seeded_calls_are_identical(preset):
    transform = build_train_transform(preset, IMAGENET)
    image = _as_tensor(_cached_image(40, 57))
    outputs = []
    for _ in range(2):
        torch.manual_seed(1234)
        outputs.append(transform(image))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def test_light_differs_between_calls():
    transform = build_train_transform("light", IMAGENET)
    image = _as_tensor(_cached_image(40, 57))
    torch.manual_seed(0)
    assert not torch.equal(transform(image), transform(image))


@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_the_cached_array_is_left_untouched(preset):
    # The decoded cache is reused every epoch, so an in-place op would corrupt later epochs.
    pixels = _cached_image(40, 57)
    original = pixels.copy()
    build_train_transform(preset, IMAGENET)(_as_tensor(pixels))
    np.testing.assert_array_equal(pixels, original)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="none, light, standard, strong"):
        build_train_transform("extreme", IMAGENET)
