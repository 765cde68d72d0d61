"""Run the dataset doctor on a folder: scan it, compute the backbone's features of every photo, then analyse.

The features come through the frozen-feature cache at the quick head's boundary, so a ``train`` before or after
on the same photos reuses them (seconds on a warm cache). The label check needs a probability for every photo
from a model that did not see it: a linear head (``fit_linear_head``) on K stratified folds over every photo of
every split, because the doctor judges the labels, not a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from engine.control import RunControl
from engine.dataset.doctor import DoctorReport, diagnose
from engine.dataset.split import keep_groups_together
from engine.events import EventSink, Info, Progress, ignore_event
from engine.training.config import TrainConfig
from engine.training.near_duplicates import group_paths, look_at
from engine.training.preparation import prepare_training
from engine.training.quick_head import fit_linear_head, labels_tensor

DEFAULT_FOLDS = 5
# The head's L2 strength: fixed, the middle of the quick head's candidates. Choosing it by cross-validation took
# 15 more fits (15 to 45 s on 2 busy cores for 112 photos, against 5 to 20 s for the 5 folds) and ranked the
# planted wrong labels of the test photos no better (first 9 of 112 with 1e-3, 1e-2 and 1e-1 alike).
OUT_OF_FOLD_L2 = 1e-2


def diagnose_folder(data_dir: Path | str, config: TrainConfig | None = None, *, on_event: EventSink = ignore_event,
                    control: RunControl | None = None, folds: int = DEFAULT_FOLDS) -> DoctorReport:
    """The doctor's report on ``data_dir`` with ``config``'s backbone, device and split; raises Cancelled when
    ``control`` is cancelled, and the scan's DatasetError for a folder that cannot be trained on."""
    config, control = config or TrainConfig(), control or RunControl()
    prepared = prepare_training(Path(data_dir), config, on_event, control)
    items = prepared.report.items
    look = look_at(prepared.model, prepared.frozen, items, "features (doctor)")
    # Judge the split a training run makes of this folder: near-duplicates kept on one side where the layout lets.
    split = keep_groups_together(prepared.report, group_paths(look, items), val_fraction=config.val_split,
                                 test_fraction=config.test_split, seed=config.seed, on_event=ignore_event)
    split_of = {item.path: item.split for item in split.items}
    items = tuple(replace(item, split=split_of[item.path]) for item in items)
    targets = labels_tensor(item.label for item in items)
    fold_of = stratified_folds(targets.numpy(), folds, config.seed, together=look.found.groups)
    probabilities = out_of_fold_probabilities(look.features, targets, len(prepared.labels), fold_of, config.seed,
                                              prepared.setup.device, on_event, control)
    report = diagnose(prepared.report.root, prepared.labels, items, look.embeddings, look.layout, probabilities,
                      found=look.found)
    counts = report.summary()
    on_event(Info(f"doctor: {counts['near_duplicate_groups']} near-duplicate groups "
                  f"({counts['across_split_groups']} across splits, {counts['conflicting_groups']} with conflicting "
                  f"labels), {counts['likely_wrong_labels']} likely wrong labels (and "
                  f"{counts['possible_wrong_labels']} possible), {counts['outliers']} outliers among "
                  f"{counts['photos']} photos"))
    return report


def out_of_fold_probabilities(features: torch.Tensor, targets: torch.Tensor, classes: int, fold_of: np.ndarray,
                              seed: int, device: str, on_event: EventSink = ignore_event,
                              control: RunControl | None = None) -> np.ndarray | None:
    """Each photo's class probabilities from a linear head fitted on the photos of the other folds (``fold_of``:
    each photo's); None with fewer than 2 folds or classes."""
    folds = np.unique(fold_of)
    if len(folds) < 2 or classes < 2:
        return None
    probabilities = np.zeros((len(targets), classes), dtype=np.float32)
    for done, fold in enumerate(folds):
        if control is not None:
            control.check()
        on_event(Progress("label check (doctor)", done, len(folds), f"fold {done + 1} of {len(folds)}"))
        held_out = torch.from_numpy(fold_of == fold)
        weight, bias, _ = fit_linear_head(features[~held_out], targets[~held_out], classes, l2=OUT_OF_FOLD_L2,
                                          seed=seed, device=device)
        probabilities[held_out.numpy()] = torch.softmax(features[held_out] @ weight.T + bias, dim=1).numpy()
    on_event(Progress("label check (doctor)", len(folds), len(folds)))
    return probabilities


def stratified_folds(targets: np.ndarray, folds: int, seed: int,
                     together: Sequence[Sequence[int]] = ()) -> np.ndarray:
    """Each photo's fold (0..folds-1): every class dealt round the folds in a seeded order, so each fold holds its
    share of every class, and each group in ``together`` (near-duplicates) in one fold, so that a copy cannot
    vouch for its twin's label. A class smaller than ``folds`` is simply missing from some folds."""
    rng = np.random.default_rng(seed)
    unit_of = np.arange(len(targets))
    for members in together:
        unit_of[list(members)] = members[0]
    units = np.unique(unit_of)
    fold_of_unit = np.zeros(len(targets), dtype=np.int64)
    for label in np.unique(targets[units]):
        members = rng.permutation(units[targets[units] == label])
        fold_of_unit[members] = (np.arange(len(members)) + rng.integers(folds)) % folds
    return fold_of_unit[unit_of]
