"""The dataset doctor end to end on generated photos with planted faults, through the real Lite0 features.

4 classes x 24 generated 448 px photos in train/ and val/ folders (a pre-split layout: the splits are used as
given). Planted: copies re-saved at JPEG quality 50, resized to half, cropped by 10 % and brightened by 25 %,
each placed in its own class, in another class and in the other split; 5 photos (5 %) moved to another class;
4 photos of another kind (scikit-image's astronaut, coffee, rocket and cat) filed under the classes.
"""

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image, ImageEnhance

import engine.training.doctor_run as doctor_run
import engine.training.near_duplicates as near_duplicates
from engine.cli import main
from engine.control import Cancelled, RunControl
from engine.dataset.doctor import DUPLICATE_SIMILARITY, DoctorReport
from engine.dataset.report import ScanReport
from engine.dataset.sample_data import generate_sample_dataset
from engine.events import Info, Progress, ignore_event
from engine.training.config import TrainConfig
from engine.training.doctor_run import stratified_folds
from engine.training.preparation import prepare_training

CLASSES, PER_CLASS, VAL_PER_CLASS, SWAPS = 4, 24, 6, 5
OFF_TOPIC = ("astronaut", "coffee", "rocket", "chelsea")


def _resaved(image: Image.Image) -> tuple[Image.Image, dict]:
    return image, {"quality": 50}


def _resized(image: Image.Image) -> tuple[Image.Image, dict]:
    return image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS), {}


def _cropped(image: Image.Image) -> tuple[Image.Image, dict]:
    dx, dy = image.width // 20, image.height // 20  # 5 % off each side: 10 % of the width and of the height
    return image.crop((dx, dy, image.width - dx, image.height - dy)), {}


def _brightened(image: Image.Image) -> tuple[Image.Image, dict]:
    return ImageEnhance.Brightness(image).enhance(1.25), {}


@dataclass
class Planted:
    data: Path
    copies: list[tuple[str, str]]  # (original, copy)
    wrong_labels: dict[str, str]  # path -> the class it shows: the moved photos, and copies filed elsewhere
    off_topic: list[str]


