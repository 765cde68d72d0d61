"""Ensembles: the weighted mean of calibrated member probabilities, its evaluation, one exported graph, refusals.

The members are the session's trained run (EfficientNet-Lite0, fine-tuned) and a Lite1 head trained on its split
(feature-extract: the cheapest training). Their inputs differ (224 of 256 px, 240 of 272), so the Lite0 member runs
behind an input adapter. The ensemble is built once, through the command line, and exported.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from engine.backbones.inference import load_trained_model
from engine.backbones.registry import get_backbone
from engine.cli import main
from engine.ensemble import EnsembleError, build_ensemble, load_ensemble
from engine.ensemble_model import EnsembleModel, MemberInput, ensemble_preprocessing, recorded_members
from engine.errors import BadInputError
from engine.evaluation.calibration import recorded_calibration, softmax
from engine.evaluation.metrics import check_evaluation_document
from engine.export import PARITY_FILE, _stem_convolutions, export_proto
from engine.images import is_image_path, normalize_crop, preprocess_for_model
from engine.onnx_metadata import METADATA_KEY
from engine.predict import Predictor
from engine.preprocessing import Preprocessing
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import train

LITE0 = get_backbone("efficientnet_lite0").preprocessing()
LITE1 = get_backbone("efficientnet_lite1").preprocessing()
IMAGENET = Preprocessing(resize=232, crop=200, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(scope="module")
def members(trained_run: Path, sample_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shared run (read only: an ensemble never writes into its members) and a Lite1 head on its split."""
    second = tmp_path_factory.mktemp("ensemble") / "lite1"
    train(sample_data, second, TrainConfig(backbone="efficientnet_lite1", strategy="feature-extract", augment="none",
                                           batch_size=16, split_from=str(trained_run)))
    return trained_run, second


@pytest.fixture(scope="module")
def built(members: tuple[Path, Path]) -> tuple[Path, str]:
    """`transfer-studio ensemble LITE0 LITE1 --out OUT --export`, once: the folder and what it printed."""
    out = members[1].parent / "ensemble"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["ensemble", *map(str, members), "--out", str(out), "--export", "--device", "cpu"]) == 0
    return out, printed.getvalue()


@pytest.fixture(scope="module")
def ensemble(built: tuple[Path, str]) -> Path:
    return built[0]


def _evaluation(run_dir: Path) -> dict:
    return check_evaluation_document(json.loads((run_dir / rf.EVALUATION_FILE).read_text(encoding="utf-8")))


def _calibrated_probabilities(member: Path, preprocessing: Preprocessing, paths: list[str]) -> np.ndarray:
    """The member's probabilities on the ensemble's input (``preprocessing``) through its adapter, from its own
    weights, scaled by the temperature of its own evaluation.json."""
    model, info = load_trained_model(member)
    images = torch.from_numpy(np.stack([preprocess_for_model(path, preprocessing) for path in paths]))
    with torch.inference_mode():
        logits = model(MemberInput(preprocessing, info.preprocessing)(images)).numpy()
    return softmax(logits, recorded_calibration(member / rf.EVALUATION_FILE)["temperature"])


def test_ensemble_probabilities_are_the_weighted_mean_of_the_members_calibrated_probabilities(
        ensemble: Path, members: tuple[Path, Path]) -> None:
    """Each validation photo's recorded answer is that of the members' weighted mean probability, computed here
    member by member, then scaled by the ensemble's own temperature (what its exported model says); the weights
    chosen on validation make that mean at least as accurate there as either member (through its adapter)."""
    evaluation = _evaluation(ensemble)
    rows = evaluation["validation"]["predictions"]
    paths = [row["path"] for row in rows]
    assert MemberInput(LITE1, LITE1).is_identity  # the Lite1 member's probabilities are entirely its own
    first, second = (_calibrated_probabilities(member, LITE1, paths) for member in members)
    assert np.abs(first - second).max() > 0.05  # two different models, or the mean would prove nothing
    weight = recorded_members(rf.read_run(ensemble))[0].weight
    assert weight is not None and 0 <= weight <= 1
    truth = np.array([evaluation["labels"].index(row["true"]) for row in rows])
    assert evaluation["validation"]["accuracy"] >= max((first.argmax(1) == truth).mean(),
                                                       (second.argmax(1) == truth).mean())
    expected = softmax(np.log(weight * first + (1 - weight) * second), evaluation["calibration"]["temperature"])
    for row, probabilities in zip(rows, expected, strict=True):
        assert row["confidence"] == pytest.approx(probabilities.max(), abs=1e-5)
        assert row["predicted"] == evaluation["labels"][int(probabilities.argmax())]


