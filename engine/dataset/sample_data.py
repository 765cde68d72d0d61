"""The built-in sample dataset: procedurally drawn, photo-like images a new user can train on at once.

Classes differ only by shape or texture. Colour, scale, position, rotation, background, clutter,
lighting, blur and noise are drawn at random for every image in every class, so no single cheap cue
(mean colour, brightness, position) gives the label away, while a pretrained CNN still separates
the classes well. Only numpy and Pillow are used, so generating needs no torch.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from engine.atomic import write_bytes_atomic
from engine.control import RunControl
from engine.errors import BadInputError
from engine.events import EventSink, Progress, ignore_event

SAMPLE_CLASSES: tuple[str, ...] = (
    "circles",
    "squares",
    "triangles",
    "stars",
    "stripes",
    "checkers",
    "rings",
    "crosses",
)

_SUPERSAMPLE = 4  # outlines are drawn this many times larger and downsampled, for anti-aliased edges
_JPEG_QUALITY = 90
_MIN_IMAGE_SIZE = 32
_MIN_CONTRAST = 90.0  # RGB distance between an object and the background behind it, so it stays visible

Rng = np.random.Generator
Point = tuple[float, float]
# Draws an outline (255 on 0) and returns how to paint it: "solid", "stripes" or "checkers".
ObjectDrawer = Callable[[ImageDraw.ImageDraw, Rng, Point, float, float], str]


def generate_sample_dataset(
    out_dir: Path,
    *,
    classes: int = 4,
    per_class: int = 40,
    seed: int = 0,
    image_size: int = 160,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
) -> Path:
    """Write ``out_dir/<class>/<class>_NNN.jpg`` for the first ``classes`` sample classes; return ``out_dir``.

    The output is byte-identical for a given seed. Each image has its own random stream keyed by
    (seed, class, index), so the first classes look the same whatever ``classes`` and ``per_class`` are.
    ``out_dir`` must be missing or empty, so that images of an earlier run never mix into the new one.
    """
    if not 2 <= classes <= len(SAMPLE_CLASSES):
        raise BadInputError(f"classes must be between 2 and {len(SAMPLE_CLASSES)}, got {classes}")
    if per_class < 2:
        raise BadInputError(f"per_class must be at least 2 (one to train on, one to validate), got {per_class}")
    if image_size < _MIN_IMAGE_SIZE:
        raise BadInputError(f"image_size must be at least {_MIN_IMAGE_SIZE} pixels, got {image_size}")
    if seed < 0:
        raise BadInputError(f"seed must be zero or positive, got {seed}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} is not an empty folder; choose a new or empty folder for sample data"
        )

    total = classes * per_class
    digits = max(3, len(str(per_class - 1)))
    on_event(Progress(phase="sample-data", done=0, total=total))
    for class_index, name in enumerate(SAMPLE_CLASSES[:classes]):
        for index in range(per_class):
            if control is not None:
                control.check()
            rng = np.random.default_rng([seed, class_index, index])
            image = render_sample_image(name, rng, image_size)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
            write_bytes_atomic(out_dir / name / f"{name}_{index:0{digits}d}.jpg", buffer.getvalue())
            done = class_index * per_class + index + 1
            on_event(Progress(phase="sample-data", done=done, total=total, message=name))
    return out_dir


def render_sample_image(name: str, rng: Rng, size: int) -> Image.Image:
    """Draw one ``size`` x ``size`` RGB image of class ``name`` from the random stream ``rng``."""
    draw_object = _OBJECT_DRAWERS[name]
    canvas = _background(rng, size)
    _draw_clutter(canvas, rng, count=int(rng.integers(4, 12)))
    instances = int(rng.choice([1, 2, 3], p=[0.65, 0.25, 0.10]))
    for _ in range(instances):
        low, high = (0.15, 0.35) if instances == 1 else (0.11, 0.2)
        radius = size * rng.uniform(low, high)
        centre = tuple(rng.uniform(0.6 * radius, size - 0.6 * radius, 2))
        mask = _object_mask(draw_object, rng, centre, radius, size)
        alpha = np.asarray(mask.image, dtype=np.float32)[..., None] / 255.0
        behind = _mean_colour(canvas, alpha)
        if rng.random() < 0.5:
            _drop_shadow(canvas, mask.image, rng, radius)
        colour = _contrasting_colour(rng, behind)
        fill = _fill(mask.texture, [colour, _contrasting_colour(rng, colour)], rng, size, radius)
        canvas[:] = canvas * (1.0 - alpha) + fill * alpha
    _draw_clutter(canvas, rng, count=int(rng.integers(0, 3)), lines_only=True)
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.3) * size / 160))
    pixels = np.asarray(image, dtype=np.float32) * _lighting(rng, size)[..., None]
    pixels += rng.normal(0.0, rng.uniform(2.0, 10.0), pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))


@dataclass(frozen=True, slots=True)
class _Mask:
    image: Image.Image  # "L", 255 inside the object
    texture: str  # "solid", "stripes" or "checkers"


def _object_mask(draw_object: ObjectDrawer, rng: Rng, centre: Point, radius: float, size: int) -> _Mask:
    """Draw the object's outline at a higher resolution and downsample it, for anti-aliased edges."""
    scale = _SUPERSAMPLE
    big = Image.new("L", (size * scale, size * scale), 0)
    angle = float(rng.uniform(0, 2 * math.pi))
    texture = draw_object(
        ImageDraw.Draw(big), rng, (centre[0] * scale, centre[1] * scale), radius * scale, angle
    )
    return _Mask(big.reduce(scale), texture)


