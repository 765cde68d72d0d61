"""The result of a dataset scan as plain data, with its JSON form and a human-readable table.

The report is what the data page shows, what a run stores in ``run.json``, and what training reads
its file list from, so it holds only builtin values and round-trips through ``to_dict``/``from_dict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")
IMBALANCE_WARNING_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class ImageItem:
    path: str
    label: int
    split: str  # "train" | "val" | "test"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class ScanReport:
    root: str
    layout: str  # "class-folders" | "pre-split"
    classes: tuple[str, ...]
    items: tuple[ImageItem, ...]
    skipped: tuple[SkippedFile, ...] = ()
    ignored_count: int = 0
    warnings: tuple[str, ...] = ()
    leakage: tuple[tuple[str, str], ...] = ()
    excluded: tuple[SkippedFile, ...] = ()  # left out by the dataset's excluded.json, with the reason given there
    # Groups of near-duplicate photos (paths) found by a training run's backbone; the split keeps each group's
    # photos of one class on one side (engine.dataset.split.keep_groups_together). Empty from a plain scan.
    near_duplicates: tuple[tuple[str, ...], ...] = ()
    # The splits given as folders in a pre-split layout (train/ val/ test/); the others were set aside by the scan.
    given_splits: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for item in self.items:
            if item.split not in SPLITS or not 0 <= item.label < len(self.classes):
                raise ValueError(f"{item}: split must be one of {', '.join(SPLITS)} and label a class index")

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class, every class listed in every split (zeros included)."""
        counts = {split: dict.fromkeys(self.classes, 0) for split in SPLITS}
        for item in self.items:
            counts[item.split][self.classes[item.label]] += 1
        return counts

    @property
    def imbalance_ratio(self) -> float:
        """Largest over smallest training-class count; 1.0 means balanced, infinity means a class has none."""
        counts = list(self.counts["train"].values())
        if not counts or max(counts) == 0:
            return 1.0
        return max(counts) / min(counts) if min(counts) else float("inf")

    def split_items(self, split: str) -> tuple[ImageItem, ...]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return tuple(item for item in self.items if item.split == split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "layout": self.layout,
            "classes": list(self.classes),
            "counts": self.counts,
            "imbalance_ratio": self.imbalance_ratio,
            "items": [{"path": item.path, "label": item.label, "split": item.split} for item in self.items],
            "skipped": [{"path": file.path, "reason": file.reason} for file in self.skipped],
            "ignored_count": self.ignored_count,
            "warnings": list(self.warnings),
            "leakage": [list(pair) for pair in self.leakage],
            "excluded": [{"path": file.path, "reason": file.reason} for file in self.excluded],
            "near_duplicates": [list(group) for group in self.near_duplicates],
            "given_splits": list(self.given_splits),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanReport:
        """Rebuild a report from ``to_dict`` output; derived fields (counts, ratio) are recomputed."""
        try:
            return cls(
                root=str(data["root"]),
                layout=str(data["layout"]),
                classes=tuple(str(name) for name in data["classes"]),
                items=tuple(
                    ImageItem(str(item["path"]), int(item["label"]), str(item["split"]))
                    for item in data["items"]
                ),
                skipped=_skipped_files(data["skipped"]),
                ignored_count=int(data.get("ignored_count", 0)),
                warnings=tuple(str(message) for message in data.get("warnings", ())),
                leakage=tuple((str(a), str(b)) for a, b in data.get("leakage", ())),
                excluded=_skipped_files(data.get("excluded", ())),  # absent from reports older than exclusions
                near_duplicates=tuple(tuple(str(path) for path in group) for group in data.get("near_duplicates", ())),
                given_splits=tuple(str(split) for split in data.get("given_splits", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid scan report: {exc!r}") from exc


def _skipped_files(entries: Any) -> tuple[SkippedFile, ...]:
    return tuple(SkippedFile(str(file["path"]), str(file["reason"])) for file in entries)


def format_scan_report(report: ScanReport) -> str:
    """A plain-text summary for the CLI and logs: counts table, warnings, and every skipped file with why."""
    counts = report.counts
    splits = [split for split in SPLITS if split != "test" or any(counts["test"].values())]
    width = max([len("class"), len("total"), *(len(name) for name in report.classes)])
    lines = [f"Dataset {report.root} ({report.layout})", ""]
    lines.append(f"{'class':<{width}}" + "".join(f"  {split:>7}" for split in splits))
    for name in report.classes:
        lines.append(f"{name:<{width}}" + "".join(f"  {counts[split][name]:>7}" for split in splits))
    lines.append(f"{'total':<{width}}" + "".join(f"  {sum(counts[split].values()):>7}" for split in splits))
    lines.append("")
    lines.append(f"Imbalance ratio (train): {report.imbalance_ratio:.2f}")
    if report.ignored_count:
        lines.append(f"Ignored {report.ignored_count} file(s) that are not images")
    if report.warnings:
        lines += ["", "Warnings:", *(f"  - {message}" for message in report.warnings)]
    if report.leakage:
        lines += ["", "Identical files in different splits:", *(f"  {a}  ==  {b}" for a, b in report.leakage)]
    if report.skipped:
        lines += [
            "",
            f"Skipped {len(report.skipped)} file(s):",
            *(f"  {f.path}: {f.reason}" for f in report.skipped),
        ]
    if report.excluded:
        lines += [
            "",
            f"Excluded {len(report.excluded)} photo(s) (.transfer-studio/excluded.json in the dataset folder):",
            *(f"  {f.path}: {f.reason}" for f in report.excluded),
        ]
    return "\n".join(lines)