def test_the_ensemble_run_folder(ensemble: Path, members: tuple[Path, Path]) -> None:
    evaluation = _evaluation(ensemble)
    assert "calibration" in evaluation and "test" not in evaluation  # the members have no test split
    info = rf.read_run(ensemble)
    assert info.kind == "ensemble" and info.status == "completed" and info.finished
    assert info.members == tuple(str(member.resolve()) for member in members)
    assert info.best_val_accuracy == evaluation["validation"]["accuracy"]
    assert info.labels == rf.read_run(members[0]).labels and info.preprocessing == LITE1  # the larger input
    assert info.backbone == "ensemble of efficientnet_lite0 + efficientnet_lite1"
    assert rf.read_scan_report(info) == rf.read_scan_report(rf.read_run(members[0]))
    assert not (ensemble / rf.BEST_FILE).exists()
    for recorded, member in zip(recorded_members(info), members, strict=True):
        own = _evaluation(member)
        assert recorded.validation_accuracy == own["validation"]["accuracy"]
        assert recorded.test_accuracy is None
        assert recorded.temperature == own["calibration"]["temperature"]
    assert info.raw["ensemble"]["weighting"] == "validation"
    assert sum(member.weight for member in recorded_members(info)) == pytest.approx(1)


def test_equal_weights_and_ensembles_recorded_before_weights(members: tuple[Path, Path], ensemble: Path,
                                                            tmp_path: Path) -> None:
    equal = build_ensemble(members, tmp_path / "equal", weighting="equal")
    assert [member.weight for member in equal.members] == [0.5, 0.5]
    assert rf.read_run(tmp_path / "equal").raw["ensemble"]["weighting"] == "equal"
    assert load_ensemble(tmp_path / "equal")[0].weights == (0.5, 0.5)
    older = Path(shutil.copytree(ensemble, tmp_path / "older"))  # run.json as written before members had weights
    document = json.loads((older / rf.RUN_FILE).read_text())
    for member in document["ensemble"]["members"]:
        del member["weight"]
    (older / rf.RUN_FILE).write_text(json.dumps(document))
    assert load_ensemble(older)[0].weights == (0.5, 0.5)
    with pytest.raises(EnsembleError, match="unknown weighting 'median'"):
        build_ensemble(members, tmp_path / "median", weighting="median")


def test_the_ensemble_learned(ensemble: Path) -> None:
    """Held-out generated photos of 3 classes, a third of them right by chance. (Not "at least as good as its best
    member": averaging can lose a photo that one member got right and the other got confidently wrong.)"""
    validation = _evaluation(ensemble)["validation"]
    assert validation["accuracy"] >= 0.8 and validation["verdict"]["level"] == "good"


def test_the_cli_prints_the_ensemble_its_members_and_the_export(built: tuple[Path, str],
                                                                 members: tuple[Path, Path]) -> None:
    out, printed = built
    evaluation = _evaluation(out)
    assert f"ensemble: validation accuracy {evaluation['validation']['accuracy']:.4f}" in printed
    second = recorded_members(rf.read_run(out))[1]
    assert (f"member 2: validation accuracy {_evaluation(members[1])['validation']['accuracy']:.4f}, no test split, "
            f"weight {second.weight:.2f}") in printed
    assert "no test split" in printed and "Confusion matrix" in printed
    assert f"exported {out / rf.MODEL_FILE}" in printed and "top-1 agreement 100.0%" in printed
    parity = json.loads((out / PARITY_FILE).read_text())
    assert parity["passed"] and parity["image_source"] == "validation"


