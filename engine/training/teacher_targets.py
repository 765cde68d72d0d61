"""The teachers' probabilities for a distilled student's training views (Hinton et al. 2015).

Each teacher runs on the very augmented view the student trains on: the same seeded uniforms
(``batch_augment.view_key``) applied with the student's augmentation preset to the teacher's own decoded squares,
at the teacher's resolution and normalisation. Its outputs come through ``FrozenFeatures`` with every stage
frozen, so each (teacher, view) is computed once and kept in the feature cache under an identity that changes with
the teacher's best.pt; the head is one matrix product on top. (The cache so holds the pooled features rather than
the logits: a file per photo, one disk block, either way.) Logits are softened at use, so one cache serves every
temperature. An ensemble run counts as one teacher whose members' probabilities are averaged with the ensemble's
weights (each member softened by the distillation temperature, not by its own calibration temperature).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.backbones.build import TransferModel
from engine.backbones.inference import load_trained_model
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem, ScanReport
from engine.ensemble_model import recorded_members
from engine.errors import BadInputError
from engine.events import EventSink
from engine.training import run_folder as rf
from engine.training.batch_augment import BatchAugment
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup
from engine.training.feature_cache import weights_identity
from engine.training.frozen_features import FrozenFeatures

_CHUNK = 256  # photos per head pass: the features are in memory already, or stream through the stages this many


class TeacherError(BadInputError):
    """A teacher that cannot teach this student: unfinished, other classes, or trained on its held-out photos."""


def teacher_members(teacher: Path | str) -> tuple[Path, ...]:
    """The trained runs behind a teacher folder: the run itself, or an ensemble run's members."""
    info = rf.read_run(Path(teacher))
    return tuple(Path(member) for member in info.members) if info.kind == "ensemble" else (Path(teacher),)


def member_weights(teacher: Path | str) -> tuple[float, ...]:
    """Each of ``teacher_members``' weights in its teacher's mean: an ensemble's recorded weights (equal for one
    built before members were weighted), else (1.0,)."""
    info = rf.read_run(Path(teacher))
    if info.kind != "ensemble":
        return (1.0,)
    weights = [member.weight for member in recorded_members(info)]
    return tuple(1 / len(weights) for _ in weights) if None in weights else tuple(weights)


def split_source(teacher: Path | str) -> Path:
    """The run whose recorded split a student of ``teacher`` trains on: the teacher, or its ensemble's first
    member (an ensemble's members share one split)."""
    return teacher_members(teacher)[0]


@dataclass(frozen=True, slots=True)
class _Member:
    run_dir: Path
    model: TransferModel
    features: FrozenFeatures  # every stage frozen: the pooled features of an augmented view, cached per view
    share: float  # weight of its probabilities in the mean: its weight in its teacher / teachers


class TeacherTargets:
    """The teachers of one distillation, loaded on the student's device: ``probabilities(items, view, T)``."""

    def __init__(self, members: Sequence[_Member]) -> None:
        self.members = tuple(members)

    @classmethod
    def load(cls, teachers: Sequence[str], labels: Sequence[str], student_split: ScanReport, config: TrainConfig,
             setup: DeviceSetup, on_event: EventSink, control: RunControl) -> TeacherTargets:
        """Load every teacher's best model, refusing (TeacherError) one that is not completed, has other classes
        than ``labels``, or trained on a photo that ``student_split`` holds out for validation or test: the
        student's validation and test figures would then hold that photo's answer."""
        members = []
        for teacher in teachers:
            runs = teacher_members(teacher)
            for run, weight in zip(runs, member_weights(teacher), strict=True):
                control.check()
                model, info = load_trained_model(run, setup.device)
                _check_teacher(teacher, run, info, labels, student_split)
                own = TrainConfig(backbone=info.config.backbone, augment=config.augment, seed=config.seed)
                features = FrozenFeatures(model, own, weights_identity(info.config.backbone, run / rf.BEST_FILE),
                                          DecodedImageCache(info.preprocessing),
                                          BatchAugment(config.augment, info.preprocessing), setup, on_event, control)
                members.append(_Member(run, model, features, weight / len(teachers)))
        return cls(members)

    def logits(self, items: tuple[ImageItem, ...], view: int) -> list[torch.Tensor]:
        """Each teacher model's logits (float32, on the CPU, one row per item) on the student's augmented view
        ``view`` of ``items``."""
        return [self._member_logits(member, items, view) for member in self.members]

    def probabilities(self, items: tuple[ImageItem, ...], view: int, temperature: float) -> torch.Tensor:
        """The mean over teachers of softmax(logits / ``temperature``): the soft targets of view ``view``."""
        softened = [member.share * torch.softmax(logits / temperature, dim=1)
                    for member, logits in zip(self.members, self.logits(items, view), strict=True)]
        return torch.stack(softened).sum(0)

    @staticmethod
    def _member_logits(member: _Member, items: tuple[ImageItem, ...], view: int) -> torch.Tensor:
        stages = len(member.model.stages)
        # A photo left out as unreadable (streamed path) keeps logits 0: uniform, and the student skips it too.
        logits = torch.zeros(len(items), member.model.head[-1].out_features)
        phase = f"teacher {member.run_dir.name}: augmented view {view + 1}"
        for rows, features in member.features.training_inputs(items, stages, range(len(items)), _CHUNK, view,
                                                              reuse=True, phase=phase):
            with torch.inference_mode():
                logits[rows] = member.model.head(features).float().cpu()
        return logits


def _check_teacher(teacher: str | Path, run: Path, info: rf.RunInfo, labels: Sequence[str],
                   student_split: ScanReport) -> None:
    name = f"teacher {teacher}" + (f" (member {run})" if Path(teacher) != run else "")
    if info.status != "completed":
        raise TeacherError(f"{name}: its run is {info.status}, not completed; finish it first "
                           f"(transfer-studio train --out {run} --resume)")
    if list(info.labels) != list(labels):
        raise TeacherError(f"{name}: its classes ({', '.join(info.labels)}) differ from the data's "
                           f"({', '.join(labels)}); distil from a teacher trained on these classes")
    recorded = rf.read_scan_report(info)
    trained = {Path(item.path).relative_to(recorded.root) for item in recorded.split_items("train")}
    seen = [item.path for item in student_split.items
            if item.split != "train" and Path(item.path).relative_to(student_split.root) in trained]
    if seen:
        raise TeacherError(f"{name}: trained on {len(seen)} of this run's validation or test photos (for example "
                           f"{seen[0]}), so the student's figures would be optimistic; train on the teacher's split "
                           f"(--split-from {run}) or leave this teacher out")
