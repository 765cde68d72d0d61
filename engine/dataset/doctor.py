"""The dataset doctor's analysis: near-duplicate photos, likely wrong labels and off-topic photos, from features.

Pure NumPy on per-photo features that ``engine.training.doctor_run`` computes with the backbone, so it can be
tested on synthetic arrays:

- **near-duplicates**: cosine similarity of the *layout* features (a mid-level feature map pooled to a small
  grid: what is where in the photo) at or above ``DUPLICATE_SIMILARITY``, joined into groups (connected
  components). The pooled embedding alone cannot tell a re-saved copy from another photo of the same kind of
  thing (see the constant);
- **likely wrong labels**: out-of-fold probabilities pointing to another class (confident learning, Northcutt
  et al., JAIR 2021, and plain disagreement), least self-confident first;
- **outliers**: photos far from every class: the cosine distance of a photo's embedding to each class's mean
  direction, over what is usual for that class's own photos, at its smallest over the classes.

Similarities are computed ``BLOCK_ROWS`` rows at a time, so 20,000 photos need 80 MB blocks, not a
20,000 x 20,000 matrix.

``DoctorReport.to_dict()`` (the ``--json`` output of ``transfer-studio doctor``)::

    {"format": 1, "root": str, "classes": [str], "duplicate_threshold": float,
     "summary": {"photos", "near_duplicate_groups", "duplicate_photos", "conflicting_groups",
                 "across_split_groups", "likely_wrong_labels", "possible_wrong_labels", "outliers": int},
     "counts": {class: {"photos": int, "after_dedup": int}},
     "imbalance_ratio": float | null, "imbalance_ratio_after_dedup": float | null,
     "near_duplicates": [{"same_class": bool, "conflicting_labels": bool, "across_splits": bool,
                          "photos": [{"path", "label", "split", "similarity": float}]}],
     "label_issues": [{"path", "label", "split", "suggested", "self_confidence": float, "margin": float,
                       "confident": bool}] | null,
     "outliers": [{"path", "label", "split", "score": float, "distance": float}]}

Paths are absolute; labels and ``suggested`` are class names. A group's first photo is the one kept when counting
``after_dedup`` (the first in the scan's order: train, then val, then test); ``similarity`` is each photo's
similarity to it. ``label_issues`` is null when not checked (no probabilities); ``self_confidence`` is the
out-of-fold probability of the given label, ``margin`` that of the suggested class minus it, ``confident``
whether confident learning's rule flags the photo too. ``outliers`` lists the photos scoring at least
``OUTLIER_SCORE``, highest first: ``distance`` is the cosine distance to the nearest class's mean direction,
``score`` each class's distance over the median of its own photos', at its smallest. The imbalance ratios
(largest over smallest class, every split together) are null where a class has no photo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.dataset.report import ImageItem

# Calibrated on EfficientNet-Lite0's layout features (tests/engine/training/test_doctor_run.py: 112 generated
# 448 px photos with 12 planted copies, re-saved at JPEG quality 50, halved, cropped by 10 % or brightened by
# 25 %): the copies scored 0.921 to 0.978, distinct photos at most 0.739 (6,204 pairs; 99th percentile 0.639).
# The pooled embedding does not separate them: copies from 0.905, distinct photos of one class up to 0.891.
# Real photos agree: 60 cat and dog photos at most 0.78; the breast-ultrasound set (780) has 296 pairs above
# 0.75, 237 above 0.80 and 222 above 0.85, then a plateau of copies (177 above 0.95).
DUPLICATE_SIMILARITY = 0.85
# A photo is reported as an outlier when it is this many times further from every class's mean direction than
# is usual for the class's own photos. Held out (bench/doctor_planted.py: 3 ultrasound photos among 68 cat and
# dog photos, 3 seeds), they scored 1.40 to 1.65 and every other photo at most 1.36; on the generated test photos
# the 4 off-topic ones scored 3.3 to 3.9, the 108 generated ones at most 1.75 (8 of them above 1.4). A k-NN
# distance, tried first, missed the ultrasound photos: off-topic photos are each other's nearest neighbours.
OUTLIER_SCORE = 1.4
BLOCK_ROWS = 1024  # rows of a similarity block: 1,024 x 20,000 photos x 4 bytes = 80 MB
REPORT_FORMAT = 1


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """Photos (indices into ``DoctorReport.photos``) that are copies of one another; the first is kept."""

    members: tuple[int, ...]
    similarity: tuple[float, ...]  # each member's layout similarity to the first (1.0 for the first)
    conflicting_labels: bool  # filed under more than one class: at most one label can be right
    across_splits: bool  # in more than one split: a leak that inflates validation accuracy

    @property
    def same_class(self) -> bool:
        return not self.conflicting_labels


@dataclass(frozen=True, slots=True)
class LabelIssue:
    photo: int
    suggested: int  # the class the out-of-fold model puts the photo in (confident learning's, where it applies)
    self_confidence: float  # out-of-fold probability of the given label
    margin: float  # probability of the suggested class minus self_confidence
    confident: bool  # by confident learning's rule: the suggested class's probability reaches its threshold


@dataclass(frozen=True, slots=True)
class Outlier:
    photo: int
    score: float  # distance over the median distance of the photo's class
    distance: float  # cosine distance to the nearest class's mean direction


@dataclass(frozen=True)
class DoctorReport:
    root: str
    classes: tuple[str, ...]
    photos: tuple[ImageItem, ...]
    duplicate_groups: tuple[DuplicateGroup, ...]
    label_issues: tuple[LabelIssue, ...] | None  # None: not checked (no probabilities)
    outliers: tuple[Outlier, ...]
    duplicate_threshold: float = DUPLICATE_SIMILARITY

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Per class: photos, and photos left after keeping only the first of each duplicate group."""
        dropped = {index for group in self.duplicate_groups for index in group.members[1:]}
        counts = {name: {"photos": 0, "after_dedup": 0} for name in self.classes}
        for index, photo in enumerate(self.photos):
            entry = counts[self.classes[photo.label]]
            entry["photos"] += 1
            entry["after_dedup"] += index not in dropped
        return counts

    def imbalance_ratio(self, *, after_dedup: bool = False) -> float:
        """Largest over smallest class (every split together); infinity where a class has none."""
        values = [entry["after_dedup" if after_dedup else "photos"] for entry in self.counts.values()]
        if not values or max(values) == 0:
            return 1.0
        return max(values) / min(values) if min(values) else float("inf")

    def summary(self) -> dict[str, int]:
        """How many findings of each kind (the log line at the end of a run, the GUI's queue badges)."""
        groups = self.duplicate_groups
        return {
            "photos": len(self.photos),
            "near_duplicate_groups": len(groups),
            "duplicate_photos": sum(len(group.members) - 1 for group in groups),
            "conflicting_groups": sum(group.conflicting_labels for group in groups),
            "across_split_groups": sum(group.across_splits for group in groups),
            "likely_wrong_labels": sum(issue.confident for issue in self.label_issues or ()),
            "possible_wrong_labels": sum(not issue.confident for issue in self.label_issues or ()),
            "outliers": len(self.outliers),
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON form documented in the module docstring."""

        def photo(index: int, **extra: Any) -> dict[str, Any]:
            item = self.photos[index]
            return {"path": item.path, "label": self.classes[item.label], "split": item.split, **extra}

        def ratio(value: float) -> float | None:
            return value if np.isfinite(value) else None

        return {
            "format": REPORT_FORMAT,
            "root": self.root,
            "classes": list(self.classes),
            "duplicate_threshold": self.duplicate_threshold,
            "summary": self.summary(),
            "counts": self.counts,
            "imbalance_ratio": ratio(self.imbalance_ratio()),
            "imbalance_ratio_after_dedup": ratio(self.imbalance_ratio(after_dedup=True)),
            "near_duplicates": [
                {"same_class": group.same_class, "conflicting_labels": group.conflicting_labels,
                 "across_splits": group.across_splits,
                 "photos": [photo(index, similarity=similarity)
                            for index, similarity in zip(group.members, group.similarity, strict=True)]}
                for group in self.duplicate_groups],
            "label_issues": None if self.label_issues is None else [
                photo(issue.photo, suggested=self.classes[issue.suggested], self_confidence=issue.self_confidence,
                      margin=issue.margin, confident=issue.confident) for issue in self.label_issues],
            "outliers": [photo(o.photo, score=o.score, distance=o.distance) for o in self.outliers],
        }


@dataclass(frozen=True)
class Neighbourhoods:
    """What one pass over the similarity blocks finds; the out-of-fold folds keep each group together."""

    groups: tuple[tuple[int, ...], ...]  # near-duplicate groups (size >= 2), members in order
    threshold: float


def diagnose(
    root: str,
    classes: Sequence[str],
    photos: Sequence[ImageItem],
    embeddings: np.ndarray,
    layout: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    *,
    found: Neighbourhoods | None = None,
) -> DoctorReport:
    """The doctor's findings for ``photos`` (N) from their ``embeddings`` (N x D; outliers), ``layout`` features
    (N x L; near-duplicates, the embeddings where None) and out-of-fold ``probabilities`` (N x classes; wrong
    labels, not checked where None). ``found``: ``find_neighbourhoods``'s answer, when it was needed before.

    An outlier is not also listed as a likely wrong label: no class fits an off-topic photo.
    """
    count = len(photos)
    embeddings = unit_rows(embeddings, count)
    layout = embeddings if layout is None else unit_rows(layout, count)
    labels = np.array([photo.label for photo in photos], dtype=np.int64)
    if probabilities is not None and np.shape(probabilities) != (count, len(classes)):
        raise ValueError(f"probabilities must be {count} x {len(classes)}, got {np.shape(probabilities)}")
    if found is None:
        found = find_neighbourhoods(layout)
    far = outliers(embeddings, labels)
    issues = None
    if probabilities is not None:
        off_topic = {outlier.photo for outlier in far}
        issues = tuple(issue for issue in label_issues(np.asarray(probabilities, dtype=np.float64), labels)
                       if issue.photo not in off_topic)
    return DoctorReport(
        root=str(root),
        classes=tuple(classes),
        photos=tuple(photos),
        duplicate_groups=tuple(_duplicate_group(members, layout, photos) for members in found.groups),
        label_issues=issues,
        outliers=far,
        duplicate_threshold=found.threshold,
    )


def unit_rows(features: np.ndarray, count: int) -> np.ndarray:
    """``features`` (``count`` rows) as float32 rows of length 1: cosine similarity is then a dot product."""
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 2 or len(features) != count:
        raise ValueError(f"expected {count} feature rows, got an array of shape {features.shape}")
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.maximum(norms, np.finfo(np.float32).tiny)


def find_neighbourhoods(layout: np.ndarray, *, threshold: float = DUPLICATE_SIMILARITY,
                        block_rows: int = BLOCK_ROWS) -> Neighbourhoods:
    """Near-duplicate groups: connected components of layout similarity >= ``threshold`` (unit rows, see
    ``unit_rows``), from one pass over row blocks."""
    count = len(layout)
    parent = list(range(count))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for start in range(0, count, block_rows):
        near = layout[start:start + block_rows] @ layout.T >= threshold
        for row, column in zip(*np.nonzero(near), strict=True):
            if column > row + start:  # each pair once, not the photo itself
                parent[root(row + start)] = root(int(column))
    components: dict[int, list[int]] = {}
    for index in range(count):
        components.setdefault(root(index), []).append(index)
    return Neighbourhoods(tuple(tuple(members) for members in components.values() if len(members) > 1), threshold)


def _duplicate_group(members: tuple[int, ...], layout: np.ndarray, photos: Sequence[ImageItem]) -> DuplicateGroup:
    similarity = np.clip(layout[list(members)] @ layout[members[0]], -1.0, 1.0)
    similarity[0] = 1.0
    return DuplicateGroup(
        members=tuple(members),
        similarity=tuple(round(float(value), 4) for value in similarity),
        conflicting_labels=len({photos[index].label for index in members}) > 1,
        across_splits=len({photos[index].split for index in members}) > 1,
    )


def label_issues(probabilities: np.ndarray, labels: np.ndarray) -> tuple[LabelIssue, ...]:
    """Photos whose out-of-fold probabilities point to another class, least self-confident first.

    Confident learning (Northcutt et al., JAIR 2021): class j's threshold is the mean probability of j over the
    photos labelled j, and a photo is confidently of the most probable class among those at or above their
    threshold; an issue (``confident``) where that is not its label. Photos the model assigns to another class
    without reaching a threshold are issues too: on the generated test photos (out-of-fold accuracy 0.81) the
    rule alone found 6 of 9 planted wrong labels, while all 9 were the least self-confident photos."""
    count, classes = probabilities.shape
    if count == 0 or classes < 2:
        return ()
    thresholds = np.array([probabilities[labels == j, j].mean() if np.any(labels == j) else np.inf
                           for j in range(classes)])
    above = probabilities >= thresholds
    confident_class = np.where(above, probabilities, -np.inf).argmax(1)
    confident = above.any(1) & (confident_class != labels)
    suggested = np.where(confident, confident_class, probabilities.argmax(1))
    rows = np.arange(count)
    own = probabilities[rows, labels]
    margin = probabilities[rows, suggested] - own
    flagged = np.flatnonzero(suggested != labels)
    order = flagged[np.lexsort((-margin[flagged], own[flagged]))]
    return tuple(LabelIssue(int(i), int(suggested[i]), round(float(own[i]), 4), round(float(margin[i]), 4),
                            bool(confident[i])) for i in order)


def outliers(embeddings: np.ndarray, labels: np.ndarray, min_score: float = OUTLIER_SCORE) -> tuple[Outlier, ...]:
    """Photos far from every class (unit-row ``embeddings``), highest score first: for each class, the cosine
    distance to its mean direction over the median of its own photos'; a photo's score is the smallest of those.
    A photo filed under the wrong class stays close to its true class, so it is not an outlier (a wrong label)."""
    classes = np.unique(labels)
    if len(classes) == 0:
        return ()
    distance = np.empty((len(labels), len(classes)))
    relative = np.full_like(distance, np.inf)
    for column, label in enumerate(classes):
        direction = embeddings[labels == label].sum(0)
        distance[:, column] = 1.0 - embeddings @ (direction / max(np.linalg.norm(direction), 1e-12))
        usual = np.median(distance[labels == label, column])
        if usual > 0:
            relative[:, column] = distance[:, column] / usual
    nearest = relative.argmin(1)
    rows = np.arange(len(labels))
    scores, distances = relative[rows, nearest], distance[rows, nearest]
    flagged = np.flatnonzero(np.isfinite(scores) & (scores >= min_score))
    order = flagged[np.argsort(-scores[flagged], kind="stable")]
    return tuple(Outlier(int(i), round(float(scores[i]), 4), round(float(distances[i]), 4)) for i in order)


def format_doctor_report(report: DoctorReport, limit: int = 50) -> str:
    """A plain-text table by kind for the CLI, paths relative to the dataset; at most ``limit`` rows a kind."""

    def name(index: int) -> str:
        path = Path(report.photos[index].path)
        try:
            shown = path.relative_to(report.root)
        except ValueError:
            shown = path
        return str(shown)

    def label(index: int) -> str:
        return report.classes[report.photos[index].label]

    def capped(rows: Sequence[Any]) -> tuple[Sequence[Any], list[str]]:
        return rows[:limit], [f"  ... and {len(rows) - limit} more (--json lists every one)"] * (len(rows) > limit)

    summary = report.summary()
    lines = [f"Dataset doctor: {report.root} ({summary['photos']} photos)", ""]
    groups, more = capped(report.duplicate_groups)
    lines.append(f"Near-duplicate groups: {summary['near_duplicate_groups']} ({summary['duplicate_photos']} extra "
                 f"copies; {summary['conflicting_groups']} with conflicting labels, "
                 f"{summary['across_split_groups']} across splits; similarity >= {report.duplicate_threshold:g})")
    for number, group in enumerate(groups, start=1):
        kinds = [kind for kind, flagged in (("conflicting labels", group.conflicting_labels),
                                            ("across splits", group.across_splits)) if flagged]
        lines.append(f"  group {number}: {', '.join(kinds) or 'same class'}")
        for index, similarity in zip(group.members, group.similarity, strict=True):
            lines.append(f"    {similarity:6.3f}  {name(index)}  [{label(index)}, {report.photos[index].split}]")
    lines += more + [""]
    if report.label_issues is None:
        lines.append("Likely wrong labels: not checked")
    else:
        issues, more = capped(report.label_issues)
        lines.append(f"Likely wrong labels: {summary['likely_wrong_labels']} by confident learning, "
                     f"{summary['possible_wrong_labels']} possible (the model disagrees, less surely), least sure of "
                     "their label first: the out-of-fold probability of the label, the label -> the class suggested")
        lines += [f"  {issue.self_confidence:6.3f}  {name(issue.photo)}  {label(issue.photo)} -> "
                  f"{report.classes[issue.suggested]} (margin {issue.margin:.3f})" for issue in issues] + more
    lines.append("")
    found, more = capped(report.outliers)
    lines.append(f"Outliers / off-topic: {len(report.outliers)} (at least {OUTLIER_SCORE:g}x further from every "
                 "class than is usual for its own photos)")
    lines += [f"  {o.score:6.2f}  {name(o.photo)}  [{label(o.photo)}]" for o in found] + more
    lines.append("")
    width = max([len("class"), *(len(c) for c in report.classes)])
    lines.append(f"{'class':<{width}}  {'photos':>7}  {'after dedup':>11}")
    lines += [f"{c:<{width}}  {entry['photos']:>7}  {entry['after_dedup']:>11}" for c, entry in report.counts.items()]
    lines.append(f"Imbalance ratio: {report.imbalance_ratio():.2f} "
                 f"({report.imbalance_ratio(after_dedup=True):.2f} after dedup)")
    return "\n".join(lines)