def test_the_exported_ensemble_is_read_like_any_model(ensemble: Path) -> None:
    proto = onnx.load(ensemble / rf.MODEL_FILE)
    assert [i.name for i in proto.graph.input] == ["image"]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]
    metadata = json.loads(next(p.value for p in proto.metadata_props if p.key == METADATA_KEY))
    assert Preprocessing.from_dict(metadata["preprocessing"]) == LITE1
    training = metadata["training"]
    assert training["strategy"] == "ensemble"
    assert [member["backbone"] for member in training["members"]] == ["efficientnet_lite0", "efficientnet_lite1"]

    predictor = Predictor(ensemble / rf.MODEL_FILE, device="cpu")
    assert "ensemble" in predictor.heatmaps_unavailable()
    evaluation = _evaluation(ensemble)
    rows = evaluation["validation"]["predictions"]
    predictions = predictor.predict_paths([row["path"] for row in rows], top_k=1)
    for prediction, row in zip(predictions, rows, strict=True):  # the PyTorch ensemble's answers
        assert prediction.label == row["predicted"]
        assert prediction.confidence == pytest.approx(row["confidence"], abs=1e-4)


def test_the_input_adapter_is_exact_on_flat_images() -> None:
    """Resizing keeps a flat colour, so the adapter must give exactly the member's own normalised values."""
    pixels = np.full((300, 300, 3), (200, 30, 90), dtype=np.uint8)
    for source, target in ((LITE0, IMAGENET), (IMAGENET, LITE0), (LITE1, LITE0)):
        adapted = MemberInput(source, target)(torch.from_numpy(normalize_crop(pixels, source))[None])
        assert adapted.shape == (1, 3, target.crop, target.crop)
        np.testing.assert_allclose(adapted[0].numpy(), normalize_crop(pixels, target), atol=1e-5)
    same = torch.zeros(1, 3, 224, 224)
    assert MemberInput(LITE0, LITE0)(same) is same


def test_the_input_adapter_crops_to_the_members_field_of_view(sample_data: Path) -> None:
    """A member that sees 200/232 of the shorter side gets that much of the ensemble's 224/256 crop, resized: close
    to its own preprocessing of the photo (two resamplings instead of one, bilinear for bicubic), and closer than
    the whole crop resized (a member that saw as much of the photo as the ensemble)."""
    adapter = MemberInput(LITE0, IMAGENET)
    assert adapter.window == round(224 * (200 / 232) / (224 / 256)) < 224
    whole_crop = MemberInput(LITE0, replace(IMAGENET, resize=229))
    assert whole_crop.window == 224
    photos = sorted(path for path in sample_data.rglob("*") if is_image_path(path))[:6]
    images = torch.from_numpy(np.stack([preprocess_for_model(photo, LITE0) for photo in photos]))
    own = np.stack([preprocess_for_model(photo, IMAGENET) for photo in photos])
    error = np.abs(adapter(images).numpy() - own).mean()
    assert error < 0.8 * np.abs(whole_crop(images).numpy() - own).mean() and error < 0.1 * own.std()


def test_the_ensemble_input_is_the_members_largest() -> None:
    assert ensemble_preprocessing([LITE0, LITE1, IMAGENET]) == LITE1
    wider = replace(LITE0, resize=240)
    assert ensemble_preprocessing([LITE0, wider]) == wider  # equal crops: the wider field of view


