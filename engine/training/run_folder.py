"""The run folder: run.json, metrics.jsonl, checkpoints, evaluation.json, scan_report.json.

Every file is written atomically, so a killed process leaves either the old or the new version.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from engine.atomic import append_line_atomic, write_bytes_atomic, write_json_atomic
from engine.dataset.report import SPLITS, ScanReport
from engine.errors import BadInputError
from engine.preprocessing import Preprocessing
from engine.run_files import EVALUATION_FILE as EVALUATION_FILE
from engine.run_files import METRICS_FILE as METRICS_FILE
from engine.run_files import MODEL_FILE as MODEL_FILE
from engine.run_files import RUN_FILE as RUN_FILE
from engine.training.config import TrainConfig
from engine.training.recipe import FineTunePlan

BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
SCAN_REPORT_FILE = "scan_report.json"
STOP_FILE = "stop"  # request_stop writes it; train() stops at the next batch when it appears, and removes it on start
RUN_FORMAT = 1
RUN_STATUSES = ("running", "completed", "cancelled", "failed")
# "ensemble": built by engine.ensemble from other runs (no weights of its own; run.json lists its members).
RUN_KINDS = ("single", "ensemble")


class RunFolderError(BadInputError):
    """A run folder that is missing, incomplete, or edited into something we will not half-load."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What run.json holds, validated: the one way resume, evaluation and export read a run.

    Fields the run writes as it goes are None until then: ``plan`` after the quick head, the best epoch and
    accuracy once the run first ended, ``error`` when it failed; ``dataset_counts`` in runs started without it.
    """

    path: Path
    status: str
    config: TrainConfig
    backbone: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    data_dir: str
    created: str | None
    device: str | None  # the compute device the run started on, described
    versions: dict[str, str]
    dataset_counts: dict[str, dict[str, int]] | None  # images per split and label when the run started
    plan: FineTunePlan | None
    best_epoch: int | None
    best_val_accuracy: float | None
    epochs_completed: int | None
    finished: str | None
    error: str | None
    raw: dict[str, Any]  # the whole document: desktop.jobs.RunSnapshot still reads it (until it takes RunInfo)
    kind: str = "single"  # one of RUN_KINDS
    members: tuple[str, ...] = ()  # an ensemble's member runs (absolute paths); empty for a single run


def versions() -> dict[str, str]:
    import torch
    import torchvision

    from engine import __version__

    return {"transfer_studio": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def write_run_file(run_dir: Path, document: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **document})


def request_stop(run_dir: Path) -> None:
    """Ask whichever process trains ``run_dir`` (here, or on another machine through a shared or synced folder) to
    stop at its next batch: the run ends "cancelled" and resumable, as with Stop in the app that started it."""
    run_dir = Path(run_dir)
    if not (run_dir / RUN_FILE).is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no {RUN_FILE}); nothing to stop there")
    write_bytes_atomic(run_dir / STOP_FILE, b"")


def update_run_file(run_dir: Path, **changes: Any) -> None:
    document = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    document.update(changes)
    write_json_atomic(Path(run_dir) / RUN_FILE, document)


def read_run(run_dir: Path) -> RunInfo:
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise RunFolderError(f"{run_dir}: not a run folder (no {RUN_FILE}); train first or pick another folder")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("format") != RUN_FORMAT:
            raise ValueError(f"unsupported format {raw.get('format') if isinstance(raw, dict) else raw!r}")
        labels = raw["labels"]
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(x, str) for x in labels):
            raise ValueError("labels must be a list of at least two names")
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        if not isinstance(raw["data_dir"], str) or raw["status"] not in RUN_STATUSES:
            raise ValueError(f"data_dir must be a folder name and status one of {', '.join(RUN_STATUSES)}")
        config = TrainConfig.from_dict(raw["config"])
        versions = raw.get("versions", {})
        if not isinstance(versions, dict) or not all(isinstance(v, str) for v in versions.values()):
            raise ValueError("versions must map names to version strings")
        best_val_accuracy = _optional(raw, "best_val_accuracy", (int, float))
        kind, members = _kind_and_members(raw)
        return RunInfo(
            path=run_dir, status=raw["status"], config=config,
            backbone=_optional(raw, "backbone", str) or config.backbone, labels=tuple(labels),
            preprocessing=Preprocessing.from_dict(raw["preprocessing"]), data_dir=raw["data_dir"],
            created=_optional(raw, "created", str), device=_optional(raw, "device", str), versions=versions,
            dataset_counts=_dataset_counts(raw.get("dataset"), labels), plan=_plan(raw.get("plan")),
            best_epoch=_optional(raw, "best_epoch", int),
            best_val_accuracy=float(best_val_accuracy) if best_val_accuracy is not None else None,
            epochs_completed=_optional(raw, "epochs_completed", int), finished=_optional(raw, "finished", str),
            error=_optional(raw, "error", str), raw=raw, kind=kind, members=members)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{path}: damaged or edited run file, refused ({exc})") from exc


def _kind_and_members(raw: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """The run's kind and, for an ensemble, its member runs (at least two; a single run has none)."""
    kind, members = raw.get("kind", "single"), raw.get("members", [])
    if kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(RUN_KINDS)}, not {kind!r}")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise ValueError("members must be a list of run folders")
    if (kind == "ensemble") != bool(members) or len(members) == 1:
        raise ValueError("an ensemble lists at least two member runs, and only an ensemble lists any")
    return kind, tuple(members)


