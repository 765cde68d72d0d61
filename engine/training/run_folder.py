"""The run folder: run.json, metrics.jsonl, checkpoints, evaluation.json, scan_report.json.

Every file is written atomically, so a killed process leaves either the old or the new version.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import append_line_atomic, write_bytes_atomic, write_json_atomic
from engine.preprocessing import Preprocessing
from engine.training.config import TrainConfig

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
BEST_FILE = "best.pt"
LAST_FILE = "last.pt"
EVALUATION_FILE = "evaluation.json"
SCAN_REPORT_FILE = "scan_report.json"
MODEL_FILE = "model.onnx"  # where export writes by default
RUN_FORMAT = 1
RUN_STATUSES = ("running", "completed", "cancelled", "failed")


class RunFolderError(ValueError):
    """A run folder that is missing, incomplete, or edited into something we will not half-load."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What run.json holds, validated."""

    path: Path
    config: TrainConfig
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    data_dir: str
    status: str
    raw: dict[str, Any]


def versions() -> dict[str, str]:
    import torch
    import torchvision

    from engine import __version__

    return {"transfer_studio": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__}


def write_run_file(run_dir: Path, document: dict[str, Any]) -> None:
    write_json_atomic(Path(run_dir) / RUN_FILE, {"format": RUN_FORMAT, **document})


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
        return RunInfo(path=run_dir, config=TrainConfig.from_dict(raw["config"]), labels=tuple(labels),
                       preprocessing=Preprocessing.from_dict(raw["preprocessing"]),
                       data_dir=str(raw["data_dir"]), status=str(raw["status"]), raw=raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise RunFolderError(f"{path}: damaged or edited run file, refused ({exc})") from exc


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
