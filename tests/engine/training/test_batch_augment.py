"""Batched augmentation: the evaluation crop to the float32 ulp, geometry and colour ops against torchvision's,
views fixed by their uniforms, and each image's result independent of the batch it came in."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from engine.errors import BadInputError
from engine.images import normalize_crop
from engine.preprocessing import Preprocessing
from engine.training import batch_augment
from engine.training.batch_augment import BatchAugment, evaluation_crops, seeded_uniforms
from engine.training.config import AUGMENT_PRESETS

IMAGENET = Preprocessing(resize=40, crop=32, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
UNIT = Preprocessing(resize=32, crop=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # output: pixels in [0, 1]
AUGMENTING = AUGMENT_PRESETS[1:]
# The columns of a uniforms row, in the module's order (seeded views depend on it).
COLUMN = {name: index for index, name in enumerate((
    "area", "ratio", "left", "top", "flip", "rotation", "brightness", "contrast", "saturation", "hue", "op",
    "magnitude", "erase", "erase_area", "erase_ratio", "erase_top", "erase_left"))}
# The whole image, unflipped, unrotated, colours kept, the identity op, nothing erased.
NEUTRAL = (1.0, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0, 0.0, 0.9, 0.5, 0.5, 0.5, 0.5)
TRIVIAL_OPS = ("identity", "brightness", "color", "contrast", "sharpness", "posterize", "solarize", "autocontrast",
               "equalize")


def _noise(count: int, size: int, seed: int = 0, low: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)


def _rows(count: int, **changes: float) -> torch.Tensor:
    row = list(NEUTRAL)
    for name, value in changes.items():
        row[COLUMN[name]] = value
    return torch.tensor([row] * count, dtype=torch.float32)


def _unit(image: torch.Tensor) -> torch.Tensor:
    return image.float() / 255


def _normalised(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    return (pixels - mean) / torch.tensor(preprocessing.std).view(1, 3, 1, 1)


def _centre_square(pixels: np.ndarray, size: int, crop: int) -> np.ndarray:
    """The size x size square of an HWC array whose own centre crop is ``center_crop_array``'s."""
    top, left = (int(round((length - crop) / 2.0)) - int(round((size - crop) / 2.0)) for length in pixels.shape[:2])
    return pixels[top:top + size, left:left + size]


@pytest.mark.parametrize(("resize", "crop", "height", "width"), [
    (40, 32, 40, 57), (40, 32, 61, 40), (40, 32, 40, 40), (41, 32, 41, 50), (43, 32, 43, 50), (43, 32, 55, 43),
    (256, 224, 256, 259),
])
def test_evaluation_crops_equal_normalize_crop(resize, crop, height, width):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    arrays[1][:, :, :] = np.arange(height * width).reshape(height, width, 1) % 256  # every value in every channel
    preprocessing = Preprocessing(resize=resize, crop=crop, mean=IMAGENET.mean, std=IMAGENET.std)
    squares = np.stack([_centre_square(pixels, resize, crop) for pixels in arrays])
    images = torch.from_numpy(squares).permute(0, 3, 1, 2)  # channels_last, as the batches arrive
    expected = np.stack([normalize_crop(pixels, preprocessing) for pixels in arrays])
    np.testing.assert_allclose(evaluation_crops(images, preprocessing).numpy(), expected, rtol=0, atol=1e-6)


def test_none_is_the_evaluation_crop():
    augment = BatchAugment("none", IMAGENET)
    images = _noise(4, 40)
    assert augment.uniforms_per_image == 0
    assert torch.equal(augment(images, torch.empty(4, 0)), evaluation_crops(images, IMAGENET))