def _plant(root: Path) -> Planted:
    generated = generate_sample_dataset(root / "generated", classes=CLASSES, per_class=PER_CLASS, seed=5,
                                        image_size=448)
    names = sorted(folder.name for folder in generated.iterdir())
    data = root / "data"
    photos: dict[str, list[Path]] = {}
    for name in names:
        for index, source in enumerate(sorted((generated / name).iterdir())):
            split = "val" if index >= PER_CLASS - VAL_PER_CLASS else "train"
            (data / split / name).mkdir(parents=True, exist_ok=True)
            photos.setdefault(name, []).append(Path(shutil.move(source, data / split / name / source.name)))
    shutil.rmtree(generated)

    copies, wrong = [], {}
    plants = [(make, placement) for make in (_resaved, _resized, _cropped, _brightened)
              for placement in ("same class", "another class", "another split")]
    for number, (make, placement) in enumerate(plants):
        name = names[number % CLASSES]
        original = photos[name][1 + number // CLASSES]  # training photos 1-3 of each class
        folder = original.parent
        if placement == "another class":
            folder = folder.parent / names[(number + 1) % CLASSES]
        elif placement == "another split":
            folder = data / "val" / name
        image, options = make(Image.open(original).convert("RGB"))
        copy = folder / f"copy_{make.__name__[1:]}_{original.name}"
        image.save(copy, **options)
        copies.append((str(original), str(copy)))
        if folder.name != name:
            wrong[str(copy)] = name
    for number in range(SWAPS):  # training photos 10 and 11: never copied
        name = names[number % CLASSES]
        source = photos[name][10 + number // CLASSES]
        moved = source.parent.parent / names[(number + 2) % CLASSES] / source.name
        shutil.move(source, moved)
        wrong[str(moved)] = name
    off_topic = []
    for number, kind in enumerate(OFF_TOPIC):
        path = data / "train" / names[number % CLASSES] / f"{kind}.jpg"
        Image.fromarray(getattr(skimage.data, kind)()).save(path, quality=90)
        off_topic.append(str(path))
    return Planted(data, copies, wrong, off_topic)


@dataclass
class Diagnosed:
    planted: Planted
    report: DoctorReport
    events: list
    layout: np.ndarray  # the unit layout features the doctor grouped by, in report order
    exit_code: int
    json_file: Path


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory: pytest.TempPathFactory) -> Diagnosed:
    """The planted folder and the doctor's report on it, from ``transfer-studio doctor --json --out``, with the
    report, events and layout features recorded on the way: Lite0 runs once for the module."""
    folder = tmp_path_factory.mktemp("doctor")
    planted = _plant(folder)
    seen: dict = {"events": []}
    find, run = near_duplicates.find_neighbourhoods, doctor_run.diagnose_folder

    def recording_find(layout: np.ndarray, **kwargs: object):  # noqa: ANN202
        seen["layout"] = layout
        return find(layout, **kwargs)

    def recording_run(*args: object, on_event: Callable, **kwargs: object) -> DoctorReport:
        def both(event: object) -> None:
            seen["events"].append(event)
            on_event(event)

        seen["report"] = run(*args, on_event=both, **kwargs)
        return seen["report"]

    json_file = folder / "doctor.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(near_duplicates, "find_neighbourhoods", recording_find)
        patch.setattr(doctor_run, "diagnose_folder", recording_run)
        exit_code = main(["doctor", str(planted.data), "--json", "--out", str(json_file)])
    return Diagnosed(planted, seen["report"], seen["events"], seen["layout"], exit_code, json_file)


def _pairs(groups: list[list[str]]) -> set[frozenset[str]]:
    return {frozenset((a, b)) for group in groups for i, a in enumerate(group) for b in group[i + 1:]}


def test_near_duplicates_found_with_recall_and_precision_of_095(diagnosed: Diagnosed) -> None:
    report, planted = diagnosed.report, diagnosed.planted
    paths = [photo.path for photo in report.photos]
    found = _pairs([[paths[i] for i in group.members] for group in report.duplicate_groups])
    planted_pairs = _pairs([list(pair) for pair in planted.copies])
    recall = len(found & planted_pairs) / len(planted_pairs)
    precision = len(found & planted_pairs) / max(1, len(found))
    figures = f"recall {recall:.3f}, precision {precision:.3f} ({len(found)} pairs found, {len(planted_pairs)} planted)"
    assert recall >= 0.95 and precision >= 0.95, figures
    for group in report.duplicate_groups:
        members = [report.photos[i] for i in group.members]
        assert group.conflicting_labels == (len({m.label for m in members}) > 1)
        assert group.across_splits == (len({m.split for m in members}) > 1)
    summary = report.summary()
    assert (summary["conflicting_groups"], summary["across_split_groups"]) == (4, 4), summary


def test_threshold_separates_planted_copies_from_distinct_photos(diagnosed: Diagnosed) -> None:
    """The calibration behind DUPLICATE_SIMILARITY: a margin on both sides on these photos."""
    index = {photo.path: i for i, photo in enumerate(diagnosed.report.photos)}
    similarity = diagnosed.layout @ diagnosed.layout.T
    copies = [similarity[index[a], index[b]] for a, b in diagnosed.planted.copies]
    distinct = np.triu(np.ones_like(similarity, dtype=bool), 1)
    for a, b in diagnosed.planted.copies:
        distinct[min(index[a], index[b]), max(index[a], index[b])] = False
    lowest, highest = min(copies), similarity[distinct].max()
    figures = (f"planted copies {lowest:.3f} to {max(copies):.3f}, distinct photos up to {highest:.3f} "
               f"({distinct.sum()} pairs; 99th percentile {np.quantile(similarity[distinct], 0.99):.3f})")
    assert lowest >= DUPLICATE_SIMILARITY + 0.03 and highest <= DUPLICATE_SIMILARITY - 0.05, figures


def test_wrong_labels_ranked_in_the_top_twice_their_count(diagnosed: Diagnosed) -> None:
    report, wrong = diagnosed.report, diagnosed.planted.wrong_labels
    assert report.label_issues is not None
    ranked = [report.photos[issue.photo].path for issue in report.label_issues]
    top = ranked[:2 * len(wrong)]
    recall = len(set(top) & set(wrong)) / len(wrong)
    ranks = sorted(ranked.index(path) + 1 for path in wrong if path in ranked)
    assert recall >= 0.8, f"recall {recall:.2f} in the top {len(top)} of {len(ranked)}; planted at ranks {ranks}"
    suggested = {report.photos[issue.photo].path: report.classes[issue.suggested] for issue in report.label_issues}
    assert all(suggested[path] == true for path, true in wrong.items() if path in top)


def test_off_topic_photos_are_the_top_outliers(diagnosed: Diagnosed) -> None:
    report, off_topic = diagnosed.report, diagnosed.planted.off_topic
    ranked = [report.photos[outlier.photo].path for outlier in report.outliers]
    ranks = [ranked.index(path) + 1 if path in ranked else None for path in off_topic]
    scores = [outlier.score for outlier in report.outliers]
    assert set(off_topic) <= set(ranked[:3 * len(off_topic)]), f"off-topic at ranks {ranks}; scores {scores}"


def test_counts_after_dedup_and_progress_events(diagnosed: Diagnosed) -> None:
    report, planted = diagnosed.report, diagnosed.planted
    assert len(report.photos) == CLASSES * PER_CLASS + len(planted.copies) + len(OFF_TOPIC)
    order = {photo.path: i for i, photo in enumerate(report.photos)}
    dropped = [report.photos[max(order[a], order[b])] for a, b in planted.copies]  # the first of each is kept
    assert {name: c["photos"] - c["after_dedup"] for name, c in report.counts.items()} == {
        name: sum(photo.label == label for photo in dropped) for label, name in enumerate(report.classes)}
    phases = {event.phase for event in diagnosed.events if isinstance(event, Progress)}
    assert {"features (doctor)", "label check (doctor)"} <= phases
    assert any(isinstance(e, Info) and e.message.startswith("doctor: 12 near-duplicate groups")
               for e in diagnosed.events)


def test_cancel_between_folds(diagnosed: Diagnosed) -> None:
    control = RunControl()
    folds = []

    def on_event(event: object) -> None:
        if isinstance(event, Progress) and event.phase == "label check (doctor)":
            folds.append(event.done)
            control.cancel()

    with pytest.raises(Cancelled):
        doctor_run.diagnose_folder(diagnosed.planted.data, on_event=on_event, control=control)
    assert folds == [0]


def test_folds_keep_near_duplicates_together_and_every_class_spread() -> None:
    targets = np.repeat(np.arange(3), 20)
    together = [(0, 25, 59), (3, 4)]
    fold_of = stratified_folds(targets, 5, seed=0, together=together)
    assert all(len(set(fold_of[list(group)])) == 1 for group in together)
    for label in range(3):
        per_fold = np.bincount(fold_of[targets == label], minlength=5)
        assert per_fold.max() - per_fold.min() <= 2, per_fold
    np.testing.assert_array_equal(fold_of, stratified_folds(targets, 5, seed=0, together=together))


def test_cli_json_and_table(diagnosed: Diagnosed, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert diagnosed.exit_code == 0
    document = json.loads(diagnosed.json_file.read_text(encoding="utf-8"))
    assert document == json.loads(json.dumps(diagnosed.report.to_dict()))

    monkeypatch.setattr(doctor_run, "diagnose_folder", lambda *_args, **_kwargs: diagnosed.report)  # ran once
    assert main(["doctor", str(diagnosed.planted.data)]) == 0
    out = capsys.readouterr().out
    assert "Near-duplicate groups: 12" in out and "conflicting labels" in out and "across splits" in out
    assert "Likely wrong labels:" in out and " -> " in out and "Outliers / off-topic:" in out
    assert "val/circles/copy_" in out and "after dedup" in out


def test_cli_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["doctor", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["doctor", str(tmp_path), "--backbone", "resnet1000"]) == 2


def test_help_lists_the_doctor(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "transfer-studio doctor" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--json" in text and "--out OUT" in text and "(default: efficientnet_lite0)" in text


def test_a_training_split_keeps_each_planted_copy_beside_its_original(diagnosed: Diagnosed,
                                                                      tmp_path: Path) -> None:
    """The planted photos as plain class folders, split by ``train``: the plain split cuts some copy from its
    original, the near-duplicate split none, and scan_report.json's groups hold every pair."""
    flat = tmp_path / "flat"

    def flattened(path: str | Path) -> Path:
        path = Path(path)
        return flat / path.parent.name / f"{path.parent.parent.name}_{path.name}"

    for photo in diagnosed.planted.data.rglob("*"):
        if photo.is_file():
            flattened(photo).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, flattened(photo))  # the same bytes: the doctor's features come from the cache
    pairs = [(str(flattened(a)), str(flattened(b))) for a, b in diagnosed.planted.copies
             if Path(a).parent.name == Path(b).parent.name]
    config = TrainConfig(device="cpu", test_split=0.2)

    def split_of(near_duplicates: bool) -> tuple[dict[str, str], ScanReport]:
        report = prepare_training(flat, config, ignore_event, RunControl(), near_duplicates=near_duplicates).report
        return {item.path: item.split for item in report.items}, report

    plain, _ = split_of(False)
    assert len(pairs) == 8 and any(plain[a] != plain[b] for a, b in pairs)  # else this test proves nothing
    grouped, report = split_of(True)
    assert [(a, b) for a, b in pairs if grouped[a] != grouped[b]] == []
    groups = [set(group) for group in report.near_duplicates]
    assert all(any({a, b} <= group for group in groups) for a, b in pairs)
    assert report.counts["val"] and all(report.counts[split][name] for split in ("val", "test")
                                        for name in report.classes)