def _ramp(rng: Rng, size: int) -> np.ndarray:
    """A linear ramp from 0 to 1 across the image at a random angle, shape (size, size)."""
    angle = rng.uniform(0, 2 * math.pi)
    axis = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    projection = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None]
    return (projection - projection.min()) / (projection.max() - projection.min())


def _lighting(rng: Rng, size: int) -> np.ndarray:
    """A per-pixel gain: uneven light falling across the scene, sometimes with a vignette."""
    low, high = sorted(rng.uniform(0.6, 1.25, 2))
    gain = low + (high - low) * _ramp(rng, size)
    if rng.random() < 0.4:
        axis = np.linspace(-1, 1, size, dtype=np.float32)
        gain *= 1.0 - rng.uniform(0.1, 0.35) * (axis[None, :] ** 2 + axis[:, None] ** 2) / 2
    return gain


def _random_colour(rng: Rng) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _background(rng: Rng, size: int) -> np.ndarray:
    """A gradient between two random colours, overlaid with blotches of a few more: a vague scene."""
    ramp = _ramp(rng, size)[..., None]
    canvas = _random_colour(rng) * (1 - ramp) + _random_colour(rng) * ramp
    cells = int(rng.integers(2, 7))
    blotches = Image.fromarray(rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8))
    blotches = np.asarray(blotches.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    canvas = canvas * (1 - (weight := rng.uniform(0.0, 0.6))) + blotches * weight
    if rng.random() < 0.5:
        grain = rng.normal(0, 1, (size // 4, size // 4)).astype(np.float32)
        grain = Image.fromarray(grain).resize((size, size), Image.Resampling.BILINEAR)
        canvas = canvas + np.asarray(grain)[..., None] * rng.uniform(4, 18)
    return canvas.astype(np.float32)


def _draw_clutter(canvas: np.ndarray, rng: Rng, count: int, lines_only: bool = False) -> None:
    """Small blobs and lines in random colours: distractors that are in no class."""
    layer = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(layer)
    size = canvas.shape[0]
    for _ in range(count):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, size, 2)
        if lines_only or rng.random() < 0.5:
            length, angle = size * rng.uniform(0.08, 0.3), rng.uniform(0, math.pi)
            end = (x + length * math.cos(angle), y + length * math.sin(angle))
            draw.line([(x, y), end], fill=colour, width=max(1, round(size * rng.uniform(0.006, 0.02))))
        else:
            radius = size * rng.uniform(0.015, 0.06)
            draw.polygon(_blob(rng, (x, y), radius), fill=colour)
    canvas[:] = np.asarray(layer, dtype=np.float32)


def _blob(rng: Rng, centre: Point, radius: float) -> list[Point]:
    """An irregular polygon: the shape of clutter, deliberately unlike any class."""
    corners = int(rng.integers(5, 9))
    angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
    radii = radius * rng.uniform(0.5, 1.0, corners)
    return [
        (centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)) for a, r in zip(angles, radii, strict=True)
    ]


def _mean_colour(canvas: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.average(canvas.reshape(-1, 3), axis=0, weights=alpha.reshape(-1))


def _contrasting_colour(rng: Rng, behind: np.ndarray) -> np.ndarray:
    """A random colour far enough from ``behind`` to be seen; colour itself carries no class information."""
    colour = _random_colour(rng)
    for _ in range(20):
        if float(np.linalg.norm(colour - behind)) >= _MIN_CONTRAST:
            break
        colour = _random_colour(rng)
    return colour


def _drop_shadow(canvas: np.ndarray, mask: Image.Image, rng: Rng, radius: float) -> None:
    """Darken a blurred, shifted copy of the object's outline: objects sit on the scene, not in it."""
    offset = rng.uniform(-0.12, 0.12, 2) * radius
    shadow = mask.transform(mask.size, Image.Transform.AFFINE, (1, 0, -offset[0], 0, 1, -offset[1]))
    shadow = shadow.filter(ImageFilter.GaussianBlur(radius * 0.08))
    darkness = np.asarray(shadow, dtype=np.float32)[..., None] / 255.0 * rng.uniform(0.2, 0.5)
    canvas *= 1.0 - darkness


def _fill(texture: str, colours: list[np.ndarray], rng: Rng, size: int, radius: float) -> np.ndarray:
    """The object's paint: one shaded colour, or a two-colour pattern for the texture classes."""
    shade = 0.75 + 0.45 * _ramp(rng, size)[..., None]
    if texture == "solid":
        return colours[0] * shade
    angle = rng.uniform(0, math.pi)
    period = radius * rng.uniform(0.3, 0.5)
    axis = np.arange(size, dtype=np.float32)
    u = (math.cos(angle) * axis[None, :] + math.sin(angle) * axis[:, None]) / period
    if texture == "stripes":
        pattern = (u % 1.0) < rng.uniform(0.35, 0.65)
    else:
        v = (-math.sin(angle) * axis[None, :] + math.cos(angle) * axis[:, None]) / period
        pattern = (np.floor(u) + np.floor(v)) % 2 == 0
    pattern = pattern[..., None]
    return np.where(pattern, colours[0], colours[1]) * shade


def _rotate(points: list[Point], centre: Point, angle: float) -> list[Point]:
    cos, sin = math.cos(angle), math.sin(angle)
    return [(centre[0] + x * cos - y * sin, centre[1] + x * sin + y * cos) for x, y in points]


def _ellipse(radius_x: float, radius_y: float, corners: int = 72) -> list[Point]:
    steps = np.linspace(0, 2 * math.pi, corners, endpoint=False)
    return [(radius_x * math.cos(t), radius_y * math.sin(t)) for t in steps]


def _circle(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    draw.polygon(_rotate(_ellipse(radius, radius * rng.uniform(0.85, 1.0)), centre, angle), fill=255)
    return "solid"


def _square(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    half_x, half_y = radius * 0.8, radius * 0.8 * rng.uniform(0.85, 1.0)
    corners = [(-half_x, -half_y), (half_x, -half_y), (half_x, half_y), (-half_x, half_y)]
    draw.polygon(_rotate(corners, centre, angle), fill=255)
    return "solid"


def _triangle(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    angles = np.arange(3) * 2 * math.pi / 3 + rng.uniform(-0.2, 0.2, 3)
    radii = radius * rng.uniform(0.85, 1.0, 3)
    corners = [(r * math.cos(a), r * math.sin(a)) for a, r in zip(angles, radii, strict=True)]
    draw.polygon(_rotate(corners, centre, angle), fill=255)
    return "solid"


def _star(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    points = int(rng.integers(5, 7))
    inner = radius * rng.uniform(0.38, 0.55)
    corners = [
        (
            (radius if k % 2 == 0 else inner) * math.cos(k * math.pi / points),
            (radius if k % 2 == 0 else inner) * math.sin(k * math.pi / points),
        )
        for k in range(2 * points)
    ]
    draw.polygon(_rotate(corners, centre, angle), fill=255)
    return "solid"


def _patch(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> None:
    """The outline of a texture class: a square, a disc or a blob, so the outline does not name the class."""
    outline = rng.integers(0, 3)
    if outline == 0:
        _square(draw, rng, centre, radius * 1.1, angle)
    elif outline == 1:
        _circle(draw, rng, centre, radius, angle)
    else:
        draw.polygon(_blob(rng, centre, radius * 1.2), fill=255)


def _stripes(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    _patch(draw, rng, centre, radius, angle)
    return "stripes"


def _checkers(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    _patch(draw, rng, centre, radius, angle)
    return "checkers"


def _ring(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    aspect = rng.uniform(0.85, 1.0)
    inner = rng.uniform(0.45, 0.7)
    draw.polygon(_rotate(_ellipse(radius, radius * aspect), centre, angle), fill=255)
    draw.polygon(_rotate(_ellipse(radius * inner, radius * aspect * inner), centre, angle), fill=0)
    return "solid"


def _cross(draw: ImageDraw.ImageDraw, rng: Rng, centre: Point, radius: float, angle: float) -> str:
    arm = radius * rng.uniform(0.2, 0.32)
    length = radius * rng.uniform(0.9, 1.0)
    for corners in (
        [(-length, -arm), (length, -arm), (length, arm), (-length, arm)],
        [(-arm, -length), (arm, -length), (arm, length), (-arm, length)],
    ):
        draw.polygon(_rotate(corners, centre, angle), fill=255)
    return "solid"


_OBJECT_DRAWERS: dict[str, ObjectDrawer] = {
    "circles": _circle,
    "squares": _square,
    "triangles": _triangle,
    "stars": _star,
    "stripes": _stripes,
    "checkers": _checkers,
    "rings": _ring,
    "crosses": _cross,
}
