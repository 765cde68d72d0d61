"""Training augmentation of a whole batch of uint8 squares at once, on the device the batch lives on.

Per-photo CPU transforms starve a GPU, so every step here is vectorised over the batch: the crop, flip and
rotation of all images are one affine sampling grid + ``grid_sample``, colour ops are per-image factors
broadcast over the batch, and no Python loop runs over the images (on a CPU the batch goes through in
cache-sized chunks of images, each vectorised). The randomness arrives as numbers, one row of U[0, 1) per image,
so an augmented view is a pure function of its row: ``seeded_uniforms`` derives the row from a key (the same
view in every run and process).

The presets add to one another ("none" < "light" < "standard" < "strong"), as the per-sample torchvision
pipeline they replace did (RandomResizedCrop, flip; rotation, ColorJitter; TrivialAugmentWide, RandomErasing),
with these differences, each the price of batching or a cheaper equivalent:

- The crop box is continuous (sub-pixel) and clamped to fit, instead of integer with up to 10 redraws.
- Sampling is bilinear without antialiasing whatever ``preprocessing.interpolation`` says: the box shrinks by
  at most resize/crop (256/224 = 1.14 for ImageNet backbones), too little to alias.
- The rotation shares the crop's matrix, so a rotated crop's corners show the photo around the box (zeros only
  beyond the photo's edge), where torchvision rotates the cut-out crop and blackens all four corners.
- Colour jitter runs in a fixed order (brightness, contrast, saturation, hue) rather than a random one per image,
  on floats (no rounding to uint8 between ops); the hue shift is a rotation in YIQ, which approximates HSV hue.
- TrivialAugmentWide keeps its 9 photometric ops (identity included, each with p=1/9 instead of 1/14): the
  geometric ones are left out because the crop is random already; magnitudes are continuous over its ranges
  instead of 31 steps.
- Random erasing clamps its rectangle to fit, instead of up to 10 redraws.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from engine.errors import BadInputError
from engine.preprocessing import Preprocessing
from engine.training.config import AUGMENT_PRESETS

# Part of the feature cache's key for augmented views: bump when the output for given uniforms changes.
AUGMENT_VERSION = "batch-augment 1"

# Columns of a uniforms row used by each preset. "light": crop area, ratio, left, top, flip; "standard" adds
# rotation, brightness, contrast, saturation, hue; "strong" adds the trivial op and its magnitude, then erasing's
# apply, area, ratio, top, left. Each level extends the one before, so a seeded row crops alike in all three.
_COLUMNS = (0, 5, 10, 17)

_CROP_SCALE = (0.6, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)
_ROTATION_DEGREES = 10.0
_JITTER = 0.2  # brightness, contrast and saturation factors in 1 +- this
_HUE_TURNS = 0.02
_TRIVIAL_MAGNITUDE = 0.99  # TrivialAugmentWide's range for brightness, colour, contrast and sharpness
_ERASE_P, _ERASE_SCALE, _ERASE_RATIO = 0.25, (0.02, 0.33), (0.3, 3.3)

_CPU_CHUNK_PIXELS = 8 * 256 * 256  # images per chunk on a CPU: 6 MB of float32 source, measured best on 2 cores
_GRAY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
                           dtype=torch.float64)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ).float()  # inverted in float64; used in float32 (MPS has no float64)
_RGB_TO_YIQ = _RGB_TO_YIQ.float()


def evaluation_crops(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Centre crop + scale to [0, 1] + normalise, batched: uint8 (N, 3, S, S) -> float32 (N, 3, crop, crop).

    Equals ``engine.images.normalize_crop`` on each square (same rounding of the offset, same float32 ops), so a
    run without augmentation trains on exactly what it is evaluated on.
    """
    crop = preprocessing.crop
    top = int(round((images.shape[-2] - crop) / 2.0))
    left = int(round((images.shape[-1] - crop) / 2.0))
    pixels = images[..., top:top + crop, left:left + crop].float().div_(255.0)
    return _normalize(pixels, preprocessing)


