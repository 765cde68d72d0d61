"""The doctor's analysis on synthetic features with planted faults: copies, swapped labels and far-away photos."""

import json
from dataclasses import dataclass

import numpy as np
import pytest

from engine.dataset.doctor import (
    DUPLICATE_SIMILARITY,
    OUTLIER_SCORE,
    DoctorReport,
    diagnose,
    find_neighbourhoods,
    format_doctor_report,
    outliers,
    unit_rows,
)
from engine.dataset.report import ImageItem

CLASSES = ("a", "b", "c", "d")
PER_CLASS = 50


@dataclass
class Planted:
    photos: list[ImageItem]
    embeddings: np.ndarray
    layout: np.ndarray
    probabilities: np.ndarray
    groups: set[frozenset[int]]
    conflicting: set[frozenset[int]]
    across_splits: set[frozenset[int]]
    swapped: dict[int, int]  # photo -> its true class
    far: list[int]


def _planted(seed: int = 0) -> Planted:
    """Class clusters in a 32-d embedding (what the photo shows) and independent 64-d layouts (where things are);
    copies repeat a photo's both with tiny noise. Photos between two classes are hard but not wrong: the doctor
    may list them, after the wrong labels."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(32, len(CLASSES))))[0].T * 1.0  # orthonormal class directions
    photos, embeddings, layouts = [], [], []

    def add(label: int, split: str, embedding: np.ndarray, layout: np.ndarray) -> int:
        photos.append(ImageItem(f"/data/{split}/{CLASSES[label]}/{len(photos):03d}.jpg", label, split))
        embeddings.append(embedding)
        layouts.append(layout)
        return len(photos) - 1

    for label in range(len(CLASSES)):
        for index in range(PER_CLASS):
            add(label, "val" if index % 5 == 0 else "train", centres[label] + rng.normal(0, 0.12, 32),
                rng.normal(size=64))
    groups, conflicting, across = set(), set(), set()

    def copy(of: int, label: int, split: str) -> int:
        noise = 1e-3
        return add(label, split, embeddings[of] + rng.normal(0, noise, 32), layouts[of] + rng.normal(0, noise, 64))

    for original, label, split in ((3, 0, "train"), (61, 2, "train"), (111, 2, "val"), (171, 0, "val")):
        member = copy(original, label, split)
        group = frozenset({original, member})
        groups.add(group)
        if label != photos[original].label:
            conflicting.add(group)
        if split != photos[original].split:
            across.add(group)
    first = copy(121, 2, "train")  # a copy of a copy: one group of three
    groups.add(frozenset({121, first, copy(first, 2, "train")}))
    # A look-alike: the same embedding but another layout is another photo, not a copy.
    add(1, "train", embeddings[70] + rng.normal(0, 1e-3, 32), rng.normal(size=64))

    for number in range(40):  # photos between two classes, filed under the one they are further from
        label, other = number % len(CLASSES), (number + 1 + number // 20) % len(CLASSES)
        add(label, "train", 0.45 * centres[label] + 0.55 * centres[other] + rng.normal(0, 0.12, 32),
            rng.normal(size=64))

    swapped = {}
    for photo in (7, 33, 58, 91, 140, 188, 16, 125, 66, 101):  # 10 of 200 originals: 5 %
        true = photos[photo].label
        wrong = (true + 1 + photo % 3) % len(CLASSES)
        photos[photo] = ImageItem(photos[photo].path, wrong, photos[photo].split)
        swapped[photo] = true
    far = []
    for label in range(len(CLASSES)):
        direction = rng.normal(size=32)
        direction -= centres.T @ (centres @ direction)  # off every class direction
        far.append(add(label, "train", direction / np.linalg.norm(direction), rng.normal(size=64)))
    embeddings, layout = np.array(embeddings, np.float32), np.array(layouts, np.float32)
    labels = np.array([photo.label for photo in photos])
    return Planted(photos, embeddings, layout, _out_of_fold(embeddings, labels, rng), groups, conflicting, across,
                   swapped, far)


def _out_of_fold(embeddings: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """What a model that did not see a photo says of it: nearest class mean of the other folds (noisy labels)."""
    unit = unit_rows(embeddings, len(embeddings))
    fold = rng.integers(0, 5, len(labels))
    probabilities = np.zeros((len(labels), len(CLASSES)))
    for k in range(5):
        means = np.array([unit[(fold != k) & (labels == c)].mean(0) for c in range(len(CLASSES))])
        logits = 20 * unit[fold == k] @ unit_rows(means, len(CLASSES)).T
        odds = np.exp(logits - logits.max(1, keepdims=True))
        probabilities[fold == k] = odds / odds.sum(1, keepdims=True)
    return probabilities


@pytest.fixture(scope="module")
def planted() -> Planted:
    return _planted()


@pytest.fixture(scope="module")
def report(planted: Planted) -> DoctorReport:
    return diagnose("/data", CLASSES, planted.photos, planted.embeddings, planted.layout, planted.probabilities)


def test_near_duplicate_groups_are_exactly_the_planted_copies_with_their_flags(planted: Planted,
                                                                                report: DoctorReport) -> None:
    found = {frozenset(group.members): group for group in report.duplicate_groups}
    assert set(found) == planted.groups
    assert {g for g, group in found.items() if group.conflicting_labels} == planted.conflicting
    assert {g for g, group in found.items() if group.across_splits} == planted.across_splits
    assert all(group.same_class != group.conflicting_labels for group in found.values())
    assert {g for g, group in found.items() if group.same_class} == planted.groups - planted.conflicting
    for group in found.values():
        assert group.members == tuple(sorted(group.members)) and group.similarity[0] == 1.0
        assert min(group.similarity) > 0.99


def test_swapped_labels_rank_first_with_the_true_class_suggested(planted: Planted, report: DoctorReport) -> None:
    wrong = dict(planted.swapped)
    for group in planted.conflicting:  # the copy filed under another class carries a wrong label too
        copy = max(group)
        wrong[copy] = planted.photos[min(group)].label
    assert report.label_issues is not None
    ranked = [issue.photo for issue in report.label_issues]
    top = ranked[:2 * len(wrong)]
    recall = len(set(top) & set(wrong)) / len(wrong)
    assert recall >= 0.8, f"recall of {len(wrong)} planted wrong labels in the top {len(top)}: {recall:.2f}"
    suggested = {issue.photo: issue.suggested for issue in report.label_issues}
    assert all(suggested[photo] == true for photo, true in wrong.items() if photo in suggested)
    confidences = [issue.self_confidence for issue in report.label_issues]
    assert confidences == sorted(confidences)
    assert all(-1 <= issue.margin <= 1 for issue in report.label_issues)
    assert any(issue.confident for issue in report.label_issues)


def test_far_away_photos_are_the_top_outliers(planted: Planted, report: DoctorReport) -> None:
    ranked = [outlier.photo for outlier in report.outliers]
    top = ranked[:3 * len(planted.far)]
    assert set(planted.far) <= set(top), f"far photos at ranks {[ranked.index(p) for p in planted.far if p in ranked]}"
    assert all(outlier.score >= OUTLIER_SCORE for outlier in report.outliers)
    assert [o.score for o in report.outliers] == sorted((o.score for o in report.outliers), reverse=True)
    # An off-topic photo fits no class: it is listed as an outlier, not as a wrong label.
    assert not set(planted.far) & {issue.photo for issue in report.label_issues or ()}


def test_counts_before_and_after_keeping_one_photo_per_group(planted: Planted, report: DoctorReport) -> None:
    labels = [photo.label for photo in planted.photos]
    extra = [member for group in planted.groups for member in sorted(group)[1:]]
    for label, name in enumerate(CLASSES):
        assert report.counts[name] == {"photos": labels.count(label),
                                       "after_dedup": labels.count(label) - [labels[i] for i in extra].count(label)}
    summary = report.summary()
    assert summary == {"photos": len(planted.photos), "near_duplicate_groups": len(planted.groups),
                       "duplicate_photos": len(extra), "conflicting_groups": len(planted.conflicting),
                       "across_split_groups": len(planted.across_splits),
                       "likely_wrong_labels": sum(issue.confident for issue in report.label_issues),
                       "possible_wrong_labels": sum(not issue.confident for issue in report.label_issues),
                       "outliers": len(report.outliers)}
    after = [entry["after_dedup"] for entry in report.counts.values()]
    assert report.imbalance_ratio(after_dedup=True) == pytest.approx(max(after) / min(after))


def test_blockwise_pass_equals_all_pairs(planted: Planted) -> None:
    count = len(planted.photos)
    layout = unit_rows(planted.layout, count)
    whole = find_neighbourhoods(layout, block_rows=count)
    blocks = find_neighbourhoods(layout, block_rows=7)
    assert {frozenset(g) for g in blocks.groups} == {frozenset(g) for g in whole.groups} == planted.groups


def test_an_off_topic_cluster_is_found_where_each_is_the_others_nearest_neighbour() -> None:
    """Off-topic photos that look alike (scans among pets) are near each other but far from every class."""
    rng = np.random.default_rng(0)
    centres = unit_rows(rng.normal(size=(2, 32)), 2)
    pets = unit_rows(np.repeat(centres, 30, axis=0) + 0.35 * rng.normal(size=(60, 32)) / np.sqrt(32), 60)
    scan = unit_rows(rng.normal(size=(1, 32)), 1)
    scans = unit_rows(scan + 0.05 * rng.normal(size=(3, 32)) / np.sqrt(32), 3)
    labels = np.array([0] * 30 + [1] * 30 + [0, 0, 1])
    found = outliers(np.vstack([pets, scans]), labels)
    assert {outlier.photo for outlier in found[:3]} == {60, 61, 62}


def test_json_form_is_strict_json_with_class_names(report: DoctorReport) -> None:
    document = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert document["format"] == 1 and document["classes"] == list(CLASSES)
    assert document["duplicate_threshold"] == DUPLICATE_SIMILARITY
    assert document["summary"] == report.summary()
    group = document["near_duplicates"][0]
    assert set(group) == {"same_class", "conflicting_labels", "across_splits", "photos"}
    assert set(group["photos"][0]) == {"path", "label", "split", "similarity"}
    assert set(document["label_issues"][0]) == {"path", "label", "split", "suggested", "self_confidence", "margin",
                                                    "confident"}
    assert set(document["outliers"][0]) == {"path", "label", "split", "score", "distance"}
    assert document["label_issues"][0]["label"] in CLASSES


def test_table_lists_every_kind(report: DoctorReport) -> None:
    text = format_doctor_report(report)
    assert "Near-duplicate groups: 5" in text and "conflicting labels" in text and "across splits" in text
    summary = report.summary()
    assert (f"Likely wrong labels: {summary['likely_wrong_labels']} by confident learning, "
            f"{summary['possible_wrong_labels']} possible") in text and " -> " in text
    assert f"Outliers / off-topic: {len(report.outliers)}" in text
    assert "after dedup" in text and "  train/a/003.jpg  " in text and "/data/train" not in text


def test_no_photos_and_one_class() -> None:
    empty = diagnose("/data", CLASSES, [], np.zeros((0, 8)), probabilities=np.zeros((0, 4)))
    assert empty.summary() == dict.fromkeys(empty.summary(), 0)
    assert empty.to_dict()["imbalance_ratio"] == 1.0 and empty.label_issues == ()
    assert "Near-duplicate groups: 0" in format_doctor_report(empty)

    rng = np.random.default_rng(1)
    photos = [ImageItem(f"/data/only/{i}.jpg", 0, "train") for i in range(6)]
    features = rng.normal(size=(6, 16))
    features[5] = features[4]  # a byte-identical copy: similarity 1.0
    one = diagnose("/data", ("only",), photos, features, probabilities=np.ones((6, 1)))
    assert [g.members for g in one.duplicate_groups] == [(4, 5)] and one.label_issues == ()
    assert one.counts == {"only": {"photos": 6, "after_dedup": 5}}
    lone = diagnose("/data", ("only", "other"), photos[:1], features[:1])
    assert lone.label_issues is None and lone.outliers == () and lone.duplicate_groups == ()
    assert lone.to_dict()["imbalance_ratio"] is None and "not checked" in format_doctor_report(lone)
