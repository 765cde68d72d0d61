"""Heatmap placement and calibration on held-out real photos, scored against boxes drawn by hand.

    python bench/heatmap_placement.py DATA --boxes bench/data/cats_dogs_boxes.json [--run RUN] [--out DIR]

Issue 16's check on generated shapes (the heatmap's peak falls inside the shape for >= 90 % of held-out photos,
tests/engine/test_heatmaps.py) repeated on real photos. Without ``--run`` the default ``train`` runs on DATA with
``--val-split 0.3 --test-split 0.3``; the run is exported (engine.export.export_onnx) and every validation and
test photo, never a training one, goes through the torch-free predictor with heatmaps. For each photo: the peak
of the predicted class's map and of the true class's map (the same map when the answer is right), placed on the
photo as ``predict --heatmaps`` places it, and whether it lies in a box of an animal of that class; the pointing
game's tolerance; the share of the map's mass inside the boxes; and what a peak at the photo's centre, or at a
random point of what the model saw, would score (most photos are mostly animal: the photos whose animals cover
under half of the seen region are also reported on their own). Calibration on the same photos: the run's
evaluation.json block, and the expected calibration error the exported model's probabilities give. Prints a
table; writes OUT/heatmap_placement.json and, in OUT/misses/, an overlay of every miss with the boxes (green),
possible animals (yellow) and the peak (a cross).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import ImageDraw

from engine.atomic import free_name, write_atomic, write_json_atomic
from engine.console import ConsoleProgress
from engine.errors import BadInputError
from engine.evaluation.calibration import (
    confidence_and_correct,
    expected_calibration_error,
    recorded_calibration,
    softmax,
)
from engine.export import export_onnx
from engine.heatmaps import class_activation_map, crop_box, overlay, photo_for_overlay, place_on_photo
from engine.images import load_rgb, preprocess_for_model
from engine.onnx_metadata import CAM_WEIGHTS_OUTPUT, FEATURE_MAP_OUTPUT
from engine.predict import Prediction, Predictor
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import train

Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive) in pixels of the EXIF-transposed photo
# The pointing game (Zhang et al. 2016, "Top-down neural attention by excitation backprop"): a hit is a maximum
# within 15 pixels of an annotated object of the class, on photos of about this size (PASCAL VOC, COCO).
POINTING_TOLERANCE = 15
SPLITS = (("val", "validation"), ("test", "test"))
# Most of these photos are mostly animal, where any point scores; the photos whose animals cover less than this
# share of what the model saw are reported on their own too.
SMALL_ANIMAL = 0.5
PARITY_ATOL = 1e-3  # the predictor's map against this script's own CAM of the same photo


class BoxesFileError(BadInputError):
    """The boxes file cannot be used; the message names the file, the photo and the fix."""


@dataclass(frozen=True, slots=True)
class Annotations:
    """The boxes file, parsed: each photo's animals of its own class, animals of other classes (label, box),
    boxes of what might be an animal, and the annotator's note."""

    path: Path
    own: dict[str, tuple[Box, ...]]
    other: dict[str, tuple[tuple[str, Box], ...]]
    possible: dict[str, tuple[Box, ...]]
    notes: dict[str, str]

    def boxes(self, photo: str, label: str, photo_label: str) -> tuple[Box, ...]:
        """The animals of class ``label`` in ``photo`` (filed under ``photo_label``)."""
        if label == photo_label:
            return self.own[photo]
        return tuple(box for other_label, box in self.other.get(photo, ()) if other_label == label)


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A validation or test photo of the run."""

    photo: str  # the path relative to DATA, as the boxes file names it
    path: Path
    split: str  # "validation" | "test"
    truth: int
    size: tuple[int, int]  # width, height once EXIF-rotated, as the app loads it


@dataclass(frozen=True, slots=True)
class MapScore:
    """Where one class's map peaks on the photo and how that compares with the class's boxes."""

    label: str
    peak: tuple[int, int] | None  # None: an empty map (no position supports the class), which points nowhere
    distance: float  # pixels from the peak to the nearest box of the class (0 inside; inf without one)
    mass_inside: float | None  # the share of the map's sum, over what the model saw, inside those boxes

    @property
    def inside(self) -> bool:
        return self.distance == 0

    @property
    def pointing(self) -> bool:
        return self.distance <= POINTING_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "peak": None if self.peak is None else list(self.peak), "inside": self.inside,
                "pointing_game": self.pointing,
                "distance_px": None if np.isinf(self.distance) else round(self.distance, 1),
                "mass_inside": self.mass_inside}


def load_annotations(path: Path) -> Annotations:
    """Read and check the boxes file (its format: bench/data/cats_dogs_boxes.json)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        own = {photo: tuple(_box(photo, box) for box in boxes) for photo, boxes in document["boxes"].items()}
        other = {photo: tuple((str(item["label"]), _box(photo, item["box"])) for item in items)
                 for photo, items in document.get("other_animals", {}).items()}
        possible = {photo: tuple(_box(photo, box) for box in entry.get("possible_boxes", ()))
                    for photo, entry in document.get("ambiguous", {}).items()}
        notes = {photo: str(entry["note"]) for photo, entry in document.get("ambiguous", {}).items()}
    except OSError as exc:
        raise BoxesFileError(f"{path}: cannot read the boxes file ({exc.strerror or exc})") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BoxesFileError(f"{path}: not a boxes file ({type(exc).__name__}: {exc}); see "
                             f"bench/data/cats_dogs_boxes.json for the format") from exc
    return Annotations(path, own, other, possible, notes)


