"""The bundled EfficientNet-Lite0 must be exactly the pretrained ImageNet network."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from engine.backbones.build import create_model
from engine.backbones.efficientnet_lite import bundled_weights_path
from engine.backbones.registry import get_backbone
from engine.images import normalize_crop, resize_shorter_side


@pytest.fixture(scope="module")
def imagenet_lite0() -> torch.nn.Module:
    model = create_model("efficientnet_lite0", num_classes=1000).eval()
    state = torch.load(bundled_weights_path(), map_location="cpu", weights_only=True)
    with torch.no_grad():
        model.head[1].weight.copy_(state["_fc.weight"])
        model.head[1].bias.copy_(state["_fc.bias"])
    return model


def _top1(model: torch.nn.Module, photo: np.ndarray) -> int:
    prep = get_backbone("efficientnet_lite0").preprocessing()
    resized = np.asarray(resize_shorter_side(Image.fromarray(photo).convert("RGB"), prep.resize, prep.interpolation))
    with torch.no_grad():
        return int(model(torch.from_numpy(normalize_crop(resized, prep))[None]).argmax())


def test_chelsea_is_a_cat(imagenet_lite0: torch.nn.Module) -> None:
    assert 281 <= _top1(imagenet_lite0, data.chelsea()) <= 285


def test_coffee_is_espresso(imagenet_lite0: torch.nn.Module) -> None:
    assert _top1(imagenet_lite0, data.coffee()) == 967


def test_registry_parameter_count_matches_network() -> None:
    model = create_model("efficientnet_lite0", num_classes=1000, pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == get_backbone("efficientnet_lite0").parameters()


def test_stride_two_uses_tensorflow_same_padding() -> None:
    """A 224 input must reach 7x7 at the last stage, with TF's asymmetric padding (not PyTorch's)."""
    model = create_model("efficientnet_lite0", num_classes=2, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    for stage in model.stages[:-1]:
        x = stage(x)
    assert x.shape[-2:] == (7, 7)
    conv = model.stages[0]._conv_stem
    manual = torch.nn.functional.conv2d(
        torch.nn.functional.pad(torch.ones(1, 3, 4, 4), [0, 1, 0, 1]), conv.weight, stride=2
    )
    assert torch.allclose(conv(torch.ones(1, 3, 4, 4)), manual)
