"""Re-evaluate a finished run's best model on its own recorded split, or on another folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.atomic import write_json_atomic
from engine.backbones.build import TransferModel
from engine.backbones.inference import forward_in_batches
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem, ScanReport
from engine.dataset.scan import scan_dataset
from engine.dataset.split import keep_recorded_split
from engine.dataset.validate import DatasetError
from engine.ensemble_model import EnsembleModel, load_run_model
from engine.evaluation.calibration import recorded_calibration
from engine.evaluation.from_logits import SplitLogits, evaluate_logits
from engine.events import EventSink, ignore_event
from engine.images import normalize_crop
from engine.training import run_folder as rf
from engine.training.device import resolve_device


def predict_logits(model: TransferModel | EnsembleModel | nn.Module, items: tuple[ImageItem, ...] | list[ImageItem],
                   cache: DecodedImageCache, device: str = "cpu", *, on_event: EventSink = ignore_event,
                   control: RunControl | None = None) -> np.ndarray:
    """Logits (N x C) with the evaluation transform (or whatever rows ``model`` gives for a batch of images); the
    model, head included, runs on ``device``."""
    setup = resolve_device(device)
    preprocessing = cache.preprocessing

    def load(indices: range) -> torch.Tensor:
        return torch.from_numpy(np.stack([normalize_crop(cache.get(items[i].path), preprocessing) for i in indices]))

    logits = forward_in_batches(model, None, len(items), load, setup, 16, phase="evaluating", on_event=on_event,
                                control=control)
    return logits.numpy()


def evaluate_run(run_dir: Path | str, data_dir: Path | str | None = None, *, device: str = "cpu",
                 on_event: EventSink = ignore_event, control: RunControl | None = None) -> dict[str, Any]:
    """Re-evaluate a run (an ensemble too). Without ``data_dir``: its own validation (and test) split as the run
    recorded it (photos added since are left out, with a warning), the temperature fitted again on that validation
    split, saved to evaluation.json.

    With ``data_dir``: every usable image of that folder (which must have the same classes), scaled by the
    temperature the run recorded (1 without one), not saved.
    """
    setup = resolve_device(device)
    model, info = load_run_model(run_dir, setup.device)
    cache = DecodedImageCache(info.preprocessing)
    temperature = None
    if data_dir is None:
        report = recorded_split(info, cache, on_event=on_event, control=control)
        splits = {"validation": report.split_items("val"), "test": report.split_items("test")}
        train_counts = report.counts["train"]
    else:
        report = _scan(Path(data_dir), info, cache, on_event, control)
        splits = {"validation": report.items}
        train_counts = _run_train_counts(info)
        recorded = recorded_calibration(Path(run_dir) / rf.EVALUATION_FILE)
        temperature = recorded["temperature"] if recorded else 1.0
    results = {}
    for name, items in splits.items():
        if items:
            logits = predict_logits(model, items, cache, setup.device, on_event=on_event, control=control)
            results[name] = SplitLogits(tuple(i.label for i in items), logits, tuple(i.path for i in items))
    document = evaluate_logits(list(info.labels), results["validation"], results.get("test"),
                               train_counts=[train_counts[label] for label in info.labels], temperature=temperature)
    if data_dir is None:
        write_json_atomic(Path(run_dir) / rf.EVALUATION_FILE, document)
    return document


def recorded_split(info: rf.RunInfo, cache: DecodedImageCache, *, on_event: EventSink = ignore_event,
                   control: RunControl | None = None) -> ScanReport:
    """The run's dataset folder scanned now, split as the run recorded it (photos added since left out, with a
    warning)."""
    return keep_recorded_split(rf.read_scan_report(info), _scan(Path(info.data_dir), info, cache, on_event, control),
                               on_event)


def _scan(source: Path, info: rf.RunInfo, cache: DecodedImageCache, on_event: EventSink,
          control: RunControl | None) -> ScanReport:
    config = info.config
    report = scan_dataset(source, val_fraction=config.val_split, test_fraction=config.test_split, seed=config.seed,
                          cache=cache, on_event=on_event, control=control)
    if report.classes != info.labels:
        raise DatasetError(f"{source}: classes {', '.join(report.classes)} differ from the run's "
                           f"{', '.join(info.labels)}; evaluate on a folder with the same class folders")
    return report


def _run_train_counts(info: rf.RunInfo) -> dict[str, int]:
    """Training images per label as run.json recorded them: on another folder the baseline is still what the
    model learnt from."""
    if info.dataset_counts is None or "train" not in info.dataset_counts:
        raise rf.RunFolderError(f"{info.path}: run.json lacks training counts (dataset.counts.train)")
    return info.dataset_counts["train"]