def _box(photo: str, values: Any) -> Box:
    left, top, right, bottom = (int(v) for v in values)
    if not (0 <= left < right and 0 <= top < bottom):
        raise ValueError(f"{photo}: box {list(values)} is not [left, top, right, bottom] with left < right and "
                         f"top < bottom")
    return left, top, right, bottom


def held_out_photos(run_dir: Path, data: Path, annotations: Annotations) -> list[HeldOut]:
    """The run's validation and test photos (its recorded split), each with boxes that fit the photo."""
    report = rf.read_scan_report(rf.read_run(run_dir))
    root = data.resolve()
    photos = []
    for split, name in SPLITS:
        for item in report.split_items(split):
            path = Path(item.path)
            try:
                photo = path.resolve().relative_to(root).as_posix()
            except ValueError:
                raise BadInputError(f"{path}: a {name} photo of {run_dir} is not under {data}; give the run's "
                                    f"own dataset folder") from None
            if photo not in annotations.own:
                raise BoxesFileError(f"{annotations.path}: no boxes for {photo} ({name} photo of {run_dir}); "
                                     f"add its animals under \"boxes\"")
            width, height = load_rgb(path).size
            for box in (*annotations.own[photo], *(b for _, b in annotations.other.get(photo, ())),
                        *annotations.possible.get(photo, ())):
                if box[2] > width or box[3] > height:
                    raise BoxesFileError(f"{annotations.path}: box {list(box)} of {photo} reaches past the photo "
                                         f"({width}x{height} once EXIF-rotated); redraw it")
            photos.append(HeldOut(photo, path, name, item.label, (width, height)))
    return photos


def distance_to(point: tuple[int, int], boxes: tuple[Box, ...]) -> float:
    """Pixels from ``point`` (a pixel) to the nearest box; 0 inside one, infinity when there is none."""
    x, y = point
    return min((float(np.hypot(max(left - x, 0, x - (right - 1)), max(top - y, 0, y - (bottom - 1))))
                for left, top, right, bottom in boxes), default=float("inf"))


def covered(boxes: tuple[Box, ...], size: tuple[int, int]) -> np.ndarray:
    """The photo's pixels (height x width) inside any of ``boxes``."""
    mask = np.zeros((size[1], size[0]), dtype=bool)
    for left, top, right, bottom in boxes:
        mask[top:bottom, left:right] = True
    return mask


