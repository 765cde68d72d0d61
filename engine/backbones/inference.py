"""Frozen inference with a TransferModel: any range of its stages, optionally the head, batch by batch on one
device; and a finished run's best model, loaded for it.

Every tensor the model sees goes through ``to_device`` here, so the stages and the head always run where the
weights are; the outputs come back to the CPU only once the batch is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from engine.backbones.build import TransferModel, create_model, run_stages
from engine.control import RunControl
from engine.events import EventSink, Progress, ignore_event
from engine.training import run_folder as rf
from engine.training.batch_size import BatchSizeTuner
from engine.training.checkpoints import load_checkpoint
from engine.training.device import DeviceSetup, to_device


@torch.inference_mode()
def forward_in_batches(
    model: TransferModel | torch.nn.Module,
    stages: range | None,
    count: int,
    load_batch: Callable[[range], torch.Tensor],
    setup: DeviceSetup,
    batch_size: int | BatchSizeTuner,
    *,
    head: bool = False,
    phase: str,
    on_event: EventSink = ignore_event,
    control: RunControl | None = None,
) -> torch.Tensor:
    """Outputs of ``stages`` (then of the head, with ``head=True``: logits) for ``count`` inputs, frozen (eval
    mode, no autograd), on the CPU. ``stages`` None: the model's own forward, for any module that maps images to
    logits (an ``engine.ensemble_model.EnsembleModel`` too), with ``head`` left False.

    A ``BatchSizeTuner`` tries its candidate sizes on these batches and is told how fast each ran.
    """
    sizes = batch_size if isinstance(batch_size, BatchSizeTuner) else BatchSizeTuner.fixed(batch_size)
    model.eval()
    outputs: list[torch.Tensor] = []
    started = time.perf_counter()
    done = 0
    while done < count:
        if control is not None:
            control.check()
        size = sizes.next()
        batch = to_device(load_batch(range(done, min(count, done + size))), setup)
        batch_started = time.perf_counter()
        with torch.autocast(setup.device, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None):
            out = model(batch) if stages is None else run_stages(model, stages, batch)
            if head:
                out = model.head(out)
        outputs.append(out.float().cpu())  # the copy to the CPU waits for the GPU, so the timing below is real
        if len(batch) == size:  # a short last batch says nothing about its size
            sizes.record(size, time.perf_counter() - batch_started)
        done += len(batch)
        elapsed = time.perf_counter() - started
        on_event(Progress(phase, done, count, f"{done / elapsed:.0f} img/s",
                          eta_seconds=elapsed / done * (count - done)))
    if outputs:
        return torch.cat(outputs)
    return torch.empty(0, model.head[-1].out_features) if head else torch.empty(0)


def load_trained_model(run_dir: Path | str, device: str = "cpu") -> tuple[TransferModel, rf.RunInfo]:
    """The run's best weights in eval mode on ``device``; refuses a run folder whose files do not agree."""
    info = rf.read_run(Path(run_dir))
    if info.kind == "ensemble":
        raise rf.RunFolderError(f"{run_dir}: an ensemble run has no weights of its own (its members have); load it "
                                "with engine.ensemble_model.load_run_model")
    model = create_model(info.config.backbone, len(info.labels), pretrained=False, dropout=info.config.dropout)
    checkpoint = load_checkpoint(Path(run_dir) / rf.BEST_FILE, device)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as exc:
        raise rf.RunFolderError(f"{run_dir}: best.pt does not match run.json ({str(exc).splitlines()[0]})") from exc
    return model.to(device).eval(), info
