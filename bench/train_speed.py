"""Benchmark: PyTorch's classic transfer-learning recipe vs Transfer Studio's default `train`, in one process.

    python bench/train_speed.py [DATA] [--classic-epochs 25]

DATA defaults to generated sample data (4 classes x 40). Both use EfficientNet-Lite0, the same split and
seed. (a) is written plainly as the official tutorial does: per-batch JPEG decode, SGD lr 1e-3 momentum 0.9,
batch 4, StepLR(7, 0.1), every layer trained. (b) is `train` with default options, cold feature cache,
then again with a warm one. Prints wall times, images/s, best and final validation accuracy, and ratios.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.dataset.sample_data import generate_sample_dataset
from engine.dataset.scan import scan_dataset
from engine.events import Info
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import train


class FolderImages(Dataset):
    """ImageFolder's behaviour (decode the JPEG on every access) over the same split Transfer Studio uses."""

    def __init__(self, items, transform) -> None:  # noqa: ANN001
        self.items, self.transform = items, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):  # noqa: ANN204
        item = self.items[index]
        with Image.open(item.path) as image:
            return self.transform(image.convert("RGB")), item.label


def classic_recipe(data: Path, epochs: int, seed: int) -> dict:
    torch.manual_seed(seed)
    report = scan_dataset(data, seed=seed)
    prep = get_backbone("efficientnet_lite0").preprocessing()
    normalize = transforms.Normalize(prep.mean, prep.std)
    train_tf = transforms.Compose([transforms.RandomResizedCrop(prep.crop), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    val_tf = transforms.Compose([transforms.Resize(prep.resize), transforms.CenterCrop(prep.crop),
                                 transforms.ToTensor(), normalize])
    loaders = {
        "train": DataLoader(FolderImages(report.split_items("train"), train_tf), batch_size=4, shuffle=True),
        "val": DataLoader(FolderImages(report.split_items("val"), val_tf), batch_size=4),
    }
    model = create_model("efficientnet_lite0", len(report.classes))
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=7, gamma=0.1)
    best_acc, best_weights, final_acc, train_seconds, train_images = 0.0, None, 0.0, 0.0, 0
    started = time.perf_counter()
    for _epoch in range(epochs):
        for phase in ("train", "val"):
            model.train(phase == "train")
            correct, seen, phase_start = 0, 0, time.perf_counter()
            for inputs, labels in loaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                correct += int((outputs.argmax(1) == labels).sum())
                seen += len(labels)
            if phase == "train":
                scheduler.step()
                train_seconds += time.perf_counter() - phase_start
                train_images += seen
            else:
                final_acc = correct / seen
                if final_acc > best_acc:
                    best_acc, best_weights = final_acc, copy.deepcopy(model.state_dict())
    del best_weights
    return {"wall_s": time.perf_counter() - started, "train_img_s": train_images / train_seconds,
            "best_val": best_acc, "final_val": final_acc, "epochs": epochs}


def transfer_studio(data: Path, out: Path, seed: int) -> dict:
    cache_lines: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, Info) and "feature cache" in event.message:
            cache_lines.append(event.message)

    started = time.perf_counter()
    result = train(data, out, TrainConfig(seed=seed), on_event=on_event)  # otherwise the defaults
    wall = time.perf_counter() - started
    metrics = rf.read_metrics(out)
    fine = [m for m in metrics if m["phase"] != "head"]
    return {"wall_s": wall, "head_s": metrics[0]["seconds"], "head_val": metrics[0]["val_accuracy"],
            "fine_tune_s": sum(m["seconds"] for m in fine), "fine_tune_view_s": sum(m["view_seconds"] for m in fine),
            "fine_tune_img_s": rf.fine_tune_throughput(metrics) or float("nan"),
            "best_val": result.best_val_accuracy, "final_val": metrics[-1]["val_accuracy"], "epochs": len(metrics),
            "feature_cache": cache_lines}


def _report(name: str, result: dict) -> None:
    print(f"{name}:", json.dumps({k: v for k, v in result.items() if k != "feature_cache"}), flush=True)
    for line in result["feature_cache"]:
        print(f"    {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, nargs="?")
    parser.add_argument("--classic-epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # cold feature cache for the first run
    data = args.data or generate_sample_dataset(work / "data", classes=4, per_class=40, seed=args.seed)
    print(f"data: {data}; torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores",
          flush=True)
    ours = transfer_studio(data, work / "run-cold", args.seed)
    _report("transfer-studio (cold cache)", ours)
    warm = transfer_studio(data, work / "run-warm", args.seed)
    _report("transfer-studio (warm cache)", warm)
    classic = classic_recipe(data, args.classic_epochs, args.seed)
    print("classic recipe:", json.dumps(classic), flush=True)
    print("\nratios (transfer-studio / classic):")
    print(f"  wall time, cold cache: {ours['wall_s'] / classic['wall_s']:.3f}   (target <= 0.10)")
    print(f"  wall time, warm cache: {warm['wall_s'] / classic['wall_s']:.3f}")
    print(f"  best validation accuracy: {ours['best_val']:.3f} vs {classic['best_val']:.3f} "
          f"(target: >=; difference {ours['best_val'] - classic['best_val']:+.3f})")
    print(f"  fine-tune images/s: {ours['fine_tune_img_s'] / classic['train_img_s']:.2f}x   (target >= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