def score_map(cam: np.ndarray, label: str, boxes: tuple[Box, ...], size: tuple[int, int],
              preprocessing: Preprocessing) -> MapScore:
    """Place ``cam`` on the photo as ``predict --heatmaps`` draws it; its peak is the first highest pixel, as in
    tests/engine/test_heatmaps.py (a map highest in a border cell peaks on the seen region's edge). An all-zero
    map has no peak: its first pixel would be the seen region's top-left corner, a point the model never chose."""
    placed = place_on_photo(cam, size, preprocessing)
    total = float(np.nansum(placed))
    if total <= 0:
        return MapScore(label, None, float("inf"), None)
    y, x = np.unravel_index(np.nanargmax(placed), placed.shape)
    inside = float(np.nansum(placed[covered(boxes, size)]))
    return MapScore(label, (int(x), int(y)), distance_to((int(x), int(y)), boxes), inside / total)


def box_share_of_seen(boxes: tuple[Box, ...], size: tuple[int, int], preprocessing: Preprocessing) -> float:
    """The share of the photo region the model saw that the boxes cover: a random point's chance of a hit, and
    the map mass a flat map would put in them."""
    left, top, right, bottom = crop_box(size, preprocessing)
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, size[0]), min(bottom, size[1])
    return float(covered(boxes, size)[top:bottom, left:right].mean())


def class_maps(session: ort.InferenceSession, path: Path, preprocessing: Preprocessing) -> np.ndarray:
    """Every class's activation map for one photo (classes x h x w), from the exported graph's own outputs: the
    predictor gives only the top class's, and a wrong answer's true class needs its own."""
    batch = preprocess_for_model(path, preprocessing)[None]
    feature_map, weights = session.run([FEATURE_MAP_OUTPUT, CAM_WEIGHTS_OUTPUT],
                                       {session.get_inputs()[0].name: batch})
    return np.stack([class_activation_map(feature_map[0], weights, c) for c in range(weights.shape[0])])