@pytest.mark.parametrize("preset", AUGMENTING)
def test_every_preset_gives_normalised_crops_fixed_by_the_uniforms(preset):
    augment = BatchAugment(preset, IMAGENET)
    images = _noise(8, 40)
    original = images.clone()
    uniforms = torch.rand((8, augment.uniforms_per_image), generator=torch.Generator().manual_seed(0))
    other = torch.rand((8, augment.uniforms_per_image), generator=torch.Generator().manual_seed(1))
    output = augment(images, uniforms)
    assert output.shape == (8, 3, 32, 32) and output.dtype == torch.float32
    mean, std = torch.tensor(IMAGENET.mean).view(1, 3, 1, 1), torch.tensor(IMAGENET.std).view(1, 3, 1, 1)
    assert torch.all(output >= -mean / std - 1e-5) and torch.all(output <= (1 - mean) / std + 1e-5)
    assert torch.equal(augment(images, uniforms.clone()), output)
    changed = augment(images, other)
    assert all(not torch.allclose(changed[i], output[i]) for i in range(8))
    assert torch.equal(images, original)  # the cached batch is reused every epoch: never written to


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs CUDA"))])
@pytest.mark.parametrize("preset", AUGMENT_PRESETS)
def test_the_output_stays_on_the_images_device(preset, device):
    augment = BatchAugment(preset, IMAGENET)
    images = _noise(6, 40)
    uniforms = torch.rand((6, augment.uniforms_per_image), generator=torch.Generator().manual_seed(0))  # on the CPU
    output = augment(images.to(device), uniforms)
    assert output.device.type == device
    assert (output.cpu() - augment(images, uniforms)).abs().mean() < 1e-3


def test_light_over_the_whole_image_is_the_resized_image():
    images = _noise(3, 40)
    output = BatchAugment("light", IMAGENET)(images, _rows(3)[:, :5])
    resized = F.interpolate(_unit(images), size=(32, 32), mode="bilinear", align_corners=False, antialias=False)
    torch.testing.assert_close(output, _normalised(resized, IMAGENET), rtol=0, atol=1e-4)


def test_light_keeps_a_flat_image_flat():
    """A box smaller than the crop at the photo's edge overshoots it by up to half an output pixel: clamped
    there, as torchvision's resize of the crop does, not blended with black."""
    images = torch.full((16, 3, 40, 40), 200, dtype=torch.uint8)
    uniforms = torch.rand((16, 5), generator=torch.Generator().manual_seed(0))
    uniforms[:, COLUMN["area"]] = 0.0  # the smallest box: 27 to 31 pixels a side for a crop of 32
    uniforms[::2, COLUMN["left"]] = 0.0
    uniforms[1::2, COLUMN["top"]] = 0.999
    output = BatchAugment("light", IMAGENET)(images, uniforms)
    torch.testing.assert_close(output, _normalised(torch.full_like(output, 200 / 255), IMAGENET), rtol=0, atol=1e-5)


@pytest.mark.parametrize("preset", AUGMENTING)
def test_the_flip_mirrors_the_crop(preset):
    """Flip comes before rotation, as in torchvision: flipped at angle a is the mirror of unflipped at -a."""
    images = _noise(2, 40)
    box = {"area": 0.3, "ratio": 0.2, "left": 0.1, "top": 0.7, "brightness": 0.8, "contrast": 0.3,
           "saturation": 0.7, "hue": 0.9, "op": 0.5, "magnitude": 0.3}
    augment = BatchAugment(preset, IMAGENET)
    flipped = augment(images, _rows(2, flip=0.1, rotation=0.75, **box))
    unflipped = augment(images, _rows(2, flip=0.6, rotation=0.25, **box))
    torch.testing.assert_close(flipped, unflipped.flip(-1), rtol=0, atol=1e-5)
    assert not torch.allclose(flipped, unflipped, atol=0.1)


def test_rotation_matches_torchvision():
    """A rotation of the whole image: sign, centre and zero corners as torchvision's (which rounds to uint8)."""
    images = _noise(2, 32)
    output = BatchAugment("standard", UNIT)(images, _rows(2, rotation=0.8))  # +6 degrees
    expected = _unit(TF.rotate(images, 6.0, interpolation=TF.InterpolationMode.BILINEAR))
    torch.testing.assert_close(output, expected, rtol=0, atol=1 / 255)
    assert torch.all(output[:, :, 0, 0] == 0)


@pytest.mark.parametrize(("column", "value", "reference"), [
    ("brightness", 0.9, lambda image: TF.adjust_brightness(image, 1.16)),
    ("brightness", 0.1, lambda image: TF.adjust_brightness(image, 0.84)),
    ("contrast", 0.1, lambda image: TF.adjust_contrast(image, 0.84)),
    ("contrast", 0.95, lambda image: TF.adjust_contrast(image, 1.18)),
    ("saturation", 0.9, lambda image: TF.adjust_saturation(image, 1.16)),
    ("saturation", 0.0, lambda image: TF.adjust_saturation(image, 0.8)),
])
def test_colour_jitter_matches_torchvision(column, value, reference):
    """torchvision works in uint8 (rounds, floors the gray): within 1.5 levels of 255."""
    images = _noise(2, 32)
    output = BatchAugment("standard", UNIT)(images, _rows(2, **{column: value}))
    torch.testing.assert_close(output, _unit(reference(images)), rtol=0, atol=1.5 / 255)


