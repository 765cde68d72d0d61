from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.control import Cancelled, RunControl
from engine.dataset.sample_data import SAMPLE_CLASSES, generate_sample_dataset
from engine.events import Progress


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.float64)


def test_writes_per_class_folders_of_numbered_jpegs(tmp_path: Path) -> None:
    out = generate_sample_dataset(tmp_path / "sample", classes=3, per_class=4, image_size=64)

    assert out == tmp_path / "sample"
    assert sorted(p.name for p in out.iterdir()) == sorted(SAMPLE_CLASSES[:3])
    for name in SAMPLE_CLASSES[:3]:
        assert sorted(p.name for p in (out / name).iterdir()) == [f"{name}_{i:03d}.jpg" for i in range(4)]


def test_images_decode_as_rgb_jpegs_of_the_requested_size(tmp_path: Path) -> None:
    out = generate_sample_dataset(tmp_path, classes=2, per_class=2, image_size=96)

    for path in out.rglob("*.jpg"):
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (96, 96))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = _files(generate_sample_dataset(tmp_path / "a", classes=2, per_class=3, seed=7, image_size=64))
    again = _files(generate_sample_dataset(tmp_path / "b", classes=2, per_class=3, seed=7, image_size=64))
    other = _files(generate_sample_dataset(tmp_path / "c", classes=2, per_class=3, seed=8, image_size=64))

    assert first == again
    assert first.keys() == other.keys()
    assert all(first[name] != other[name] for name in first)


def test_images_do_not_depend_on_how_many_classes_or_images_are_asked_for(tmp_path: Path) -> None:
    small = _files(generate_sample_dataset(tmp_path / "small", classes=2, per_class=2, image_size=64))
    large = _files(generate_sample_dataset(tmp_path / "large", classes=3, per_class=3, image_size=64))

    assert small.items() <= large.items()


def test_images_within_a_class_vary(tmp_path: Path) -> None:
    out = generate_sample_dataset(tmp_path, classes=2, per_class=3, image_size=64)

    pixels = [_pixels(path) for path in sorted((out / SAMPLE_CLASSES[0]).iterdir())]
    assert all(np.abs(a - b).mean() > 10 for a, b in zip(pixels, pixels[1:], strict=False))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"classes": 1}, "classes must be between 2"),
        ({"classes": len(SAMPLE_CLASSES) + 1}, "classes must be between 2"),
        ({"per_class": 1}, "per_class must be at least 2"),
        ({"image_size": 16}, "image_size must be at least"),
        ({"seed": -1}, "seed must be zero or positive"),
    ],
)
def test_refuses_bad_arguments_before_writing(
    tmp_path: Path, arguments: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate_sample_dataset(tmp_path / "sample", **arguments)

    assert not (tmp_path / "sample").exists()


def test_refuses_a_folder_that_already_has_files(tmp_path: Path) -> None:
    (tmp_path / "holiday.jpg").write_bytes(b"not ours")

    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate_sample_dataset(tmp_path, classes=2, per_class=2, image_size=64)

    assert [p.name for p in tmp_path.iterdir()] == ["holiday.jpg"]


def test_reports_progress_up_to_the_total(tmp_path: Path) -> None:
    events: list[object] = []

    generate_sample_dataset(tmp_path, classes=2, per_class=3, image_size=64, on_event=events.append)

    assert all(isinstance(e, Progress) and e.phase == "sample-data" and e.total == 6 for e in events)
    done = [e.done for e in events]  # type: ignore[attr-defined]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 6


def test_cancel_stops_between_images(tmp_path: Path) -> None:
    control = RunControl()

    def cancel_after_two(event: object) -> None:
        if isinstance(event, Progress) and event.done == 2:
            control.cancel()

    with pytest.raises(Cancelled):
        generate_sample_dataset(
            tmp_path, classes=2, per_class=3, image_size=64, on_event=cancel_after_two, control=control
        )

    assert len(list(tmp_path.rglob("*.jpg"))) == 2


def test_mean_colour_does_not_give_the_class_away(tmp_path: Path) -> None:
    """Colour is random in every class, so nearest-centroid on mean RGB stays near chance (0.25)."""
    classes, per_class = 4, 40
    out = generate_sample_dataset(tmp_path, classes=classes, per_class=per_class, image_size=64)
    features = np.array(
        [
            _pixels(path).reshape(-1, 3).mean(axis=0)
            for name in SAMPLE_CLASSES[:classes]
            for path in sorted((out / name).iterdir())
        ]
    )
    labels = np.repeat(np.arange(classes), per_class)

    correct = 0
    for i in range(len(features)):  # leave-one-out
        keep = np.arange(len(features)) != i
        centroids = np.stack([features[keep & (labels == c)].mean(axis=0) for c in range(classes)])
        correct += int(np.argmin(((centroids - features[i]) ** 2).sum(axis=1)) == labels[i])

    assert correct / len(features) < 1 / classes + 0.15
