"""Epoch 0, the quick head: frozen embeddings once, a linear head fitted on them, and how well it fits.

Its fit (train and validation accuracy) is what the fine-tune plan is chosen from. The frozen features are
taken at the shallow fine-tune's boundary, so a shallow plan (and a second run) reuses them from the cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from engine.dataset.report import ImageItem
from engine.events import EventSink, Info
from engine.training.preparation import PreparedTraining
from engine.training.quick_head import fit_linear_head, head_metrics, labels_tensor
from engine.training.recipe import SHALLOW_STAGES, HeadFit


@dataclass(frozen=True, slots=True)
class QuickHeadResult:
    fit: HeadFit
    train_loss: float
    val_loss: float
    l2: float
    seconds: float
    fit_seconds: float


def fit_quick_head(prepared: PreparedTraining, train_items: tuple[ImageItem, ...], val_items: tuple[ImageItem, ...],
                   on_event: EventSink) -> QuickHeadResult:
    """Fit the model's head in place (L-BFGS, L2 chosen by cross-validation on the training split only)."""
    started = time.perf_counter()
    model, frozen, config = prepared.model, prepared.frozen, prepared.config
    stages = len(model.stages)
    boundary = stages if config.strategy == "feature-extract" else max(0, stages - SHALLOW_STAGES)

    def embeddings(items: tuple[ImageItem, ...], name: str) -> torch.Tensor:
        return frozen.embeddings(items, boundary, f"features ({name})")

    train_embeddings, val_embeddings = embeddings(train_items, "training"), embeddings(val_items, "validation")
    train_targets = labels_tensor(i.label for i in train_items)
    fit_started = time.perf_counter()
    weight, bias, l2 = fit_linear_head(train_embeddings, train_targets, len(prepared.labels),
                                       prepared.class_weights, seed=config.seed, device=prepared.setup.device)
    fit_seconds = time.perf_counter() - fit_started
    with torch.no_grad():
        model.head[-1].weight.copy_(weight)
        model.head[-1].bias.copy_(bias)
    # Same loss definition as the fine-tune epochs, so the curves and the best-epoch choice compare like with like.
    smoothing, weights = config.label_smoothing, prepared.class_weights
    train_loss, train_acc = head_metrics(train_embeddings @ weight.T + bias, train_targets, weights, smoothing)
    val_loss, val_acc = head_metrics(val_embeddings @ weight.T + bias, labels_tensor(i.label for i in val_items),
                                     weights, smoothing)
    seconds = time.perf_counter() - started
    on_event(Info(f"quick head: embeddings {seconds - fit_seconds:.1f} s, head fit {fit_seconds:.2f} s "
                  f"(L2 {l2:g}, chosen by cross-validation on the training split)"))
    return QuickHeadResult(HeadFit(train_acc, val_acc), train_loss, val_loss, l2, seconds, fit_seconds)
