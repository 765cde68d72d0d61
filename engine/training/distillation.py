"""distill(): a small student trained on its teachers' softened probabilities, and what it costs and gains.

The student is an ordinary run (``train`` with ``config.teachers``) on the first teacher's data and recorded
split; the same student trained without a teacher (same options, seed and split) goes beside it, in
``<out>-without-teacher``, so the table compares like with like. Every model is then exported where it has no
model.onnx yet and timed on this machine (``engine.speed``), and the trade-off table goes to distillation.json in
the student's run folder. Running ``distill`` again continues where it stopped: completed runs with the same
options are reused, stopped ones resumed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.atomic import write_json_atomic
from engine.control import Cancelled, RunControl
from engine.errors import BadInputError
from engine.evaluation.metrics import read_evaluation_document
from engine.events import EventSink, Info, Progress, ignore_event
from engine.export import export_onnx
from engine.speed import record_speed
from engine.time_format import utc_now_iso
from engine.tradeoff_table import DISTILLATION_FILE, ROLES, TradeOffRow
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.teacher_targets import split_source
from engine.training.trainer import RunExistsError, train

WITHOUT_TEACHER_SUFFIX = "-without-teacher"


@dataclass(frozen=True, slots=True)
class DistillResult:
    status: str  # "completed" | "cancelled" (run distill again to continue)
    student: str
    without_teacher: str | None  # None with baseline=False
    rows: tuple[TradeOffRow, ...]  # empty unless completed


def without_teacher_dir(out: Path | str) -> Path:
    """Where the student trained without a teacher goes: beside the student, named after it."""
    out = Path(out)
    return out.with_name(out.name + WITHOUT_TEACHER_SUFFIX)


def distill(teachers: Sequence[Path | str], out: Path | str, config: TrainConfig, *, baseline: bool = True,
            on_event: EventSink = ignore_event, control: RunControl | None = None) -> DistillResult:
    """Train ``config.backbone`` into ``out`` from ``teachers`` (trained runs or ensembles with the data's classes),
    then (``baseline``) without them, export and time every model, and write ``out``/distillation.json."""
    control = control or RunControl()
    if not teachers:
        raise BadInputError("no teacher given: name at least one trained run (--teacher RUN)")
    resolved = tuple(Path(teacher).resolve() for teacher in teachers)
    split = Path(config.split_from).resolve() if config.split_from else split_source(resolved[0])
    config = replace(config, teachers=tuple(map(str, resolved)), split_from=str(split))
    data_dir = rf.read_run(Path(config.split_from)).data_dir
    out = Path(out)
    runs = [("student", out, config)]
    if baseline:
        runs.append(("without_teacher", without_teacher_dir(out), replace(config, teachers=())))
    models = [*(("teacher", teacher) for teacher in resolved), *((role, run) for role, run, _ in runs)]
    steps = len(runs) + len(models)
    result = DistillResult("cancelled", str(out), str(runs[1][1]) if baseline else None, ())
    try:
        for step, (role, run_dir, run_config) in enumerate(runs):
            on_event(Progress("distillation", step, steps, f"training the {ROLES[role]} in {run_dir}"))
            if _train_or_continue(data_dir, run_dir, run_config, on_event, control) != "completed":
                return result
        rows = []
        for step, (role, run_dir) in enumerate(models, start=len(runs)):
            control.check()
            on_event(Progress("distillation", step, steps, f"exporting and timing the {ROLES[role]} "
                                                           f"({run_dir})"))
            rows.append(_measured(role, run_dir, on_event, control))
    except Cancelled:
        return result
    write_json_atomic(out / DISTILLATION_FILE, {
        "created": utc_now_iso(), "alpha": config.distill_alpha, "temperature": config.distill_temperature,
        "teachers": list(config.teachers), "split_from": config.split_from,
        "models": [asdict(row) for row in rows]})
    on_event(Progress("distillation", steps, steps, f"trade-off table in {out / DISTILLATION_FILE}"))
    return replace(result, status="completed", rows=tuple(rows))


def _train_or_continue(data_dir: str, run_dir: Path, config: TrainConfig, on_event: EventSink,
                       control: RunControl) -> str:
    """Train into ``run_dir``, or reuse the completed run there, or resume the stopped one: either only when it
    was started with ``config``. Returns the run's status."""
    if not (run_dir / rf.RUN_FILE).is_file():
        return train(data_dir, run_dir, config, on_event=on_event, control=control).status
    info = rf.read_run(run_dir)
    if info.config != config:
        differ = ", ".join(f.name for f in fields(TrainConfig)
                           if getattr(info.config, f.name) != getattr(config, f.name))
        raise RunExistsError(f"{run_dir}: holds a run with other options ({differ}); choose another folder for the "
                             "student, or delete that run")
    if info.status == "completed":
        on_event(Info(f"{run_dir}: already trained with these options, reused"))
        return "completed"
    return train(None, run_dir, resume=True, on_event=on_event, control=control).status


def _measured(role: str, run_dir: Path, on_event: EventSink, control: RunControl) -> TradeOffRow:
    """``run_dir``'s row: exported first where it has no model.onnx; timed now, so that every row of a table is
    measured on this machine under the same conditions."""
    model = run_dir / rf.MODEL_FILE
    if not model.is_file():
        export_onnx(run_dir, on_event=on_event, control=control)
    speed = record_speed(run_dir, on_event=on_event, control=control)
    evaluation = _evaluation(run_dir)
    test = evaluation.get("test")
    return TradeOffRow(role, str(run_dir), rf.read_run(run_dir).backbone,
                       float(test["accuracy"]) if test else None, float(evaluation["validation"]["accuracy"]),
                       model.stat().st_size, speed.batch1_ms, speed.images_per_second)


def _evaluation(run_dir: Path) -> dict[str, Any]:
    path = run_dir / rf.EVALUATION_FILE
    try:
        return read_evaluation_document(path)
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path}: missing or damaged ({exc}); evaluate the run again "
                            f"(transfer-studio evaluate {run_dir})") from exc
