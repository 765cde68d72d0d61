"""One short script for a machine with an NVIDIA GPU: exercises the CUDA path end to end and prints figures.

    python bench/cuda_check.py OUT_DIR

Generates sample data, trains with the defaults (AMP + channels_last on CUDA) and with `full`, times a
CPU baseline on the same data, exports ONNX and predicts with the predictor's best provider.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from engine.dataset.sample_data import generate_sample_dataset
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import train


def timed_train(data: Path, out: Path, config: TrainConfig) -> dict:
    started = time.perf_counter()
    result = train(data, out, config)
    metrics = rf.read_metrics(out)
    return {"device": rf.read_run(out).raw["device"], "strategy": config.strategy,
            "wall_s": time.perf_counter() - started,
            "head_s": metrics[0]["seconds"] if metrics[0]["phase"] == "head" else None,
            "train_img_s": rf.fine_tune_throughput(metrics),
            "best_val": result.best_val_accuracy, "epochs": len(metrics), "status": result.status}


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "cuda-check")
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(out / "cache"))
    report: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name(0)
        report["bf16"] = torch.cuda.is_bf16_supported()
    data = generate_sample_dataset(out / "data", classes=8, per_class=60, seed=0)
    results = report["runs"] = []
    for name, config in (("cuda-default", TrainConfig(device="cuda", epochs=6)),
                         ("cuda-full", TrainConfig(device="cuda", strategy="full", epochs=4, early_stopping=0)),
                         ("cpu-default", TrainConfig(device="cpu", epochs=2, early_stopping=0))):
        results.append({"name": name, **timed_train(data, out / name, config)})
        print(json.dumps(results[-1]), flush=True)
    try:
        from engine.export import export_onnx
        from engine.predict import Predictor, expand_inputs

        exported = export_onnx(out / "cuda-default")
        report["export"] = {"seconds": exported.seconds, "size_mb": exported.size_bytes / 1e6, **exported.parity}
        paths, _ = expand_inputs([str(out / "data")])
        for device in ("auto", "cpu"):
            predictor = Predictor(exported.path, device=device)
            predictor.predict_paths(paths[:64])
            started = time.perf_counter()
            predictions = predictor.predict_paths(paths)
            seconds = time.perf_counter() - started
            report[f"predict_{device}"] = {"provider": predictor.provider, "images": len(predictions),
                                           "img_s": len(predictions) / seconds,
                                           "errors": sum(p.error is not None for p in predictions)}
    except Exception as exc:  # noqa: BLE001 - report what failed; this is a diagnostic script
        report["export_predict_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report, indent=2), flush=True)
    (out / "cuda_check.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
