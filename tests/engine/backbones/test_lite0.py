"""The bundled EfficientNet-Lite0, Lite1 and Lite2 must be exactly the pretrained ImageNet networks."""

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from engine.backbones.build import create_model
from engine.backbones.efficientnet_lite import LITE_SCALING, build_lite_stages, bundled_weights_path, lite_key_map
from engine.backbones.registry import get_backbone
from engine.images import normalize_crop, resize_shorter_side

LITE = list(LITE_SCALING)


@pytest.fixture(scope="module", params=LITE)
def imagenet_lite(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    model = create_model(request.param, num_classes=1000).eval()
    state = torch.load(bundled_weights_path(request.param), map_location="cpu", weights_only=True)
    with torch.no_grad():
        model.head[1].weight.copy_(state["_fc.weight"])
        model.head[1].bias.copy_(state["_fc.bias"])
    return request.param, model


def _top1(imagenet_lite: tuple[str, torch.nn.Module], photo: np.ndarray) -> int:
    name, model = imagenet_lite
    prep = get_backbone(name).preprocessing()
    resized = np.asarray(resize_shorter_side(Image.fromarray(photo).convert("RGB"), prep.resize, prep.interpolation))
    with torch.no_grad():
        return int(model(torch.from_numpy(normalize_crop(resized, prep))[None]).argmax())


def test_chelsea_is_a_cat(imagenet_lite: tuple[str, torch.nn.Module]) -> None:
    assert 281 <= _top1(imagenet_lite, data.chelsea()) <= 285


def test_coffee_is_espresso(imagenet_lite: tuple[str, torch.nn.Module]) -> None:
    assert _top1(imagenet_lite, data.coffee()) == 967


@pytest.mark.parametrize("name", LITE)
def test_every_key_of_the_weight_file_is_matched(name: str) -> None:
    """Only the file's own ImageNet classifier (_fc) is left over, and every shape agrees."""
    stages = build_lite_stages(name)
    ours = {f"stages.{s}.{key}": value for s, stage in enumerate(stages) for key, value in stage.state_dict().items()}
    state = torch.load(bundled_weights_path(name), map_location="cpu", weights_only=True)
    mapping = lite_key_map(stages)
    assert set(mapping.values()) == set(state) - {"_fc.weight", "_fc.bias"}
    assert all(ours[key].shape == state[theirs].shape for key, theirs in mapping.items())


@pytest.mark.parametrize("name", LITE)
def test_registry_describes_the_packaged_file(name: str) -> None:
    spec = get_backbone(name)
    path = bundled_weights_path(name)
    model_file = getattr(importlib.import_module(spec.weights_module()), f"EfficientnetLite{name[-1]}ModelFile")
    assert path == Path(model_file.get_model_file_path())  # the package's own way to find it
    assert (path.name, path.stat().st_size / 1e6) == (spec.weights_file_name(), spec.file_size_mb())
    assert spec.weights_state() == "bundled"


@pytest.mark.parametrize("name", LITE)
def test_registry_parameter_count_matches_network(name: str) -> None:
    model = create_model(name, num_classes=1000, pretrained=False)
    assert sum(p.numel() for p in model.parameters()) == get_backbone(name).parameters()


@pytest.mark.parametrize(("name", "crop", "resize"), [("efficientnet_lite0", 224, 256),
                                                      ("efficientnet_lite1", 240, 272),
                                                      ("efficientnet_lite2", 260, 292)])
def test_preprocessing_is_tf_reference(name: str, crop: int, resize: int) -> None:
    prep = get_backbone(name).preprocessing()
    assert (prep.crop, prep.resize, prep.interpolation, prep.mean, prep.std) == (
        crop, resize, "bicubic", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


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
