"""Build an ensemble run from finished runs of one dataset: the members checked, run.json, the shared split, the
evaluation.

Members must be completed runs with the same classes in the same order and the same recorded validation and test
photos. The ensemble is evaluated on that split, so a member that had trained on another's validation photos would
flatter it; ``transfer-studio train --split-from RUN`` trains a run on another run's split.

The ensemble's run folder holds no network weights: run.json (kind "ensemble", the members' absolute paths and, for
each, its temperature, its weight in the mean, the fingerprint of its weights and its own accuracies), a copy of the
shared scan_report.json, and evaluation.json written by ``evaluate_run`` as for any run (the ensemble's own
temperature fitted on validation). The members' weights are fitted on the validation photos by default
(``engine.ensemble_weights``), so the validation figures of a weighted ensemble are slightly optimistic: its test
figures are the honest ones.
``engine.ensemble_model`` loads it (``load_ensemble`` is importable from here too); ``engine.export.export_onnx``
exports it as one graph that the predictor reads like any other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.atomic import write_json_atomic
from engine.control import Cancelled, RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ScanReport
from engine.ensemble_model import (
    COMBINATION,
    ENSEMBLE_KIND,
    EnsembleMember,
    EnsembleModel,
    ensemble_preprocessing,
    load_ensemble,
    weights_sha256,
)
from engine.ensemble_weights import fit_mixture_weights, mixture_accuracy
from engine.errors import BadInputError
from engine.evaluation.metrics import read_evaluation_document
from engine.events import EventSink, Info, Progress, ignore_event
from engine.time_format import utc_now_iso
from engine.training import run_folder as rf
from engine.training.device import resolve_device
from engine.training.evaluate_run import evaluate_run, predict_logits, recorded_split

__all__ = ["WEIGHTINGS", "EnsembleError", "EnsembleResult", "build_ensemble", "load_ensemble"]

_PHASE = "ensembling"
_HELD_OUT = {"val": "validation", "test": "test"}
WEIGHTINGS = ("validation", "equal")  # the members' weights: fitted on the validation photos, or all the same


class EnsembleError(BadInputError):
    """Runs that cannot make an ensemble; the message names the run, what differs and what to do."""


@dataclass(frozen=True, slots=True)
class EnsembleResult:
    run_dir: str
    members: tuple[EnsembleMember, ...]
    evaluation: dict[str, Any]  # the ensemble's evaluation.json
    seconds: float


def build_ensemble(members: Sequence[Path | str], out: Path | str, *, weighting: str = "validation",
                   device: str = "cpu", on_event: EventSink = ignore_event,
                   control: RunControl | None = None) -> EnsembleResult:
    """Make ``out`` an ensemble run of the ``members`` run folders (weighted as ``weighting`` says, one of
    WEIGHTINGS) and evaluate it on their shared split.

    Raises EnsembleError (nothing written) when the members cannot be ensembled; a stop or failure during the
    evaluation leaves run.json with status "cancelled" or "failed".
    """
    started = time.perf_counter()
    control = control or RunControl()
    out = Path(out)
    if (out / rf.RUN_FILE).exists() or (out.exists() and not out.is_dir()):
        raise EnsembleError(f"{out}: already holds a run (or is a file); choose another folder for the ensemble")
    runs = [Path(member).resolve() for member in members]
    if weighting not in WEIGHTINGS:
        raise EnsembleError(f"unknown weighting {weighting!r}; choose one of {', '.join(WEIGHTINGS)}")
    if len(runs) < 2:
        raise EnsembleError("an ensemble needs at least two runs: give two or more run folders")
    if duplicate := next((run for index, run in enumerate(runs) if run in runs[:index]), None):
        raise EnsembleError(f"{duplicate}: listed twice; an ensemble of a run with itself is that run")
    setup = resolve_device(device)  # an unavailable device is refused before anything is written
    infos, recorded = [], []
    for index, run in enumerate(runs):
        control.check()
        on_event(Progress(_PHASE, index, len(runs) + 1, f"checking {run.name}"))
        info = _finished_run(run)
        if infos:
            _check_same_task(info, infos[0])
        infos.append(info)
        recorded.append(_member_record(info))
    first = infos[0]
    report = rf.read_scan_report(first)
    recorded = [replace(member, weight=1 / len(recorded)) for member in recorded]
    control.check()

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / rf.SCAN_REPORT_FILE, report.to_dict())
    rf.write_run_file(out, {
        "kind": ENSEMBLE_KIND, "members": [str(info.path) for info in infos], "status": "running",
        "created": utc_now_iso(), "data_dir": first.data_dir, "labels": list(first.labels),
        "preprocessing": ensemble_preprocessing([info.preprocessing for info in infos]).to_dict(),
        "backbone": f"ensemble of {' + '.join(info.backbone for info in infos)}",
        "config": first.config.to_dict(), **({"dataset": first.raw["dataset"]} if "dataset" in first.raw else {}),
        "versions": rf.versions(), "device": setup.description,
        "ensemble": _ensemble_record(weighting, recorded),
    })
    try:
        if weighting == "validation":
            on_event(Progress(_PHASE, len(runs), len(runs) + 1, "weighting the members on validation"))
            recorded = _fit_weights(out, recorded, setup.device, on_event, control)
            rf.update_run_file(out, ensemble=_ensemble_record(weighting, recorded))
        on_event(Progress(_PHASE, len(runs), len(runs) + 1, "evaluating the ensemble"))
        evaluation = evaluate_run(out, device=setup.device, on_event=on_event, control=control)
    except Cancelled:
        rf.update_run_file(out, status="cancelled")
        raise
    except Exception as exc:
        rf.update_run_file(out, status="failed", error=str(exc))
        raise
    rf.update_run_file(out, status="completed", finished=utc_now_iso(),
                       best_val_accuracy=evaluation["validation"]["accuracy"])
    on_event(Progress(_PHASE, len(runs) + 1, len(runs) + 1, "done"))
    return EnsembleResult(str(out), tuple(recorded), evaluation, time.perf_counter() - started)


def _ensemble_record(weighting: str, members: Sequence[EnsembleMember]) -> dict[str, Any]:
    return {"combination": COMBINATION, "weighting": weighting, "members": [member.to_dict() for member in members]}


class _MemberLogProbabilities(nn.Module):
    """An ensemble's members' calibrated log-probabilities side by side (N x members*classes): what the weights
    are fitted on, through the very adapters and temperatures the ensemble uses."""

    def __init__(self, ensemble: EnsembleModel) -> None:
        super().__init__()
        self.ensemble = ensemble

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.ensemble.member_log_probabilities(image), dim=1)


def _fit_weights(out: Path, members: Sequence[EnsembleMember], device: str, on_event: EventSink,
                 control: RunControl) -> list[EnsembleMember]:
    """``members`` with the weights that make the shared validation photos most likely under the ensemble."""
    model, info = load_ensemble(out, device)
    cache = DecodedImageCache(info.preprocessing)
    items = recorded_split(info, cache, on_event=on_event, control=control).split_items("val")
    labels = [item.label for item in items]
    stacked = predict_logits(_MemberLogProbabilities(model), items, cache, device, on_event=on_event,
                             control=control)
    per_member = np.split(stacked, len(members), axis=1)
    weights = fit_mixture_weights(per_member, labels)
    equal = [1 / len(members)] * len(members)
    shares = ", ".join(f"{Path(member.run).name} {weight:.2f}" for member, weight in zip(members, weights,
                                                                                         strict=True))
    on_event(Info(f"members weighted by ensemble selection on {len(items)} validation photos: {shares} "
                  f"(validation accuracy {mixture_accuracy(per_member, labels, equal):.1%} with equal weights, "
                  f"{mixture_accuracy(per_member, labels, weights):.1%} weighted)"
                  if items else "no validation photos to weight the members on: equal weights"))
    return [replace(member, weight=float(weight)) for member, weight in zip(members, weights, strict=True)]


def _finished_run(run: Path) -> rf.RunInfo:
    """The member's run.json, refused unless it is a completed single run with its weights."""
    info = rf.read_run(run)
    if info.kind == ENSEMBLE_KIND:
        raise EnsembleError(f"{run}: is itself an ensemble; list its members instead ({', '.join(info.members)})")
    if info.status != "completed" or not (run / rf.BEST_FILE).is_file():
        raise EnsembleError(f"{run}: not a finished run (status {info.status}"
                            f"{'' if (run / rf.BEST_FILE).is_file() else f', no {rf.BEST_FILE}'}); finish it "
                            f"(transfer-studio train --out {run} --resume) or leave it out")
    return info


