"""Class activation maps from an exported model's outputs, placed on the photo and drawn over it (NumPy + Pillow).

A CAM (Zhou et al. 2016) is the head's weights for one class applied at every position of the last convolutional
feature map: for a global-average-pool + linear head its mean is that class's logit minus the bias, so it shows
where the evidence for the class lies. The model saw only the centre crop of the resized photo, so the map covers
that region of the photo; what lies outside was never seen and is greyed out on the overlay.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from engine.atomic import free_name, write_atomic
from engine.images import center_crop_origin, load_rgb, resized_size
from engine.preprocessing import Preprocessing

OPACITY = 0.5  # the colour map's share over the region the model saw
UNSEEN_GREY = 0.6  # how far the photo outside that region is blended towards grey
OVERLAY_MAX_SIDE = 1024  # overlays of phone photos stay a few hundred KB, not 20 MB each
# A three-stop colour map (low, middle, high), through Pillow's colorize: no matplotlib needed.
_COLOURS = ((0, 0, 160), (255, 230, 0), (220, 0, 0))


def class_activation_map(feature_map: np.ndarray, weights: np.ndarray, class_index: int) -> np.ndarray:
    """``weights[class_index]`` (C) applied at every position of ``feature_map`` (C x h x w): an h x w float32 map.

    Normalised to [0, 1] by a ReLU, then division by the maximum: 1 where the evidence for the class is strongest,
    0 where there is none or where it speaks against it. All zeros when no position supports the class.
    """
    cam = np.tensordot(weights[class_index].astype(np.float64), feature_map.astype(np.float64), axes=1)
    cam = np.maximum(cam, 0.0)
    peak = cam.max(initial=0.0)
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def evidence_note(cam: np.ndarray, label: str) -> str:
    """"" when some part of the photo speaks for ``label``; otherwise what an all-blue overlay means. An empty map
    happens (a two-class model whose every position speaks for the other class): the answer then comes from the
    head's bias, not from anything in the photo, and a person must not read a blank overlay as "it looked nowhere"."""
    if np.max(cam, initial=0.0) > 0:
        return ""
    return f"no part of the photo speaks for “{label}”: the answer comes from the model's bias, not from the photo"


def upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``cam`` resized to ``size`` (width, height) with Pillow's bilinear filter; float32, values kept in [0, 1]."""
    image = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32))
    return np.asarray(image.resize(size, Image.Resampling.BILINEAR), dtype=np.float32)


def crop_box(photo_size: tuple[int, int], preprocessing: Preprocessing) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the model's centre crop on the photo, in photo pixels (rounded).

    The photo is resized so its shorter side is ``resize``, then centre-cropped to ``crop``: scaling the crop's
    corners back gives the region. It may reach past the photo's edges where the crop was padded.
    """
    width, height = photo_size
    resized_width, resized_height = resized_size(width, height, preprocessing.resize)
    top, left = center_crop_origin(resized_height, resized_width, preprocessing.crop)
    scale_x, scale_y = width / resized_width, height / resized_height
    crop = preprocessing.crop
    return (round(left * scale_x), round(top * scale_y), round((left + crop) * scale_x),
            round((top + crop) * scale_y))


def place_on_photo(cam: np.ndarray, photo_size: tuple[int, int], preprocessing: Preprocessing) -> np.ndarray:
    """``cam`` (on the model's crop) upsampled onto the photo: height x width, NaN where the model saw nothing."""
    width, height = photo_size
    left, top, right, bottom = crop_box(photo_size, preprocessing)
    region = upsample(cam, (right - left, bottom - top))
    placed = np.full((height, width), np.nan, dtype=np.float32)
    rows, columns = slice(max(top, 0), min(bottom, height)), slice(max(left, 0), min(right, width))
    placed[rows, columns] = region[rows.start - top:rows.stop - top, columns.start - left:columns.stop - left]
    return placed


def overlay(photo: Image.Image, cam: np.ndarray, preprocessing: Preprocessing) -> Image.Image:
    """``photo`` (RGB) with ``cam`` drawn over the region the model saw (blue low, yellow, red high), the rest grey."""
    placed = place_on_photo(cam, photo.size, preprocessing)
    seen = ~np.isnan(placed)
    levels = Image.fromarray(np.rint(np.nan_to_num(placed) * 255).astype(np.uint8))
    colours = ImageOps.colorize(levels, black=_COLOURS[0], mid=_COLOURS[1], white=_COLOURS[2])
    heat = Image.blend(photo, colours, OPACITY)
    unseen = Image.blend(photo, Image.new("RGB", photo.size, (128, 128, 128)), UNSEEN_GREY)
    return Image.composite(heat, unseen, Image.fromarray(seen.astype(np.uint8) * 255))


def photo_for_overlay(photo_path: Path | str) -> Image.Image:
    """The photo (RGB, EXIF-rotated) at the size overlays are drawn at: the longer side at most OVERLAY_MAX_SIDE."""
    photo = load_rgb(photo_path, at_least=OVERLAY_MAX_SIDE)
    photo.thumbnail((OVERLAY_MAX_SIDE, OVERLAY_MAX_SIDE), Image.Resampling.LANCZOS)
    return photo


def write_overlay(photo_path: Path | str, cam: np.ndarray, preprocessing: Preprocessing, folder: Path) -> Path:
    """Draw ``cam`` over the photo (longer side at most OVERLAY_MAX_SIDE) and write it as ``<photo stem>.png`` in
    ``folder``, atomically; an existing file is never replaced (`` (2)``, `` (3)``... are added). Returns the file."""
    image = overlay(photo_for_overlay(photo_path), cam, preprocessing)
    path = free_name(folder, f"{Path(photo_path).stem}.png")
    write_atomic(path, lambda handle: image.save(handle, format="PNG"))
    return path
