"""EfficientNet-Lite0, Lite1 and Lite2, written to match the TF reference exactly so the bundled ImageNet weights
load as is.

Own code rather than the 2020 ``efficientnet-lite-pytorch`` package, which prints from
``forward`` and pulls in model-zoo download code. Parameter names follow the weight file's keys. Lite
differs from EfficientNet-B0 by ReLU6, no squeeze-excitation, and a fixed stem and head; TF's "same"
padding is asymmetric for stride 2, so it is reproduced with an explicit pad. Lite1 and Lite2 are Lite0 scaled
in width and depth; their weights ship in optional packages (the ``lite`` extra).
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engine.backbones.registry import get_backbone
from engine.backbones.weights import WeightsUnavailableError

# (repeats, kernel, stride, expand ratio, out channels) for each stage of Lite0, the family's base; each stage
# takes the previous one's channels, the first the stem's.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
# Backbone name -> (width, depth) multipliers, from TF's efficientnet_lite_builder.py; the input resolution
# that goes with each is the registry's crop.
LITE_SCALING = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
STEM_CHANNELS = 32
FEATURE_DIM = 1280
_CHANNEL_DIVISOR = 8


class BundledWeightsNotInstalledError(WeightsUnavailableError):
    """A bundled backbone whose weights package is not installed; the message gives the pip command."""


class SamePadConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (extra pixel at the bottom/right when the total is odd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for size, kernel, stride in zip(
            reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride), strict=True
        ):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        if any(pads):
            x = F.pad(x, pads)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (the Lite variant)."""

    def __init__(self, kernel: int, stride: int, expand: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SamePadConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SamePadConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expand:
            out = F.relu6(self._bn0(self._expand_conv(out)))
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self._conv_stem = SamePadConv2d(3, STEM_CHANNELS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))


class Head(nn.Module):
    """1x1 conv to 1280 channels, then global average pooling: the embedding."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self._conv_head = SamePadConv2d(in_channels, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.feature_map(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last convolutional feature map (N x 1280 x h x w), which class activation maps are built on."""
        return F.relu6(self._bn1(self._conv_head(x)))

    @staticmethod
    def pool(feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map.mean(dim=(2, 3))


def round_filters(channels: int, width: float) -> int:
    """TF's channel scaling: the nearest multiple of 8, but never more than 10% below ``channels * width``."""
    scaled = channels * width
    rounded = max(_CHANNEL_DIVISOR, int(scaled + _CHANNEL_DIVISOR / 2) // _CHANNEL_DIVISOR * _CHANNEL_DIVISOR)
    return rounded + _CHANNEL_DIVISOR if rounded < 0.9 * scaled else rounded


def scaled_stages(width: float, depth: float) -> list[tuple[int, int, int, int, int]]:
    """LITE0_STAGES scaled: channels by ``width``, repeats by ``depth`` rounded up.

    Lite keeps the first and last stage's repeats (TF's ``fix_head_stem`` covers them as well as the stem and
    head), which is what the Lite1 and Lite2 weight files hold: one block each.
    """
    last = len(LITE0_STAGES) - 1
    return [(repeats if i in (0, last) else math.ceil(depth * repeats), kernel, stride, expand,
             round_filters(out_channels, width))
            for i, (repeats, kernel, stride, expand, out_channels) in enumerate(LITE0_STAGES)]


def build_lite_stages(name: str) -> list[nn.Module]:
    """Stem, the seven block stages, and the pooled head: the ordered stages transfer strategies freeze."""
    stages: list[nn.Module] = [Stem()]
    in_channels = STEM_CHANNELS
    for repeats, kernel, stride, expand, out_channels in scaled_stages(*LITE_SCALING[name]):
        blocks = [MBConvBlock(kernel, stride, expand, in_channels, out_channels)]
        blocks += [MBConvBlock(kernel, 1, expand, out_channels, out_channels) for _ in range(repeats - 1)]
        stages.append(nn.Sequential(*blocks))
        in_channels = out_channels
    stages.append(Head(in_channels))
    return stages


def lite_key_map(stages: list[nn.Module]) -> dict[str, str]:
    """Map each of our state-dict keys ("stages.S....") to the weight file's key ("_blocks.N...." etc.)."""
    mapping: dict[str, str] = {}
    block_index = 0
    for s, stage in enumerate(stages):
        for key in stage.state_dict():
            ours = f"stages.{s}.{key}"
            if isinstance(stage, nn.Sequential):
                local, _, rest = key.partition(".")
                mapping[ours] = f"_blocks.{block_index + int(local)}.{rest}"
            else:
                mapping[ours] = key
        if isinstance(stage, nn.Sequential):
            block_index += len(stage)
    return mapping


def bundled_weights_path(name: str = "efficientnet_lite0") -> Path:
    """The ImageNet weights file inside the backbone's package (``models/`` next to its ``__init__``)."""
    spec = get_backbone(name)
    try:
        package = importlib.resources.files(spec.weights_module())
    except ImportError as exc:
        raise BundledWeightsNotInstalledError(
            f"{name}: its weights package is not installed; install it with: {spec.install_command()}"
        ) from exc
    return Path(str(package.joinpath("models", spec.weights_file_name())))
