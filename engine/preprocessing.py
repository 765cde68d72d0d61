"""The preprocessing a backbone expects, as plain data (no torch), so the predictor can reproduce it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """Resize the shorter side to ``resize``, centre-crop ``crop`` x ``crop``, scale to [0, 1], normalise."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bilinear"  # "bilinear" | "bicubic" | "nearest"
    channel_order: str = "RGB"
    layout: str = "NCHW"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        try:
            return cls(
                resize=int(data["resize"]),
                crop=int(data["crop"]),
                mean=tuple(float(v) for v in data["mean"]),  # type: ignore[arg-type]
                std=tuple(float(v) for v in data["std"]),  # type: ignore[arg-type]
                interpolation=str(data.get("interpolation", "bilinear")),
                channel_order=str(data.get("channel_order", "RGB")),
                layout=str(data.get("layout", "NCHW")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid preprocessing description {data!r}: {exc}") from exc