def _optional(raw: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    """``raw[key]`` when it is a ``kind`` (never a bool standing in for a number), None when absent."""
    value = raw.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise ValueError(f"{key} has an invalid value {value!r}")
    return value


def _dataset_counts(dataset: Any, labels: list[str]) -> dict[str, dict[str, int]] | None:
    if dataset is None:
        return None
    counts = dataset["counts"]
    if not isinstance(counts, dict) or not set(counts) <= set(SPLITS):
        raise ValueError(f"dataset.counts must map splits ({', '.join(SPLITS)}) to images per label")
    for per_label in counts.values():
        if not isinstance(per_label, dict) or set(per_label) != set(labels) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in per_label.values()):
            raise ValueError("dataset.counts must give a count of images for every label")
    return counts


def _plan(value: Any) -> FineTunePlan | None:
    if value is None:
        return None
    plan = FineTunePlan.from_dict(value)
    kinds = {"str": str, "int": int, "bool": bool}
    for field in fields(FineTunePlan):
        if type(getattr(plan, field.name)) is not kinds[field.type]:
            raise ValueError(f"plan.{field.name} has an invalid value {getattr(plan, field.name)!r}")
    return plan


def read_scan_report(info: RunInfo) -> ScanReport:
    """The split the run was trained on (scan_report.json): resuming and re-evaluating keep to it."""
    path = info.path / SCAN_REPORT_FILE
    try:
        report = ScanReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise RunFolderError(f"{path}: cannot read the run's recorded split ({exc.strerror or exc}); "
                             "start a new run") from exc
    except ValueError as exc:
        raise RunFolderError(f"{path}: damaged or edited scan report, refused ({exc})") from exc
    if report.classes != info.labels:
        raise RunFolderError(f"{path}: classes {', '.join(report.classes)} differ from run.json's "
                             f"{', '.join(info.labels)}, refused")
    return report


def append_metrics(run_dir: Path, record: dict[str, Any]) -> None:
    append_line_atomic(Path(run_dir) / METRICS_FILE, json.dumps(record))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not all(isinstance(r, dict) and isinstance(r.get("epoch"), int) for r in records):
            raise ValueError("every line must be an object with an integer epoch")
    except ValueError as exc:
        raise RunFolderError(f"{path}: damaged or edited metrics file, refused ({exc})") from exc
    return records


def truncate_metrics(run_dir: Path, last_epoch: int) -> None:
    """Drop lines past the last checkpointed epoch (a kill can land between the two writes)."""
    kept = [r for r in read_metrics(run_dir) if r["epoch"] <= last_epoch]
    path = Path(run_dir) / METRICS_FILE
    write_bytes_atomic(path, "".join(json.dumps(r) + "\n" for r in kept).encode("utf-8"))


def fine_tune_throughput(records: list[dict[str, Any]]) -> float | None:
    """Training images per second over the epochs after the quick head, augmented-view passes included.

    Total images over total seconds: a mean of per-epoch rates would overweight the fast epochs that reuse views.
    """
    fine = [m for m in records if m["phase"] != "head"]
    seconds = sum(m["seconds"] for m in fine)
    return sum(m["images_per_second"] * m["seconds"] for m in fine) / seconds if seconds > 0 else None
