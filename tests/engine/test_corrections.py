"""Corrections: copied into the run's dataset (never moved), recorded in corrections.jsonl, refused with a reason."""

import json
import shutil
from pathlib import Path

import pytest

from engine.corrections import CORRECTIONS_FILE, add_correction, read_corrections
from engine.errors import BadInputError
from engine.training import run_folder as rf


@pytest.fixture
def run(trained_run: Path, tmp_path: Path) -> Path:
    """The shared run's run.json, pointing at a private copy of its dataset (corrections write into it)."""
    data = tmp_path / "data"
    shutil.copytree(rf.read_run(trained_run).data_dir, data)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    document = json.loads((trained_run / rf.RUN_FILE).read_text(encoding="utf-8"))
    (run_dir / rf.RUN_FILE).write_text(json.dumps({**document, "data_dir": str(data)}), encoding="utf-8")
    return run_dir


def test_a_correction_copies_the_photo_into_its_class_and_is_recorded(run: Path, tmp_path: Path) -> None:
    info = rf.read_run(run)
    right, wrong = info.labels[0], info.labels[1]
    photo = tmp_path / "inbox" / "new.jpg"
    photo.parent.mkdir()
    photo.write_bytes(next(Path(info.data_dir, right).iterdir()).read_bytes())
    first = add_correction(run, photo, right, predicted=wrong)
    second = add_correction(run, photo, right, predicted=right)  # confirmed right: another copy, a free name
    assert Path(first.copy) == Path(info.data_dir) / right / "new.jpg"
    assert Path(second.copy).name == "new (2).jpg" and photo.is_file()  # the original stays
    assert Path(first.copy).read_bytes() == photo.read_bytes()
    assert read_corrections(run) == [first, second]
    assert (first.label, first.predicted, first.photo) == (right, wrong, str(photo.resolve()))


def test_corrections_are_refused_with_the_reason(run: Path, tmp_path: Path) -> None:
    info = rf.read_run(run)
    inside = next(Path(info.data_dir, info.labels[0]).iterdir())
    outside = tmp_path / "x.jpg"
    outside.write_bytes(inside.read_bytes())
    with pytest.raises(BadInputError, match="not a class of this run"):
        add_correction(run, outside, "giraffe")
    with pytest.raises(BadInputError, match="already in the dataset"):
        add_correction(run, inside, info.labels[1])
    with pytest.raises(BadInputError, match="could not be copied"):
        add_correction(run, tmp_path / "missing.jpg", info.labels[0])
    assert read_corrections(run) == []


def test_a_line_cut_short_by_a_crash_is_left_out_other_damage_is_refused(run: Path, tmp_path: Path) -> None:
    info = rf.read_run(run)
    photo = tmp_path / "y.jpg"
    photo.write_bytes(next(Path(info.data_dir, info.labels[0]).iterdir()).read_bytes())
    kept = add_correction(run, photo, info.labels[0])
    journal = run / CORRECTIONS_FILE
    journal.write_text(journal.read_text(encoding="utf-8") + '{"photo": "/a.jpg", "lab', encoding="utf-8")
    assert read_corrections(run) == [kept]
    journal.write_text("garbage\n" + journal.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(BadInputError, match="line 1"):
        read_corrections(run)
