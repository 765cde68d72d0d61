"""An ensemble of trained runs as one network, and loading it (or any run's model) from a run folder.

The ensemble's logits are the log of the weighted mean of its members' calibrated probabilities::

    logits = log(sum_m w_m softmax(member_m(adapt_m(image)) / T_m))

with ``T_m`` the temperature member ``m``'s evaluation.json held when the ensemble was built (1 without one), so an
over-confident member does not outvote the others, and ``w_m`` its weight (``engine.ensemble_weights``: fitted on
validation, or equal). ``softmax(logits)`` is that mean itself; the ensemble's own temperature, fitted on validation
like any run's, scales it on top (in the evaluation and in the exported graph).

Members may expect different inputs (EfficientNet-Lite2: 260 px, mean = std = 0.5; a torchvision ResNet: 224 px,
ImageNet's mean and std). The ensemble takes the input of its member with the largest crop, and every member whose
preprocessing differs gets an adapter inside the graph (``MemberInput``): the centre of the image cut to the
member's own field of view (crop / resize of the shorter side) where that is narrower, an antialiased bilinear
resize to the member's crop, and the member's normalisation in place of the ensemble's. That approximates the
member's own resize and centre crop of the photo (a second resampling of an already resampled image, bilinear
where the member may use bicubic, and a member with a wider field of view than the ensemble's sees only the
ensemble's); it does not reproduce it. The evaluation runs this very module, so the ensemble's figures are those
of the exported graph, adapters included.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from engine.backbones.build import TransferModel
from engine.backbones.inference import load_trained_model
from engine.images import center_crop_origin
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf

ENSEMBLE_KIND = "ensemble"
NO_ENSEMBLE_CAM = ("an ensemble averages several networks' probabilities, so no one feature map and linear head "
                   "give its class activation map")
COMBINATION = ("log of the weighted mean of the members' probabilities, each softmax(member logits / member "
               "temperature)")


@dataclass(frozen=True, slots=True)
class EnsembleMember:
    """One member as the ensemble's run.json records it (``"ensemble": {"members": [...]}``): what it is, the
    temperature its probabilities are scaled by, the fingerprint of the weights the ensemble was evaluated with,
    its own accuracies (from its evaluation.json: the member alone, with its own preprocessing) and its weight in
    the mean (None in ensembles built before members were weighted: an equal share)."""

    run: str  # absolute path
    backbone: str
    temperature: float
    weights_sha256: str
    validation_accuracy: float
    test_accuracy: float | None
    weight: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EnsembleMember:
        """Refuses (TypeError, ValueError) an entry with a missing or unknown field or a value of the wrong type."""
        member = cls(**data)
        texts = all(isinstance(text, str) for text in (member.run, member.backbone, member.weights_sha256))
        numbers = all(_is_number(n) for n in (member.temperature, member.validation_accuracy)) and (
            member.test_accuracy is None or _is_number(member.test_accuracy)) and (
            member.weight is None or (_is_number(member.weight) and 0 <= member.weight <= 1))
        if not (texts and numbers and member.temperature > 0):
            raise ValueError(f"invalid ensemble member {data!r}")
        return member


class MemberInput(nn.Module):
    """The ensemble's input (normalised per ``source``) turned into what a member expects (``target``): its field
    of view, its crop size, its normalisation. The identity when the two agree on all three."""

    def __init__(self, source: Preprocessing, target: Preprocessing) -> None:
        super().__init__()
        source_view, target_view = source.crop / source.resize, target.crop / target.resize
        self.window = round(source.crop * target_view / source_view) if target_view < source_view else source.crop
        self.top = center_crop_origin(source.crop, source.crop, self.window)[0]
        self.size = target.crop
        # Resizing keeps constants (its weights sum to 1), so the normalisation can be swapped after it, in one
        # multiply-add: (x * std_s + mean_s - mean_t) / std_t.
        source_std, target_std = torch.tensor(source.std), torch.tensor(target.std)
        self.register_buffer("scale", (source_std / target_std).view(1, 3, 1, 1))
        self.register_buffer("shift", ((torch.tensor(source.mean) - torch.tensor(target.mean)) / target_std)
                             .view(1, 3, 1, 1))
        self.renormalises = not (torch.all(self.scale == 1) and torch.all(self.shift == 0))
        self.is_identity = self.window == source.crop == self.size and not self.renormalises

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.is_identity:
            return image
        x = image
        if self.window != image.shape[-1]:
            x = x[:, :, self.top:self.top + self.window, self.top:self.top + self.window]
        if self.size != self.window:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        return x * self.scale + self.shift if self.renormalises else x


class EnsembleModel(nn.Module):
    """Images (the ensemble's preprocessing) to logits, the log weighted mean of the members' calibrated
    probabilities (``weights`` None: equal)."""

    def __init__(self, members: Sequence[nn.Module], inputs: Sequence[MemberInput],
                 temperatures: Sequence[float], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        weights = [1 / len(members)] * len(members) if weights is None else list(weights)
        if not len(members) == len(inputs) == len(temperatures) == len(weights) >= 2:
            raise ValueError("an ensemble needs at least two members, each with its input adapter, temperature and "
                             "weight")
        if min(weights) < 0 or abs(sum(weights) - 1) > 1e-6:
            raise ValueError(f"ensemble weights must be non-negative and sum to 1, not {weights}")
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(inputs)
        self.temperatures = tuple(float(t) for t in temperatures)
        self.weights = tuple(float(w) for w in weights)

    def member_logits(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Each member's own logits on its adapted input (before its temperature)."""
        return [member(adapt(image)) for member, adapt in zip(self.members, self.inputs, strict=True)]

    def member_log_probabilities(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Each member's calibrated log-probabilities: log_softmax(its logits / its temperature)."""
        return [torch.log_softmax(logits / temperature, dim=1) for logits, temperature
                in zip(self.member_logits(image), self.temperatures, strict=True)]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        log_probabilities = self.member_log_probabilities(image)
        # log(sum w p) = top + log(sum w exp(log p - top)), with top the members' largest log p: no probability is
        # rounded to 0 before its logarithm is taken. Element-wise across the members rather than a reduction over
        # a stacked axis, whose shape onnxruntime's int8 tooling cannot infer.
        top = functools.reduce(torch.maximum, log_probabilities)
        total = functools.reduce(torch.add, [weight * torch.exp(value - top) for weight, value
                                             in zip(self.weights, log_probabilities, strict=True)])
        return top + torch.log(total)


def ensemble_preprocessing(members: Sequence[Preprocessing]) -> Preprocessing:
    """The ensemble's input: its member's with the largest crop (the widest field of view among equal crops, then
    the first), so no member is given fewer pixels than its own input has."""
    return max(members, key=lambda p: (p.crop, p.crop / p.resize))


def weights_sha256(run_dir: Path | str) -> str:
    """The fingerprint of a run's best.pt: an ensemble refuses a member whose weights changed since it was built."""
    digest = hashlib.sha256()
    with open(Path(run_dir) / rf.BEST_FILE, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def recorded_members(info: rf.RunInfo) -> tuple[EnsembleMember, ...]:
    """The members an ensemble's run.json describes, in order; RunFolderError for a damaged or edited entry."""
    try:
        entries = info.raw["ensemble"]["members"]
        if not isinstance(entries, list):
            raise ValueError("ensemble.members must be a list")
        members = tuple(EnsembleMember.from_dict(entry) for entry in entries)
        if tuple(member.run for member in members) != info.members:
            raise ValueError("ensemble.members does not describe the runs 'members' lists")
    except (KeyError, TypeError, ValueError) as exc:
        raise rf.RunFolderError(f"{info.path / rf.RUN_FILE}: damaged or edited ensemble, refused ({exc})") from exc
    return members


def load_ensemble(run_dir: Path | str, device: str = "cpu") -> tuple[EnsembleModel, rf.RunInfo]:
    """An ensemble run's model in eval mode on ``device``: its members' best weights, as recorded when it was built
    (a member whose weights or classes changed since is refused: the ensemble's evaluation no longer holds)."""
    info = rf.read_run(Path(run_dir))
    if info.kind != ENSEMBLE_KIND:
        raise rf.RunFolderError(f"{run_dir}: not an ensemble run; load it with "
                                "engine.backbones.inference.load_trained_model")
    members = recorded_members(info)
    models, inputs = [], []
    for member in members:
        if not (Path(member.run) / rf.BEST_FILE).is_file():
            raise rf.RunFolderError(f"{run_dir}: its member {member.run} is gone or has no {rf.BEST_FILE}; put it "
                                    "back, or build the ensemble again from runs that exist")
        if weights_sha256(member.run) != member.weights_sha256:
            raise rf.RunFolderError(f"{run_dir}: the weights of its member {member.run} changed since the ensemble "
                                    "was built; build the ensemble again ('transfer-studio ensemble')")
        model, member_info = load_trained_model(member.run, device)
        if member_info.labels != info.labels:
            raise rf.RunFolderError(f"{run_dir}: its member {member.run} now has the classes "
                                    f"{', '.join(member_info.labels)}, not {', '.join(info.labels)}; build the "
                                    "ensemble again")
        models.append(model)
        inputs.append(MemberInput(info.preprocessing, member_info.preprocessing))
    temperatures = [member.temperature for member in members]
    weights = None if any(member.weight is None for member in members) else [member.weight for member in members]
    return EnsembleModel(models, inputs, temperatures, weights).to(device).eval(), info


def load_run_model(run_dir: Path | str, device: str = "cpu") -> tuple[TransferModel | EnsembleModel, rf.RunInfo]:
    """Any finished run's model, images to logits: a single run's best weights or an ensemble of runs."""
    if rf.read_run(Path(run_dir)).kind == ENSEMBLE_KIND:
        return load_ensemble(run_dir, device)
    return load_trained_model(run_dir, device)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
