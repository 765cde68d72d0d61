"""Benchmark: the same `train` in one process and in N processes (torchrun, DistributedDataParallel).

    python bench/distributed_scaling.py DATA [--nproc 2] [--out DIR] [TRAIN OPTIONS...]

Both runs use the same data, options and seed (the N-process run on the first run's split, ``--split-from``), so
their accuracies compare like with like; the figures are each run's validation and test accuracy, its whole wall
time (process start included), and its seconds per fine-tune epoch from metrics.jsonl (median: the first epoch
of a view also computes that view's frozen pass). Ratios are N processes over one. Writes OUT/scaling.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from engine.evaluation.metrics import read_evaluation_document
from engine.training import run_folder as rf

ROOT = Path(__file__).resolve().parents[1]


def timed_train(data: Path, out: Path, processes: int, options: list[str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "engine.cli", "train", str(data), "--out", str(out), "--nproc", str(processes),
               *options]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    evaluation = read_evaluation_document(out / rf.EVALUATION_FILE)
    epochs = [r for r in rf.read_metrics(out) if r["phase"] != "head"]
    return {"run": str(out), "processes": processes, "wall_seconds": seconds,
            "epoch_seconds_median": statistics.median(r["seconds"] for r in epochs) if epochs else None,
            "epoch_seconds_total": sum(r["seconds"] for r in epochs), "epochs": len(epochs),
            "val_accuracy": evaluation["validation"]["accuracy"],
            "test_accuracy": evaluation["test"]["accuracy"] if "test" in evaluation else None,
            "run_processes": rf.read_run(out).raw.get("processes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args, options = parser.parse_known_args()  # the rest: options for both train commands
    out = args.out or Path(tempfile.mkdtemp(prefix="scaling-"))
    alone = timed_train(args.data, out / "one-process", 1, options)
    together = timed_train(args.data, out / f"{args.nproc}-processes", args.nproc,
                           [*options, "--split-from", str(out / "one-process")])
    figures = {"data": str(args.data), "options": options, "one": alone, "many": together,
               "wall_ratio": together["wall_seconds"] / alone["wall_seconds"],
               "epoch_ratio": (together["epoch_seconds_median"] / alone["epoch_seconds_median"]
                               if alone["epoch_seconds_median"] else None)}
    (out / "scaling.json").write_text(json.dumps(figures, indent=2))
    print("| processes | validation | test | fine-tune epochs | median s/epoch | epochs total s | wall s |")
    print("|---|---|---|---|---|---|---|")
    for row in (alone, together):
        test = "-" if row["test_accuracy"] is None else f"{row['test_accuracy']:.3f}"
        median = "-" if row["epoch_seconds_median"] is None else f"{row['epoch_seconds_median']:.2f}"
        print(f"| {row['processes']} | {row['val_accuracy']:.3f} | {test} | {row['epochs']} | {median} | "
              f"{row['epoch_seconds_total']:.1f} | {row['wall_seconds']:.1f} |")
    print(f"\nratios ({args.nproc} processes / 1): wall {figures['wall_ratio']:.2f}, median epoch "
          f"{figures['epoch_ratio']:.2f}" if figures["epoch_ratio"] else "")


if __name__ == "__main__":
    main()
