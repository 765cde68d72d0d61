"""Corrections of a run's predictions made in the app ("this photo is a cat"): the photo is copied into the run's
dataset, into the class folder the next run trains on (never moved from where the person keeps it), and recorded in
the run's ``corrections.jsonl``, one JSON line each (appended by an atomic rewrite: never a torn line)::

    {"photo": str, "label": str, "predicted": str | null, "copy": str, "time": str}

A photo already in the dataset is relabelled where it is instead (``engine.dataset.journal.move_to_class``, which
can be undone): a copy in another class would file one photo under two labels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.atomic import append_line_atomic, copy_without_overwriting
from engine.dataset.scan import training_class_folder
from engine.errors import BadInputError
from engine.time_format import utc_now_iso
from engine.training import run_folder as rf

CORRECTIONS_FILE = "corrections.jsonl"


@dataclass(frozen=True, slots=True)
class Correction:
    photo: str  # where the person keeps it
    label: str  # the right class
    predicted: str | None  # what the model said (the same as label: confirmed right)
    copy: str  # the copy in the dataset
    time: str


def add_correction(run_dir: Path | str, photo: Path | str, label: str, predicted: str | None = None) -> Correction:
    """Copy ``photo`` into the run's dataset as a training photo of ``label`` and record it; BadInputError says why
    not (an unknown class, the dataset folder gone, a photo already in the dataset, an unreadable photo)."""
    info = rf.read_run(Path(run_dir))
    if label not in info.labels:
        raise BadInputError(f"{label!r}: not a class of this run ({', '.join(info.labels)})")
    root, photo = Path(info.data_dir), Path(photo).resolve()
    if not root.is_dir():
        raise BadInputError(f"{root}: this run's dataset folder is not there any more; put it back to add "
                            "corrections to it")
    if photo.is_relative_to(root.resolve()):
        raise BadInputError(f"{photo}: already in the dataset; relabel it there (Move to class…) instead of copying")
    try:
        copy = copy_without_overwriting(photo, training_class_folder(root, label))
    except OSError as exc:
        raise BadInputError(f"{photo}: could not be copied into {root} ({exc.strerror or exc})") from exc
    correction = Correction(str(photo), label, predicted, str(copy), utc_now_iso())
    append_line_atomic(Path(run_dir) / CORRECTIONS_FILE, json.dumps(asdict(correction), ensure_ascii=False))
    return correction


def read_corrections(run_dir: Path | str) -> list[Correction]:
    """The run's corrections, oldest first; a damaged line (edited by hand) is refused, naming the file and line,
    except a last line cut short, which is left out."""
    path = Path(run_dir) / CORRECTIONS_FILE
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    corrections = []
    for number, line in enumerate(lines, start=1):
        try:
            corrections.append(Correction(**json.loads(line)))
        except (ValueError, TypeError) as exc:
            if number < len(lines):
                raise BadInputError(f"{path}, line {number}: not a correction ({exc}); repair or delete the "
                                    "line") from exc
    return corrections