def test_hue_keeps_luma_and_turns_like_hsv():
    images = _noise(2, 32) // 2 + 64  # mid-range colours: no clamping
    shifted = BatchAugment("standard", UNIT)(images, _rows(2, hue=0.99))  # +0.0196 of a turn
    original = _unit(images)
    luma = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    torch.testing.assert_close((shifted * luma).sum(1), (original * luma).sum(1), rtol=0, atol=1e-5)
    ours, hsv = (shifted - original).flatten(), (TF.adjust_hue(original, 0.0196) - original).flatten()
    assert torch.dot(ours, hsv) / (ours.norm() * hsv.norm()) > 0.5
    assert 0.5 < ours.norm() / hsv.norm() < 2


@pytest.mark.parametrize(("op", "magnitude", "reference", "tolerance"), [
    ("identity", 0.7, lambda image: image, 1e-3),
    ("brightness", 0.8, lambda image: TF.adjust_brightness(image, 1 + 0.99 * 0.6), 1.5),
    ("brightness", 0.1, lambda image: TF.adjust_brightness(image, 1 - 0.99 * 0.8), 1.5),
    ("color", 0.1, lambda image: TF.adjust_saturation(image, 1 - 0.99 * 0.8), 2.5),
    ("color", 0.9, lambda image: TF.adjust_saturation(image, 1 + 0.99 * 0.8), 2.5),
    ("contrast", 0.3, lambda image: TF.adjust_contrast(image, 1 - 0.99 * 0.4), 1.5),
    ("sharpness", 0.95, lambda image: TF.adjust_sharpness(image, 1 + 0.99 * 0.9), 2),
    ("sharpness", 0.05, lambda image: TF.adjust_sharpness(image, 1 - 0.99 * 0.9), 2),
    ("posterize", 0.7, lambda image: TF.posterize(image, 4), 1e-3),
    ("posterize", 0.99, lambda image: TF.posterize(image, 2), 1e-3),
    ("solarize", 0.37, lambda image: TF.solarize(image, 0.63 * 255), 1e-3),
    ("autocontrast", 0.5, TF.autocontrast, 1),
    ("equalize", 0.5, TF.equalize, 1e-3),
])
def test_trivial_augment_ops_match_torchvision(op, magnitude, reference, tolerance):
    """``tolerance`` in levels of 255: torchvision rounds to uint8 after blends and stretches."""
    images = _noise(3, 32)
    images[2] = images[2] // 4 + 100  # a narrow histogram, which autocontrast and equalize stretch
    which = (TRIVIAL_OPS.index(op) + 0.5) / len(TRIVIAL_OPS)
    output = BatchAugment("strong", UNIT)(images, _rows(3, op=which, magnitude=magnitude))
    torch.testing.assert_close(output, _unit(reference(images)), rtol=0, atol=tolerance / 255)


def test_erasing_blanks_one_rectangle_to_the_mean():
    images = _noise(2, 32, low=1)
    erased = _rows(2, erase=0.1, erase_area=0.5, erase_ratio=0.5, erase_top=0.0, erase_left=0.999)
    output = BatchAugment("strong", UNIT)(images, erased)
    expected = torch.zeros(32, 32, dtype=torch.bool)
    expected[:13, 19:] = True  # area 0.175 x 1024 at ratio ~1: 13 x 13, at the top right
    assert torch.equal(output == 0, expected.expand(2, 3, 32, 32))
    assert not torch.any(BatchAugment("strong", UNIT)(images, _rows(2, erase=0.3)) == 0)


