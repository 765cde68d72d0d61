"""Load a finished run's best model, and re-evaluate it on its own data or another folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.atomic import write_json_atomic
from engine.backbones.build import TransferModel, create_model
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem
from engine.dataset.scan import scan_dataset
from engine.dataset.validate import DatasetError
from engine.evaluation.metrics import evaluate_predictions, evaluation_document
from engine.events import EventSink, ignore_event
from engine.images import normalize_crop
from engine.training import run_folder as rf
from engine.training.checkpoints import load_checkpoint
from engine.training.device import resolve_device
from engine.training.quick_head import forward_in_batches


def load_trained_model(run_dir: Path | str, device: str = "cpu") -> tuple[TransferModel, rf.RunInfo]:
    """The run's best weights in eval mode; refuses a run folder whose files do not agree."""
    info = rf.read_run(Path(run_dir))
    model = create_model(info.config.backbone, len(info.labels), pretrained=False, dropout=info.config.dropout)
    checkpoint = load_checkpoint(Path(run_dir) / rf.BEST_FILE, device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise rf.RunFolderError(f"{run_dir}: best.pt does not match run.json ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), info


def predict_items(model: TransferModel, items: tuple[ImageItem, ...] | list[ImageItem], cache: DecodedImageCache,
                  device: str = "cpu", *, on_event: EventSink = ignore_event,
                  control: RunControl | None = None) -> np.ndarray:
    """Softmax probabilities (N x C) with the evaluation transform."""
    setup = resolve_device(device)
    preprocessing = cache.preprocessing

    def load(indices: range) -> torch.Tensor:
        return torch.from_numpy(np.stack([normalize_crop(cache.get(items[i].path), preprocessing) for i in indices]))

    logits = forward_in_batches(model, range(len(model.stages)), len(items), load, setup, 16,
                                phase="evaluating", on_event=on_event, control=control)
    return torch.softmax(model.head(logits), dim=1).numpy() if len(items) else np.zeros((0, len(model.head[-1].bias)))


def evaluate_run(run_dir: Path | str, data_dir: Path | str | None = None, *, device: str = "cpu",
                 on_event: EventSink = ignore_event, control: RunControl | None = None) -> dict[str, Any]:
    """Re-evaluate a run. Without ``data_dir``: its own validation (and test) split, saved to evaluation.json.

    With ``data_dir``: every usable image of that folder (which must have the same classes), not saved.
    """
    model, info = load_trained_model(run_dir, device)
    cache = DecodedImageCache(info.preprocessing)
    source = Path(data_dir) if data_dir is not None else Path(info.data_dir)
    config = info.config
    report = scan_dataset(source, val_fraction=config.val_split, test_fraction=config.test_split, seed=config.seed,
                          cache=cache, on_event=on_event, control=control)
    if list(report.classes) != list(info.labels):
        raise DatasetError(f"{source}: classes {', '.join(report.classes)} differ from the run's "
                           f"{', '.join(info.labels)}; evaluate on a folder with the same class folders")
    if data_dir is not None:
        splits = {"validation": list(report.items)}
    else:
        splits = {"validation": list(report.split_items("val")), "test": list(report.split_items("test"))}
    results = {}
    for name, items in splits.items():
        if items:
            with torch.no_grad():
                probabilities = predict_items(model, items, cache, device, on_event=on_event, control=control)
            results[name] = evaluate_predictions(info.labels, [i.label for i in items], probabilities,
                                                 [i.path for i in items])
    train_counts = report.counts["train"] if data_dir is None else _run_train_counts(info)
    document = evaluation_document(list(info.labels), results["validation"], results.get("test"),
                                   train_counts=[train_counts[label] for label in info.labels])
    if data_dir is None:
        write_json_atomic(Path(run_dir) / rf.EVALUATION_FILE, document)
    return document


def _run_train_counts(info: rf.RunInfo) -> dict[str, int]:
    """Training images per label as run.json recorded them: on another folder the baseline is still what the
    model learnt from."""
    try:
        counts = info.raw["dataset"]["counts"]["train"]
        return {label: int(counts[label]) for label in info.labels}
    except (KeyError, TypeError, ValueError) as exc:
        raise rf.RunFolderError(f"{info.path}: run.json lacks training counts (dataset.counts.train)") from exc
