"""Benchmark: default `train` on generated datasets of growing size: time per phase, peak memory, cache size.

    python bench/scale.py [--sizes 1000 5000] [--image-size 256] [--classes 4]

Each size runs in a fresh child process (peak resident memory is per process) with an empty user cache, so
every figure is a cold first run. Phases come from the engine's own events: scan + decode (until the run
starts), the quick head (frozen features and the head fit), the fine-tune epochs, and the final evaluation.
Memory must not grow with the dataset beyond the bounded caches (issue: 20k photos of 256 px under 4 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def phase_marks() -> tuple[dict[str, float], Callable[[object], None]]:
    """An event sink that notes when the run started, the head (epoch 0) and the last epoch ended, and it finished."""
    from engine.events import EpochEnded, RunFinished, RunStarted

    marks: dict[str, float] = {}

    def on_event(event: object) -> None:
        now = time.perf_counter()
        if isinstance(event, RunStarted):
            marks["run_started"] = now
        elif isinstance(event, EpochEnded):
            marks.setdefault("head_ended", now)
            marks["last_epoch_ended"] = now
        elif isinstance(event, RunFinished):
            marks["finished"] = now

    return marks, on_event


def run_one(size: int, image_size: int, classes: int, work: Path) -> dict:
    """Generate ``size`` images and train on them in this process; the figures as a dict."""
    from engine.dataset.sample_data import generate_sample_dataset
    from engine.training import run_folder as rf
    from engine.training.trainer import train

    started = time.perf_counter()
    data = generate_sample_dataset(work / "data", classes=classes, per_class=size // classes, seed=0,
                                   image_size=image_size)
    generated = time.perf_counter()
    marks, on_event = phase_marks()
    result = train(data, work / "run", on_event=on_event)
    metrics = rf.read_metrics(work / "run")
    cache = Path(os.environ["XDG_CACHE_HOME"])
    return {
        "images": size, "image_size": image_size, "status": result.status,
        "validation_accuracy": result.best_val_accuracy, "plan": rf.read_run(work / "run").plan.depth,
        "generate_s": generated - started,
        "scan_decode_s": marks["run_started"] - generated,
        "quick_head_s": metrics[0]["seconds"],
        "fine_tune_s": sum(m["seconds"] for m in metrics[1:]),
        "fine_tune_epochs": len(metrics) - 1,
        "evaluation_s": marks["finished"] - marks["last_epoch_ended"],
        "train_wall_s": marks["finished"] - generated,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cache_mb": sum(f.stat().st_size for f in cache.rglob("*") if f.is_file()) / 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child: run this size and print JSON
    args = parser.parse_args()
    if args.one:
        work = Path(tempfile.mkdtemp(prefix=f"ts-scale-{args.one}-"))
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        try:
            print(json.dumps(run_one(args.one, args.image_size, args.classes, work)), flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)  # generated photos and caches: up to 2 GB a size
        return 0
    rows = []
    for size in args.sizes:
        child = subprocess.run([sys.executable, __file__, "--one", str(size), "--image-size", str(args.image_size),
                                "--classes", str(args.classes)], capture_output=True, text=True, check=True)
        row = json.loads(child.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("\n| images | plan | scan + decode s | quick head s | fine-tune s (epochs) | evaluation s | train wall s "
          "| peak RSS MB | cache MB | val acc |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['images']} | {r['plan']} | {r['scan_decode_s']:.1f} | {r['quick_head_s']:.1f} | "
              f"{r['fine_tune_s']:.1f} ({r['fine_tune_epochs']}) | {r['evaluation_s']:.1f} | {r['train_wall_s']:.1f} | "
              f"{r['peak_rss_mb']:.0f} | {r['cache_mb']:.0f} | {r['validation_accuracy']:.3f} |")
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = (last["peak_rss_mb"] - first["peak_rss_mb"]) / (last["images"] - first["images"]) * 1000
        print(f"\npeak RSS grows {growth:.0f} MB per 1,000 images from {first['images']} to {last['images']}; "
              f"train wall time per image: {first['train_wall_s'] / first['images'] * 1000:.1f} ms -> "
              f"{last['train_wall_s'] / last['images'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
