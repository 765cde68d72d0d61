"""train(): scan, quick head, optional fine-tune, evaluation, all recorded in a resumable run folder.

Cancel and failure are handled in one place, and every run ends with an explicit status in run.json:
"completed", "cancelled" (resumable with ``resume=True``) or "failed".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.atomic import remove_stale_temporaries, write_json_atomic
from engine.cache_limit import LIMIT_VARIABLE, cache_limit_bytes, prune
from engine.control import Cancelled, RunControl
from engine.dataset.report import ImageItem, ScanReport
from engine.dataset.split import keep_recorded_split
from engine.errors import BadInputError
from engine.evaluation.from_logits import SplitLogits, evaluate_logits
from engine.events import EpochStarted, EventSink, Info, RunFailed, RunFinished, RunStarted, WarningEvent, ignore_event
from engine.run_files import this_process
from engine.time_format import utc_now_iso
from engine.training import run_folder as rf
from engine.training.checkpoints import CheckpointError, load_checkpoint_in_every_process
from engine.training.config import TrainConfig, compile_unavailable
from engine.training.distributed import SharedStop, current, explained, from_main, gathered, start
from engine.training.epoch_recorder import EpochMetrics, EpochRecorder
from engine.training.feature_cache import default_feature_dir
from engine.training.fine_tune import FineTuneData, FineTuner
from engine.training.head_phase import fit_quick_head
from engine.training.preparation import class_weights_for, prepare_training, still_readable
from engine.training.recipe import FineTunePlan, plan_fine_tune
from engine.training.teacher_targets import TeacherTargets, split_source


class RunExistsError(BadInputError):
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
    """Train a classifier on ``data_dir`` into ``run_dir``; ``resume`` continues a stopped run there.

    ``control.cancel()``, or the stop file that ``run_folder.request_stop`` writes into ``run_dir`` from any process,
    stops the run at the next batch, resumable.

    Under torchrun every process calls this alike (``engine.training.distributed``); ``control`` must then be a
    ``SharedStop`` (the default), and only rank 0 reports events and writes ``run_dir``."""
    run_dir = Path(run_dir)
    session: _Session | None = None
    try:
        if resume:
            info = rf.read_run(run_dir)
            if info.kind == "ensemble":
                raise BadInputError(f"{run_dir}: an ensemble of other runs has nothing of its own to train; build it "
                                    "again into a new folder (transfer-studio ensemble)")
            config, data_dir = info.config, data_dir or info.data_dir
        else:
            config = config or TrainConfig()
            if config.teachers and not config.split_from:  # the student never sees the teacher's held-out photos
                config = replace(config, split_from=str(split_source(config.teachers[0])))
        processes = start(config.device)
        if processes.distributed:
            control = control or SharedStop()
            if not isinstance(control, SharedStop):
                raise BadInputError("a run in several processes stops through engine.training.distributed.SharedStop:"
                                    " pass one as control")
            on_event = on_event if processes.main else ignore_event
        control = control or RunControl()
        # Rank 0 alone looks (the others would see its run.json appear), and a stop file left from before this start
        # or resume asked an earlier session to stop: it is spent.
        if problem := from_main(_start_problem(run_dir, resume) if processes.main else None):
            raise RunExistsError(problem)
        control.watch_stop_file(run_dir / rf.STOP_FILE)
        if data_dir is None:
            raise BadInputError("no dataset folder given")
        session = _Session(Path(data_dir), run_dir, config, on_event, control)
        session.prepare(resume)
        return session.run()
    except Cancelled:  # stopped while scanning or building the model: nothing worth resuming was written
        if session is not None and session.marked_running:
            rf.update_run_file(run_dir, status="cancelled")
        on_event(RunFinished(str(run_dir), "cancelled", -1, 0.0, 0))
        return TrainResult(str(run_dir), "cancelled", -1, 0.0, 0, None)
    except Exception as raised:
        exc = explained(raised)  # another process of a distributed run that died: say so, not gloo's words
        if session is not None and session.marked_running:
            with contextlib.suppress(OSError):  # e.g. a full disk: the error below says so; run.json stays valid
                rf.update_run_file(run_dir, status="failed", error=str(exc))
        on_event(RunFailed(str(run_dir), str(exc)))
        if exc is raised:
            raise
        raise exc from raised


def _start_problem(run_dir: Path, resume: bool) -> str | None:
    """Why a fresh run cannot go into ``run_dir`` (None when it can); removes a spent stop file."""
    if not resume:
        if (run_dir / rf.RUN_FILE).exists():
            return f"{run_dir}: already holds a run; resume it (--resume) or choose another folder"
        if run_dir.exists() and not run_dir.is_dir():
            return f"{run_dir}: is a file, not a folder; choose a folder for the run"
    (run_dir / rf.STOP_FILE).unlink(missing_ok=True)
    return None


class _Session:
    """One training run: prepare (data, model, run folder or resume), run (quick head, plan, fine-tune), evaluate."""

    def __init__(self, data_dir: Path, run_dir: Path, config: TrainConfig, on_event: EventSink,
                 control: RunControl) -> None:
        self.data_dir, self.run_dir, self.config = data_dir, run_dir, config
        self.on_event, self.control = on_event, control
        self.start_epoch = 0
        self.checkpoint: dict[str, Any] | None = None
        self.plan: FineTunePlan | None = None
        self.teacher: TeacherTargets | None = None
        self.marked_running = False  # run.json says "running": from then on every ending must update it
        self.processes = current()

    # --- preparation -------------------------------------------------------------------------------
    def prepare(self, resume: bool) -> None:
        if self.config.compile and (reason := compile_unavailable()):
            raise BadInputError(reason)  # also for a run started elsewhere with compile and resumed in the bundle
        # A resumed run trains on its recorded split, and split_from on that run's: only a fresh split needs the
        # near-duplicates to split by.
        self.prepared = prepare_training(self.data_dir, self.config, self.on_event, self.control,
                                         near_duplicates=not resume and not self.config.split_from)
        self.setup, self.model, self.labels = self.prepared.setup, self.prepared.model, self.prepared.labels
        self.recorder = EpochRecorder(self.run_dir, self.model, self.config.epochs, self.on_event)
        self.control.check_together()  # a stop while preparing (scan, model, weights download) leaves no run behind
        devices = gathered(self.setup.description)
        self.process_record = {"world_size": self.processes.world_size, "backend": self.processes.backend,
                               "devices": devices}
        if resume:
            self._load_resume_state()
            self._load_teachers()
        else:
            if self.config.split_from:
                self._use_split(self._split_from(Path(self.config.split_from)))
            self._load_teachers()  # refuses a teacher that cannot teach before any run file is written
            if self.processes.main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(self.run_dir)  # a start killed before run.json was written may leave some
                rf.write_run_file(self.run_dir, {
                    "status": "running", "created": utc_now_iso(), "data_dir": str(self.data_dir.resolve()),
                    "config": self.config.to_dict(), "backbone": self.config.backbone, "labels": self.labels,
                    "preprocessing": self.prepared.cache.preprocessing.to_dict(), "dataset": self._dataset_summary(),
                    "versions": rf.versions(), "device": self.setup.description, "processes": self.process_record,
                    "process": this_process(),
                })
                self.marked_running = True
                self._record_split()
        if self.processes.distributed:  # one split for all, whatever each process's scan found
            self._use_split(ScanReport.from_dict(from_main(self.prepared.report.to_dict())))
        report = self.prepared.report
        self.train_items = report.split_items("train")
        self.val_items = report.split_items("val")
        self.test_items = report.split_items("test")
        if self.prepared.class_weights is not None:
            self.on_event(WarningEvent(
                f"classes are imbalanced ({report.imbalance_ratio:.1f}x): the loss is class-weighted"))

    def _load_resume_state(self) -> None:
        info = rf.read_run(self.run_dir)
        if list(info.labels) != self.labels:
            raise BadInputError(f"{self.data_dir}: classes changed since the run started "
                             f"({', '.join(info.labels)} → {', '.join(self.labels)}); start a new run")
        if self.processes.main:
            remove_stale_temporaries(self.run_dir)  # half-written files of a killed process
        self.start_epoch, self.checkpoint = self.recorder.resume(self.setup.device)
        if self.checkpoint is None and not (self.run_dir / rf.SCAN_REPORT_FILE).is_file():
            if self.processes.main:
                self._record_split()  # killed before recording a split, so before training on one: this scan's
        else:
            self._use_split(keep_recorded_split(rf.read_scan_report(info), self.prepared.report, self.on_event))
        if self.checkpoint is None:
            self.on_event(WarningEvent(f"{self.run_dir}: no checkpoint yet (the run stopped before its first epoch "
                                       "ended); starting again from epoch 0"))
        else:  # the plan made after the quick head; runs from before plans were recorded get the one for their config
            self.plan = info.plan or plan_fine_tune(self.config, len(self.model.stages), None)
        if self.processes.main:
            rf.update_run_file(self.run_dir, status="running", processes=self.process_record,
                               process=this_process())
            self.marked_running = True

    def _split_from(self, source: Path) -> ScanReport:
        """This scan with the split recorded in run ``source`` (trained on the same classes)."""
        recorded = rf.read_scan_report(rf.read_run(source))
        if list(recorded.classes) != self.labels:
            raise BadInputError(f"{source}: its classes ({', '.join(recorded.classes)}) differ from those of "
                                f"{self.data_dir} ({', '.join(self.labels)}); split from a run of this data")
        report = keep_recorded_split(recorded, self.prepared.report, self.on_event)
        counts = ", ".join(f"{len(report.split_items(split))} {split}" for split in ("train", "val", "test"))
        self.on_event(Info(f"split: the one recorded in {source} ({counts} photos)"))
        return report

    def _load_teachers(self) -> None:
        if self.config.teachers:
            self.teacher = TeacherTargets.load(self.config.teachers, self.labels, self.prepared.report, self.config,
                                               self.setup, self.on_event, self.control)
            self.on_event(Info(f"distillation from {len(self.config.teachers)} teacher(s), "
                               f"{len(self.teacher.members)} model(s): alpha {self.config.distill_alpha:g}, "
                               f"temperature {self.config.distill_temperature:g}"))

    def _record_split(self) -> None:
        """scan_report.json: the split this run trains on, which resuming and re-evaluating keep to."""
        write_json_atomic(self.run_dir / rf.SCAN_REPORT_FILE, self.prepared.report.to_dict())

    def _use_split(self, report: ScanReport) -> None:
        """Train on ``report`` instead of the fresh scan's split; the class weights follow its training counts."""
        self.prepared = replace(self.prepared, report=report,
                                class_weights=class_weights_for(self.config, report, self.labels))

    def _dataset_summary(self) -> dict[str, Any]:
        report = self.prepared.report
        return {"root": str(self.data_dir), "layout": report.layout, "classes": self.labels,
                "counts": report.counts, "imbalance_ratio": report.imbalance_ratio, "skipped": len(report.skipped)}

    # --- running -----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        self.on_event(RunStarted(str(self.run_dir), self.config.to_dict(), self.setup.description,
                                 self._dataset_summary(), self.start_epoch))
        evaluation = None
        try:
            self.train_items = self._drop_unreadable(self.train_items)
            self.val_items = self._drop_unreadable(self.val_items)
            if self.start_epoch == 0:
                self.plan = self._quick_head_and_plan()
            assert self.plan is not None  # set by the quick head, or read back on resume
            if self._fine_tune_left(self.plan):
                FineTuner(self.model, self.plan, self.config, self.setup, self.prepared.frozen, self.recorder,
                          self.run_dir, self._drop_unreadable, self.on_event, self.control, self.teacher).run(
                    FineTuneData(self.train_items, self.val_items, self.prepared.class_weights),
                    self.start_epoch, self.checkpoint)
            evaluation = self._final_evaluation()
            status = "completed"
        except Cancelled:  # from the quick head to the final evaluation: resumable, with the best epoch so far
            status = "cancelled"
        epochs_run = from_main(len(rf.read_metrics(self.run_dir)) if self.processes.main else 0)
        best = self.recorder.best
        if self.processes.main:
            rf.update_run_file(self.run_dir, status=status, finished=utc_now_iso(), best_epoch=best["epoch"],
                               best_val_accuracy=best["val_accuracy"], epochs_completed=epochs_run)
            self._limit_caches()
        summary = {"validation_accuracy": evaluation["validation"]["accuracy"]} if evaluation else {}
        self.on_event(RunFinished(str(self.run_dir), status, int(best["epoch"]), float(best["val_accuracy"]),
                                  epochs_run, summary))
        return TrainResult(str(self.run_dir), status, int(best["epoch"]), float(best["val_accuracy"]), epochs_run,
                           evaluation)

    def _fine_tune_left(self, plan: FineTunePlan) -> bool:
        """Epochs remain that early stopping did not cancel: a run stopped during its final evaluation resumes
        straight to it."""
        stopped_early = plan.patience and self.recorder.bad_epochs >= plan.patience
        return bool(plan.epochs) and self.start_epoch <= plan.epochs and not stopped_early

    def _limit_caches(self) -> None:
        """Keep each on-disk cache under its size limit; this run's entries are the most recently used."""
        limit = cache_limit_bytes()
        for name, folder in (("feature", default_feature_dir()), ("decoded-image", self.prepared.cache.disk_dir)):
            pruned = prune(folder, limit)
            if pruned.files:
                self.on_event(Info(f"{name} cache over its {limit / 1024**3:g} GB limit ({LIMIT_VARIABLE}): removed "
                                   f"the {pruned.files} least recently used entries ({pruned.bytes / 1e6:.0f} MB)"))

    def _quick_head_and_plan(self) -> FineTunePlan:
        """Epoch 0: fit the head on frozen embeddings; choose the fine-tune plan from its fit; record both.

        The plan goes into run.json before epoch 0's checkpoint, so a run resumed after epoch 0 finds it.
        """
        self.on_event(EpochStarted(0, self.config.epochs, "head"))
        head = fit_quick_head(self.prepared, self.train_items, self.val_items, self.on_event)
        if self.processes.distributed:  # rank 0's head and fit for all: one plan, and the same starting weights
            head = from_main(head)
            self.model.head.load_state_dict(from_main({k: v.cpu() for k, v in self.model.head.state_dict().items()}))
        plan = plan_fine_tune(self.config, len(self.model.stages), head.fit)
        if self.processes.main:
            rf.update_run_file(self.run_dir, plan=plan.to_dict())
        self.recorder.total_epochs = plan.epochs
        self.recorder.record(
            EpochMetrics(0, "head", head.train_loss, head.fit.train_accuracy, head.val_loss, head.fit.val_accuracy,
                         0.0, head.seconds, len(self.train_items)),
            extra={"head_l2": head.l2, "embedding_seconds": head.seconds - head.fit_seconds,
                   "fit_seconds": head.fit_seconds},
            optimizer=None, scheduler=None)
        if plan.epochs:
            self.on_event(Info(f"plan: {plan.depth} fine-tune, {plan.epochs} epochs ({plan.reason})"))
        return plan

    def _drop_unreadable(self, items: tuple[ImageItem, ...]) -> tuple[ImageItem, ...]:
        """Skip, with a warning, files deleted or broken since the scan; the run goes on without them."""
        kept, unreadable = still_readable(self.prepared.cache, items)
        for exc in unreadable:
            self.on_event(WarningEvent(f"skipped {exc.path}: {exc.reason} (changed since the scan)"))
        return kept

    def _final_evaluation(self) -> dict[str, Any]:
        """Restore the best weights and evaluate validation (and test, once) into evaluation.json, with the
        temperature fitted on validation."""
        assert self.plan is not None
        best = load_checkpoint_in_every_process(self.run_dir / rf.BEST_FILE, self.setup.device)
        if best is None:
            raise CheckpointError(f"{self.run_dir / rf.BEST_FILE}: checkpoint not found")
        self.model.load_state_dict(best["model"])
        first = self.plan.first_trainable
        splits: dict[str, SplitLogits] = {}
        for name, items in (("validation", self.val_items), ("test", self.test_items)):
            if items:
                logits = self.prepared.frozen.logits(items, first, f"evaluating ({name})").numpy()
                splits[name] = SplitLogits(tuple(i.label for i in items), logits, tuple(i.path for i in items))
        document = evaluate_logits(self.labels, splits["validation"], splits.get("test"),
                                   train_counts=[self.prepared.report.counts["train"][c] for c in self.labels])
        if self.processes.main:
            write_json_atomic(self.run_dir / rf.EVALUATION_FILE, document)
        return document
