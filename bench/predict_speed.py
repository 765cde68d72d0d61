"""Prediction speed: onnxruntime vs PyTorch eager at batch 1, folder throughput, and the whole command.

    python bench/predict_speed.py RUN/model.onnx DATA_FOLDER [--run RUN] [--batch-size 32] [--device auto]

``--run`` loads the same network in PyTorch for the eager baseline (the ratio is what to compare across
machines; absolute numbers depend on the CPU and on whatever else runs on it). The last line times
``transfer-studio predict MODEL DATA --format csv --output FILE`` as a fresh process, start-up and exit included
(best of ``--whole-repeats``): the figure a user sees.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.images import preprocess_for_model
from engine.predict import CPU_RUN_SIZE, CUDA_PROVIDER, Predictor, expand_inputs


def _latency_ms(run, repeats: int) -> float:
    run()  # warm-up: first-run allocations and kernel selection
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("data", type=Path, help="a folder of images (searched recursively)")
    parser.add_argument("--run", type=Path, help="the run folder the model came from (PyTorch baseline)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--whole-repeats", type=int, default=3, help="runs of the whole command (the best counts)")
    args = parser.parse_args()

    predictor = Predictor(args.model, device=args.device)
    files, _errors = expand_inputs([args.data])
    if not files:
        raise SystemExit(f"{args.data}: no images")
    print(f"model {args.model} ({predictor.info.backbone}), provider {predictor.provider}, "
          f"{predictor.threads} threads, os.cpu_count() = {os.cpu_count()}, {len(files)} images")
    one = preprocess_for_model(files[0], predictor.info.preprocessing)[None]
    ort_ms = _latency_ms(lambda: predictor.probabilities(one), args.repeats)
    on_gpu = predictor.provider == CUDA_PROVIDER
    print(f"batch-1 latency   onnxruntime {ort_ms:7.2f} ms" + ("" if on_gpu else " (one core)"))

    if args.run:
        import torch

        from engine.backbones.inference import load_trained_model

        model, _info = load_trained_model(args.run)
        if not on_gpu:
            torch.set_num_threads(1)  # like for like: the predictor runs each batch on one core
        tensor = torch.from_numpy(one)
        with torch.inference_mode():
            torch_ms = _latency_ms(lambda: model(tensor), args.repeats)
        print(f"batch-1 latency   torch eager {torch_ms:7.2f} ms ({torch.get_num_threads()} threads)"
              f"  -> onnxruntime is {torch_ms / ort_ms:.2f}x faster")

    # As predict_paths runs them: one batch on the GPU; on the CPU, runs of CPU_RUN_SIZE on every worker.
    run_size, runs = (args.batch_size, 1) if on_gpu else (CPU_RUN_SIZE, predictor.threads)
    batch = np.repeat(one, run_size, axis=0)
    with ThreadPoolExecutor(runs) as pool:
        infer_ms = _latency_ms(lambda: list(pool.map(predictor.probabilities, [batch] * runs)),
                               max(3, args.repeats // 5))
    print(f"inference only    {runs} x runs of {run_size}: {runs * run_size / infer_ms * 1000:7.1f} img/s")

    started = time.perf_counter()
    with ThreadPoolExecutor(predictor.threads) as pool:
        list(pool.map(lambda p: preprocess_for_model(p, predictor.info.preprocessing), files))
    print(f"decode only       {len(files) / (time.perf_counter() - started):7.1f} img/s ({predictor.threads} threads)")

    predictor.predict_paths(files[: args.batch_size], batch_size=args.batch_size)  # warm-up
    started = time.perf_counter()
    results = predictor.predict_paths(files, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    failed = sum(r.error is not None for r in results)
    print(f"folder throughput {len(files) / seconds:7.1f} img/s including decode, batch {args.batch_size} "
          f"({len(files)} images in {seconds:.2f} s, {failed} unreadable)")

    whole = _whole_command_seconds(args.model, args.data, args.batch_size, args.device, args.whole_repeats)
    print(f"whole command     {len(files) / whole:7.1f} img/s (transfer-studio predict ... --format csv, a fresh "
          f"process, best of {args.whole_repeats}: {whole:.2f} s)")


def _whole_command_seconds(model: Path, data: Path, batch_size: int, device: str, repeats: int) -> float:
    """Best wall time of the CLI in a fresh interpreter, as the console script starts it (start-up and exit in)."""
    times = []
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "desktop.launcher", "predict", str(model), str(data), "--format", "csv",
                   "--output", str(Path(folder) / "predictions.csv"), "--batch-size", str(batch_size),
                   "--device", device]
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            times.append(time.perf_counter() - started)
    return min(times)


if __name__ == "__main__":
    main()
