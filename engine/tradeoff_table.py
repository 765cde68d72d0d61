"""A distillation's trade-off table: each model's accuracy, size and speed, as distillation.json holds it.

Torch-free, so the Runs page can read and show the table without loading the training engine.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

DISTILLATION_FILE = "distillation.json"
# Each model's role in the table, and how a person reads it.
ROLES = {"teacher": "teacher", "student": "student", "without_teacher": "student without a teacher"}


@dataclass(frozen=True, slots=True)
class TradeOffRow:
    """One model of the table: how good (accuracies on the shared split), how big, how fast on this machine."""

    role: str  # one of ROLES
    run: str
    backbone: str
    test_accuracy: float | None  # None where the split has no test photos
    validation_accuracy: float
    size_bytes: int
    batch1_ms: float
    images_per_second: float


def read_tradeoff(run_dir: Path) -> tuple[TradeOffRow, ...] | None:
    """The rows of ``run_dir``/distillation.json; None when the run has none, or it is damaged (the Runs page then
    shows no table rather than a wrong one)."""
    try:
        document = json.loads((Path(run_dir) / DISTILLATION_FILE).read_text(encoding="utf-8"))
        names = {field.name for field in fields(TradeOffRow)}
        rows = tuple(TradeOffRow(**{name: model[name] for name in names}) for model in document["models"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return rows if all(row.role in ROLES for row in rows) else None


def format_tradeoff_table(rows: Sequence[TradeOffRow]) -> str:
    """The rows as a plain-text table: role, backbone, accuracies, size on disk, batch-1 latency, folder img/s."""
    table = [("model", "backbone", "test acc", "val acc", "size", "batch-1", "folder", "run")]
    table += [tradeoff_cells(row) for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in table)


def tradeoff_cells(row: TradeOffRow) -> tuple[str, ...]:
    """One row's cells as the CLI and the Runs page show them."""

    def accuracy(value: float | None) -> str:
        return f"{value:.3f}" if value is not None else "-"

    return (ROLES[row.role], row.backbone, accuracy(row.test_accuracy), accuracy(row.validation_accuracy),
            f"{row.size_bytes / 1e6:.1f} MB", f"{row.batch1_ms:.1f} ms", f"{row.images_per_second:.0f} img/s",
            row.run)
