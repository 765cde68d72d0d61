"""What the first pass at a new batch shape costs on CUDA, by precision, memory layout and convolution backend.

    python bench/cuda_first_call.py

bench/cuda_check.py found every new phase of a run (the quick head's batch-size trials, the first fine-tune
epoch) stalled 20-40 s on an H200 while later epochs ran at 4,000 img/s. Each row here uses its own batch size,
so no convolution plan is cached from an earlier row, and prints the first call's seconds beside the steady
rate, which says which setting carries the stall.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from engine.backbones.build import create_model


def timed(step) -> float:
    torch.cuda.synchronize()
    started = time.perf_counter()
    step()
    torch.cuda.synchronize()
    return time.perf_counter() - started


def row(name: str, batch: int, *, bf16: bool, channels_last: bool, benchmark: bool, cudnn: bool,
        train: bool) -> None:
    torch.backends.cudnn.benchmark = benchmark
    torch.backends.cudnn.enabled = cudnn
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = create_model("efficientnet_lite0", 8).cuda().to(memory_format=layout).train(train)
    images = torch.randn(batch, 3, 224, 224, device="cuda").contiguous(memory_format=layout)
    targets = torch.randint(0, 8, (batch,), device="cuda")

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            if train:
                F.cross_entropy(model(images).float(), targets).backward()
            else:
                with torch.no_grad():
                    model(images)

    first = timed(step)
    steady = min(timed(step) for _ in range(3))
    print(f"{name:<34} batch {batch:>3}: first {first:6.2f} s, steady {batch / steady:8,.0f} img/s", flush=True)


def main() -> None:
    print(f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.get_device_name(0)}",
          flush=True)
    init = timed(lambda: torch.ones(64, 64, device="cuda") @ torch.ones(64, 64, device="cuda"))
    print(f"CUDA context + cuBLAS: {init:.2f} s", flush=True)
    # (name, batch, bf16, channels_last, cuDNN benchmark, cuDNN on, training)
    rows = [
        ("warm-up (bf16, CL, heuristics)", 31, True, True, False, True, False),
        ("eval bf16 CL benchmark (engine)", 120, True, True, True, True, False),
        ("eval bf16 CL heuristics", 121, True, True, False, True, False),
        ("eval bf16 contiguous heuristics", 122, True, False, False, True, False),
        ("eval fp32 CL heuristics", 123, False, True, False, True, False),
        ("eval fp32 contiguous heuristics", 124, False, False, False, True, False),
        ("eval bf16 CL cudnn off", 125, True, True, False, False, False),
        ("eval bf16 CL benchmark, again", 126, True, True, True, True, False),
        ("train bf16 CL benchmark (engine)", 100, True, True, True, True, True),
        ("train bf16 CL heuristics", 101, True, True, False, True, True),
        ("train bf16 contiguous heuristics", 102, True, False, False, True, True),
        ("train fp32 CL heuristics", 103, False, True, False, True, True),
        ("train bf16 CL cudnn off", 104, True, True, False, False, True),
    ]
    for name, batch, bf16, channels_last, benchmark, cudnn, train in rows:
        row(name, batch, bf16=bf16, channels_last=channels_last, benchmark=benchmark, cudnn=cudnn, train=train)

if __name__ == "__main__":
    main()