def _check_same_task(info: rf.RunInfo, first: rf.RunInfo) -> None:
    """Refuse a member with other classes, or another validation or test split, than the first member."""
    if info.labels != first.labels:
        raise EnsembleError(f"{info.path}: its classes ({', '.join(info.labels)}) differ from those of {first.path} "
                            f"({', '.join(first.labels)}); the members of an ensemble must have the same classes, in "
                            "the same order")
    mine, theirs = _held_out(rf.read_scan_report(info)), _held_out(rf.read_scan_report(first))
    for split, name in _HELD_OUT.items():
        if differing := sorted(mine[split] ^ theirs[split]):
            raise EnsembleError(
                f"{info.path}: its {name} photos differ from those of {first.path} ({len(differing)} photo(s) in one "
                f"and not the other, for example {differing[0][0]}); an ensemble is evaluated on the one split all "
                f"its members held out: train this member on that split with 'transfer-studio train DATA --out RUN "
                f"--split-from {first.path}'")


def _held_out(report: ScanReport) -> dict[str, set[tuple[str, str]]]:
    """The validation and test photos (path below the dataset folder, class) of a recorded split: runs of the same
    folder match even when it was moved between them."""
    return {split: {(Path(item.path).relative_to(report.root).as_posix(), report.classes[item.label])
                    for item in report.split_items(split)} for split in _HELD_OUT}


def _member_record(info: rf.RunInfo) -> EnsembleMember:
    """What the ensemble keeps of a member: its temperature and own accuracies (its evaluation.json), its weights'
    fingerprint."""
    evaluation_file = info.path / rf.EVALUATION_FILE
    try:
        evaluation = read_evaluation_document(evaluation_file, info.labels)
    except (OSError, ValueError) as exc:
        raise EnsembleError(f"{evaluation_file}: missing or damaged ({exc}); evaluate the run again "
                            f"(transfer-studio evaluate {info.path})") from exc
    calibration = evaluation.get("calibration")  # absent in runs evaluated before calibration existed
    return EnsembleMember(
        run=str(info.path), backbone=info.backbone, temperature=calibration["temperature"] if calibration else 1.0,
        weights_sha256=weights_sha256(info.path), validation_accuracy=evaluation["validation"]["accuracy"],
        test_accuracy=evaluation["test"]["accuracy"] if "test" in evaluation else None)
