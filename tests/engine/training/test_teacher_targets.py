"""Teachers' soft targets: the student's very views through the teacher, cached, and the distillation loss."""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.backbones.inference import load_trained_model
from engine.backbones.registry import get_backbone
from engine.control import RunControl
from engine.dataset.cache import DecodedImageCache
from engine.dataset.scan import scan_dataset
from engine.events import Info, ignore_event
from engine.training import run_folder as rf
from engine.training.batch_augment import BatchAugment, seeded_uniforms, view_key
from engine.training.config import TrainConfig
from engine.training.device import resolve_device
from engine.training.image_batches import square_crop
from engine.training.loop import training_loss
from engine.training.teacher_targets import (
    TeacherError,
    TeacherTargets,
    member_weights,
    split_source,
    teacher_members,
)

STUDENT = TrainConfig(augment="standard", seed=3)


def test_the_loss_is_hintons_weighted_sum_of_the_soft_and_hard_terms() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 3, generator=generator, dtype=torch.float64)
    labels = torch.tensor([0, 2, 1, 1, 0])
    teacher = torch.softmax(torch.randn(5, 3, generator=generator, dtype=torch.float64) / 4, dim=1)
    weights = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    alpha, temperature = 0.7, 4.0
    loss = training_loss(weights, 0.1, alpha=alpha, temperature=temperature)(logits, labels, teacher)

    s, p = logits.numpy() / temperature, teacher.numpy()
    log_q = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    kl = float(np.mean(np.sum(p * (np.log(p) - log_q), axis=1)))  # KL(p || q), averaged over the photos
    hard = F.cross_entropy(logits, labels, weight=weights, label_smoothing=0.1)  # the run's weighted, smoothed CE
    assert math.isclose(float(loss), alpha * temperature**2 * kl + (1 - alpha) * float(hard), rel_tol=1e-9)
    assert torch.equal(training_loss(weights, 0.1, alpha=alpha, temperature=temperature)(logits, labels, None), hard), \
        "a batch without teacher probabilities is trained on the labels alone"
    only_teacher = training_loss(None, 0.0, alpha=1.0, temperature=1.0)(logits, labels, torch.softmax(logits, 1))
    assert abs(float(only_teacher)) < 1e-12, "a student that already matches its teacher has nothing to learn"


def _load(teachers: list, split_of: Path, events: list | None = None) -> TeacherTargets:
    report = rf.read_scan_report(rf.read_run(split_of))
    return TeacherTargets.load([str(t) for t in teachers], list(report.classes), report, STUDENT,
                               resolve_device("cpu"), (events if events is not None else []).append, RunControl())


def _train_items(run: Path, count: int) -> tuple:
    return rf.read_scan_report(rf.read_run(run)).split_items("train")[:count]


def test_teacher_logits_are_the_teacher_run_on_the_students_view_and_are_cached(
        trained_run: Path, private_cache: Path) -> None:
    items, view = _train_items(trained_run, 6), 1
    events: list = []
    targets = _load([trained_run], trained_run, events).logits(items, view)[0]

    model, info = load_trained_model(trained_run)
    cache = DecodedImageCache(info.preprocessing)
    squares = torch.from_numpy(np.stack([square_crop(cache.get(i.path), info.preprocessing) for i in items]))
    augment = BatchAugment(STUDENT.augment, info.preprocessing)
    keys = [view_key(STUDENT.seed, cache.content_hash(i.path), view) for i in items]
    with torch.inference_mode():
        direct = model(augment(squares.permute(0, 3, 1, 2), seeded_uniforms(keys, augment.uniforms_per_image)))
    torch.testing.assert_close(targets, direct, atol=1e-4, rtol=1e-4)
    assert any("0 of 6 images from the feature cache, 6 computed" in e.message for e in events if isinstance(e, Info))

    events.clear()
    again = _load([trained_run], trained_run, events).logits(items, view)[0]
    assert torch.equal(again, targets)
    assert any("6 of 6 images from the feature cache, 0 computed" in e.message for e in events if isinstance(e, Info))
    other_view = _load([trained_run], trained_run).logits(items, 0)[0]
    assert not torch.allclose(other_view, targets, atol=1e-3), "each view is its own augmentation"


