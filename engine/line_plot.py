"""A line chart as PNG bytes with Pillow: log x axis, a marked point, tick labels.

Written by hand because the engine has no plotting library (matplotlib would add ~40 MB to the app for one
chart, and the GUI's pyqtgraph needs Qt, which the engine must not import).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT, MARGIN = 640, 400, 56


def log_x_line_plot(xs: Sequence[float], ys: Sequence[float], *, title: str, x_label: str, y_label: str,
                    mark: float | None = None, faint: Sequence[float] | None = None,
                    y_max: float | None = None) -> bytes:
    """PNG of ``ys`` over positive ``xs`` on a log axis; ``faint`` is drawn grey underneath, ``mark`` as a line,
    and values above ``y_max`` are drawn at the top edge."""
    if len(xs) < 2 or len(xs) != len(ys) or min(xs) <= 0:
        raise ValueError("need at least two points with positive x values")
    ceiling = math.inf if y_max is None else y_max
    ys = [min(y, ceiling) for y in ys]
    faint = [min(y, ceiling) for y in faint] if faint else None
    shown = [y for y in (*ys, *(faint or ())) if math.isfinite(y)]
    low, high = min(shown), max(shown)
    high = high if high > low else low + 1.0
    x_low, x_high = math.log10(min(xs)), math.log10(max(xs))
    font = ImageFont.load_default()
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = MARGIN, MARGIN // 2 + 10, WIDTH - MARGIN // 2, HEIGHT - MARGIN

    def point(x: float, y: float) -> tuple[float, float]:
        return (left + (math.log10(x) - x_low) / (x_high - x_low) * (right - left),
                bottom - (y - low) / (high - low) * (bottom - top))

    draw.rectangle((left, top, right, bottom), outline="black")
    for decade in range(math.ceil(x_low), math.floor(x_high) + 1):
        x, _ = point(10.0**decade, low)
        draw.line((x, top, x, bottom), fill=(225, 225, 225))
        draw.text((x - 12, bottom + 6), f"1e{decade}", fill="black", font=font)
    for fraction in (0.0, 0.5, 1.0):
        value = low + fraction * (high - low)
        _, y = point(10.0**x_low, value)
        draw.text((6, y - 6), f"{value:.3g}", fill="black", font=font)
    if faint:
        draw.line([point(x, y) for x, y in zip(xs, faint, strict=True) if math.isfinite(y)], fill=(190, 190, 190))
    draw.line([point(x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y)], fill=(31, 119, 180), width=2)
    if mark is not None and min(xs) <= mark <= max(xs):
        x, _ = point(mark, low)
        draw.line((x, top, x, bottom), fill=(214, 39, 40), width=2)
        draw.text((x + 4, top + 4), f"{mark:.1e}", fill=(214, 39, 40), font=font)
    draw.text((left, 8), title, fill="black", font=font)
    draw.text(((left + right) // 2 - 40, HEIGHT - 22), x_label, fill="black", font=font)
    draw.text((6, top - 18), y_label, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