def score_photo(photo: HeldOut, prediction: Prediction, maps: np.ndarray, labels: tuple[str, ...],
                annotations: Annotations, preprocessing: Preprocessing) -> dict[str, Any]:
    size = photo.size
    truth, predicted = labels[photo.truth], prediction.label
    np.testing.assert_allclose(np.asarray(prediction.heatmap), maps[labels.index(predicted)], atol=PARITY_ATOL,
                               err_msg=f"{photo.photo}: the predictor's map differs from the graph's outputs")

    def score(label: str) -> MapScore:
        boxes = annotations.boxes(photo.photo, label, truth)
        return score_map(maps[labels.index(label)], label, boxes, size, preprocessing)

    true_map = score(truth)
    predicted_map = true_map if predicted == truth else score(predicted)
    centre = (size[0] // 2, size[1] // 2)
    possible = annotations.possible.get(photo.photo, ())
    return {
        "photo": photo.photo, "split": photo.split, "size": list(size), "truth": truth, "predicted": predicted,
        "confidence": prediction.confidence, "probabilities": {label: p for label, p in prediction.top_k},
        "predicted_map": predicted_map.to_dict(), "true_map": true_map.to_dict(),
        "centre_inside": distance_to(centre, annotations.own[photo.photo]) == 0,
        "box_share_of_seen": box_share_of_seen(annotations.own[photo.photo], size, preprocessing),
        "peak_in_possible_animal": (true_map.peak is not None and not true_map.inside
                                    and distance_to(true_map.peak, possible) == 0),
        "note": annotations.notes.get(photo.photo),
    }


def placement_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and shares over ``rows``: each map's peak in a box, the pointing game, and the two baselines."""
    count = len(rows)

    def tally(hits: int) -> dict[str, Any]:
        return {"hits": hits, "count": count, "share": hits / count if count else None}

    return {
        "count": count, "accuracy": tally(sum(r["predicted"] == r["truth"] for r in rows)),
        "predicted_class_inside": tally(sum(r["predicted_map"]["inside"] for r in rows)),
        "predicted_class_empty_map": sum(r["predicted_map"]["peak"] is None for r in rows),
        "true_class_inside": tally(sum(r["true_map"]["inside"] for r in rows)),
        "pointing_game_true_class": tally(sum(r["true_map"]["pointing_game"] for r in rows)),
        "centre_baseline_inside": tally(sum(r["centre_inside"] for r in rows)),
        "random_point_baseline": _mean([r["box_share_of_seen"] for r in rows]),
        "true_class_mass_inside": _mean([r["true_map"]["mass_inside"] for r in rows]),
    }


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def calibration_summary(rows: list[dict[str, Any]], labels: tuple[str, ...], temperature: float) -> dict[str, Any]:
    """Accuracy and expected calibration error of the exported model's probabilities on ``rows``, at its
    temperature and, undoing it (logits = T log p up to a constant per photo), at T = 1."""
    probabilities = np.array([[r["probabilities"][label] for label in labels] for r in rows], dtype=np.float64)
    truth = np.array([labels.index(r["truth"]) for r in rows])
    logits = temperature * np.log(np.maximum(probabilities, np.finfo(np.float64).tiny))
    confidence, correct = confidence_and_correct(probabilities, truth)
    return {"count": len(rows), "accuracy": float(correct.mean()), "mean_confidence": float(confidence.mean()),
            "ece_before": expected_calibration_error(*confidence_and_correct(softmax(logits), truth)),
            "ece_after": expected_calibration_error(confidence, correct)}


def write_miss(photo: HeldOut, cam: np.ndarray, score: dict[str, Any], which: str, boxes: tuple[Box, ...],
               possible: tuple[Box, ...], preprocessing: Preprocessing, folder: Path) -> Path:
    """The overlay ``predict --heatmaps`` draws, with the class's boxes, the possible animals and the peak."""
    image = photo_for_overlay(photo.path)
    scale = image.width / photo.size[0]
    image = overlay(image, cam, preprocessing)
    draw = ImageDraw.Draw(image)
    for colour, group in (((0, 255, 0), boxes), ((255, 255, 0), possible)):
        for box in group:
            draw.rectangle([round(v * scale) for v in box], outline=colour, width=2)
    if score[which]["peak"] is not None:
        x, y = (round(v * scale) for v in score[which]["peak"])
        for width, colour in ((5, (0, 0, 0)), (2, (255, 255, 255))):
            draw.line([(x - 10, y), (x + 10, y)], fill=colour, width=width)
            draw.line([(x, y - 10), (x, y + 10)], fill=colour, width=width)
    name = f"{photo.split}-{Path(photo.photo).stem}-{which.split('_')[0]}-{score[which]['label']}.png"
    path = free_name(folder, name)
    write_atomic(path, lambda handle: image.save(handle, format="PNG"))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the photos, one folder per class (the boxes file's paths are "
                                                "relative to it)")
    parser.add_argument("--boxes", type=Path, required=True, help="hand-drawn boxes (bench/data/cats_dogs_boxes.json)")
    parser.add_argument("--run", type=Path, help="score this run instead of training one")
    parser.add_argument("--out", type=Path, help="results folder (default: a new temporary folder)")
    parser.add_argument("--seed", type=int, default=0, help="the split's and training's seed (without --run)")
    args = parser.parse_args()
    started = time.perf_counter()
    out = args.out or Path(tempfile.mkdtemp(prefix="ts-heatmap-placement-"))
    out.mkdir(parents=True, exist_ok=True)
    annotations = load_annotations(args.boxes)
    progress = ConsoleProgress()
    run_dir = args.run
    if run_dir is None:
        run_dir = out / "run"
        train(args.data, run_dir, TrainConfig(val_split=0.3, test_split=0.3, seed=args.seed), on_event=progress)
    photos = held_out_photos(run_dir, args.data, annotations)
    model = export_onnx(run_dir, out / "model.onnx", on_event=progress).path
    predictor = Predictor(model, device="cpu")
    labels, preprocessing = predictor.info.labels, predictor.info.preprocessing
    predictions = predictor.predict_paths([p.path for p in photos], top_k=len(labels), heatmaps=True,
                                          on_event=progress)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    misses = out / "misses"
    misses.mkdir(exist_ok=True)
    rows = []
    for photo, prediction in zip(photos, predictions, strict=True):
        if prediction.error:
            raise BadInputError(f"{photo.path}: cannot be read ({prediction.error}); fix or remove it and train again")
        maps = class_maps(session, photo.path, preprocessing)
        row = score_photo(photo, prediction, maps, labels, annotations, preprocessing)
        for which in ("predicted_map", "true_map"):
            label = row[which]["label"]
            if not row[which]["inside"] and (which == "true_map" or label != row["truth"]):
                row[f"{which}_overlay"] = str(write_miss(
                    photo, maps[labels.index(label)], row, which, annotations.boxes(photo.photo, label, row["truth"]),
                    annotations.possible.get(photo.photo, ()), preprocessing, misses))
        rows.append(row)

    groups = {name: [r for r in rows if r["split"] == name] for _, name in SPLITS}
    groups["held out"] = rows
    groups[f"held out, animal < {SMALL_ANIMAL:.0%} of the seen region"] = [
        r for r in rows if r["box_share_of_seen"] < SMALL_ANIMAL]
    recorded = recorded_calibration(run_dir / rf.EVALUATION_FILE)
    temperature = predictor.info.temperature
    document = {
        "data": str(args.data), "run": str(run_dir), "model": model, "boxes": str(args.boxes),
        "preprocessing": preprocessing.to_dict(), "pointing_tolerance_px": POINTING_TOLERANCE,
        "placement": {name: placement_summary(group) for name, group in groups.items() if group},
        "calibration": {"recorded": recorded, "temperature": temperature,
                        "exported_model": {name: calibration_summary(group, labels, temperature)
                                           for name, group in groups.items() if group}},
        "photos": rows, "misses": str(misses), "seconds": time.perf_counter() - started,
    }
    write_json_atomic(out / "heatmap_placement.json", document)
    print_report(document)
    print(f"\n{out / 'heatmap_placement.json'}; overlays of the misses in {misses}")
    return 0


def print_report(document: dict[str, Any]) -> None:
    def share(entry: dict[str, Any]) -> str:
        return f"{entry['share']:.3f} ({entry['hits']}/{entry['count']})"

    print("\n| photo | split | truth | predicted | confidence | peak (predicted class) | in box | true class: in box |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in document["photos"]:
        same = r["predicted"] == r["truth"]
        print(f"| {r['photo']} | {r['split']} | {r['truth']} | {r['predicted']} | {r['confidence']:.3f} "
              f"| {tuple(r['predicted_map']['peak'] or ()) or 'empty map'} "
              f"| {'yes' if r['predicted_map']['inside'] else 'NO'} "
              f"| {'(same map)' if same else 'yes' if r['true_map']['inside'] else 'NO'} |")
    print("\n| held-out photos | accuracy | peak in a box: predicted class | (empty maps) | true class "
          f"| pointing game (+{POINTING_TOLERANCE} px) | centre baseline | random point | map mass in the boxes |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in document["placement"].items():
        print(f"| {name} ({s['count']}) | {share(s['accuracy'])} | {share(s['predicted_class_inside'])} "
              f"| {s['predicted_class_empty_map']} "
              f"| {share(s['true_class_inside'])} | {share(s['pointing_game_true_class'])} "
              f"| {share(s['centre_baseline_inside'])} | {s['random_point_baseline']:.3f} "
              f"| {s['true_class_mass_inside']:.3f} |")
    calibration = document["calibration"]
    recorded = calibration["recorded"] or {}
    threshold = recorded.get("unsure_threshold")
    print(f"\ncalibration: T = {calibration['temperature']:.3f} (fitted on validation: {recorded.get('fitted')}), "
          f"unsure threshold {'none' if threshold is None else f'{threshold:.3f}'}")
    print("| held-out photos | accuracy | mean confidence | ECE at T = 1 | ECE at T "
          "| evaluation.json: before -> after |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, c in calibration["exported_model"].items():
        block = recorded if name == "validation" else recorded.get("test") if name == "test" else None
        written = f"{block['ece_before']:.3f} -> {block['ece_after']:.3f}" if block else "-"
        print(f"| {name} ({c['count']}) | {c['accuracy']:.3f} | {c['mean_confidence']:.3f} | {c['ece_before']:.3f} "
              f"| {c['ece_after']:.3f} | {written} |")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BadInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
