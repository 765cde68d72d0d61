"""Build a backbone as ordered stages plus a new classification head, with its pretrained weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from torch import nn

from engine.backbones import efficientnet_lite
from engine.backbones.registry import BackboneSpec, get_backbone, torchvision_weights_enum
from engine.backbones.weights import fetch_weights, load_matching, load_state_dict_file
from engine.control import RunControl
from engine.events import EventSink, ignore_event


class TransferModel(nn.Module):
    """``stages`` (stem first, pooled embedding last) followed by ``head`` (dropout + linear).

    Strategies freeze by stage index; ``embed`` gives the feature vector the quick head is fitted on.
    """

    def __init__(self, stages: Iterable[nn.Module], feature_dim: int, num_classes: int, dropout: float = 0.2):
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(feature_dim, num_classes))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return run_stages(self, range(len(self.stages)), x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))

    def feature_map_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The last convolutional feature map (the global pool's input) and the logits, in one pass.

        Raises ValueError for a backbone without an exact class activation map (``split_at_global_pool``).
        """
        split = split_at_global_pool(self.stages[-1])
        if split is None:
            raise ValueError(NO_EXACT_CAM)
        before_pool, pool = split
        feature_map = before_pool(run_stages(self, range(len(self.stages) - 1), x))
        return feature_map, self.head(pool(feature_map))


def run_stages(model: TransferModel, stages: range, x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``stages`` in order: the frozen bottom, the trainable top, or all of them (``embed``)."""
    for index in stages:
        x = model.stages[index](x)
    return x


NO_EXACT_CAM = ("the backbone transforms the pooled features before the linear head (MobileNetV3's projection, "
                "ConvNeXt's LayerNorm, VGG's fully connected layers), so a class activation map would not be exact")
Stage = Callable[[torch.Tensor], torch.Tensor]


def split_at_global_pool(stage: nn.Module) -> tuple[Stage, Stage] | None:
    """The last stage as (everything before its global average pool, the pool and flatten), or None.

    Only where nothing but a flatten follows the pool: then the head's linear layer, applied at every position of
    the pool's input, averages to the logits minus the bias, which makes the class activation map exact. That holds
    for EfficientNet-Lite, ResNet and EfficientNet-B0, not for the backbones NO_EXACT_CAM names.
    """
    if isinstance(stage, efficientnet_lite.Head):
        return stage.feature_map, stage.pool
    if (isinstance(stage, nn.Sequential) and len(stage) >= 2 and isinstance(stage[-1], nn.Flatten)
            and isinstance(stage[-2], nn.AdaptiveAvgPool2d) and stage[-2].output_size in (1, (1, 1))):
        return nn.Sequential(*stage[:-2]), nn.Sequential(stage[-2], stage[-1])
    return None


def create_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights_file: Path | None = None,
    dropout: float = 0.2,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
) -> TransferModel:
    """The named backbone with ImageNet (or ``weights_file``) weights and a fresh ``num_classes`` head.

    A bundled backbone whose weights package is missing raises BundledWeightsNotInstalledError (naming the pip
    command) unless ``weights_file`` is given or ``pretrained`` is off.
    """
    spec = get_backbone(name)
    if spec.source == "bundled":
        stages = _lite_stages(name, pretrained, weights_file)
    else:
        stages = _torchvision_stages(spec, pretrained, weights_file, on_event, control)
    return TransferModel(stages, spec.feature_dim, num_classes, dropout)


def _lite_stages(name: str, pretrained: bool, weights_file: Path | None) -> list[nn.Module]:
    stages = efficientnet_lite.build_lite_stages(name)
    if pretrained or weights_file is not None:
        path = Path(weights_file) if weights_file is not None else efficientnet_lite.bundled_weights_path(name)
        state = load_state_dict_file(path)
        holder = nn.Module()
        holder.stages = nn.ModuleList(stages)
        mapping = efficientnet_lite.lite_key_map(stages)
        backbone_keys = set(mapping.values())
        # The file's own ImageNet classifier (_fc) is replaced by our head; anything else must match.
        extra = {k: v for k, v in state.items() if k not in backbone_keys and not k.startswith("_fc.")}
        load_matching(holder, {ours: state[theirs] for ours, theirs in mapping.items() if theirs in state} | extra,
                      str(path))
    return stages


def _torchvision_stages(spec: BackboneSpec, pretrained: bool, weights_file: Path | None,
                        on_event: EventSink, control: RunControl | None) -> list[nn.Module]:
    import torchvision.models as tvm

    network = getattr(tvm, spec.name)(weights=None)
    if weights_file is not None:
        load_matching(network, load_state_dict_file(Path(weights_file)), str(weights_file))
    elif pretrained:
        path = fetch_weights(torchvision_weights_enum(spec).url, on_event=on_event, control=control)
        load_matching(network, load_state_dict_file(path), str(path))
    return _SPLITTERS[spec.family](network)


def _split_resnet(net: nn.Module) -> list[nn.Module]:
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return [stem, net.layer1, net.layer2, net.layer3, net.layer4, nn.Sequential(net.avgpool, nn.Flatten(1))]


def _split_mobilenet(net: nn.Module) -> list[nn.Module]:
    blocks = list(net.features)
    stages: list[nn.Module] = [blocks[0]]
    group: list[nn.Module] = []
    for block in blocks[1:-1]:
        if group and _downsamples(block):
            stages.append(nn.Sequential(*group))
            group = []
        group.append(block)
    stages.append(nn.Sequential(*group))
    # Keep the pretrained 960 -> 1280 projection: the embedding is what the ImageNet classifier saw.
    stages.append(nn.Sequential(blocks[-1], net.avgpool, nn.Flatten(1), *list(net.classifier)[:-1]))
    return stages


def _split_efficientnet(net: nn.Module) -> list[nn.Module]:
    blocks = list(net.features)
    return [*blocks[:-1], nn.Sequential(blocks[-1], net.avgpool, nn.Flatten(1))]


def _split_convnext(net: nn.Module) -> list[nn.Module]:
    f = list(net.features)
    norm, flatten = net.classifier[0], net.classifier[1]
    return [f[0], f[1], nn.Sequential(f[2], f[3]), nn.Sequential(f[4], f[5]), nn.Sequential(f[6], f[7]),
            nn.Sequential(net.avgpool, norm, flatten)]


def _split_vgg(net: nn.Module) -> list[nn.Module]:
    stages: list[nn.Module] = []
    group: list[nn.Module] = []
    for layer in net.features:
        group.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            stages.append(nn.Sequential(*group))
            group = []
    stages.append(nn.Sequential(net.avgpool, nn.Flatten(1), *list(net.classifier)[:-1]))
    return stages


def _downsamples(block: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and max(m.stride) > 1 for m in block.modules())


_SPLITTERS = {
    "ResNet": _split_resnet,
    "MobileNet": _split_mobilenet,
    "EfficientNet": _split_efficientnet,
    "ConvNeXt": _split_convnext,
    "VGG": _split_vgg,
}
