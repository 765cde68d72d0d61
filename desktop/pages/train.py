"""Train page: training options, start/pause/stop, live loss and accuracy plots, progress and log; the
learning-rate finder in the options' Advanced section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs, paths
from desktop.jobs import RunSnapshot
from desktop.pages.train_options import TrainOptionsForm
from desktop.run_follower import RunFollower
from desktop.settings import AppSettings
from desktop.training_history import TrainingHistory
from desktop.widgets.log_view import LogView
from desktop.widgets.lr_find_panel import LrFindPanel
from desktop.widgets.plots import TRAIN_COLOR, VAL_COLOR, MetricPlot
from desktop.workers import Job, JobRunner
from engine.control import RunControl
from engine.errors import BadInputError
from engine.events import BatchProgress, EpochEnded, EpochStarted, EventSink, Progress, RunFinished, RunStarted
from engine.run_files import training_process_gone
from engine.time_format import format_duration
from engine.training.config import TrainConfig
from engine.training.run_folder import RUN_FILE, RunInfo, read_run, request_stop

if TYPE_CHECKING:  # imports torch, which loads on the worker thread
    from engine.training.lr_find import LrFindResult
    from engine.training.trainer import TrainResult

REDRAW_MS = 250


def _epoch_line(record: Mapping[str, Any], epochs: int) -> str:
    """The log line of one epoch, from an EpochEnded event or a metrics.jsonl record."""
    name = "quick head" if record["epoch"] == 0 else f"epoch {record['epoch']}/{epochs}"
    best = " · best so far" if record.get("is_best") else ""
    return (f"{name}: train loss {record['train_loss']:.3f}, accuracy {record['train_accuracy']:.1%} · "
            f"validation loss {record['val_loss']:.3f}, accuracy {record['val_accuracy']:.1%} · "
            f"{record['seconds']:.1f} s{best}")


def _planned_epochs(info: RunInfo) -> int:
    """The run's epochs: its plan's once the quick head made one, the config's before."""
    return info.plan.epochs if info.plan is not None else info.config.epochs


def _distill(out: Path, config: TrainConfig) -> Job:
    """``config.teachers`` distilled into a student in ``out``, with a baseline student trained without them."""

    def run(on_event: EventSink, control: RunControl) -> Path | None:
        from engine.training.distillation import distill

        result = distill([Path(t) for t in config.teachers], out, config, baseline=True, on_event=on_event,
                         control=control)
        return out if result.status == "completed" else None

    return Job(f"Distilling into {out.name}", run)


