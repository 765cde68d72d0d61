"""Benchmark: how good the default `train` is on each dataset, against a careful hand-written fine-tune.

    python bench/recipe_quality.py DATA [DATA ...] [--plain-epochs 8] [--full]

For each folder, in one process, with a cold feature cache: the quick head alone (`feature-extract`), the
default `train` (its adaptive plan), optionally `--strategy full`, and a plain loop written the way a careful
engineer would (AdamW 1e-4 backbone / 1e-3 head, cosine, RandomResizedCrop(0.5-1) + flip, batch 16, BatchNorm
momentum 0.1, every layer trained). Scores are on test/ when the folder has one, else on validation; the
plain loop uses the same split. Prints a table of accuracy, balanced accuracy, best epoch and wall time.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision import transforms
from train_speed import FolderImages  # the same per-batch decoding as the classic recipe

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.dataset.scan import scan_dataset
from engine.evaluation.metrics import evaluate_predictions
from engine.training.config import TrainConfig
from engine.training.strategies import TRAINED_BATCHNORM_MOMENTUM
from engine.training.trainer import train


def run_train(data: Path, out: Path, config: TrainConfig) -> dict:
    started = time.perf_counter()
    result = train(data, out, config)
    wall = time.perf_counter() - started
    evaluation = result.evaluation or {}
    split = evaluation.get("test") or evaluation["validation"]
    plan = json.loads((out / "run.json").read_text()).get("plan", {})
    return {"accuracy": split["accuracy"], "balanced": split["balanced_accuracy"], "best_epoch": result.best_epoch,
            "epochs": result.epochs_run - 1, "plan": plan.get("depth", "-"), "wall_s": wall,
            "scored_on": "test" if "test" in evaluation else "validation"}


def plain_loop(data: Path, epochs: int, seed: int) -> dict:
    """The hand-written baseline (about 40 lines, as one would write it for a new dataset)."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    report = scan_dataset(data, seed=seed)
    prep = get_backbone("efficientnet_lite0").preprocessing()
    normalize = transforms.Normalize(prep.mean, prep.std)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(prep.crop, scale=(0.5, 1.0)),
                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.Resize(prep.resize), transforms.CenterCrop(prep.crop),
                                  transforms.ToTensor(), normalize])
    scored = report.split_items("test") or report.split_items("val")
    train_loader = DataLoader(FolderImages(report.split_items("train"), train_tf), batch_size=16, shuffle=True)
    eval_loader = DataLoader(FolderImages(scored, eval_tf), batch_size=32)
    model = create_model("efficientnet_lite0", len(report.classes))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = TRAINED_BATCHNORM_MOMENTUM
    optimizer = torch.optim.AdamW([{"params": model.stages.parameters(), "lr": 1e-4},
                                   {"params": model.head.parameters(), "lr": 1e-3}], weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train_loader))
    for _epoch in range(epochs):
        model.train()
        for images, labels in train_loader:
            loss = torch.nn.functional.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    with torch.inference_mode():
        probabilities = torch.cat([model(images).softmax(1) for images, _ in eval_loader]).numpy()
    split = evaluate_predictions(report.classes, [i.label for i in scored], probabilities, [i.path for i in scored])
    return {"accuracy": split["accuracy"], "balanced": split["balanced_accuracy"], "best_epoch": epochs,
            "epochs": epochs, "plan": "all layers", "wall_s": time.perf_counter() - started,
            "scored_on": "test" if report.split_items("test") else "validation"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--plain-epochs", type=int, default=8)
    parser.add_argument("--full", action="store_true", help="also run --strategy full")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-recipe-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # a cold feature cache, as on a user's first run
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores", flush=True)
    rows = []
    for data in args.data:
        runs = {"quick head only": lambda d=data: run_train(d, work / f"{d.name}-head",
                                                            TrainConfig(strategy="feature-extract", seed=args.seed)),
                "default train": lambda d=data: run_train(d, work / f"{d.name}-default", TrainConfig(seed=args.seed))}
        if args.full:
            runs["--strategy full"] = lambda d=data: run_train(d, work / f"{d.name}-full",
                                                               TrainConfig(strategy="full", seed=args.seed))
        runs[f"plain loop, {args.plain_epochs} epochs"] = lambda d=data: plain_loop(d, args.plain_epochs, args.seed)
        for name, run in runs.items():
            result = run()
            rows.append((data.name, name, result))
            print(f"{data.name:>12}  {name:<22} {json.dumps(result)}", flush=True)
    print("\n| data | run | plan | accuracy | balanced | best epoch | wall s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for data_name, name, r in rows:
        print(f"| {data_name} ({r['scored_on']}) | {name} | {r['plan']} | {r['accuracy']:.3f} | {r['balanced']:.3f} "
              f"| {r['best_epoch']} of {r['epochs']} | {r['wall_s']:.0f} |")
    defaults = [r for _, n, r in rows if n == "default train"]
    plains = [r for _, n, r in rows if n.startswith("plain")]
    for ours, plain in zip(defaults, plains, strict=True):
        ratio = ours["wall_s"] / plain["wall_s"] if plain["wall_s"] else math.nan
        print(f"default / plain loop: accuracy {ours['accuracy'] - plain['accuracy']:+.3f}, wall time x{ratio:.2f}")
    print(f"mean default accuracy {np.mean([r['accuracy'] for r in defaults]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
