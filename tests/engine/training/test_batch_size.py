"""The batch-size tuner: candidates tried on real batches, the fastest kept, remembered, never wrong results."""

from pathlib import Path

import pytest
import torch

from engine.backbones.inference import forward_in_batches
from engine.training import batch_size as batch_size_module
from engine.training.batch_size import CPU_CANDIDATES as CANDIDATES
from engine.training.batch_size import GPU_CANDIDATES, BatchSizeTuner
from engine.training.device import resolve_device


@pytest.fixture(autouse=True)
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "batch_sizes.json"
    monkeypatch.setattr(batch_size_module, "_store", lambda: path)
    return path


def _run_trials(tuner: BatchSizeTuner, seconds_per_image: dict[int, float]) -> list[int]:
    handed_out = []
    while tuner.chosen is None:
        size = tuner.next()
        handed_out.append(size)
        tuner.record(size, seconds_per_image[size] * size)
    return handed_out


def test_each_candidate_is_tried_twice_then_the_fastest_is_kept_and_remembered(store: Path) -> None:
    speeds = {4: 0.02, 8: 0.01, 16: 0.015, 32: 0.03}
    tuner = BatchSizeTuner("machine-a")
    assert _run_trials(tuner, speeds) == [size for size in CANDIDATES for _ in range(2)]
    assert tuner.chosen == 8 and tuner.next() == 8
    assert BatchSizeTuner("machine-a").chosen == 8, "the answer is read back next time"
    assert BatchSizeTuner("machine-b").chosen is None


def test_a_gpu_tries_large_batches() -> None:
    """A GPU is measured at sizes a CPU never would: small batches leave most of the card idle."""
    tuner = BatchSizeTuner("gpu", device="cuda")
    speeds = {64: 4e-4, 128: 2e-4, 256: 1e-4, 512: 1.5e-4}
    assert _run_trials(tuner, speeds) == [size for size in GPU_CANDIDATES for _ in range(2)]
    assert tuner.chosen == 256


def test_only_the_second_run_of_a_size_counts() -> None:
    tuner = BatchSizeTuner("k")
    for size in CANDIDATES:
        tuner.record(size, 100.0 if size == 4 else size * 1.0)  # the first (set-up) run of each size is slow
        tuner.record(size, size * (0.5 if size == 4 else 1.0))
    assert tuner.chosen == 4


def test_a_batch_of_another_size_is_not_counted() -> None:
    tuner = BatchSizeTuner("k")
    tuner.record(7, 0.001)
    assert tuner.next() == CANDIDATES[0] and tuner.chosen is None


def test_fixed_size_never_measures(store: Path) -> None:
    tuner = BatchSizeTuner.fixed(16)
    tuner.record(16, 1.0)
    assert tuner.next() == 16 and not store.exists()


def test_unreadable_store_means_measuring_again(store: Path) -> None:
    store.write_text("{not json")
    assert BatchSizeTuner("k").chosen is None
    store.write_text('{"k": "sixteen"}')
    assert BatchSizeTuner("k").chosen is None


def test_outputs_do_not_depend_on_the_batch_sizes_tried() -> None:
    torch.manual_seed(0)
    model = torch.nn.Module()
    model.stages = torch.nn.ModuleList([torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)),
                                        torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())])
    images = torch.randn(50, 3, 12, 12)
    setup = resolve_device("cpu")
    expected = forward_in_batches(model, range(2), 50, lambda idx: images[idx.start:idx.stop], setup, 50, phase="x")
    tuner = BatchSizeTuner("k")
    tuned = forward_in_batches(model, range(2), 50, lambda idx: images[idx.start:idx.stop], setup, tuner, phase="x")
    assert torch.allclose(tuned, expected, atol=1e-6)
    assert tuner.chosen is None and tuner.next() == 16, "a short last batch is not a trial: it is tried again"
