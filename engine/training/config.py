"""TrainConfig: every training option, validated once, serialisable to run.json and back."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from typing import Any

from engine.backbones.registry import DEFAULT_BACKBONE, get_backbone
from engine.errors import BadInputError

STRATEGIES = ("feature-extract", "fine-tune", "full")
OPTIMIZERS = ("adamw", "sgd")
CLASS_WEIGHTING = ("auto", "on", "off")
DEVICES = ("auto", "cpu", "cuda", "mps")
AUGMENT_PRESETS = ("none", "light", "standard", "strong")  # built in engine.training.batch_augment
BATCHNORM_MODES = ("frozen", "train")
# torch.compile needs triton (GPU) or a C++ compiler and inductor's headers (CPU); the full bundle has neither.
COMPILE_IN_BUNDLE = ("torch.compile (--compile, Advanced > Compile in the app) is not available in the bundled app: "
                     "it needs triton (on a GPU) or a C++ "
                     "compiler (on a CPU), which the bundle does not include; install Transfer Studio with pip to "
                     "use it")  # see engine.training.recipe.FineTunePlan.train_batchnorm


def compile_unavailable() -> str | None:
    """Why ``compile`` cannot be used here (in a PyInstaller bundle), or None where it can."""
    return COMPILE_IN_BUNDLE if getattr(sys, "frozen", False) else None


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Defaults give a good model on a few hundred photos on a 2-core CPU in minutes (see README)."""

    backbone: str = DEFAULT_BACKBONE
    strategy: str = "fine-tune"
    # Epochs after the quick head (fine-tune, full); 0 = chosen by the plan from the quick head's fit
    # (engine.training.recipe: 6 when frozen features fit the data, 12 when they do not).
    epochs: int = 0
    # Images per training step; 0 = chosen for the device (engine.training.batch_size.training_batch_size).
    batch_size: int = 0
    # Head learning rate for a batch of 16 (other batch sizes scale it by sqrt(batch / 16)); unfrozen backbone
    # stages get lr * backbone_lr_factor.
    lr: float = 1e-3
    backbone_lr_factor: float = 0.1
    unfreeze_stages: int = 0  # fine-tune: how many top stages train after the head; 0 = chosen by the plan
    optimizer: str = "adamw"
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    label_smoothing: float = 0.1
    dropout: float = 0.2
    grad_clip: float = 1.0
    # Epochs without validation improvement before stopping; 0 disables; -1 = chosen by the plan (3 or 4).
    early_stopping: int = -1
    class_weighting: str = "auto"  # auto: weight the loss when the largest class is > 3x the smallest
    augment: str = "light"
    # Augmented views of each training photo run through the frozen stages once (cached on disk) and are
    # cycled through the fine-tune epochs; 0 = chosen by the plan (2 for a shallow fine-tune, where the frozen
    # pass is most of the cost; a fresh one every epoch for a deep one, where it is a small part).
    augment_views: int = 0
    # BatchNorm statistics of the trained stages: "frozen" keeps ImageNet's (measured better on a few hundred
    # photos), "train" updates them from the batches at momentum 0.1.
    batchnorm: str = "frozen"
    compile: bool = False  # torch.compile the trainable stages: its first call costs a minute or more on a CPU
    val_split: float = 0.2
    test_split: float = 0.0
    seed: int = 0
    device: str = "auto"
    weights_file: str | None = None
    # A run folder whose recorded split this run trains, validates and tests on (instead of splitting anew): runs
    # that share one can be compared and ensembled, and a distilled student never trains on its teacher's
    # validation or test photos. "" = split this data with val_split, test_split and seed.
    split_from: str = ""
    # Knowledge distillation (engine.training.distillation): teacher run folders (absolute paths; an ensemble
    # run counts as one teacher) whose temperature-softened probabilities the fine-tune epochs also learn from.
    teachers: tuple[str, ...] = ()
    # Loss = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * cross-entropy (Hinton et al. 2015). Equal
    # weights: the labels here are right, the teacher adds which classes look alike. T = 4: Hinton found
    # intermediate temperatures best for a student smaller than its teacher, and a teacher that fits its training
    # photos gives them near one-hot probabilities at T = 1, which teach nothing the labels do not.
    distill_alpha: float = 0.5
    distill_temperature: float = 4.0

    def __post_init__(self) -> None:
        get_backbone(self.backbone)
        checks = [
            (self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.class_weighting in CLASS_WEIGHTING, f"class_weighting must be one of {', '.join(CLASS_WEIGHTING)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.augment in AUGMENT_PRESETS, f"augment must be one of {', '.join(AUGMENT_PRESETS)}"),
            (self.batchnorm in BATCHNORM_MODES, f"batchnorm must be one of {', '.join(BATCHNORM_MODES)}"),
            (0 <= self.epochs <= 1000, "epochs must be between 1 and 1000 (0: chosen from the quick head)"),
            (0 <= self.batch_size <= 4096, "batch size must be between 1 and 4096 (0: chosen for the device)"),
            (0 <= self.augment_views <= 1000, "augment_views must be between 1 and 1000 (0: chosen by the plan)"),
            (0 < self.lr < 10, "learning rate must be positive and below 10"),
            (0 < self.backbone_lr_factor <= 1, "backbone_lr_factor must be in (0, 1]"),
            (self.unfreeze_stages >= 0, "unfreeze_stages must be at least 1 (0: chosen from the quick head)"),
            (self.weight_decay >= 0, "weight decay must be >= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs must be >= 0"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables)"),
            (self.early_stopping >= -1, "early_stopping must be >= 0 (0 disables, -1: chosen by the plan)"),
            (0 < self.val_split < 0.9, "val_split must be in (0, 0.9)"),
            (0 <= self.test_split < 0.9 and self.val_split + self.test_split < 0.9, "test_split too large"),
            (all(isinstance(t, str) and t for t in self.teachers), "teachers must be run folders"),
            (not (self.teachers and self.strategy == "feature-extract"),
             "distillation trains the fine-tune epochs on the teacher's probabilities, and feature-extract has "
             "none: use strategy fine-tune or full"),
            (0 <= self.distill_alpha <= 1, "distill_alpha (the teacher's share of the loss) must be in [0, 1]"),
            (0 < self.distill_temperature <= 20, "distill_temperature must be in (0, 20]"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInputError(message)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "teachers": list(self.teachers)}  # JSON's form, which from_dict reads back

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Refuse unknown keys and wrong types rather than half-loading an edited run.json."""
        if not isinstance(data, dict):
            raise BadInputError("training config must be a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = set(data) - set(known)
        if unknown:
            raise BadInputError(f"unknown training options: {', '.join(sorted(unknown))}")
        defaults = cls()
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = getattr(defaults, name)
            expected = type(default) if default is not None else (str, type(None))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if expected is tuple and isinstance(value, list):  # JSON has lists only
                value = tuple(value)
            if isinstance(value, bool) != (expected is bool) or not isinstance(value, expected):
                raise BadInputError(f"training option {name!r} has an invalid value {value!r}")
            values[name] = value
        return cls(**values)
