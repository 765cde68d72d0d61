"""Thumbnails: decoded on a worker thread as NumPy arrays (Pillow), turned into pixmaps on the GUI thread.

QPixmap may only be made on the GUI thread, so workers hand over plain uint8 RGB arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtGui import QImage, QPixmap

from engine.images import DRAFT_GAP, ImageLoadError, load_rgb

THUMBNAIL_SIZE = 64
_GAP = 2


def load_thumbnail(path: Path | str, size: int = THUMBNAIL_SIZE) -> np.ndarray | None:
    """An RGB array no larger than ``size`` x ``size`` (aspect kept), or None for a file that cannot load."""
    try:
        image = load_rgb(path, at_least=DRAFT_GAP * size)  # a phone photo decodes at 1/8 scale
    except (ImageLoadError, OSError):
        return None
    image.thumbnail((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def thumbnail_strip(paths: Sequence[Path | str], height: int = 48) -> np.ndarray | None:
    """Square thumbnails side by side, for a class table row; None when none of the files loads."""
    tiles = []
    for path in paths:
        thumb = load_thumbnail(path, height)
        if thumb is None:
            continue
        tile = np.zeros((height, height, 3), dtype=np.uint8)
        h, w = thumb.shape[:2]
        top, left = (height - h) // 2, (height - w) // 2
        tile[top:top + h, left:left + w] = thumb
        tiles.append(tile)
    if not tiles:
        return None
    strip = np.zeros((height, len(tiles) * (height + _GAP) - _GAP, 4), dtype=np.uint8)  # transparent gaps
    for index, tile in enumerate(tiles):
        x = index * (height + _GAP)
        strip[:, x:x + height, :3] = tile
        strip[:, x:x + height, 3] = 255
    return strip


def to_pixmap(array: np.ndarray) -> QPixmap:
    """An RGB or RGBA uint8 array as a QPixmap (GUI thread only)."""
    array = np.ascontiguousarray(array)
    height, width, channels = array.shape
    image_format = QImage.Format.Format_RGBA8888 if channels == 4 else QImage.Format.Format_RGB888
    image = QImage(array.data, width, height, channels * width, image_format)
    return QPixmap.fromImage(image.copy())  # copy: the QImage must not outlive the array's buffer