class TrainPage(QWidget):
    """Owns the training JobRunner's signals; the plots redraw from a timer, never per event."""

    run_ended = Signal(object, str)  # run folder, status ("completed" | "cancelled" | "failed")

    def __init__(self, runner: JobRunner, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainPage")
        self.runner, self.settings = runner, settings
        self.data_dir: Path | None = None
        self.run_dir: Path | None = None
        self.history = TrainingHistory()
        self._train_job: Job | None = None
        self._lr_find_job: Job | None = None
        self._resumable: Path | None = None
        self._follower: RunFollower | None = None  # a run another process trains, shown live
        self._followed: RunInfo | None = None  # its run.json, as last read
        self._followed_records: list[dict[str, Any]] = []  # its metrics.jsonl, as read so far
        self._stop_requested = False  # Stop wrote the followed run's stop file
        self._epoch = (0, 0, "")  # current epoch, epochs, phase
        self._epoch_seconds: float | None = None
        self._dirty = False
        self.options_form = TrainOptionsForm(settings)
        self.lr_find_panel = LrFindPanel()
        self.options_form.add_advanced_row(self.lr_find_panel)
        self.lr_find_panel.find_button.clicked.connect(self.on_find_lr_clicked)
        self.lr_find_panel.use_requested.connect(self.on_use_suggested_lr)
        self.dataset_label = QLabel("No dataset yet: open one on the Data page.", objectName="datasetLabel")
        self.dataset_label.setWordWrap(True)
        self.start_button = QPushButton("Start training", objectName="startButton")
        self.start_button.setToolTip("Start a new run (Ctrl+R)")
        self.start_button.setShortcut("Ctrl+R")
        self.pause_button = QPushButton("Pause", objectName="pauseButton")
        self.stop_button = QPushButton("Stop", objectName="stopButton")
        self.stop_button.setToolTip("Stop after the current batch; the run is saved and can be resumed")
        self.resume_button = QPushButton("Resume run", objectName="resumeButton")
        self.resume_button.setToolTip("Continue the stopped run from its last finished epoch")
        self.start_button.clicked.connect(self.on_start_clicked)
        self.pause_button.clicked.connect(self.on_pause_clicked)
        self.stop_button.clicked.connect(self.on_stop_clicked)
        self.resume_button.clicked.connect(self.on_resume_clicked)
        self.options_error = QLabel(objectName="optionsErrorLabel")
        self.options_error.setWordWrap(True)
        self.options_error.hide()
        self.run_label = QLabel(objectName="runLabel")
        self.run_label.setWordWrap(True)
        self.run_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.follow_label = QLabel(objectName="followRunLabel")
        self.follow_label.setWordWrap(True)
        self.follow_label.hide()

        self.progress = QProgressBar(objectName="progressBar")
        self.progress.setTextVisible(True)
        self.progress.setFormat("Idle")
        self.progress.setValue(0)
        self.loss_plot = MetricPlot("Loss", "loss")
        self.loss_plot.setObjectName("lossPlot")
        self.loss_plot.add_curve("batch", "train (per batch, smoothed)", TRAIN_COLOR.lighter(150), width=1.0,
                                 symbol=None, dashed=True)
        self.loss_plot.add_curve("train", "train", TRAIN_COLOR)
        self.loss_plot.add_curve("val", "validation", VAL_COLOR)
        self.accuracy_plot = MetricPlot("Accuracy", "accuracy (%)", legend_offset=(-10, -10))
        self.accuracy_plot.setObjectName("accuracyPlot")
        self.accuracy_plot.add_curve("train", "train", TRAIN_COLOR)
        self.accuracy_plot.add_curve("val", "validation", VAL_COLOR)
        self.accuracy_plot.setYRange(0, 100, padding=0.02)
        self.accuracy_plot.getPlotItem().enableAutoRange(y=False)
        self.log_view = LogView()
        self.log_view.setObjectName("logView")
        self.redraw_timer = QTimer(self, interval=REDRAW_MS)
        self.redraw_timer.timeout.connect(self.on_redraw_timer)

        self._build_layout()
        self._connect_runner()
        self._update_buttons()

    # --- layout ------------------------------------------------------------------------------------
    def _build_layout(self) -> None:
        options_box = QGroupBox("Training")
        QVBoxLayout(options_box).addWidget(self.options_form)
        dataset_box = QGroupBox("Dataset")
        QVBoxLayout(dataset_box).addWidget(self.dataset_label)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.addWidget(dataset_box)
        left_layout.addWidget(options_box)
        left_layout.addLayout(buttons)
        left_layout.addWidget(self.options_error)
        left_layout.addWidget(self.resume_button)
        left_layout.addWidget(self.run_label)
        left_layout.addWidget(self.follow_label)
        left_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(left)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(left.sizeHint().width() + 24)

        plots = QSplitter(Qt.Orientation.Horizontal)
        plots.addWidget(self.loss_plot)
        plots.addWidget(self.accuracy_plot)
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(plots)
        right_split.addWidget(self.log_view)
        right_split.setSizes([420, 160])
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.progress)
        right_layout.addWidget(right_split, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(scroll)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 1)
        QVBoxLayout(self).addWidget(splitter)

    def _connect_runner(self) -> None:
        runner = self.runner
        runner.run_started.connect(self.on_run_started)
        runner.progress.connect(self.on_progress)
        runner.epoch_started.connect(self.on_epoch_started)
        runner.batch_progress.connect(self.on_batch_progress)
        runner.epoch_ended.connect(self.on_epoch_ended)
        runner.info.connect(self.on_info)
        runner.warning.connect(self.on_warning)
        runner.run_finished.connect(self.on_run_finished)
        runner.returned.connect(self.on_returned)
        runner.failed.connect(self.on_failed)
        runner.aborted.connect(self.on_aborted)
        runner.finished.connect(self.on_finished)
        runner.paused_changed.connect(self.on_paused_changed)

    # --- dataset and runs --------------------------------------------------------------------------
    @property
    def training(self) -> bool:
        return self._train_job is not None

    @property
    def following(self) -> bool:
        """Showing, live, a run that another process trains (Stop writes its stop file)."""
        return self._follower is not None

    @property
    def finding_lr(self) -> bool:
        return self._lr_find_job is not None

    @property
    def busy(self) -> bool:
        """Training or the learning-rate sweep."""
        return self.training or self.finding_lr

    def _owns(self, job: Job) -> bool:
        """Whether ``job`` is this page's running training or sweep (the window's options job shares the runner)."""
        return job is self._train_job or job is self._lr_find_job

    def set_dataset(self, folder: Path, summary: str) -> None:
        self.data_dir = Path(folder)
        self.dataset_label.setText(f"<b>{self.data_dir.name}</b><br>{summary}")
        self.dataset_label.setToolTip(str(self.data_dir))
        self._update_buttons()

    def show_run(self, snapshot: RunSnapshot) -> None:
        """Show an opened run's curves; a stopped run can be resumed from here. A run still "running" that this app
        does not train is followed live: another process (or machine, through a shared folder) trains it."""
        if self.training or (self.following and snapshot.run_dir == self.run_dir):
            return
        self._stop_following()
        info = snapshot.info
        gone = training_process_gone(info.raw)  # "running", but its process on this machine was killed
        follow = info.status == "running" and not gone
        if follow or snapshot.run_dir != self.run_dir or not self.history.epochs:  # keep the curves of a run shown
            metrics = [] if follow else snapshot.metrics  # a followed run's are read from the start by its follower
            self.history = TrainingHistory.from_metrics(metrics)
            self.options_form.set_options(info.config.to_dict())
            self.log_view.clear()
            self.log_view.add_line(f"Opened {snapshot.run_dir}")
            for record in metrics:
                self.log_view.add_line(_epoch_line(record, _planned_epochs(info)))
        self.run_dir = snapshot.run_dir
        self._resumable = snapshot.run_dir if snapshot.resumable else None
        status = "interrupted: its process is gone" if gone else info.status
        self.run_label.setText(f"Run folder: {snapshot.run_dir} ({status})")
        self.progress.setFormat(f"Run {status}")
        if gone:
            self.log_view.add_line(f"run.json says running, but its process ({info.raw['process']['pid']} on this "
                                   "machine) is gone: it was killed or crashed. Resume continues it from its last "
                                   "epoch.")
        if follow:
            self._follow(info)
        self._redraw()
        self._update_buttons()

    def _follow(self, info: RunInfo) -> None:
        self._followed, self._followed_records, self._stop_requested = info, [], False
        self._follower = RunFollower(info.path, self)
        self._follower.records_read.connect(self.on_followed_records)
        self._follower.ended.connect(self.on_followed_run_ended)
        self.follow_label.setText("Following a run written by another process: the curves and log update as it "
                                  "trains. Stop asks that process to stop after its current batch.")
        self.follow_label.show()
        self.progress.setRange(0, 0)
        self.progress.setFormat("Following the run…")
        self._follower.start()

    def _stop_following(self) -> None:
        if self._follower is not None:
            self._follower.stop()
            self._follower.deleteLater()
            self._follower = None
            self.follow_label.hide()

    def start(self) -> None:
        if self.busy or self.data_dir is None or (config := self._checked_config()) is None:
            return
        self.settings.set("train/options", self.options_form.options())
        self._begin_new_run(config)

    def retrain(self, info: RunInfo) -> bool:
        """A new run with ``info``'s dataset and options (after corrections were added to its dataset): the warm
        feature cache makes the photos it has seen take seconds. False while another job runs."""
        if self.busy:
            return False
        self.set_dataset(Path(info.data_dir), f"{info.path.name}'s dataset, with its corrections")
        self.options_form.set_options(info.config.to_dict())
        self._begin_new_run(info.config)
        self.log_view.add_line(f"Training again with the options of {info.path}")
        return True

    def distill(self, teachers: Sequence[Path], student: str, alpha: float, temperature: float) -> bool:
        """A ``student`` model learning from the ``teachers`` runs' probabilities as well as the labels, on the first
        teacher's dataset with its options (a fine-tune, where it only fitted a head). False while another job runs;
        BadInputError when a teacher cannot be read or the options are refused."""
        if self.busy:
            return False
        info = read_run(teachers[0])
        strategy = "fine-tune" if info.config.strategy == "feature-extract" else info.config.strategy
        config = replace(info.config, backbone=student, strategy=strategy, weights_file=None,
                         teachers=tuple(str(t) for t in teachers), distill_alpha=alpha,
                         distill_temperature=temperature)
        self.set_dataset(Path(info.data_dir), f"{info.path.name}'s dataset, distilled from {len(teachers)} run(s)")
        self.options_form.set_options(config.to_dict())
        self._begin_new_run(config)
        self.log_view.add_line(f"Distilling {', '.join(t.name for t in teachers)} into {student} "
                               f"(teacher weight {alpha:g}, temperature {temperature:g})")
        return True

    def _begin_new_run(self, config: TrainConfig) -> None:
        """A fresh run folder, empty curves and log, and the training job on the page's dataset (a distillation when
        the config names teachers)."""
        self.run_dir = paths.new_run_folder()
        self.history = TrainingHistory()
        self.log_view.clear()
        self._begin(_distill(self.run_dir, config) if config.teachers else
                    jobs.train(self.data_dir, self.run_dir, config))

    def _checked_config(self) -> TrainConfig | None:
        """The form's TrainConfig, or None with the reason shown under the buttons (and nothing created)."""
        try:
            config = self.options_form.config()
        except ValueError as exc:
            self.options_error.setText(f"<b>Check the options:</b> {exc}")
            self.options_error.show()
            return None
        self.options_error.hide()
        return config

    def resume(self) -> None:
        if self.busy or self._resumable is None:
            return
        self.run_dir = self._resumable
        self.log_view.add_line(f"Resuming {self.run_dir}")
        self._begin(jobs.train(None, self.run_dir, None, resume=True))

    def _begin(self, job: Job) -> None:
        self._stop_following()
        self._resumable = None
        self._epoch, self._epoch_seconds = (0, 0, ""), None
        self.run_label.setText(f"Run folder: {self.run_dir}")
        self.progress.setRange(0, 0)
        self.progress.setFormat("Preparing…")
        self._dirty = True
        self._redraw()
        self._train_job = self.runner.submit(job)
        self.redraw_timer.start()
        self._update_buttons()

    def find_learning_rate(self) -> None:
        """Sweep the learning rate on the dataset with the form's options (the engine's default steps)."""
        if self.busy or self.data_dir is None or (config := self._checked_config()) is None:
            return
        self._stop_following()
        self.lr_find_panel.clear()
        self.log_view.add_line(f"Finding a learning rate for {self.data_dir.name}")
        self._epoch = (0, 0, "")
        self.progress.setRange(0, 0)
        self.progress.setFormat("Preparing the learning-rate sweep…")
        self._lr_find_job = self.runner.submit(jobs.find_learning_rate(self.data_dir, config))
        self._update_buttons()

    def stop(self) -> None:
        if self.training:
            self.runner.cancel()
            self.progress.setFormat("Stopping…")
            self._update_buttons()
        elif self.following and self.run_dir is not None:
            try:
                request_stop(self.run_dir)
            except (OSError, BadInputError) as exc:
                self.log_view.add_line(f"Could not ask the run to stop: {exc}", warning=True)
                return
            self._stop_requested = True
            self.log_view.add_line("Stop requested: the process training this run stops after its current batch, "
                                   "once the stop file reaches it. If that process no longer runs (its run.json "
                                   "still says “running”), “Resume run” continues the run here.")
            self.progress.setFormat("Stopping…")
            self._update_buttons()

    def _discard_empty_run_folder(self) -> bool:
        """Remove the new run folder when the run failed before writing anything to it."""
        if self.run_dir is not None and self.run_dir.is_dir() and not any(self.run_dir.iterdir()):
            self.run_dir.rmdir()
            return True
        return False

    def _update_buttons(self) -> None:
        stopping = self.training and self._train_job is not None and self._train_job.control.cancelled
        can_start = not self.busy and self.data_dir is not None
        self.start_button.setEnabled(can_start)
        self.pause_button.setEnabled(self.training and not stopping)
        self.stop_button.setEnabled((self.training and not stopping) or (self.following and not self._stop_requested))
        self.pause_button.setText("Resume" if self.runner.paused and self.training else "Pause")
        # A followed run has a writer: resuming it here too is offered only once asked to stop (or found dead).
        self.resume_button.setVisible(self._resumable is not None and (not self.following or self._stop_requested))
        self.resume_button.setEnabled(not self.busy and self._resumable is not None)
        self.options_form.setEnabled(not self.training)
        sweep = self._lr_find_job  # while it runs, its button stops it
        self.lr_find_panel.set_running(sweep is not None)
        self.lr_find_panel.find_button.setEnabled(can_start or (sweep is not None and not sweep.control.cancelled))

    def _redraw(self) -> None:
        h = self.history
        self.loss_plot.set_curve("batch", h.batch_x, h.batch_loss)
        self.loss_plot.set_curve("train", h.epochs, h.train_loss)
        self.loss_plot.set_curve("val", h.epochs, h.val_loss)
        self.accuracy_plot.set_curve("train", h.epochs, [100 * a for a in h.train_accuracy])
        self.accuracy_plot.set_curve("val", h.epochs, [100 * a for a in h.val_accuracy])
        self._dirty = False

    # --- slots -------------------------------------------------------------------------------------
    @Slot()
    def on_start_clicked(self) -> None:
        self.start()

    @Slot()
    def on_resume_clicked(self) -> None:
        self.resume()

    @Slot()
    def on_stop_clicked(self) -> None:
        self.stop()

    @Slot()
    def on_find_lr_clicked(self) -> None:
        if self._lr_find_job is None:
            self.find_learning_rate()
            return
        self._lr_find_job.control.cancel()
        self.progress.setFormat("Stopping…")
        self._update_buttons()

    @Slot(float)
    def on_use_suggested_lr(self, lr: float) -> None:
        self.options_form.set_options({"lr": lr})

    @Slot()
    def on_pause_clicked(self) -> None:
        if self.runner.paused:
            self.runner.resume()
        else:
            self.runner.pause()

    @Slot(bool)
    def on_paused_changed(self, paused: bool) -> None:
        if self.training and not self._train_job.control.cancelled:
            self.log_view.add_line("Paused" if paused else "Continuing")
            if paused:
                self.progress.setFormat("Paused (after the current batch)")
        self._update_buttons()

    @Slot(list, bool)
    def on_followed_records(self, records: list[dict[str, Any]], from_start: bool) -> None:
        """New lines of the followed run's metrics.jsonl: its curves, log and progress."""
        if from_start and self._followed_records:  # rewritten (resumed): the file holds the whole run again
            self.log_view.add_line("The run's metrics were rewritten (it was resumed): read again from the start")
        self._followed_records = [*([] if from_start else self._followed_records), *records]
        self.history = TrainingHistory.from_metrics(self._followed_records)  # a few hundred epochs at most
        followed = self._followed
        if followed is not None and followed.plan is None and records:  # the quick head's plan is now in run.json
            try:
                followed = self._followed = read_run(followed.path)
            except BadInputError as exc:
                self.log_view.add_line(str(exc), warning=True)
        epochs = _planned_epochs(followed) if followed is not None else 0
        for record in records:
            self.log_view.add_line(_epoch_line(record, epochs))
        if records and not self._stop_requested:
            self.progress.setRange(0, max(epochs, 1))
            self.progress.setValue(min(self.history.epochs[-1], epochs))
            self.progress.setFormat(f"Following: epoch {self.history.epochs[-1]} of {epochs} done")
        self._redraw()

    @Slot(str)
    def on_followed_run_ended(self, status: str) -> None:
        """The process writing the followed run ended it: shown as a run that ended here would be."""
        run_dir = self.run_dir
        self._stop_following()
        if run_dir is None:
            return
        try:
            info: RunInfo | None = read_run(run_dir)
        except BadInputError as exc:
            info = None
            self.log_view.add_line(str(exc), warning=True)
        self._resumable = None if status == "completed" else run_dir
        if status == "completed" and info is not None and info.best_val_accuracy is not None:
            self.log_view.add_line(f"Finished: best epoch {info.best_epoch}, validation accuracy "
                                   f"{info.best_val_accuracy:.1%}. See the Evaluate page.")
        elif status == "cancelled":
            self.log_view.add_line("Stopped: the run is saved; press “Resume run” to continue it here (or resume it "
                                   "where it ran).")
        elif info is not None and info.error:
            self.log_view.add_line(f"The run {status}: {info.error}", warning=True)
        self.run_label.setText(f"Run folder: {run_dir} ({status})")
        self._show_ended(f"Run {status}", done=status == "completed")
        self._update_buttons()
        self.run_ended.emit(run_dir, status)

    @Slot()
    def on_redraw_timer(self) -> None:
        if self._dirty:
            self._redraw()

    @Slot(object, object)
    def on_run_started(self, job: Job, event: RunStarted) -> None:
        if job is not self._train_job:
            return
        if not event.start_epoch and Path(event.run_dir) != self.run_dir:  # a distillation's second run
            self.run_dir, self.history = Path(event.run_dir), TrainingHistory()
            self.run_label.setText(f"Run folder: {self.run_dir}")
        if event.start_epoch:
            self.history.truncate(event.start_epoch)
            self._dirty = True
        counts = event.dataset.get("counts", {})
        train, val = (sum(counts.get(split, {}).values()) for split in ("train", "val"))
        resumed = f", resuming at epoch {event.start_epoch}" if event.start_epoch else ""
        self.log_view.add_line(f"Training {event.config['backbone']} ({event.config['strategy']}) on {event.device}: "
                               f"{len(event.dataset.get('classes', []))} classes, {train} training and {val} "
                               f"validation images{resumed}")

    @Slot(object, object)
    def on_progress(self, job: Job, event: Progress) -> None:
        if not self._owns(job):
            return
        if event.done >= event.total and self._epoch[2] == "head":  # the head fit itself reports no steps
            self.progress.setRange(0, 0)
            self.progress.setFormat("Quick head: fitting the classifier on the features…")
            return
        self.progress.setRange(0, max(event.total, 1))
        self.progress.setValue(event.done)
        eta = f" · ETA {format_duration(event.eta_seconds)}" if event.eta_seconds else ""
        self.progress.setFormat(f"{event.phase}: {event.done}/{event.total}{eta}")

    @Slot(object, object)
    def on_epoch_started(self, job: Job, event: EpochStarted) -> None:
        if job is self._train_job:
            self._epoch = (event.epoch, event.epochs, event.phase)

    @Slot(object, object)
    def on_batch_progress(self, job: Job, event: BatchProgress) -> None:
        if job is not self._train_job:
            return
        self.history.add_batch(event.epoch, event.batch, event.batches, event.loss)
        self._dirty = True
        if self.runner.paused:
            return
        epochs = self._epoch[1] or event.epoch
        per_epoch = self._epoch_seconds or event.eta_seconds / max(event.batches - event.batch, 1) * event.batches
        eta = event.eta_seconds + (epochs - event.epoch) * per_epoch
        self.progress.setRange(0, event.batches)
        self.progress.setValue(event.batch)
        self.progress.setFormat(f"Epoch {event.epoch}/{epochs} · batch {event.batch}/{event.batches} · "
                                f"{event.images_per_second:.0f} img/s · ETA {format_duration(eta)}")

    @Slot(object, object)
    def on_epoch_ended(self, job: Job, event: EpochEnded) -> None:
        if job is not self._train_job:
            return
        self.history.add_epoch(event.epoch, event.train_loss, event.train_accuracy, event.val_loss,
                               event.val_accuracy)
        self._dirty = True
        if event.epoch > 0:
            self._epoch_seconds = event.seconds
        self.log_view.add_line(_epoch_line(asdict(event), event.epochs))

    @Slot(object, str)
    def on_info(self, job: Job, message: str) -> None:
        if self._owns(job):
            self.log_view.add_line(message)

    @Slot(object, str)
    def on_warning(self, job: Job, message: str) -> None:
        if self._owns(job):
            self.log_view.add_line(message, warning=True)

    @Slot(object, object)
    def on_run_finished(self, job: Job, event: RunFinished) -> None:
        if job is not self._train_job:
            return
        if event.status != "completed" and not (Path(event.run_dir) / RUN_FILE).is_file():
            self._stopped_before_training()  # stopped while scanning or building the model: no run to resume
            return
        if event.status == "completed":
            accuracy = event.summary.get("validation_accuracy", event.best_val_accuracy)
            self.log_view.add_line(f"Finished: best epoch {event.best_epoch} of 0–{event.epochs_run - 1}, validation "
                                   f"accuracy {accuracy:.1%}. See the Evaluate page.")
        else:
            self._resumable = Path(event.run_dir)
            self.log_view.add_line("Stopped: the run is saved; press “Resume run” to continue it.")
        self._show_ended(f"Run {event.status}", done=event.status == "completed")
        self.run_ended.emit(Path(event.run_dir), event.status)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._train_job:
            self.log_view.add_line(f"Training failed: {message}", warning=True)
            self._show_ended("Failed")
            if self.run_dir is not None and not self._discard_empty_run_folder():
                self.run_ended.emit(self.run_dir, "failed")
        elif job is self._lr_find_job:
            self.log_view.add_line(f"Learning-rate sweep failed: {message}", warning=True)
            self._show_ended("Failed")

    @Slot(object)
    def on_aborted(self, job: Job) -> None:
        if job is self._train_job:
            self._stopped_before_training()
        elif job is self._lr_find_job:
            self.log_view.add_line("Learning-rate sweep stopped.")
            self._show_ended("Stopped")

    @Slot(object, object)
    def on_returned(self, job: Job, result: LrFindResult | TrainResult | Path | None) -> None:
        if job is self._train_job and isinstance(result, Path):
            # A distillation's student, which ended before the student trained without a teacher: shown last.
            self.log_view.add_line(f"Distilled: the trade-off table is on the Runs page ({result.name}).")
            self.run_ended.emit(result, "completed")
        if job is not self._lr_find_job:
            return
        self.lr_find_panel.show_result(result)
        self.log_view.add_line(f"Learning-rate sweep ({result.depth} fine-tune, {len(result.learning_rates)} steps): "
                               f"suggested {result.suggestion:.1e}")
        self._show_ended("Learning-rate sweep done", done=True)

    def _stopped_before_training(self) -> None:
        self.log_view.add_line("Stopped before training began.")
        self._show_ended("Stopped")
        self._discard_empty_run_folder()

    def _show_ended(self, text: str, *, done: bool = False) -> None:
        """The progress bar once a job has ended: full when it completed, empty otherwise."""
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if done else 0)
        self.progress.setFormat(text)

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._lr_find_job:
            self._lr_find_job = None
            self._update_buttons()
        if job is not self._train_job:
            return
        self._train_job = None
        self.redraw_timer.stop()
        self._redraw()
        self._update_buttons()
