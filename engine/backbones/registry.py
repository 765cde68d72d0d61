"""The backbone registry: one entry per pretrained network, with its preprocessing and weight source.

Importing this module is cheap (no torch). torchvision entries resolve their preprocessing, parameter
count and file size from their official weights enum when asked, so nothing is hard-coded for them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from engine.preprocessing import Preprocessing

DEFAULT_BACKBONE = "efficientnet_lite0"


class UnknownBackboneError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class BackboneSpec:
    """What a front end needs to list a backbone, and what the builder needs to make it."""

    name: str
    family: str
    feature_dim: int
    source: str  # "bundled" (ships in a Python package) | "torchvision" (downloaded on first use)
    torchvision_weights: str = ""  # e.g. "ResNet18_Weights.IMAGENET1K_V1"

    def preprocessing(self) -> Preprocessing:
        return _resolve(self)[0]

    def parameters(self) -> int:
        return _resolve(self)[1]

    def file_size_mb(self) -> float:
        return _resolve(self)[2]

    def weights_file_name(self) -> str:
        return _resolve(self)[3]

    def weights_state(self) -> str:
        """'bundled', 'cached' or 'download'."""
        if self.source == "bundled":
            return "bundled"
        from engine.backbones.weights import cached_weights_path

        return "cached" if cached_weights_path(self.weights_file_name()).exists() else "download"


# EfficientNet-Lite0 was trained with TF-style inputs: scale to [-1, 1] (mean = std = 0.5), bicubic.
_LITE0_PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                                     interpolation="bicubic")
_LITE0_PARAMETERS = 4_652_008

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("efficientnet_lite0", "EfficientNet-Lite", 1280, "bundled"),
        BackboneSpec("resnet18", "ResNet", 512, "torchvision", "ResNet18_Weights.IMAGENET1K_V1"),
        BackboneSpec("resnet50", "ResNet", 2048, "torchvision", "ResNet50_Weights.IMAGENET1K_V2"),
        BackboneSpec("mobilenet_v3_large", "MobileNet", 1280, "torchvision",
                     "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
        BackboneSpec("efficientnet_b0", "EfficientNet", 1280, "torchvision", "EfficientNet_B0_Weights.IMAGENET1K_V1"),
        BackboneSpec("convnext_tiny", "ConvNeXt", 768, "torchvision", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"),
        BackboneSpec("vgg16_bn", "VGG", 4096, "torchvision", "VGG16_BN_Weights.IMAGENET1K_V1"),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UnknownBackboneError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}"
        ) from None


def list_backbones() -> list[BackboneSpec]:
    return list(BACKBONES.values())


@functools.cache
def _resolve(spec: BackboneSpec) -> tuple[Preprocessing, int, float, str]:
    if spec.source == "bundled":
        from engine.backbones.efficientnet_lite import bundled_weights_path

        path = bundled_weights_path()
        return _LITE0_PREPROCESSING, _LITE0_PARAMETERS, path.stat().st_size / 1e6, path.name
    weights = torchvision_weights_enum(spec)
    transforms = weights.transforms()
    preprocessing = Preprocessing(
        resize=int(transforms.resize_size[0]),
        crop=int(transforms.crop_size[0]),
        mean=tuple(float(v) for v in transforms.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in transforms.std),  # type: ignore[arg-type]
        interpolation=transforms.interpolation.value,
    )
    return preprocessing, int(weights.meta["num_params"]), float(weights.meta["_file_size"]), Path(weights.url).name


def torchvision_weights_enum(spec: BackboneSpec):  # noqa: ANN201 - a torchvision WeightsEnum member
    from torchvision.models import get_weight

    return get_weight(spec.torchvision_weights)
