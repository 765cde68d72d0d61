"""The one image loader used by scanning, training, evaluation and prediction (torch-free).

It applies EXIF orientation, converts every mode (grayscale, palette, alpha, CMYK, 16-bit, float) to
8-bit RGB, takes the first frame of animations, and keeps Pillow's decompression-bomb guard on.
Every failure becomes an ImageLoadError naming the file and a human-readable reason.
"""

from __future__ import annotations

import errno
import functools
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.preprocessing import Preprocessing

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}
_ALPHA_BACKGROUND = (255, 255, 255)
# Resizing the shorter side of a 1,000,000 x 1 image to 256 pixels would need 65 billion pixels: refuse such
# strips before decoding (500:1 still admits panoramas and, at 256, needs at most 33 million pixels).
MAX_ASPECT_RATIO = 500
DRAFT_GAP = 2  # big JPEGs are decoded at a reduced scale that keeps >= this times the resize target
# Bump when decode_for_cache's output changes: the decoded and feature caches key on it.
DECODER_VERSION = 2


class ImageLoadError(Exception):
    """A file that cannot be used as an image; ``reason`` is short enough for a report table."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def file_error_reason(exc: OSError) -> str:
    """Why a file cannot be opened or read, in the words every report uses (scan, training cache, predict)."""
    if isinstance(exc, FileNotFoundError):
        return "file not found (deleted, moved, or a broken link)"
    if isinstance(exc, PermissionError):
        return "permission denied: make the file readable"
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    return f"cannot read the file ({exc.strerror or exc})"


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def load_rgb(path: Path | str, at_least: int | None = None) -> Image.Image:
    """Decode ``path`` into an upright 8-bit RGB image, or raise ImageLoadError.

    ``at_least``: a JPEG may be decoded at 1/2, 1/4 or 1/8 scale (Pillow's draft, done inside the DCT, so
    several times faster on phone photos) as long as its shorter side stays >= this many pixels.
    """
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageLoadError(path, "is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow warns between 1x and 2x MAX_IMAGE_PIXELS; treat that band as a bomb too.
            warnings.simplefilter("ignore", UserWarning)  # e.g. "Corrupt EXIF data": the image still loads
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if max(width, height) > MAX_ASPECT_RATIO * max(1, min(width, height)):
                    raise ImageLoadError(path, f"extreme aspect ratio ({width}x{height}, more than "
                                               f"{MAX_ASPECT_RATIO}:1): too large once resized; crop it first")
                image.seek(0)
                if at_least is not None and image.format == "JPEG":
                    image.draft(None, resized_size(width, height, at_least))
                image.load()
                return _to_rgb(ImageOps.exif_transpose(image))
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"image too large, refused by the decompression-bomb guard ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(path, "not an image, or an unsupported format") from exc
    except OSError as exc:
        if exc.errno is not None:  # the file system's error; Pillow's decoding errors carry no errno
            raise ImageLoadError(path, file_error_reason(exc)) from exc
        raise ImageLoadError(path, f"truncated or corrupt image data ({exc})") from exc
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise ImageLoadError(path, f"corrupt image data ({type(exc).__name__}: {exc})") from exc


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image  # already a copy: exif_transpose returns a new image, independent of the file
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_to_rgb(image)
    if mode == "P" and "transparency" in image.info or mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, _ALPHA_BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit integer and float images to 8 bits (Pillow's convert would clip, not scale)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = 1.0 if values.max(initial=0.0) <= 1.0 else 255.0 if values.max(initial=0.0) <= 255.0 else 65535.0
    else:
        top = 255.0 if values.max(initial=0.0) <= 255.0 and image.mode == "I" else 65535.0
    gray = np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def resized_size(width: int, height: int, shorter_side: int) -> tuple[int, int]:
    """Size after resizing the shorter side to ``shorter_side``, with torchvision's rounding (truncation)."""
    if width <= height:
        return shorter_side, max(1, int(shorter_side * height / width))
    return max(1, int(shorter_side * width / height)), shorter_side


def resize_shorter_side(image: Image.Image, shorter_side: int, interpolation: str) -> Image.Image:
    size = resized_size(image.width, image.height, shorter_side)
    if size == image.size:
        return image
    return image.resize(size, _RESAMPLING[interpolation])


def center_crop_origin(height: int, width: int, crop: int) -> tuple[int, int]:
    """(top, left) of the centre crop in a ``height`` x ``width`` image, as torchvision places it. A side shorter
    than ``crop`` is padded with zeros, half the padding (rounded down) before it: its origin is minus that half."""
    top = -((crop - height) // 2) if height < crop else int(round((height - crop) / 2.0))
    left = -((crop - width) // 2) if width < crop else int(round((width - crop) / 2.0))
    return top, left


def center_crop_array(pixels: np.ndarray, crop: int) -> np.ndarray:
    """Centre-crop an HWC array to ``crop`` x ``crop``, padding with zeros when it is smaller (as torchvision)."""
    height, width = pixels.shape[:2]
    top, left = center_crop_origin(height, width, crop)
    if height < crop or width < crop:
        pad_h, pad_w = max(0, crop - height), max(0, crop - width)
        pixels = np.pad(pixels, ((-min(top, 0), pad_h + min(top, 0)), (-min(left, 0), pad_w + min(left, 0)), (0, 0)))
        top, left = max(top, 0), max(left, 0)
    return pixels[top : top + crop, left : left + crop]


def decode_for_cache(path: Path | str, preprocessing: Preprocessing) -> np.ndarray:
    """Load and resize once (shorter side to ``preprocessing.resize``): the uint8 HWC array epochs reuse.

    Big JPEGs are decoded at a reduced scale that keeps at least twice the target size (Pillow's own
    ``reducing_gap`` reasoning), so the antialiased resize that follows gives practically the same pixels.
    """
    image = load_rgb(path, at_least=DRAFT_GAP * preprocessing.resize)
    image = resize_shorter_side(image, preprocessing.resize, preprocessing.interpolation)
    return np.asarray(image, dtype=np.uint8)


def normalize_crop(pixels: np.ndarray, preprocessing: Preprocessing) -> np.ndarray:
    """Centre-crop a resized uint8 HWC array and normalise it to a float32 CHW array.

    Each pixel is looked up in a table of the 256 normalised values per channel: the same float32 values as
    scaling and normalising every pixel (bit for bit), in a third of the time (0.15 ms instead of 0.4 at 224).
    """
    planes = center_crop_array(pixels, preprocessing.crop).transpose(2, 0, 1)
    table = _normalized_values(tuple(preprocessing.mean), tuple(preprocessing.std))
    normalized = np.empty(planes.shape, dtype=np.float32)
    for channel, plane in enumerate(planes):
        np.take(table[channel], plane, out=normalized[channel])
    return normalized


@functools.lru_cache(maxsize=8)
def _normalized_values(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: ``(value / 255 - mean) / std`` for every uint8 value, in the order of operations that
    ``engine.training.batch_augment.evaluation_crops`` also follows."""
    values = np.arange(256, dtype=np.float32)[:, None] / 255.0
    table = ((values - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)).T.copy()
    table.flags.writeable = False
    return table


def preprocess_for_model(path: Path | str, preprocessing: Preprocessing) -> np.ndarray:
    """The evaluation transform, defined once: used by training-time evaluation, export parity and the predictor."""
    return normalize_crop(decode_for_cache(path, preprocessing), preprocessing)