@dataclass(frozen=True, slots=True)
class BatchAugment:
    """One preset's augmentation: ``augment(images, uniforms)`` -> normalised float32 (N, 3, crop, crop).

    ``images``: uint8 (N, 3, S, S) on any device; ``uniforms``: (N, k) in [0, 1) with k >= ``uniforms_per_image``
    (extra columns are ignored), on any device. The output is on the images' device and depends on nothing else.
    """

    preset: str
    preprocessing: Preprocessing

    def __post_init__(self) -> None:
        if self.preset not in AUGMENT_PRESETS:
            raise BadInputError(
                f"unknown augmentation preset {self.preset!r}; choose one of {', '.join(AUGMENT_PRESETS)}"
            )

    @property
    def uniforms_per_image(self) -> int:
        """How many U[0, 1) numbers one image's augmentation consumes (0 for "none")."""
        return _COLUMNS[AUGMENT_PRESETS.index(self.preset)]

    def __call__(self, images: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        if self.preset == "none":
            return evaluation_crops(images, self.preprocessing)
        if uniforms.ndim != 2 or uniforms.shape[0] != images.shape[0] or uniforms.shape[1] < self.uniforms_per_image:
            raise ValueError(f"uniforms of shape {tuple(uniforms.shape)} for {images.shape[0]} images; "
                             f"preset {self.preset!r} needs (N, >= {self.uniforms_per_image})")
        uniforms = uniforms.to(images.device, torch.float32)
        # On a CPU, whole-batch passes stream tens of MB through memory each: cache-sized chunks are 2x faster.
        size = max(1, _CPU_CHUNK_PIXELS // (images.shape[-2] * images.shape[-1]))
        if images.device.type != "cpu" or images.shape[0] <= size:
            return self._augment(images, uniforms)
        chunks = zip(images.split(size), uniforms.split(size), strict=True)
        return torch.cat([self._augment(part, rows) for part, rows in chunks])

    def _augment(self, images: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        level = AUGMENT_PRESETS.index(self.preset)
        pixels = _resized_crops(images, u[:, :6], self.preprocessing.crop, rotate=level >= 2)
        if level >= 2:
            pixels = _jitter_colour(pixels, u[:, 6:10])
        if level >= 3:
            pixels = _trivial_augment(pixels, u[:, 10], u[:, 11])
        pixels = _normalize(pixels, self.preprocessing)
        if level >= 3:
            pixels = _erase(pixels, u[:, 12:17])
        return pixels


def seeded_uniforms(keys: Sequence[bytes], per_image: int) -> torch.Tensor:
    """One row per key, float32 (len(keys), per_image) in [0, 1): the same key gives the same row everywhere.

    blake2b of key + a 4-byte block counter gives 16 words per block; each word's top 24 bits make one float32
    exactly (all 32 could round up to 1.0). About a microsecond per key, and no torch.Generator per image.
    """
    blocks = -(-per_image // 16)
    digest = b"".join(hashlib.blake2b(key + block.to_bytes(4, "little")).digest()
                      for key in keys for block in range(blocks))
    words = np.frombuffer(digest, dtype="<u4").reshape(len(keys), blocks * 16)[:, :per_image]
    return torch.from_numpy((words >> 8).astype(np.float32) * np.float32(2.0**-24))


def view_key(seed: int, content_hash: str, view: int) -> bytes:
    """The ``seeded_uniforms`` key of augmented view ``view`` of the photo whose bytes hash to ``content_hash``.

    A run's frozen features and its teachers' probabilities (engine.training.teacher_targets) both use it, so a
    teacher sees the student's very views: the crop box is in fractions of the photo, so the same row cuts the same
    region at the teacher's resolution.
    """
    return f"{seed}|{content_hash}|{view}".encode()


def _normalize(pixels: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32, device=pixels.device).view(1, 3, 1, 1)
    return pixels.sub_(mean).div_(std)


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _log_uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return torch.exp(_uniform(u, math.log(low), math.log(high)))


def _resized_crops(images: torch.Tensor, u: torch.Tensor, crop: int, *, rotate: bool) -> torch.Tensor:
    """Random resized crop, flip and (with ``rotate``) rotation as one sampling: [0, 1] floats (N, 3, crop, crop).

    Output point p (normalised, [-1, 1]) samples the source at centre + box * flip * rotation * p: the box
    rotated and flipped about its centre, as torchvision does to the resized crop. Outside the photo is 0, as
    torchvision's rotation fills; without rotation only the half-pixel overshoot of a box smaller than the crop
    can fall outside, and "border" keeps it from darkening the photo's edge row.
    """
    height, width = images.shape[-2:]
    area = _uniform(u[:, 0], *_CROP_SCALE) * (height * width)
    ratio = _log_uniform(u[:, 1], *_CROP_RATIO)
    box_w = (torch.sqrt(area * ratio) / width).clamp(max=1.0)  # fractions of the side
    box_h = (torch.sqrt(area / ratio) / height).clamp(max=1.0)
    centre_x = u[:, 2] * (1 - box_w) * 2 + box_w - 1  # normalised: left edge -1, right edge +1
    centre_y = u[:, 3] * (1 - box_h) * 2 + box_h - 1
    mirror = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    degrees = _uniform(u[:, 5], -_ROTATION_DEGREES, _ROTATION_DEGREES) if rotate else torch.zeros_like(area)
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([box_w * mirror * cos, -box_w * mirror * sin, centre_x, box_h * sin, box_h * cos, centre_y], 1)
    sampled = F.grid_sample(images.float(), _sampling_grid(theta, crop), mode="bilinear",
                            padding_mode="zeros" if rotate else "border", align_corners=False)
    return sampled.div_(255.0)


def _sampling_grid(theta: torch.Tensor, size: int) -> torch.Tensor:
    """``F.affine_grid(theta.view(-1, 2, 3), (N, 3, size, size), align_corners=False)``, as two broadcast
    multiply-adds: affine_grid's (N, size * size, 3) base and batched matmul take 3x as long on a CPU."""
    base = torch.arange(size, dtype=torch.float32, device=theta.device).mul_(2 / size).add_(1 / size - 1)
    across, down = base.view(1, 1, size), base.view(1, size, 1)
    coefficients = theta.view(-1, 6, 1, 1)
    grid = torch.empty((theta.shape[0], size, size, 2), dtype=torch.float32, device=theta.device)
    for axis in (0, 1):
        a, b, c = coefficients[:, 3 * axis:3 * axis + 3].unbind(1)
        torch.add(across * a, down * b + c, out=grid[..., axis])
    return grid


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _gray(pixels: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) luma with the weights torchvision's grayscale and YIQ's Y use."""
    red, green, blue = pixels.split(1, dim=1)
    return (red * _GRAY[0]).add_(green, alpha=_GRAY[1]).add_(blue, alpha=_GRAY[2])


def _brightness(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return pixels.mul_(_per_image(factor)).clamp_(0, 1)


def _contrast(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the image's mean gray (the mean of the luma is the luma of the channel means)."""
    mean_gray = pixels.mean(dim=(2, 3)) @ pixels.new_tensor(_GRAY)
    return torch.lerp(_per_image(mean_gray), pixels, _per_image(factor), out=pixels).clamp_(0, 1)


def _saturation(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return torch.lerp(_gray(pixels), pixels, _per_image(factor), out=pixels).clamp_(0, 1)


def _hue(pixels: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) of YIQ by ``turns``: one 3x3 matrix per image, luma kept.

    Red, green and blue lie clockwise in the I-Q plane, so a positive shift turns it clockwise (red towards
    green, as HSV's hue does). It approximates HSV's shift, which keeps each pixel's max and min where this keeps
    its luma: for a shift of 0.02 the two changes point the same way (cosine ~0.7) and are of the same size.
    """
    angle = turns * (-2 * math.pi)
    cos, sin = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    rotation = torch.stack([torch.stack([one, zero, zero], 1), torch.stack([zero, cos, -sin], 1),
                            torch.stack([zero, sin, cos], 1)], 1)
    matrix = _YIQ_TO_RGB.to(angle.device) @ rotation @ _RGB_TO_YIQ.to(angle.device)
    n, channels, height, width = pixels.shape
    mixed = torch.bmm(matrix, pixels.reshape(n, channels, height * width))
    return mixed.view(n, channels, height, width).clamp_(0, 1)


def _jitter_colour(pixels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    pixels = _brightness(pixels, _uniform(u[:, 0], 1 - _JITTER, 1 + _JITTER))
    pixels = _contrast(pixels, _uniform(u[:, 1], 1 - _JITTER, 1 + _JITTER))
    pixels = _saturation(pixels, _uniform(u[:, 2], 1 - _JITTER, 1 + _JITTER))
    return _hue(pixels, _uniform(u[:, 3], -_HUE_TURNS, _HUE_TURNS))


def _signed_factor(magnitude: torch.Tensor) -> torch.Tensor:
    """1 +- up to 0.99, sign and size uniform: TrivialAugmentWide's enhancement factors."""
    return 1 + _uniform(magnitude, -_TRIVIAL_MAGNITUDE, _TRIVIAL_MAGNITUDE)


def _sharpness(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with PIL's smoothing filter (3x3, centre 5/13, the border kept), as torchvision's adjust_sharpness.

    The 3x3 sum is two shifted three-term sums: a depthwise conv2d takes ten times as long on a CPU.
    """
    rows = pixels[..., :-2, :] + pixels[..., 1:-1, :] + pixels[..., 2:, :]
    smooth = pixels.clone()
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    smooth[..., 1:-1, 1:-1] = box.add_(pixels[..., 1:-1, 1:-1], alpha=4).div_(13)
    return torch.lerp(smooth, pixels, _per_image(factor), out=pixels).clamp_(0, 1)


def _posterize(pixels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Keep 8 - round(6 * magnitude) bits (8 down to 2) of each 8-bit value."""
    step = _per_image(torch.exp2(torch.round(6 * magnitude)))
    return torch.floor(torch.round(pixels * 255) / step).mul_(step).div_(255)


def _solarize(pixels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    threshold = _per_image(1 - magnitude)
    return torch.where(pixels >= threshold, 1 - pixels, pixels)


def _autocontrast(pixels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Stretch each channel to [0, 1]; a flat channel is left as it is."""
    low = pixels.amin(dim=(2, 3), keepdim=True)
    spread = pixels.amax(dim=(2, 3), keepdim=True) - low
    flat = spread == 0
    return (pixels - low.masked_fill(flat, 0)).div_(spread.masked_fill(flat, 1)).clamp_(0, 1)


def _equalize(pixels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Histogram equalisation of each channel's 8-bit values with PIL's lookup table, as torchvision's."""
    values = torch.round(pixels * 255).long().flatten(2)  # (n, 3, H * W)
    histogram = torch.zeros((*values.shape[:2], 256), dtype=torch.long, device=pixels.device)
    histogram.scatter_add_(2, values, torch.ones_like(values))
    cumulative = histogram.cumsum(2)
    top_count = histogram.gather(2, cumulative.argmax(2, keepdim=True))  # pixels at the channel's highest value
    step = torch.div(values.shape[2] - top_count, 255, rounding_mode="floor")
    lut = torch.div(cumulative[..., :-1] + step // 2, step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut], dim=2)
    equalized = lut.gather(2, values).view_as(pixels).float().div_(255)
    return torch.where((step != 0).unsqueeze(-1), equalized, pixels)  # a single-valued channel is left as it is


_TrivialOp = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# Identity is op 0; the rest take a magnitude in [0, 1).
_TRIVIAL_OPS: tuple[_TrivialOp, ...] = (
    lambda pixels, magnitude: _brightness(pixels, _signed_factor(magnitude)),
    lambda pixels, magnitude: _saturation(pixels, _signed_factor(magnitude)),
    lambda pixels, magnitude: _contrast(pixels, _signed_factor(magnitude)),
    lambda pixels, magnitude: _sharpness(pixels, _signed_factor(magnitude)),
    _posterize,
    _solarize,
    _autocontrast,
    _equalize,
)


def _trivial_augment(pixels: torch.Tensor, which: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """One op per image, chosen uniformly among identity and ``_TRIVIAL_OPS``.

    Each op runs on the images that chose it (the loop is over the 8 ops, not the images), so the batch
    costs about one op, not eight.
    """
    op_index = (which * (len(_TRIVIAL_OPS) + 1)).long().clamp_(max=len(_TRIVIAL_OPS))
    for index, op in enumerate(_TRIVIAL_OPS, start=1):
        chosen = (op_index == index).nonzero().flatten()
        if chosen.numel():
            pixels[chosen] = op(pixels[chosen], magnitude[chosen])
    return pixels


def _erase(pixels: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """RandomErasing (p=0.25): a rectangle per image set to 0, the dataset mean once normalised."""
    height, width = pixels.shape[-2:]
    area = _uniform(u[:, 1], *_ERASE_SCALE) * (height * width)
    ratio = _log_uniform(u[:, 2], *_ERASE_RATIO)
    box_h = torch.round(torch.sqrt(area * ratio)).clamp_(1, height)
    box_w = torch.round(torch.sqrt(area / ratio)).clamp_(1, width)
    top = _per_image(torch.floor(u[:, 3] * (height - box_h + 1)))
    left = _per_image(torch.floor(u[:, 4] * (width - box_w + 1)))
    rows = torch.arange(height, device=pixels.device, dtype=torch.float32).view(1, 1, height, 1)
    cols = torch.arange(width, device=pixels.device, dtype=torch.float32).view(1, 1, 1, width)
    in_rows = (rows >= top) & (rows < top + _per_image(box_h)) & _per_image(u[:, 0] < _ERASE_P)  # (N, 1, H, 1)
    in_cols = (cols >= left) & (cols < left + _per_image(box_w))  # (N, 1, 1, W)
    return pixels.masked_fill_(in_rows & in_cols, 0.0)
