"""Copy predicted photos into one folder per class (``predict --sort-into``, the Predict page's "Copy into class
folders…"). The originals stay where the person keeps them, nothing is overwritten (a taken name gets " (2)"),
unsure answers go to ``_unsure/`` for a person to look at, and a manifest says what went where.

Torch-free, like the predictor it follows. The manifest (``sort-manifest.json``, or `` (2)`` beside an earlier
one)::

    {"format": 1, "created": str, "folder": str,
     "photos": [{"source", "copy", "label", "confidence", "unsure"}],
     "failed": [{"path", "reason"}]}
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.atomic import DiskFullError, copy_without_overwriting, free_name, write_json_atomic
from engine.control import RunControl
from engine.events import EventSink, Progress, ignore_event
from engine.images import file_error_reason
from engine.predict import Prediction
from engine.time_format import utc_now_iso

UNSURE_FOLDER = "_unsure"
MANIFEST_NAME = "sort-manifest.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True, slots=True)
class SortResult:
    folder: str
    manifest: str
    copied: int
    unsure: int  # of the copied, those in UNSURE_FOLDER
    failed: tuple[tuple[str, str], ...]  # (path, reason): a prediction error, or a copy that failed


def sort_into_folders(predictions: Sequence[Prediction], folder: Path | str, *, on_event: EventSink = ignore_event,
                      control: RunControl | None = None) -> SortResult:
    """Copy each predicted photo into ``folder/<label>/`` (``folder/_unsure/`` when unsure); a photo that failed
    to predict or to copy is listed, not copied, and the others go on. Cancelling stops between photos and still
    writes the manifest of what was copied. A full disk stops everything (DiskFullError)."""
    folder, control = Path(folder), control or RunControl()
    photos, failed = [], []
    try:
        for done, prediction in enumerate(predictions):
            on_event(Progress("copying into class folders", done, len(predictions)))
            control.check()
            label = prediction.label
            if prediction.error is not None or label is None:
                failed.append((prediction.path, prediction.error or "no prediction"))
                continue
            if Path(label).name != label or label in {".", "..", UNSURE_FOLDER}:
                failed.append((prediction.path, f"the label {label!r} cannot be a folder name"))
                continue
            target = folder / (UNSURE_FOLDER if prediction.unsure else label)
            try:
                copy = copy_without_overwriting(Path(prediction.path), target)
            except DiskFullError:
                raise
            except OSError as exc:
                failed.append((prediction.path, file_error_reason(exc)))
                continue
            photos.append({"source": prediction.path, "copy": str(copy), "label": label,
                           "confidence": prediction.confidence, "unsure": prediction.unsure})
        on_event(Progress("copying into class folders", len(predictions), len(predictions)))
    finally:  # cancelled or not: what was copied is listed
        manifest = free_name(folder, MANIFEST_NAME)
        write_json_atomic(manifest, {"format": MANIFEST_FORMAT, "created": utc_now_iso(), "folder": str(folder),
                                     "photos": photos,
                                     "failed": [{"path": path, "reason": reason} for path, reason in failed]})
    return SortResult(str(folder), str(manifest), len(photos), sum(photo["unsure"] for photo in photos),
                      tuple(failed))