def test_a_view_cuts_the_same_region_at_the_teachers_resolution(small_data: Path) -> None:
    """Lite2 (260 px) sees the crop, flip and colours that Lite0 (224 px) trains on."""
    small, large = (get_backbone(name).preprocessing() for name in ("efficientnet_lite0", "efficientnet_lite2"))
    paths = [item.path for item in scan_dataset(small_data).items[:4]]

    def view(preprocessing, seed_view: int) -> torch.Tensor:  # noqa: ANN001
        cache = DecodedImageCache(preprocessing)
        squares = torch.from_numpy(np.stack([square_crop(cache.get(p), preprocessing) for p in paths]))
        augment = BatchAugment("standard", preprocessing)
        keys = [view_key(0, cache.content_hash(p), seed_view) for p in paths]
        images = augment(squares.permute(0, 3, 1, 2), seeded_uniforms(keys, augment.uniforms_per_image))
        return F.interpolate(images, size=64, mode="bilinear", antialias=True)

    same = (view(small, 0) - view(large, 0)).abs().mean()
    other = (view(small, 0) - view(large, 1)).abs().mean()
    assert same < 0.01 and other > 0.1, (same, other)  # measured: 0.001 and 0.33


def _edited_copy(run: Path, folder: Path, **changes: object) -> Path:
    copy = shutil.copytree(run, folder, ignore=shutil.ignore_patterns("*.onnx", "last.pt"))
    document = json.loads((copy / rf.RUN_FILE).read_text())
    document.update(changes)
    (copy / rf.RUN_FILE).write_text(json.dumps(document))
    return copy


def test_an_ensemble_is_one_teacher_whose_members_are_averaged_with_its_weights(trained_run: Path,
                                                                              tmp_path: Path) -> None:
    twin = _edited_copy(trained_run, tmp_path / "twin")
    member = {"backbone": "efficientnet_lite0", "temperature": 1.0, "weights_sha256": "0" * 64,
              "validation_accuracy": 1.0, "test_accuracy": None}
    ensemble = _edited_copy(trained_run, tmp_path / "ensemble", kind="ensemble",
                            members=[str(trained_run), str(twin)],
                            ensemble={"members": [{**member, "run": str(trained_run), "weight": 0.75},
                                                  {**member, "run": str(twin), "weight": 0.25}]})
    assert teacher_members(ensemble) == (trained_run, twin) and split_source(ensemble) == trained_run
    assert member_weights(ensemble) == (0.75, 0.25) and member_weights(trained_run) == (1.0,)
    targets = _load([trained_run, ensemble], trained_run)
    assert [m.share for m in targets.members] == [0.5, 0.375, 0.125]
    items = _train_items(trained_run, 4)
    logits = targets.logits(items, 0)
    assert torch.equal(logits[1], logits[2]), "one model, one cache entry"
    expected = torch.softmax(logits[0] / 3.0, dim=1)
    torch.testing.assert_close(targets.probabilities(items, 0, 3.0), expected)


def test_a_teacher_that_cannot_teach_is_refused_with_the_reason(trained_run: Path, sample_data: Path,
                                                                tmp_path: Path) -> None:
    labels = list(rf.read_run(trained_run).labels)
    with pytest.raises(TeacherError, match="classes .* differ"):
        _load([_edited_copy(trained_run, tmp_path / "other", labels=labels[::-1])], trained_run)
    with pytest.raises(TeacherError, match="cancelled, not completed.*--resume"):
        _load([_edited_copy(trained_run, tmp_path / "stopped", status="cancelled")], trained_run)
    resplit = scan_dataset(sample_data, val_fraction=0.2, seed=11)  # another split of the teacher's photos
    with pytest.raises(TeacherError, match="trained on .* validation or test photos.*--split-from"):
        TeacherTargets.load([str(trained_run)], labels, resplit, STUDENT, resolve_device("cpu"), ignore_event,
                            RunControl())
