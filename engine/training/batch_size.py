"""Measure, once per machine, which batch size runs the frozen backbone fastest per image.

On small CPUs a large batch is often slower per image than a small one (cache pressure), while GPUs want
large batches; guessing either way costs minutes on big datasets. The answer is remembered in the cache.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import platformdirs
import torch

from engine.atomic import write_json_atomic
from engine.training.device import DeviceSetup
from engine.training.quick_head import run_stages

CANDIDATES = (4, 8, 16, 32)
_REPEATS = 2


def _store() -> Path:
    return Path(platformdirs.user_cache_dir("transfer-studio")) / "batch_sizes.json"


def fastest_batch_size(model: torch.nn.Module, stages: range, crop: int, setup: DeviceSetup, identity: str) -> int:
    if not stages:
        return CANDIDATES[-1]
    key = f"{identity}|{setup.description}|{stages.start}-{stages.stop}|{crop}"
    try:
        known = json.loads(_store().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if isinstance(known, dict) and isinstance(known.get(key), int):
        return known[key]
    model.eval()
    per_image = {}
    with torch.inference_mode():
        for size in CANDIDATES:
            x = torch.randn(size, 3, crop, crop, device=setup.device)
            if setup.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(setup.device, dtype=setup.amp_dtype, enabled=setup.amp_dtype is not None):
                run_stages(model, stages, x)  # warm-up: allocator, kernels
                if setup.device == "cuda":
                    torch.cuda.synchronize()
                started = time.perf_counter()
                for _ in range(_REPEATS):
                    run_stages(model, stages, x)
                if setup.device == "cuda":
                    torch.cuda.synchronize()
            per_image[size] = (time.perf_counter() - started) / (_REPEATS * size)
    best = min(per_image, key=per_image.__getitem__)
    known = known if isinstance(known, dict) else {}
    known[key] = best
    with contextlib.suppress(OSError):  # measuring again next time is the only cost
        write_json_atomic(_store(), known)
    return best
