"""Prediction speed: onnxruntime vs PyTorch eager at batch 1, and folder throughput including decode.

    python bench/predict_speed.py RUN/model.onnx DATA_FOLDER [--run RUN] [--batch-size 32] [--device auto]

``--run`` loads the same network in PyTorch for the eager baseline (the ratio is what to compare across
machines; absolute numbers depend on the CPU and on whatever else runs on it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from engine.images import preprocess_for_model
from engine.predict import Predictor, expand_inputs


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
    args = parser.parse_args()

    predictor = Predictor(args.model, device=args.device)
    files, _errors = expand_inputs([args.data])
    if not files:
        raise SystemExit(f"{args.data}: no images")
    print(f"model {args.model} ({predictor.info.backbone}), provider {predictor.provider}, "
          f"{predictor.threads} threads, os.cpu_count() = {os.cpu_count()}, {len(files)} images")
    one = preprocess_for_model(files[0], predictor.info.preprocessing)[None]
    ort_ms = _latency_ms(lambda: predictor.probabilities(one), args.repeats)
    print(f"batch-1 latency   onnxruntime {ort_ms:7.2f} ms")

    if args.run:
        import torch

        from engine.backbones.inference import load_trained_model

        model, _info = load_trained_model(args.run)
        tensor = torch.from_numpy(one)
        with torch.inference_mode():
            torch_ms = _latency_ms(lambda: model(tensor), args.repeats)
        print(f"batch-1 latency   torch eager {torch_ms:7.2f} ms ({torch.get_num_threads()} threads)"
              f"  -> onnxruntime is {torch_ms / ort_ms:.2f}x faster")

    batch = np.repeat(one, args.batch_size, axis=0)
    infer_ms = _latency_ms(lambda: predictor.probabilities(batch), max(3, args.repeats // 5))
    print(f"inference only    batch {args.batch_size}: {args.batch_size / infer_ms * 1000:7.1f} img/s")

    started = time.perf_counter()
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1)) as pool:
        list(pool.map(lambda p: preprocess_for_model(p, predictor.info.preprocessing), files))
    print(f"decode only       {len(files) / (time.perf_counter() - started):7.1f} img/s (thread pool)")

    predictor.predict_paths(files[: args.batch_size], batch_size=args.batch_size)  # warm-up
    started = time.perf_counter()
    results = predictor.predict_paths(files, batch_size=args.batch_size)
    seconds = time.perf_counter() - started
    failed = sum(r.error is not None for r in results)
    print(f"folder throughput {len(files) / seconds:7.1f} img/s including decode, batch {args.batch_size} "
          f"({len(files)} images in {seconds:.2f} s, {failed} unreadable)")


if __name__ == "__main__":
    main()