def test_light_samples_flips_and_boxes_like_random_resized_crop():
    """Red and green hold each pixel's x and y, so the output's corners give the sampled box."""
    count, size, crop = 1000, 64, 16
    ramp = torch.arange(size, dtype=torch.uint8) * 4
    image = torch.stack([ramp.view(1, size).expand(size, size), ramp.view(size, 1).expand(size, size),
                         torch.zeros(size, size, dtype=torch.uint8)])
    preprocessing = Preprocessing(resize=size, crop=crop, mean=UNIT.mean, std=UNIT.std)
    augment = BatchAugment("light", preprocessing)
    uniforms = torch.rand((count, augment.uniforms_per_image), generator=torch.Generator().manual_seed(0))
    output = augment(image.expand(count, 3, size, size), uniforms) * 255 / 4  # pixel coordinates
    x_span = (output[:, 0, :, -1] - output[:, 0, :, 0]).mean(1)  # signed: negative when flipped
    y_span = (output[:, 1, -1, :] - output[:, 1, 0, :]).mean(1)
    width, height = x_span.abs() * crop / (crop - 1), y_span * crop / (crop - 1)
    area, ratio = width * height / size**2, width / height
    assert 0.45 < (x_span < 0).float().mean() < 0.55
    assert area.min() > 0.6 - 1e-3 and area.max() < 1 + 1e-3
    assert area.min() < 0.62 and area.max() > 0.95 and 0.75 < area.mean() < 0.85
    assert ratio.min() > 3 / 4 - 1e-3 and ratio.max() < 4 / 3 + 1e-3
    left = torch.minimum(output[:, 0, :, 0], output[:, 0, :, -1]).mean(1) - width / crop / 2 + 0.5
    top = output[:, 1, 0, :].mean(1) - height / crop / 2 + 0.5
    for start, length in ((left, width), (top, height)):  # inside the image, anywhere along it
        room = size - length > 1  # the box can move (a box clamped to the whole side cannot)
        position = start[room] / (size - length[room])
        assert start.min() > -1e-3 and (start + length).max() < size + 1e-3
        assert position.min() < 0.05 and position.max() > 0.95 and 0.45 < position.mean() < 0.55


def test_batch_results_equal_one_image_at_a_time(monkeypatch):
    """Every op chosen twice and half the images erased: vectorising, and the CPU's chunks (5 images here), must
    keep each image's own parameters."""
    monkeypatch.setattr(batch_augment, "_CPU_CHUNK_PIXELS", 5 * 40 * 40)
    count = 2 * len(TRIVIAL_OPS)
    images = _noise(count, 40)
    for preset in AUGMENTING:
        augment = BatchAugment(preset, IMAGENET)
        uniforms = torch.rand((count, augment.uniforms_per_image), generator=torch.Generator().manual_seed(3))
        if preset == "strong":
            uniforms[:, COLUMN["op"]] = (torch.arange(count) % len(TRIVIAL_OPS) + 0.5) / len(TRIVIAL_OPS)
            uniforms[:, COLUMN["erase"]] = torch.arange(count) % 2 * 0.5
        one_by_one = torch.cat([augment(images[i:i + 1], uniforms[i:i + 1]) for i in range(count)])
        torch.testing.assert_close(augment(images, uniforms), one_by_one, rtol=0, atol=1e-5)


def test_seeded_uniforms_are_a_function_of_the_key():
    keys = [f"photo {i}".encode() for i in range(500)]
    rows = seeded_uniforms(keys, 17)
    assert rows.shape == (500, 17) and rows.dtype == torch.float32
    assert torch.all((rows >= 0) & (rows < 1)) and abs(rows.mean().item() - 0.5) < 0.02
    assert torch.equal(seeded_uniforms([b"other", keys[7]], 17)[1], rows[7])
    assert len({tuple(row) for row in rows.tolist()}) == 500
    # The derivation is fixed (the same view in every process): blake2b(key + 4-byte block counter), 24-bit words.
    for column, block in ((0, 0), (16, 1)):
        digest = hashlib.blake2b(keys[0] + block.to_bytes(4, "little")).digest()
        assert rows[0, column].item() == (int.from_bytes(digest[:4], "little") >> 8) / 2**24
    assert seeded_uniforms(keys[:3], 0).shape == (3, 0) and seeded_uniforms([], 5).shape == (0, 5)


def test_uniforms_per_image_grow_with_the_preset():
    counts = [BatchAugment(preset, IMAGENET).uniforms_per_image for preset in AUGMENT_PRESETS]
    assert counts == [0, 5, 10, 17]


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(BadInputError, match="none, light, standard, strong"):
        BatchAugment("extreme", IMAGENET)


def test_too_few_uniforms_are_refused():
    with pytest.raises(ValueError, match="needs"):
        BatchAugment("standard", IMAGENET)(_noise(2, 40), torch.rand(2, 5))