def test_adapters_export_and_int8_keeps_every_members_stem_in_float() -> None:
    """Two stems, one behind an adapter that crops, resizes and renormalises: onnxruntime agrees with PyTorch,
    and both stems (not the convolution after the first) are the ones int8 keeps in float."""
    class TwoStems(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stems = torch.nn.ModuleList(torch.nn.Conv2d(3, 4, 3) for _ in range(2))
            self.inner = torch.nn.Conv2d(4, 4, 3)
            self.adapt = MemberInput(LITE0, IMAGENET)

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            return self.inner(self.stems[0](image)).mean((2, 3)) + self.stems[1](self.adapt(image)).mean((2, 3))

    model = TwoStems().eval()
    proto = export_proto(model, 224, 18)
    image = torch.randn(3, 3, 224, 224)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        np.testing.assert_allclose(session.run(["logits"], {"image": image.numpy()})[0], model(image).numpy(),
                                   atol=1e-4)
    convolutions = [node for node in proto.graph.node if node.op_type == "Conv"]
    produced_by_conv = {output for node in convolutions for output in node.output}
    inner = [node.name for node in convolutions if node.input[0] in produced_by_conv]
    assert len(convolutions) == 3 and len(inner) == 1
    assert sorted(_stem_convolutions(proto.graph)) == sorted(n.name for n in convolutions if n.name not in inner)


def _copy(run: Path, folder: Path, **changes: object) -> Path:
    copy = Path(shutil.copytree(run, folder / run.name))
    if changes:
        rf.update_run_file(copy, **changes)
    return copy


def test_members_that_cannot_make_an_ensemble_are_refused(members: tuple[Path, Path], ensemble: Path,
                                                           tmp_path: Path) -> None:
    first, second = members
    out = tmp_path / "out"
    with pytest.raises(EnsembleError, match="at least two runs"):
        build_ensemble([first], out)
    with pytest.raises(EnsembleError, match="listed twice"):
        build_ensemble([first, first.parent / ".." / first.parent.name / first.name], out)
    with pytest.raises(EnsembleError, match="itself an ensemble"):
        build_ensemble([first, ensemble], out)
    with pytest.raises(EnsembleError, match="already holds a run"):
        build_ensemble([first, second], ensemble)

    stopped = _copy(second, tmp_path / "stopped", status="cancelled")
    with pytest.raises(EnsembleError, match=f"{re.escape(str(stopped))}: not a finished run .*--resume"):
        build_ensemble([first, stopped], out)

    reordered = _copy(second, tmp_path / "reordered", labels=list(reversed(rf.read_run(second).labels)))
    with pytest.raises(EnsembleError, match=f"{re.escape(str(reordered))}: its classes .* same order"):
        build_ensemble([first, reordered], out)

    resplit = _copy(second, tmp_path / "resplit")
    report = json.loads((resplit / rf.SCAN_REPORT_FILE).read_text())
    next(item for item in report["items"] if item["split"] == "val")["split"] = "train"
    (resplit / rf.SCAN_REPORT_FILE).write_text(json.dumps(report))
    differs = f"{re.escape(str(resplit))}: its validation photos differ .*1 photo.*--split-from {re.escape(str(first))}"
    with pytest.raises(EnsembleError, match=differs):
        build_ensemble([first, resplit], out)
    assert not out.exists()  # nothing written for a refused ensemble


def test_an_ensemble_whose_member_changed_is_refused(ensemble: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(ensemble, tmp_path / "ensemble"))
    document = json.loads((copy / rf.RUN_FILE).read_text())
    document["ensemble"]["members"][1]["weights_sha256"] = "0" * 64
    (copy / rf.RUN_FILE).write_text(json.dumps(document))
    with pytest.raises(rf.RunFolderError, match="weights of its member .* changed"):
        load_ensemble(copy)


def test_single_run_readers_refuse_an_ensemble_clearly(ensemble: Path) -> None:
    with pytest.raises(rf.RunFolderError, match="ensemble run has no weights of its own"):
        load_trained_model(ensemble)
    with pytest.raises(BadInputError, match="nothing of its own to train"):
        train(None, ensemble, resume=True)
    assert isinstance(load_ensemble(ensemble)[0], EnsembleModel)


@pytest.mark.parametrize(("changes", "problem"), [
    ({"members": ["/one/run"]}, "at least two member runs"),
    ({"kind": "bagged"}, "kind must be one of"),
    ({"kind": "single"}, "only an ensemble lists any"),
])
def test_a_damaged_ensemble_run_file_is_refused(ensemble: Path, tmp_path: Path, changes: dict, problem: str) -> None:
    copy = Path(shutil.copytree(ensemble, tmp_path / "ensemble"))
    rf.update_run_file(copy, **changes)
    with pytest.raises(rf.RunFolderError, match=f"damaged or edited run file.*{problem}"):
        rf.read_run(copy)
