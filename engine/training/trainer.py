"""train(): scan, quick head, optional fine-tune, evaluation, all recorded in a resumable run folder.

Cancel and failure are handled in one place, and every run ends with an explicit status in run.json:
"completed", "cancelled" (resumable with ``resume=True``) or "failed".
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from engine.atomic import remove_stale_temporaries, write_json_atomic
from engine.backbones.build import TransferModel, create_model
from engine.backbones.registry import get_backbone
from engine.cache_limit import LIMIT_VARIABLE, cache_limit_bytes, prune
from engine.control import Cancelled, RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.report import ImageItem, ScanReport
from engine.dataset.scan import scan_dataset
from engine.evaluation.metrics import evaluate_predictions, evaluation_document
from engine.events import (
    CheckpointSaved,
    EpochEnded,
    EpochStarted,
    EventSink,
    Info,
    RunFailed,
    RunFinished,
    RunStarted,
    ignore_event,
)
from engine.events import Warning_ as WarningEvent
from engine.images import ImageLoadError, normalize_crop
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.augment import build_train_transform
from engine.training.batch_size import BatchSizeTuner
from engine.training.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from engine.training.config import TrainConfig
from engine.training.device import DeviceSetup, resolve_device
from engine.training.feature_cache import FeatureCache, default_feature_dir, weights_identity
from engine.training.loop import cross_entropy, logits_from_features, train_one_epoch, warmup_cosine
from engine.training.quick_head import fit_linear_head, forward_in_batches, head_metrics, labels_tensor
from engine.training.strategies import apply_strategy, first_trainable_stage, parameter_groups, set_train_mode

IMBALANCE_THRESHOLD = 3.0


class RunExistsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TrainResult:
    run_dir: str
    status: str
    best_epoch: int
    best_val_accuracy: float
    epochs_run: int
    evaluation: dict[str, Any] | None


def train(
    data_dir: Path | str | None,
    run_dir: Path | str,
    config: TrainConfig | None = None,
    *,
    resume: bool = False,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
) -> TrainResult:
    """Train a classifier on ``data_dir`` into ``run_dir``; ``resume`` continues a stopped run there."""
    run_dir = Path(run_dir)
    control = control or RunControl()
    run_file_written = False
    try:
        if resume:
            info = rf.read_run(run_dir)
            config, data_dir = info.config, data_dir or info.data_dir
        else:
            if (run_dir / rf.RUN_FILE).exists():
                raise RunExistsError(f"{run_dir}: already holds a run; resume it (--resume) or choose another folder")
            if run_dir.exists() and not run_dir.is_dir():
                raise RunExistsError(f"{run_dir}: is a file, not a folder; choose a folder for the run")
            config = config or TrainConfig()
        if data_dir is None:
            raise ValueError("no dataset folder given")
        session = _Session(Path(data_dir), run_dir, config, on_event, control)
        session.prepare(resume)
        run_file_written = True
        return session.run()
    except Cancelled:  # stopped while scanning or building the model: nothing worth resuming was written
        if run_file_written:
            rf.update_run_file(run_dir, status="cancelled")
        on_event(RunFinished(str(run_dir), "cancelled", -1, 0.0, 0))
        return TrainResult(str(run_dir), "cancelled", -1, 0.0, 0, None)
    except Exception as exc:
        if run_file_written:
            with contextlib.suppress(OSError):  # e.g. a full disk: the error below says so; run.json stays valid
                rf.update_run_file(run_dir, status="failed", error=str(exc))
        on_event(RunFailed(str(run_dir), str(exc)))
        raise


class _Session:
    """The state of one training run; methods are the phases, in order."""

    def __init__(self, data_dir: Path, run_dir: Path, config: TrainConfig, on_event: EventSink,
                 control: RunControl) -> None:
        self.data_dir, self.run_dir, self.config = data_dir, run_dir, config
        self.on_event, self.control = on_event, control
        self.setup: DeviceSetup = resolve_device(config.device)
        self.spec = get_backbone(config.backbone)
        self.preprocessing: Preprocessing = self.spec.preprocessing()
        self.cache = DecodedImageCache(self.preprocessing)
        self.start_epoch = 0
        self.best = {"epoch": -1, "val_accuracy": -1.0, "val_loss": float("inf")}
        self.bad_epochs = 0
        self.checkpoint: dict[str, Any] | None = None

    # --- preparation -------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        torch.manual_seed(self.config.seed)
        self.report: ScanReport = scan_dataset(
            self.data_dir, val_fraction=self.config.val_split, test_fraction=self.config.test_split,
            seed=self.config.seed, cache=self.cache, on_event=self.on_event, control=self.control,
        )
        self.labels = list(self.report.classes)
        self.train_items = self.report.split_items("train")
        self.val_items = self.report.split_items("val")
        self.test_items = self.report.split_items("test")
        self.model: TransferModel = create_model(
            self.config.backbone, len(self.labels), weights_file=_opt_path(self.config.weights_file),
            dropout=self.config.dropout, on_event=self.on_event, control=self.control,
        ).to(self.setup.device)
        if self.setup.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.first_trainable = first_trainable_stage(self.model, self.config.strategy, self.config.unfreeze_stages)
        self.class_weights = self._class_weights()
        self.weights_id = weights_identity(self.config.backbone, _opt_path(self.config.weights_file))
        self.frozen_batches = BatchSizeTuner(f"{self.config.backbone}|{self.weights_id}|{self.setup.description}|"
                                             f"0-{self.first_trainable}|{self.preprocessing.crop}")
        self.augment = build_train_transform(self.config.augment, self.preprocessing)
        self.control.check()  # a stop while preparing (scan, model, weights download) leaves no run behind
        if resume:
            self._load_resume_state()
        else:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)  # a start killed before run.json was written may leave some
            rf.write_run_file(self.run_dir, {
                "status": "running", "created": _now(), "data_dir": str(self.data_dir.resolve()),
                "config": self.config.to_dict(), "backbone": self.spec.name, "labels": self.labels,
                "preprocessing": self.preprocessing.to_dict(), "dataset": self._dataset_summary(),
                "versions": rf.versions(), "device": self.setup.description,
            })
        write_json_atomic(self.run_dir / rf.SCAN_REPORT_FILE, self.report.to_dict())
        if self.class_weights is not None:
            self.on_event(WarningEvent(
                f"classes are imbalanced ({self.report.imbalance_ratio:.1f}x): the loss is class-weighted"))

    def _load_resume_state(self) -> None:
        info = rf.read_run(self.run_dir)
        if list(info.labels) != self.labels:
            raise ValueError(f"{self.data_dir}: classes changed since the run started "
                             f"({', '.join(info.labels)} → {', '.join(self.labels)}); start a new run")
        remove_stale_temporaries(self.run_dir)  # half-written files of a killed process
        last = self.run_dir / rf.LAST_FILE
        if last.exists():
            self.checkpoint = load_checkpoint(last, self.setup.device)
            try:
                self.model.load_state_dict(self.checkpoint["model"])
                self.start_epoch = int(self.checkpoint["epoch"]) + 1
                self.best = dict(self.checkpoint["best"])
                self.bad_epochs = int(self.checkpoint["bad_epochs"])
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"{last}: does not match this run ({str(exc).strip().splitlines()[0]}); "
                                      "delete it to start the run again from epoch 0, or start a new run") from exc
            rf.truncate_metrics(self.run_dir, self.start_epoch - 1)
        else:
            self.on_event(WarningEvent(f"{self.run_dir}: no checkpoint yet (the run stopped before its first epoch "
                                       "ended); starting again from epoch 0"))
            rf.truncate_metrics(self.run_dir, -1)
        rf.update_run_file(self.run_dir, status="running")

    def _class_weights(self) -> torch.Tensor | None:
        mode = self.config.class_weighting
        if mode == "off" or (mode == "auto" and self.report.imbalance_ratio <= IMBALANCE_THRESHOLD):
            return None
        counts = np.array([self.report.counts["train"][c] for c in self.labels], dtype=np.float64)
        return torch.tensor(counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32)

    def _dataset_summary(self) -> dict[str, Any]:
        return {"root": str(self.data_dir), "layout": self.report.layout, "classes": self.labels,
                "counts": self.report.counts, "imbalance_ratio": self.report.imbalance_ratio,
                "skipped": len(self.report.skipped)}

    # --- running -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        epochs = 0 if self.config.strategy == "feature-extract" else self.config.epochs
        self.on_event(RunStarted(str(self.run_dir), self.config.to_dict(), self.setup.description,
                                 self._dataset_summary(), self.start_epoch))
        status = "completed"
        try:
            self.train_items = self._drop_unreadable(self.train_items)
            self.val_items = self._drop_unreadable(self.val_items)
            self.val_features = self._frozen_features(self.val_items, "features (validation)")
            if self.start_epoch == 0:
                self._quick_head()
            if epochs and self.start_epoch <= epochs:
                self._fine_tune(epochs)
        except Cancelled:
            status = "cancelled"
        epochs_run = len(rf.read_metrics(self.run_dir))
        evaluation = None
        if status == "completed":
            evaluation = self._final_evaluation()
        rf.update_run_file(self.run_dir, status=status, finished=_now(), best_epoch=self.best["epoch"],
                           best_val_accuracy=self.best["val_accuracy"], epochs_completed=epochs_run)
        self._limit_caches()
        summary = {"validation_accuracy": evaluation["validation"]["accuracy"]} if evaluation else {}
        self.on_event(RunFinished(str(self.run_dir), status, int(self.best["epoch"]),
                                  float(self.best["val_accuracy"]), epochs_run, summary))
        return TrainResult(str(self.run_dir), status, int(self.best["epoch"]), float(self.best["val_accuracy"]),
                           epochs_run, evaluation)

    def _limit_caches(self) -> None:
        """Keep each on-disk cache under its size limit; this run's entries are the most recently used."""
        limit = cache_limit_bytes()
        for name, folder in (("feature", default_feature_dir()), ("decoded-image", self.cache.disk_dir)):
            pruned = prune(folder, limit)
            if pruned.files:
                self.on_event(Info(f"{name} cache over its {limit / 1024**3:g} GB limit ({LIMIT_VARIABLE}): removed "
                                   f"the {pruned.files} least recently used entries ({pruned.bytes / 1e6:.0f} MB)"))

    def _evaluation_input(self, item: ImageItem, _content_hash: str) -> np.ndarray:
        return normalize_crop(self.cache.get(item.path), self.preprocessing)

    def _augmented_input(self, view: int) -> Callable[[ImageItem, str], torch.Tensor]:
        """One augmented view per (seed, photo, view number): the same every run, so its features can be cached."""
        def load(item: ImageItem, content_hash: str) -> torch.Tensor:
            key = hashlib.blake2b(f"{self.config.seed}|{content_hash}|{view}".encode(), digest_size=8).digest()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int.from_bytes(key, "little") & (2**63 - 1))
                return self._augment(item)

        return load

    def _augment(self, item: ImageItem) -> torch.Tensor:
        """A random augmentation of the cached photo (a copy: the cached array stays untouched)."""
        return self.augment(torch.from_numpy(np.array(self.cache.get(item.path))).permute(2, 0, 1))

    def _frozen_features(self, items: tuple[ImageItem, ...], phase: str, view: int | None = None) -> torch.Tensor:
        """Outputs of the frozen stages for the evaluation crop (``view`` None) or one augmented view of each
        photo: computed once (or read from the feature cache) and reused every epoch."""
        hashes = [self.cache.content_hash(item.path) for item in items]
        make_input = self._evaluation_input if view is None else self._augmented_input(view)

        def loader(chosen: list[int]) -> Callable[[range], torch.Tensor]:  # batches of items[chosen]
            return lambda batch: torch.stack([torch.as_tensor(make_input(items[chosen[i]], hashes[chosen[i]]))
                                              for i in batch])

        if self.first_trainable == 0:  # nothing frozen: the "features" are the preprocessed images themselves
            return loader(list(range(len(items))))(range(len(items))) if items else torch.empty(0)
        variant = "evaluation" if view is None else (f"augment {self.config.augment}, view {view}, "
                                                     f"seed {self.config.seed}, torchvision {torchvision.__version__}")
        cache = FeatureCache(self.config.backbone, self.weights_id, self.preprocessing, self.first_trainable,
                             variant=variant)
        found = {h: f for h in set(hashes) if (f := cache.load(h)) is not None}
        missing = [i for i, h in enumerate(hashes) if h not in found]
        if missing:
            computed = forward_in_batches(self.model, range(self.first_trainable), len(missing), loader(missing),
                                          self.setup, self.frozen_batches, phase=phase, on_event=self.on_event,
                                          control=self.control)
            for i, features in zip(missing, computed, strict=True):
                found[hashes[i]] = features.numpy()
                cache.save(hashes[i], found[hashes[i]])
        batch = f"batch size {self.frozen_batches.chosen}" if self.frozen_batches.chosen else "measuring batch sizes"
        self.on_event(Info(f"{phase}: {len(items) - len(missing)} of {len(items)} images from the feature cache, "
                           f"{len(missing)} computed ({batch})"))
        return torch.from_numpy(np.stack([found[h] for h in hashes])) if items else torch.empty(0)

    def _embeddings_from_frozen(self, features: torch.Tensor, phase: str) -> torch.Tensor:
        stages = range(self.first_trainable, len(self.model.stages))
        if not stages:
            return features
        return forward_in_batches(self.model, stages, len(features), lambda idx: features[idx.start:idx.stop],
                                  self.setup, 64, phase=phase, on_event=self.on_event, control=self.control)

    def _quick_head(self) -> None:
        """Epoch 0: fit the head on frozen embeddings (L-BFGS, L2 chosen by CV on the training split)."""
        self.on_event(EpochStarted(0, self.config.epochs, "head"))
        started = time.perf_counter()
        train_features = self._frozen_features(self.train_items, "features (training)")
        train_embeddings = self._embeddings_from_frozen(train_features, "embeddings (training)")
        val_embeddings = self._embeddings_from_frozen(self.val_features, "embeddings (validation)")
        train_targets = labels_tensor(i.label for i in self.train_items)
        fit_started = time.perf_counter()
        weight, bias, l2 = fit_linear_head(train_embeddings, train_targets, len(self.labels),
                                           self.class_weights, seed=self.config.seed)
        fit_seconds = time.perf_counter() - fit_started
        with torch.no_grad():
            self.model.head[-1].weight.copy_(weight)
            self.model.head[-1].bias.copy_(bias)
        # Same loss definition as the fine-tune epochs, so the curves and the best-epoch choice compare like with like.
        smoothing = self.config.label_smoothing
        train_loss, train_acc = head_metrics(train_embeddings @ weight.T + bias, train_targets, self.class_weights,
                                             smoothing)
        val_loss, val_acc = head_metrics(val_embeddings @ weight.T + bias,
                                         labels_tensor(i.label for i in self.val_items), self.class_weights, smoothing)
        seconds = time.perf_counter() - started
        self.on_event(Info(f"quick head: embeddings {seconds - fit_seconds:.1f} s, head fit {fit_seconds:.2f} s "
                           f"(L2 {l2:g}, chosen by cross-validation on the training split)"))
        self._end_epoch(0, "head", train_loss, train_acc, val_loss, val_acc, lr=0.0, seconds=seconds,
                        images=len(self.train_items), optimizer=None, scheduler=None,
                        extra={"head_l2": l2, "embedding_seconds": seconds - fit_seconds, "fit_seconds": fit_seconds})

    def _fine_tune(self, epochs: int) -> None:
        apply_strategy(self.model, self.first_trainable)
        if self.config.compile:
            self.on_event(Info("compiling the trainable stages (torch.compile): the first batches of training and "
                               "of validation wait for it, a minute or more on a CPU"))
            for module in (*self.model.stages[self.first_trainable:], self.model.head):
                module.compile()  # in place: state_dict keys, checkpoints and export stay as they are
        optimizer = self._optimizer()
        scheduler = self._scheduler(optimizer, epochs, self.config.batch_size)
        scaler = torch.amp.GradScaler("cuda") if self.setup.use_scaler else None
        if self.checkpoint is not None and self.checkpoint.get("optimizer"):
            optimizer.load_state_dict(self.checkpoint["optimizer"])
            scheduler.load_state_dict(self.checkpoint["scheduler"])
        self.batch_size = self.config.batch_size
        loss_fn = cross_entropy(self.class_weights, self.config.label_smoothing)
        val_targets = labels_tensor(i.label for i in self.val_items)
        phase = "full" if self.config.strategy == "full" else "fine-tune"
        for epoch in range(max(1, self.start_epoch), epochs + 1):
            self.on_event(EpochStarted(epoch, epochs, phase))
            self.train_items = self._drop_unreadable(self.train_items)
            view_started = time.perf_counter()
            inputs = self._epoch_inputs(epoch)
            view_seconds = time.perf_counter() - view_started
            while True:
                try:
                    stats = train_one_epoch(
                        self.model, self.first_trainable, self._train_batches(inputs, epoch), optimizer,
                        scheduler, loss_fn, self.setup,
                        lambda: set_train_mode(self.model, self.first_trainable, self.config.strategy == "full"),
                        epoch=epoch, batch_count=self._steps_per_epoch(self.batch_size),
                        grad_clip=self.config.grad_clip, scaler=scaler, on_event=self.on_event,
                        control=self.control,
                    )
                    break
                except (torch.OutOfMemoryError, RuntimeError) as exc:
                    if not _is_out_of_memory(exc):
                        raise
                    scheduler = self._recover_from_out_of_memory(optimizer, epochs, epoch)
            val_logits = logits_from_features(self.model, self.first_trainable, self.val_features, self.setup)
            val_loss, val_acc = head_metrics(val_logits, val_targets, self.class_weights,
                                             self.config.label_smoothing)
            self._end_epoch(epoch, phase, stats.loss, stats.accuracy, val_loss, val_acc,
                            lr=optimizer.param_groups[0]["lr"], seconds=view_seconds + stats.seconds,
                            images=stats.images, extra={"view_seconds": view_seconds}, optimizer=optimizer,
                            scheduler=scheduler)
            if self.config.early_stopping and self.bad_epochs >= self.config.early_stopping:
                self.on_event(WarningEvent(
                    f"early stopping after epoch {epoch}: no validation improvement for {self.bad_epochs} epochs"))
                break

    def _steps_per_epoch(self, batch_size: int) -> int:
        return max(1, -(-len(self.train_items) // batch_size))

    def _scheduler(self, optimizer: torch.optim.Optimizer, epochs: int, batch_size: int):  # noqa: ANN202
        steps = self._steps_per_epoch(batch_size)
        return warmup_cosine(optimizer, int(self.config.warmup_epochs * steps), epochs * steps)

    def _recover_from_out_of_memory(self, optimizer: torch.optim.Optimizer, epochs: int, epoch: int):  # noqa: ANN202
        """Halve the batch size and redo the epoch from the last checkpoint; give up below batch size 1."""
        if self.setup.device == "cuda":
            torch.cuda.empty_cache()
        if self.batch_size == 1:
            raise RuntimeError(f"out of memory on {self.setup.description} even with batch size 1: choose a smaller "
                               "backbone, fewer unfrozen stages, or --device cpu") from None
        self.batch_size //= 2
        self.on_event(WarningEvent(f"out of memory during epoch {epoch}: retrying it with batch size "
                                   f"{self.batch_size}"))
        last = load_checkpoint(self.run_dir / rf.LAST_FILE, self.setup.device)
        self.model.load_state_dict(last["model"])
        if last.get("optimizer"):
            optimizer.load_state_dict(last["optimizer"])
        scheduler = self._scheduler(optimizer, epochs, self.batch_size)
        for _ in range((epoch - 1) * self._steps_per_epoch(self.batch_size)):
            scheduler.step()
        return scheduler

    def _drop_unreadable(self, items: tuple[ImageItem, ...]) -> tuple[ImageItem, ...]:
        """Skip, with a warning, files deleted or broken since the scan; the run goes on without them."""
        kept = []
        for item in items:
            try:
                self.cache.get(item.path)
                kept.append(item)
            except ImageLoadError as exc:
                self.on_event(WarningEvent(f"skipped {exc.path}: {exc.reason} (changed since the scan)"))
        return tuple(kept)

    def _optimizer(self) -> torch.optim.Optimizer:
        groups = parameter_groups(self.model, self.first_trainable, self.config.lr, self.config.backbone_lr_factor)
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=self.config.lr, momentum=0.9, weight_decay=self.config.weight_decay)
        return torch.optim.AdamW(groups, lr=self.config.lr, weight_decay=self.config.weight_decay)

    def _epoch_inputs(self, epoch: int) -> Callable[[int], torch.Tensor]:
        """Input to the trainable stages for training photo ``i`` in this epoch.

        Below frozen stages: the frozen output of augmented view (epoch - 1) mod augment_views, computed for all
        photos at once (or read from the feature cache), so the frozen stages never run again for that view.
        With nothing frozen, each photo is augmented afresh (nothing to save, and images are large to keep).
        """
        if self.first_trainable == 0:
            return lambda i: self._augment(self.train_items[i])
        views = self.config.augment_views
        view = (epoch - 1) % views
        features = self._frozen_features(self.train_items, f"augmented view {view + 1} of {views} (training)", view)
        return features.__getitem__

    def _train_batches(self, inputs: Callable[[int], torch.Tensor],
                       epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Shuffled per epoch with a seed derived from (seed, epoch), so a resumed run sees the same order."""
        generator = torch.Generator().manual_seed(self.config.seed * 1000 + epoch)
        order = torch.randperm(len(self.train_items), generator=generator).tolist()
        torch.manual_seed(self.config.seed * 1000 + epoch)
        size = self.batch_size
        for start in range(0, len(order), size):
            rows, labels = [], []
            for index in order[start:start + size]:
                try:
                    rows.append(inputs(index))
                except ImageLoadError as exc:
                    self.on_event(WarningEvent(f"skipped {exc.path}: {exc.reason} (changed during training)"))
                    continue
                labels.append(self.train_items[index].label)
            if rows:
                yield torch.stack(rows), labels_tensor(labels)

    def _end_epoch(self, epoch: int, phase: str, train_loss: float, train_acc: float, val_loss: float,
                   val_acc: float, *, lr: float, seconds: float, images: int, extra: dict[str, Any],
                   optimizer: torch.optim.Optimizer | None, scheduler: Any) -> None:
        """Record an epoch: metrics line, best.pt if it improved, then last.pt (the resume point)."""
        improved = val_acc > self.best["val_accuracy"] or (
            val_acc == self.best["val_accuracy"] and val_loss < self.best["val_loss"])
        if improved:
            self.best = {"epoch": epoch, "val_accuracy": val_acc, "val_loss": val_loss}
            self.bad_epochs = 0
            save_checkpoint(self.run_dir / rf.BEST_FILE, {"model": self.model.state_dict(), "epoch": epoch,
                                                           "val_accuracy": val_acc})
            self.on_event(CheckpointSaved(str(self.run_dir / rf.BEST_FILE), epoch))
        else:
            self.bad_epochs += 1
        record = {"epoch": epoch, "phase": phase, "train_loss": train_loss, "train_accuracy": train_acc,
                  "val_loss": val_loss, "val_accuracy": val_acc, "learning_rate": lr, "seconds": seconds,
                  "images_per_second": images / seconds if seconds > 0 else 0.0, "is_best": improved, **extra}
        rf.append_metrics(self.run_dir, record)
        save_checkpoint(self.run_dir / rf.LAST_FILE, {
            "model": self.model.state_dict(), "epoch": epoch, "best": self.best, "bad_epochs": self.bad_epochs,
            "optimizer": optimizer.state_dict() if optimizer else None,
            "scheduler": scheduler.state_dict() if scheduler else None,
        })
        self.on_event(CheckpointSaved(str(self.run_dir / rf.LAST_FILE), epoch))
        self.on_event(EpochEnded(epoch, self.config.epochs, phase, train_loss, train_acc, val_loss, val_acc, lr,
                                 seconds, record["images_per_second"], improved))

    def _final_evaluation(self) -> dict[str, Any]:
        """Restore the best weights and evaluate validation (and test, once) into evaluation.json."""
        best = load_checkpoint(self.run_dir / rf.BEST_FILE, self.setup.device)
        self.model.load_state_dict(best["model"])
        splits: dict[str, Any] = {}
        for name, items, features in (("validation", self.val_items, self.val_features),
                                      ("test", self.test_items, None)):
            if not items:
                continue
            if features is None:
                features = self._frozen_features(items, f"features ({name})")
            probabilities = logits_from_features(self.model, self.first_trainable, features, self.setup).softmax(1)
            splits[name] = evaluate_predictions(self.labels, [i.label for i in items], probabilities.numpy(),
                                                [i.path for i in items])
        document = evaluation_document(self.labels, splits["validation"], splits.get("test"))
        write_json_atomic(self.run_dir / rf.EVALUATION_FILE, document)
        return document


def _is_out_of_memory(exc: BaseException) -> bool:
    """CUDA raises torch.OutOfMemoryError; MPS raises a RuntimeError that says so."""
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


def _opt_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
