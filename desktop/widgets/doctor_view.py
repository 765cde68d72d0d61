"""The dataset doctor on the Data page: run it on the worker, review its findings in one queue per kind, act on them.

The doctor (``engine.training.doctor_run``) finds near-duplicate photos, likely wrong labels and off-topic photos.
Every action goes through ``engine.dataset.journal`` on the worker: nothing is deleted, each change is journalled in
the dataset's ``.transfer-studio`` folder and Undo reverses the last one. After each action the page rescans the
folder (``rescan_requested``), so that the class counts and the excluded list follow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QPalette, QPixmap, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from desktop import jobs
from desktop.thumbnails import to_pixmap
from desktop.widgets.progress import show_progress
from desktop.workers import Job, JobRunner
from engine.dataset.doctor import DoctorReport
from engine.dataset.journal import ExclusionRecord, JournalRecord, MoveRecord
from engine.dataset.report import ScanReport
from engine.events import Progress

PREVIEW_SIZE = 128  # side by side, a copy and its original must be comparable by eye
INTRO = "The doctor finds near-duplicate photos, likely wrong labels and off-topic photos in the dataset."


@dataclass(frozen=True)
class Finding:
    """One row of a queue: the photos it is about, and what its actions do with them."""

    photos: tuple[str, ...]  # absolute paths in the report's order; a duplicate group's first is the copy kept
    classes: tuple[str, ...]  # each photo's class
    to_exclude: tuple[str, ...]  # a duplicate group's photos but the first; otherwise the photo
    reason: str  # the exclusion's reason, shown in the scan report
    title: str  # above the preview
    captions: tuple[str, ...]  # under each photo in the preview
    suggested: str | None = None  # a likely wrong label's suggested class
    confident: bool = False  # a wrong label by confident learning's rule, not only the model's disagreement


@dataclass(frozen=True)
class Handled:
    """What an action did to a row: shown in its "Done" column; an undo that reverses it clears it."""

    action: str  # "exclude" | "move"
    text: str
    paths: frozenset[str]  # the photos it changed, below the dataset folder, '/'-separated (as the journal has them)


class FindingsTable(QTableView):
    """A queue of findings in the report's order (never sorted); handled rows are greyed, with what was done."""

    def __init__(self, name: str, headers: Sequence[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.items = QStandardItemModel(0, len(headers) + 1, self)
        self.items.setHorizontalHeaderLabels([*headers, "Done"])
        self.setModel(self.items)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # several rows: bulk actions
        self.setAlternatingRowColors(True)
        self.setWordWrap(False)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setStretchLastSection(True)
        self.findings: list[Finding] = []
        self.handled: dict[int, Handled] = {}

    def set_findings(self, rows: Sequence[tuple[Finding, Sequence[str]]]) -> None:
        """Replace the rows: each finding with its cells (the "Done" column comes empty)."""
        self.items.removeRows(0, self.items.rowCount())
        self.findings, self.handled = [finding for finding, _ in rows], {}
        for finding, cells in rows:
            row = [QStandardItem(text) for text in (*cells, "")]
            for item in row:
                item.setToolTip("\n".join(finding.photos))
            self.items.appendRow(row)
        self.resizeColumnsToContents()  # once filled: a ResizeToContents header keeps the empty table's widths

    def selected_rows(self) -> list[int]:
        return sorted(index.row() for index in self.selectionModel().selectedRows())

    def mark(self, row: int, handled: Handled | None) -> None:
        """Grey ``row`` with what was done, or (None) show it as open again."""
        if handled is None:
            self.handled.pop(row, None)
        else:
            self.handled[row] = handled
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        for column in range(self.items.columnCount()):
            self.items.item(row, column).setData(None if handled is None else grey, Qt.ItemDataRole.ForegroundRole)
        self.items.item(row, self.items.columnCount() - 1).setText("" if handled is None else handled.text)


@dataclass(frozen=True)
class _Action:
    """An action submitted to the runner, and the rows it handles when it succeeds."""

    job: Job
    kind: str  # "exclude" | "move" | "undo"
    rows: list[tuple[FindingsTable, int, Handled]]
    rescan: bool = True  # False once the page has queued a scan behind it anyway


class DoctorView(QWidget):
    """The doctor's run controls, its three queues, a preview of the selected finding, and the actions."""

    rescan_requested = Signal(object)  # Path: the dataset folder, changed by an action

    def __init__(self, runner: JobRunner, split_options: Callable[[], tuple[float, float, int]],
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("doctorView")
        self.runner, self.split_options = runner, split_options
        self.dataset: ScanReport | None = None
        self.report: DoctorReport | None = None
        self._doctor_job: Job | None = None
        self._thumbnail_job: Job | None = None
        self._action: _Action | None = None
        self._pixmaps: dict[str, QPixmap] = {}

        self.run_button = QPushButton("Run doctor", objectName="runDoctorButton")
        self.run_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.run_button.setToolTip("Look for near-duplicate photos, likely wrong labels and off-topic photos, with the "
                                   "default backbone's features (seconds for a few hundred photos)")
        self.run_button.clicked.connect(self.run_doctor)
        self.cancel_button = QPushButton("Cancel", objectName="cancelDoctorButton")
        self.cancel_button.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.cancel_button.clicked.connect(self.cancel_doctor)
        self.progress = QProgressBar(objectName="doctorProgressBar")
        self.progress.hide()
        self.status = QLabel(INTRO, objectName="doctorStatusLabel")
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # messages hold file names
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.duplicates = FindingsTable("duplicatesTable", ["Kind", "Classes", "Files", "Lowest similarity"])
        self.label_issues = FindingsTable("labelIssuesTable", ["File", "Class", "Suggested", "Probability of its "
                                                               "class", "Margin"])
        self.outliers = FindingsTable("outliersTable", ["File", "Class", "Score", "Distance"])
        self.queues = QTabWidget(objectName="doctorQueues")
        for table in self.tables():
            self.queues.addTab(table, "")
            table.selectionModel().selectionChanged.connect(self.on_selection_changed)
        self.queues.currentChanged.connect(self.on_selection_changed)
        self._set_tab_titles()

        self.preview_title = QLabel(objectName="doctorPreviewTitle")
        self.preview_title.setWordWrap(True)
        self.preview_title.setTextFormat(Qt.TextFormat.PlainText)
        self.preview_strip = QWidget(objectName="doctorPreviewStrip")
        self.preview_row = QHBoxLayout(self.preview_strip)
        self.preview_row.setContentsMargins(0, 0, 0, 0)
        self.preview_row.addStretch(1)
        self.preview_tiles: list[tuple[str, QLabel]] = []  # path, its image label
        scroll = QScrollArea(objectName="doctorPreview")
        scroll.setWidget(self.preview_strip)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        preview = QWidget()
        preview.setMinimumWidth(2 * (PREVIEW_SIZE + 4) + 3 * 8)  # a pair of near-duplicates side by side
        preview_layout = QVBoxLayout(preview)
        preview_layout.setContentsMargins(6, 0, 0, 0)
        preview_layout.addWidget(self.preview_title)
        preview_layout.addWidget(scroll, 1)

        self.exclude_button = QPushButton("Exclude", objectName="excludeButton")
        self.exclude_button.setToolTip("Leave the selected photos out of scans and training (a near-duplicate group "
                                       "keeps its first photo); they stay in their folders")
        self.exclude_button.clicked.connect(self.exclude_selected)
        self.move_button = QPushButton("Move to class…", objectName="moveToClassButton")
        self.move_button.setToolTip("Move the selected photos into another class folder")
        self.move_button.clicked.connect(self.on_move_clicked)
        self.undo_button = QPushButton("Undo", objectName="undoButton")
        self.undo_button.setToolTip("Reverse the last change to this dataset folder (one exclusion or one move)")
        self.undo_button.clicked.connect(self.undo_last)
        note = QLabel("Nothing is deleted: excluded photos stay in their folders, and every change is recorded in "
                      "the dataset's .transfer-studio folder.")
        note.setWordWrap(True)

        controls = QHBoxLayout()
        controls.addWidget(self.run_button)
        controls.addWidget(self.cancel_button)
        controls.addWidget(self.progress, 1)
        controls.addStretch(0)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.queues)
        splitter.addWidget(preview)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 0)
        actions = QHBoxLayout()
        for button in (self.exclude_button, self.move_button, self.undo_button):
            actions.addWidget(button)
        actions.addWidget(note, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(splitter, 1)
        layout.addLayout(actions)

        runner.progress.connect(self.on_progress)
        runner.returned.connect(self.on_returned)
        runner.failed.connect(self.on_failed)
        runner.aborted.connect(self.on_aborted)
        runner.finished.connect(self.on_finished)
        self._update_buttons()

    def tables(self) -> tuple[FindingsTable, FindingsTable, FindingsTable]:
        return self.duplicates, self.label_issues, self.outliers

    @property
    def running(self) -> bool:
        return self._doctor_job is not None

    # --- what the page tells it --------------------------------------------------------------------
    def set_dataset(self, dataset: ScanReport | None) -> None:
        """The dataset the page shows (None: it could not be opened). Another folder's findings are cleared; the same
        folder's stay, with what was done to them, after the rescan that follows an action."""
        self.dataset = dataset
        if dataset is not None and self.report is not None and self.report.root != dataset.root:
            self.show_report(None)
        self._update_buttons()

    def dataset_opening(self) -> None:
        """The page is about to scan a folder: a running doctor stops (the scan would wait for it on the runner), and
        an action in flight needs no rescan of its own, as this scan follows it on the runner."""
        self.cancel_doctor()
        if self._action is not None:
            self._action = replace(self._action, rescan=False)

    def show_report(self, report: DoctorReport | None) -> None:
        """Fill the queues from ``report`` (None: empty them)."""
        self.report = report
        self._pixmaps.clear()
        rows = _queue_rows(report) if report is not None else ([], [], [])
        for table, table_rows in zip(self.tables(), rows, strict=True):
            table.set_findings(table_rows)
        self._set_tab_titles()
        self.status.setText(INTRO if report is None else _summary(report))
        if report is not None:
            current = next((table for table in self.tables() if table.findings), self.duplicates)
            self.queues.setCurrentWidget(current)
            if current.findings:
                current.selectRow(0)
        self.on_selection_changed()

    def _set_tab_titles(self) -> None:
        confident = sum(finding.confident for finding in self.label_issues.findings)
        possible = len(self.label_issues.findings) - confident
        titles = (f"Near-duplicates ({len(self.duplicates.findings)})",
                  f"Likely wrong labels ({confident}" + (f" + {possible} possible)" if possible else ")"),
                  f"Outliers ({len(self.outliers.findings)})")
        for index, title in enumerate(titles):
            self.queues.setTabText(index, title)

    # --- the doctor --------------------------------------------------------------------------------
    @Slot()
    def run_doctor(self) -> None:
        if self.dataset is None or self.running or self._action is not None:
            return
        val_split, test_split, seed = self.split_options()
        self._doctor_job = self.runner.submit(jobs.doctor(Path(self.dataset.root), val_split=val_split,
                                                          test_split=test_split, seed=seed))
        self.status.setText(f"Running the doctor on {self.dataset.root} …")
        self.progress.setRange(0, 0)
        self.progress.setFormat("")
        self.progress.show()
        self._update_buttons()

    @Slot()
    def cancel_doctor(self) -> None:
        if self._doctor_job is not None:
            self._doctor_job.control.cancel()
            self.status.setText("Stopping the doctor …")

    # --- actions -----------------------------------------------------------------------------------
    def current_table(self) -> FindingsTable:
        table = self.queues.currentWidget()
        assert isinstance(table, FindingsTable)
        return table

    def selected(self) -> list[tuple[FindingsTable, int, Finding]]:
        """The current queue's selected rows that no action has handled yet."""
        table = self.current_table()
        return [(table, row, table.findings[row]) for row in table.selected_rows() if row not in table.handled]

    @Slot()
    def exclude_selected(self) -> None:
        """Exclude the selected findings' photos, each with its kind as the reason; a group keeps its first photo."""
        chosen = self._actionable()
        if not chosen or self.report is None:
            return
        by_reason: dict[str, list[str]] = {}
        rows = []
        for table, row, finding in chosen:
            by_reason.setdefault(finding.reason, []).extend(finding.to_exclude)
            copies = len(finding.to_exclude)
            text = "excluded" if len(finding.photos) == 1 else f"excluded {copies} cop{'y' if copies == 1 else 'ies'}"
            rows.append((table, row, Handled("exclude", text, self._relative(finding.to_exclude))))
        self._submit(_Action(jobs.exclude(Path(self.report.root), by_reason), "exclude", rows),
                     f"Excluding {sum(map(len, by_reason.values()))} photo(s) …")

    @Slot()
    def on_move_clicked(self) -> None:
        chosen, classes = self.selected(), self._classes()
        if not chosen or not classes:
            return
        suggested = {finding.suggested for _, _, finding in chosen}
        preselect = suggested.pop() if len(suggested) == 1 else None
        name, ok = QInputDialog.getItem(
            self, "Move to class", f"Move the photos of {len(chosen)} finding(s) into the folder of the class:",
            classes, classes.index(preselect) if preselect in classes else 0, False)
        if ok:
            self.move_selected_to(name)

    def move_selected_to(self, class_name: str) -> None:
        """Move the selected findings' photos that are not in ``class_name`` into its folder."""
        chosen = self._actionable()
        if not chosen or self.report is None:
            return
        paths: list[str] = []
        rows = []
        for table, row, finding in chosen:
            moving = tuple(p for p, c in zip(finding.photos, finding.classes, strict=True) if c != class_name)
            if moving:
                paths.extend(moving)
                rows.append((table, row, Handled("move", f"moved to {class_name}", self._relative(moving))))
        if not paths:
            self.status.setText(f"Nothing to move: the selected photos are in {class_name} already.")
            return
        self._submit(_Action(jobs.move_to_class(Path(self.report.root), paths, class_name), "move", rows),
                     f"Moving {len(paths)} photo(s) to {class_name} …")

    @Slot()
    def undo_last(self) -> None:
        root = self._root()
        if root is not None and self._action is None and not self.running:
            self._submit(_Action(jobs.undo(Path(root)), "undo", []), "Undoing the last change …")

    def _actionable(self) -> list[tuple[FindingsTable, int, Finding]]:
        """The selected open findings, when no job of this view is in flight."""
        if self._action is not None or self.running:
            return []
        chosen = self.selected()
        if not chosen and self.current_table().selected_rows():
            self.status.setText("The selected findings are handled already; Undo reverses the last change.")
        return chosen

    def _submit(self, action: _Action, text: str) -> None:
        self._action = action
        self.runner.submit(action.job)
        self.status.setText(text)
        self._update_buttons()

    def _root(self) -> str | None:
        if self.report is not None:
            return self.report.root
        return self.dataset.root if self.dataset is not None else None

    def _classes(self) -> list[str]:
        if self.dataset is not None:
            return list(self.dataset.classes)
        return list(self.report.classes) if self.report is not None else []

    def _relative(self, paths: Sequence[str]) -> frozenset[str]:
        root = self._root()
        return frozenset(PurePath(path).relative_to(root).as_posix() for path in paths) if root else frozenset()

    # --- the preview -------------------------------------------------------------------------------
    @Slot()
    def on_selection_changed(self, *_args: object) -> None:
        self._update_buttons()
        table = self.current_table()
        rows = table.selected_rows()
        self._show_preview(table.findings[rows[-1]] if rows else None)

    def _show_preview(self, finding: Finding | None) -> None:
        while self.preview_row.count() > 1:  # the last item is the stretch
            item = self.preview_row.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.preview_tiles.clear()
        self.preview_title.setText("" if finding is None else finding.title)
        if finding is None:
            return
        for index, (path, caption) in enumerate(zip(finding.photos, finding.captions, strict=True)):
            tile = QWidget()
            tile_layout = QVBoxLayout(tile)
            tile_layout.setContentsMargins(0, 0, 0, 0)
            image = QLabel(objectName="doctorPreviewImage")
            image.setFixedSize(PREVIEW_SIZE + 4, PREVIEW_SIZE + 4)
            image.setAlignment(Qt.AlignmentFlag.AlignCenter)
            image.setFrameShape(QFrame.Shape.StyledPanel)
            image.setToolTip(path)
            text = QLabel(caption)
            text.setTextFormat(Qt.TextFormat.PlainText)
            text.setWordWrap(True)
            text.setFixedWidth(PREVIEW_SIZE + 4)
            tile_layout.addWidget(image)
            tile_layout.addWidget(text)
            tile_layout.addStretch(1)
            self.preview_row.insertWidget(index, tile)
            self.preview_tiles.append((path, image))
        missing = [path for path in finding.photos if path not in self._pixmaps]
        if missing:
            if self._thumbnail_job is not None:
                self._thumbnail_job.control.cancel()  # an earlier selection's: not needed any more
            self._thumbnail_job = self.runner.submit(jobs.thumbnails(missing, PREVIEW_SIZE))
        self._fill_preview()

    def _fill_preview(self) -> None:
        for path, image in self.preview_tiles:
            pixmap = self._pixmaps.get(path)
            if pixmap is None:
                image.setText("…" if self._thumbnail_job is not None else "cannot be read")
            else:
                image.setPixmap(pixmap)

    # --- runner signals ----------------------------------------------------------------------------
    @Slot(object, object)
    def on_progress(self, job: Job, event: Progress) -> None:
        if job is self._doctor_job:
            show_progress(self.progress, event)

    @Slot(object, object)
    def on_returned(self, job: Job, result: object) -> None:
        if job is self._doctor_job and isinstance(result, DoctorReport):
            self.show_report(result)
        elif job is self._thumbnail_job and isinstance(result, dict):
            self._thumbnail_job = None
            self._pixmaps.update({path: to_pixmap(array) for path, array in result.items()
                                  if isinstance(array, np.ndarray)})
            self._fill_preview()
        elif self._action is not None and job is self._action.job:
            self._action_done(self._action, result)

    def _action_done(self, action: _Action, result: object) -> None:
        if action.kind == "undo":
            records: list[JournalRecord] = result  # type: ignore[assignment]
            for record in records:
                self._reopen_rows(record)
            self.status.setText(_undone(records))
        else:
            for table, row, handled in action.rows:
                table.mark(row, handled)
            photos = sum(len(handled.paths) for _, _, handled in action.rows)
            self.status.setText(
                f"Excluded {photos} photo(s): scans and training leave them out; they stay in their folders."
                if action.kind == "exclude" else f"Moved {photos} photo(s) to another class folder.")
        self.on_selection_changed()

    def _reopen_rows(self, record: JournalRecord) -> None:
        """Show the rows an undone change had handled as open again."""
        if isinstance(record, MoveRecord):
            action, back = "move", {record.destination}  # the photo is back where it was
        elif isinstance(record, ExclusionRecord) and record.op == "include":
            action, back = "exclude", {photo.path for photo in record.photos}
        else:
            return
        for table in self.tables():
            for row, handled in list(table.handled.items()):
                if handled.action == action and handled.paths & back:
                    table.mark(row, None)

    @Slot(object, str, str)
    def on_failed(self, job: Job, message: str, _details: str) -> None:
        if job is self._doctor_job:
            self.status.setText(f"The doctor could not check this dataset: {message}")
        elif job is self._thumbnail_job:
            self._thumbnail_job = None
            self._fill_preview()
        elif self._action is not None and job is self._action.job:
            self.status.setText(f"Could not {self._action.kind}: {message}")

    @Slot(object)
    def on_aborted(self, job: Job) -> None:
        if job is self._doctor_job:
            self.status.setText("Doctor stopped.")
        elif job is self._thumbnail_job:
            self._thumbnail_job = None

    @Slot(object)
    def on_finished(self, job: Job) -> None:
        if job is self._doctor_job:
            self._doctor_job = None
            self.progress.hide()
        elif self._action is not None and job is self._action.job:
            action, self._action = self._action, None
            root = self._root()
            if action.rescan and root is not None:
                self.rescan_requested.emit(Path(root))  # a failed action too: it may have changed part of the folder
        else:
            return
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self.running or self._action is not None
        open_rows = bool(self.selected())
        self.run_button.setEnabled(self.dataset is not None and not busy)
        self.cancel_button.setEnabled(self.running)
        self.exclude_button.setEnabled(open_rows and not busy)
        self.move_button.setEnabled(open_rows and not busy and bool(self._classes()))
        self.undo_button.setEnabled(self._root() is not None and not busy)


def _queue_rows(report: DoctorReport) -> tuple[list[tuple[Finding, list[str]]], ...]:
    """The three queues' rows (findings with their cells), in the report's order."""
    root, classes = PurePath(report.root), report.classes

    def name(index: int) -> str:
        return PurePath(report.photos[index].path).relative_to(root).as_posix()

    def label(index: int) -> str:
        return classes[report.photos[index].label]

    duplicates = []
    for group in report.duplicate_groups:
        members = group.members
        kind = "conflicting labels" if group.conflicting_labels else "same class"
        kind += ", across splits" if group.across_splits else ""
        captions = tuple(f"{'kept' if i == 0 else f'copy, similarity {similarity:.3f}'}\n{label(m)} · "
                         f"{report.photos[m].split}\n{PurePath(report.photos[m].path).name}"
                         for i, (m, similarity) in enumerate(zip(members, group.similarity, strict=True)))
        finding = Finding(
            photos=tuple(report.photos[m].path for m in members), classes=tuple(label(m) for m in members),
            to_exclude=tuple(report.photos[m].path for m in members[1:]),
            reason=f"near-duplicate of {name(members[0])}",
            title=f"Near-duplicate group ({kind}): Exclude keeps the first photo and leaves out the other "
                  f"{len(members) - 1}.",
            captions=captions)
        duplicates.append((finding, [kind, ", ".join(sorted(set(finding.classes))),
                                     " · ".join(name(m) for m in members), f"{min(group.similarity):.3f}"]))
    issues = []
    for issue in report.label_issues or ():
        suggested, path = classes[issue.suggested], report.photos[issue.photo].path
        finding = Finding(
            photos=(path,), classes=(label(issue.photo),), to_exclude=(path,),
            reason=f"likely wrong label (suggested: {suggested})",
            title=f"Likely wrong label: filed under {label(issue.photo)}; the doctor suggests {suggested}.",
            captions=(f"{label(issue.photo)} → {suggested}\n{PurePath(path).name}",), suggested=suggested,
            confident=issue.confident)
        issues.append((finding, [name(issue.photo), label(issue.photo), suggested, f"{issue.self_confidence:.3f}",
                                 f"{issue.margin:.3f}" + (" (confident)" if issue.confident else "")]))
    outliers = []
    for outlier in report.outliers:
        path = report.photos[outlier.photo].path
        finding = Finding(
            photos=(path,), classes=(label(outlier.photo),), to_exclude=(path,), reason="outlier",
            title=f"Outlier: its nearest photos are {outlier.score:.1f} times further away than is usual in "
                  f"{label(outlier.photo)}.",
            captions=(f"{label(outlier.photo)} · score {outlier.score:.2f}\n{PurePath(path).name}",))
        outliers.append((finding, [name(outlier.photo), label(outlier.photo), f"{outlier.score:.2f}",
                                   f"{outlier.distance:.3f}"]))
    return duplicates, issues, outliers


def _summary(report: DoctorReport) -> str:
    counts = report.summary()
    labels = ("labels not checked (too few photos or classes)" if report.label_issues is None
              else f"{counts['likely_wrong_labels']} likely wrong label(s) (+{counts['possible_wrong_labels']} "
                   "possible)")
    return (f"Doctor: {counts['photos']} photos checked · {counts['near_duplicate_groups']} near-duplicate group(s) "
            f"({counts['duplicate_photos']} extra copies; {counts['conflicting_groups']} with conflicting labels, "
            f"{counts['across_split_groups']} across splits) · {labels} · {counts['outliers']} outlier(s)")


def _undone(records: Sequence[JournalRecord]) -> str:
    if not records:
        return "Nothing to undo."
    record = records[-1]
    if isinstance(record, MoveRecord):
        return f"Undone: {record.destination} is back in its folder."
    verb = "included again" if record.op == "include" else "excluded again"
    return f"Undone: {len(record.photos)} photo(s) {verb}."
