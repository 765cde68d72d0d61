"""Which parameters train, and how BatchNorm behaves, for each transfer strategy."""

from __future__ import annotations

import torch
from torch import nn

from engine.backbones.build import TransferModel

# PyTorch's default. Some ports keep their framework's 0.01 (the TF EfficientNet-Lite weights, torchvision's
# MobileNetV3): with a few hundred photos those running statistics barely leave ImageNet's, and a network whose
# weights moved is then evaluated on statistics that no longer match it (brain MRI, `full`: val 0.37 vs 0.80).
TRAINED_BATCHNORM_MOMENTUM = 0.1


def apply_strategy(model: TransferModel, first_trainable: int, train_batchnorm: bool = False) -> None:
    """Freeze the stages below ``first_trainable``; the head always trains. With ``train_batchnorm`` the
    BatchNorm layers of the trained stages track the new data at TRAINED_BATCHNORM_MOMENTUM."""
    for index, stage in enumerate(model.stages):
        stage.requires_grad_(index >= first_trainable)
        if train_batchnorm and index >= first_trainable:
            for module in stage.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.momentum = TRAINED_BATCHNORM_MOMENTUM
    model.head.requires_grad_(True)


def set_train_mode(model: TransferModel, first_trainable: int, train_batchnorm: bool) -> None:
    """Train mode for trainable stages and the head; frozen stages (and, unless asked, all BatchNorm) in eval.

    Keeping BatchNorm in inference mode while fine-tuning on small datasets avoids wrecking its
    ImageNet statistics with a handful of noisy batch estimates (Keras's transfer-learning advice).
    """
    model.train()
    for index, stage in enumerate(model.stages):
        if index < first_trainable:
            stage.eval()
    if not train_batchnorm:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


def parameter_groups(model: TransferModel, first_trainable: int, lr: float, backbone_lr_factor: float) -> list[dict]:
    """Discriminative learning rates: the new head at ``lr``, unfrozen backbone stages lower."""
    backbone = [p for stage in list(model.stages)[first_trainable:] for p in stage.parameters()]
    groups = [{"params": list(model.head.parameters()), "lr": lr, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * backbone_lr_factor, "name": "backbone"})
    return groups


def build_optimizer(model: TransferModel, first_trainable: int, lr: float, optimizer: str, backbone_lr_factor: float,
                    weight_decay: float) -> torch.optim.Optimizer:
    """The fine-tune's optimizer ("adamw", or "sgd" with momentum 0.9) over ``parameter_groups``."""
    groups = parameter_groups(model, first_trainable, lr, backbone_lr_factor)
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
