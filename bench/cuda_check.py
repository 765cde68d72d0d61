"""The CUDA path's figures against their targets, on one GPU, in one call (bench/device_check.sh runs it).

    python bench/cuda_check.py OUT [--device cuda] [--data DIR] [--budget 450] [--parts a,b,c] [--smoke]

Parts, in this order; each is guarded (a failure prints its error and the rest still run), and a part that
would start once the time budget is spent is skipped with a message:

  e        `import torch` (and the trainer) in a fresh interpreter.
  ceiling  the train-step ceiling: Lite0 forward + backward + AdamW step on a random bf16 channels_last batch
           of 256 already on the GPU.
  a        default `train` on DATA (default .benchdata/ultrasound, train/ and test/ folders) in a child process
           with empty caches: the whole process's wall time and the test accuracy of evaluation.json.
  b        feature extraction on the decoded cache: that run's quick-head images / embedding seconds.
  a-loop   the plain tuned loop, in this process, on the same training photos, scored on the same split.
  c        `--strategy full` on generated data (8 classes x 375, 256 px): fine-tune img/s, seconds per epoch,
           GPU utilisation and memory sampled by nvidia-smi every 0.2 s during that run only; ratio to the ceiling.
  d        default `train` on 20,000 generated photos (4 x 5,000, 256 px) in a child process: wall, peak RSS.
  f        ONNX export (parity) and the predictor's images/s.

A JSON line is printed as each part ends and a table at the end. OUT receives cuda_check.json (every figure),
summary.md (the table) and gpu_samples.csv; generated data, run folders and caches go to a temporary folder
(removed at the end unless --keep-work), so OUT holds only what a device call brings back.

--smoke: tiny sizes (2 classes, 1 epoch, a generated train/test set standing in for DATA unless --data is
given, no nvidia-smi) on whatever device there is: a check that the script runs, on a CPU-only machine too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scale import phase_marks  # bench/ is the script's folder, so its siblings import
from torch.utils.data import DataLoader
from torchvision import transforms
from train_speed import FolderImages  # ImageFolder's per-access PIL decode over a ScanReport's items

from engine.backbones.build import create_model
from engine.backbones.registry import get_backbone
from engine.control import RunControl
from engine.events import EpochEnded, EpochStarted, Info
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "efficientnet_lite0"
CHILD_RESULT = "CUDA_CHECK_CHILD "  # the prefix of a child process's result line
# The issue's targets, printed beside the figures.
TARGET_PROCESS_S = 10.0
TARGET_FEATURE_IMG_S = 5000.0
TARGET_FULL_IMG_S = 2500.0
TARGET_GPU_UTIL = 60.0
TARGET_CEILING_RATIO = 0.40
TARGET_SCALE_S = 60.0
TARGET_SCALE_RSS_MB = 4096.0  # 4 GiB, in MiB as ru_maxrss / 1024


@dataclass(frozen=True, slots=True)
class Sizes:
    loop_epochs: int
    train_epochs: int  # 0: the plan's choice (the default `train`)
    full_data: tuple[int, int, int]  # classes, photos per class, pixels
    full_epochs: int
    scale_data: tuple[int, int, int]
    ceiling: tuple[int, int, int]  # batch, warm-up steps, timed steps
    predict_images: int


FULL = Sizes(loop_epochs=10, train_epochs=0, full_data=(8, 375, 256), full_epochs=3, scale_data=(4, 5000, 256),
             ceiling=(256, 5, 20), predict_images=512)
SMOKE = Sizes(loop_epochs=1, train_epochs=1, full_data=(2, 20, 96), full_epochs=1, scale_data=(2, 20, 96),
              ceiling=(8, 1, 2), predict_images=32)


class Budget:
    """The wall-clock allowance of the whole check; parts ask before they start, children get what is left."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.perf_counter() + seconds

    def left(self) -> float:
        return self.deadline - time.perf_counter()


# --- helpers ------------------------------------------------------------------------------------------------------
def generate(root: Path, classes: int, per_class: int, size: int, *, seed_offset: int = 0) -> Path:
    """Sample data drawn by several processes at once (one seed each), merged into one class-folder tree.

    generate_sample_dataset draws about 70 photos/s on one core at 256 px: 20,000 would take 5 minutes alone.
    """
    jobs = max(1, min(16, os.cpu_count() or 1, per_class // 2))
    shares = [per_class // jobs + (i < per_class % jobs) for i in range(jobs)]
    parts = root.parent / f"{root.name}-parts"
    code = ("import sys; from pathlib import Path; from engine.dataset.sample_data import generate_sample_dataset; "
            "a = sys.argv[1:]; generate_sample_dataset(Path(a[0]), classes=int(a[1]), per_class=int(a[2]), "
            "seed=int(a[3]), image_size=int(a[4]))")
    children = [subprocess.Popen([sys.executable, "-c", code, str(parts / str(i)), str(classes), str(share),
                                  str(seed_offset + i), str(size)]) for i, share in enumerate(shares)]
    if any(child.wait() for child in children):
        raise RuntimeError(f"generating {root.name} failed")
    for i in range(jobs):
        for photo in sorted((parts / str(i)).rglob("*.jpg")):
            (root / photo.parent.name).mkdir(parents=True, exist_ok=True)
            photo.rename(root / photo.parent.name / f"p{i:02d}_{photo.name}")
    shutil.rmtree(parts)
    return root


def peak_rss_kb(pid: int) -> int:
    """A live process's peak resident memory so far (VmHWM), 0 where /proc does not say."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def own_peak_rss_kb() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries it over exec from the parent's memory (subprocess
    forks with vfork), so a child of this large process would report at least the parent's size."""
    return peak_rss_kb(os.getpid()) or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def run_child(data: Path, run_dir: Path, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """One default-style `train` in a fresh interpreter with its own empty cache folder, timed from the outside
    (start-up and imports included) and with its own peak RSS, as bench/scale.py measures each size."""
    cache = run_dir.parent / f"{run_dir.name}-cache"
    log = run_dir.parent / f"{run_dir.name}.log"
    command = [sys.executable, __file__, "--child-train", str(data), str(run_dir), json.dumps(config)]
    peak = 0
    started = time.perf_counter()
    with log.open("w") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT,
                                 env={**os.environ, "XDG_CACHE_HOME": str(cache)})
        while True:
            try:
                child.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                peak = max(peak, peak_rss_kb(child.pid))
                if time.perf_counter() - started > timeout:
                    child.kill()
                    child.wait()
                    raise TimeoutError(f"killed after {timeout:.0f} s (the time budget), peak RSS so far "
                                       f"{peak / 1024:.0f} MB; its log: {log}") from None
    process_s = time.perf_counter() - started
    text = log.read_text(errors="replace")
    results = [line[len(CHILD_RESULT):] for line in text.splitlines() if line.startswith(CHILD_RESULT)]
    if child.returncode or not results:
        raise RuntimeError(f"child exited {child.returncode}; last lines of its log:\n{text[-3000:]}")
    result = json.loads(results[-1])
    result["peak_rss_mb"] = max(result["peak_rss_mb"], peak / 1024)
    cache_bytes = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
    return {"process_s": process_s, **result, "cache_mb": cache_bytes / 1e6}


def child_train(data: Path, run_dir: Path, config: dict[str, Any]) -> dict[str, Any]:
    """In the child: `train` with ``config``, its phases marked by the engine's own events."""
    marks, on_event = phase_marks()

    started = time.perf_counter()
    result = train(data, run_dir, TrainConfig(**config), on_event=on_event)
    train_s = time.perf_counter() - started
    metrics = rf.read_metrics(run_dir)
    plan = rf.read_run(run_dir).plan
    return {
        "status": result.status, "plan": plan.depth if plan else None, "train_s": train_s,
        "scan_decode_s": marks.get("run_started", started) - started,
        "quick_head_s": metrics[0]["seconds"] if metrics else None,
        "head_fit_s": metrics[0].get("fit_seconds") if metrics else None,  # L-BFGS on the CPU, float64
        "fine_tune_s": sum(m["seconds"] for m in metrics[1:]), "fine_tune_epochs": max(0, len(metrics) - 1),
        "evaluation_s": marks["finished"] - marks["last_epoch_ended"] if "last_epoch_ended" in marks else None,
        "best_val": result.best_val_accuracy,
        "peak_rss_mb": own_peak_rss_kb() / 1024,
    }


class GpuSampler:
    """nvidia-smi's utilisation and memory every 0.2 s in a child process, while a ``with`` block runs."""

    QUERY = "timestamp,utilization.gpu,memory.used"

    def __init__(self, enabled: bool, csv: Path) -> None:
        self.enabled, self.csv = enabled, csv
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> GpuSampler:
        if self.enabled:
            with self.csv.open("w") as output:
                self.process = subprocess.Popen(
                    ["nvidia-smi", "--id=0", f"--query-gpu={self.QUERY}", "--format=csv,noheader,nounits",
                     "-lms", "200"], stdout=output, stderr=subprocess.DEVNULL)
            time.sleep(0.5)  # its first sample before the run starts
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # nvidia-smi's loop ends cleanly on Ctrl-C
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def summary(self, since: float | None, until: float | None) -> dict[str, Any]:
        """Mean and max utilisation (%) and max memory (MiB) of the samples between two time.time() marks
        (all samples where a mark is missing or none fall between them)."""
        samples = []
        for line in self.csv.read_text().splitlines() if self.csv.exists() else []:
            try:
                stamp, utilisation, memory = (part.strip() for part in line.split(","))
                when = datetime.datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp()
                samples.append((when, float(utilisation), float(memory)))
            except ValueError:
                continue
        window = [s for s in samples if since is not None and until is not None and since <= s[0] <= until]
        chosen = window or samples
        if not chosen:
            return {"samples": 0}
        return {"samples": len(chosen), "window": "fine-tune epochs" if window else "whole run",
                "util_mean": float(np.mean([s[1] for s in chosen])), "util_max": max(s[1] for s in chosen),
                "memory_max_mib": max(s[2] for s in chosen), "samples_whole_run": len(samples),
                "util_mean_whole_run": float(np.mean([s[1] for s in samples]))}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class CudnnBenchmark:
    """cudnn.benchmark on for the hand-written parts only, so the engine's runs keep their own setting."""

    def __enter__(self) -> None:
        self.before = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True

    def __exit__(self, *_exc: object) -> None:
        torch.backends.cudnn.benchmark = self.before


# --- parts --------------------------------------------------------------------------------------------------------
def part_imports() -> dict[str, Any]:
    """Fresh interpreters: `import torch` twice (the first may read from a cold disk), then the trainer."""
    code = "import time; t = time.perf_counter(); import {}; print(time.perf_counter() - t)"
    rows = []
    for module in ("torch", "torch", "engine.training.trainer"):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code.format(module)], capture_output=True, text=True, check=True)
        rows.append({"module": module, "import_s": float(done.stdout.split()[-1]),
                     "process_s": time.perf_counter() - started})
    return {"first_torch_s": rows[0]["import_s"], "torch_s": rows[1]["import_s"],
            "trainer_s": rows[2]["import_s"], "runs": rows}


def part_ceiling(device: str, sizes: Sizes) -> dict[str, Any]:
    """Lite0 training steps on one random batch already on the device: what the step itself allows."""
    batch, warm, steps = sizes.ceiling
    with CudnnBenchmark():
        seconds = _train_steps(device, batch, warm, steps)
    memory = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    if device == "cuda":
        torch.cuda.empty_cache()  # the model and batch are gone with _train_steps' frame
    return {"batch": batch, "steps": steps, "img_s": batch * steps / seconds, "max_allocated_mib": memory}


def _train_steps(device: str, batch: int, warm: int, steps: int) -> float:
    """Seconds for ``steps`` forward + backward + AdamW steps of Lite0 (all layers) after ``warm`` untimed ones."""
    cuda = device == "cuda"
    model = create_model(BACKBONE, 8).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, 224, 224, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 8, (batch,), device=device)
    started = 0.0
    for index in range(warm + steps):
        if index == warm:
            synchronize(device)
            started = time.perf_counter()
        with torch.autocast(device, dtype=torch.bfloat16, enabled=cuda):
            loss = F.cross_entropy(model(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    synchronize(device)
    return time.perf_counter() - started


def part_default_train(data: Path, work: Path, config: dict[str, Any], timeout: float) -> dict[str, Any]:
    run_dir = work / "a-default"
    result = run_child(data, run_dir, config, timeout)
    evaluation = json.loads((run_dir / rf.EVALUATION_FILE).read_text())
    scored = "test" if "test" in evaluation else "validation"
    return {"data": str(data), "run_dir": str(run_dir), **result, "scored_on": scored,
            "accuracy": evaluation[scored]["accuracy"], "balanced": evaluation[scored]["balanced_accuracy"]}


def part_features(run_dir: Path) -> dict[str, Any]:
    """Images through the frozen network per second in the quick head: the decoded cache is already filled by
    the scan, so this is crop + normalise + forward (the batch-size trials of a first run included)."""
    head = rf.read_metrics(run_dir)[0]
    counts = rf.read_run(run_dir).dataset_counts or {}
    images = sum(sum(counts.get(split, {}).values()) for split in ("train", "val"))
    seconds = head.get("embedding_seconds")
    return {"images": images, "embedding_seconds": seconds, "fit_seconds": head.get("fit_seconds"),
            "img_s": images / seconds if seconds else None}


def plain_loop(run_dir: Path, device: str, epochs: int, budget: Budget) -> dict[str, Any]:
    """The baseline a careful engineer writes: ImageFolder-style PIL decode + torchvision transforms in
    DataLoader workers, Lite0 with every layer training, bf16 autocast, channels_last, AdamW, cosine, then
    accuracy on the split the default run was scored on. It trains on that run's training photos (its
    validation photos are left out, as the default run trains without them)."""
    started = time.perf_counter()
    torch.manual_seed(0)
    report = rf.read_scan_report(rf.read_run(run_dir))
    prep = get_backbone(BACKBONE).preprocessing()
    normalize = transforms.Normalize(prep.mean, prep.std)  # mean = std = 0.5 for Lite0
    train_tf = transforms.Compose([transforms.RandomResizedCrop(prep.crop), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), normalize])
    eval_tf = transforms.Compose([transforms.Resize(prep.resize), transforms.CenterCrop(prep.crop),
                                  transforms.ToTensor(), normalize])
    scored_on = "test" if report.split_items("test") else "val"
    scored = report.split_items(scored_on)
    workers = min(12, (os.cpu_count() or 2) - 1)
    options = {"batch_size": 64, "num_workers": workers, "pin_memory": device == "cuda",
               "persistent_workers": workers > 0}
    train_loader = DataLoader(FolderImages(report.split_items("train"), train_tf), shuffle=True, **options)
    eval_loader = DataLoader(FolderImages(scored, eval_tf), **options)
    amp = {"device_type": device, "dtype": torch.bfloat16, "enabled": device == "cuda"}
    with CudnnBenchmark():
        model = create_model(BACKBONE, len(report.classes)).to(device, memory_format=torch.channels_last)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = 0.1  # PyTorch's default; the TF port's 0.01 barely moves in a few hundred steps
        optimizer = torch.optim.AdamW([{"params": model.stages.parameters(), "lr": 3e-4},
                                       {"params": model.head.parameters(), "lr": 3e-3}], weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[3e-4, 3e-3], pct_start=0.1,
                                                        total_steps=epochs * len(train_loader))
        epoch_seconds: list[float] = []
        for _epoch in range(epochs):
            if budget.left() < 30:
                break
            epoch_started = time.perf_counter()
            model.train()
            for images, labels in train_loader:
                images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
                with torch.autocast(**amp):
                    loss = F.cross_entropy(model(images).float(), labels.to(device, non_blocking=True))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            synchronize(device)
            epoch_seconds.append(time.perf_counter() - epoch_started)
        model.eval()
        with torch.inference_mode(), torch.autocast(**amp):
            predicted = torch.cat([model(x.to(device, memory_format=torch.channels_last)).argmax(1).cpu()
                                   for x, _ in eval_loader]).numpy()
    truth = np.array([item.label for item in scored])
    recalls = [float(np.mean(predicted[truth == c] == c)) for c in np.unique(truth)]
    train_images = len(report.split_items("train"))
    return {"wall_s": time.perf_counter() - started, "epochs": len(epoch_seconds), "workers": workers,
            "epoch_seconds": epoch_seconds,
            "train_img_s": train_images * len(epoch_seconds) / sum(epoch_seconds) if epoch_seconds else None,
            "scored_on": "test" if scored_on == "test" else "validation",
            "accuracy": float(np.mean(predicted == truth)), "balanced": float(np.mean(recalls))}


def part_full(work: Path, out: Path, device: str, sizes: Sizes, batch_size: int, sample_gpu: bool,
              budget: Budget) -> dict[str, Any]:
    """`--strategy full` in this process with its own empty cache; stopped (status "cancelled") at the budget."""
    classes, per_class, pixels = sizes.full_data
    data = generate(work / "c-data", classes, per_class, pixels)
    run_dir = work / "c-full"
    os.environ["XDG_CACHE_HOME"] = str(work / "c-full-cache")
    config = TrainConfig(device=device, strategy="full", epochs=sizes.full_epochs, early_stopping=0,
                         **({"batch_size": batch_size} if batch_size else {}))
    marks: dict[str, float] = {}
    notes: list[str] = []

    def on_event(event: object) -> None:
        if isinstance(event, EpochStarted) and event.epoch == 1:
            marks["fine_start"] = time.time()
        elif isinstance(event, EpochEnded) and event.epoch >= 1:
            marks["fine_end"] = time.time()
        elif isinstance(event, Info) and ": batch size " in event.message:
            notes.append(event.message)

    control = RunControl()
    stopper = threading.Timer(max(1.0, budget.left() - 60), control.cancel)
    stopper.start()
    sampler = GpuSampler(sample_gpu, out / "gpu_samples.csv")
    try:
        with sampler:
            started = time.perf_counter()
            result = train(data, run_dir, config, on_event=on_event, control=control)
            wall = time.perf_counter() - started
    finally:
        stopper.cancel()
    metrics = rf.read_metrics(run_dir)
    epochs = [{"epoch": m["epoch"], "seconds": m["seconds"], "view_seconds": m.get("view_seconds"),
               "img_s": m["images_per_second"]} for m in metrics if m["phase"] != "head"]
    return {"status": result.status, "images": classes * per_class, "wall_s": wall,
            "quick_head_s": metrics[0]["seconds"] if metrics else None, "img_s": rf.fine_tune_throughput(metrics),
            "epochs": epochs, "batch_notes": notes, "best_val": result.best_val_accuracy,
            "gpu": sampler.summary(marks.get("fine_start"), marks.get("fine_end")) if sample_gpu else None}


def part_scale(work: Path, config: dict[str, Any], sizes: Sizes, timeout: float) -> dict[str, Any]:
    classes, per_class, pixels = sizes.scale_data
    generated = time.perf_counter()
    data = generate(work / "d-data", classes, per_class, pixels)
    generate_s = time.perf_counter() - generated
    result = run_child(data, work / "d-scale", config, timeout - generate_s)
    return {"images": classes * per_class, "pixels": pixels, "generate_s": generate_s, **result}


def part_export(run_dirs: list[Path], images: int) -> dict[str, Any]:
    from engine.export import export_onnx
    from engine.predict import Predictor, expand_inputs

    run_dir = next((d for d in run_dirs if (d / rf.BEST_FILE).is_file()), None)
    if run_dir is None:
        raise RuntimeError("no finished run to export (parts a and c did not leave a best.pt)")
    exported = export_onnx(run_dir)
    report: dict[str, Any] = {"run_dir": str(run_dir), "seconds": exported.seconds,
                              "size_mb": exported.size_bytes / 1e6, **exported.parity}
    paths, _ = expand_inputs([rf.read_run(run_dir).data_dir])
    paths = paths[:images]
    for device in ("auto", "cpu"):
        predictor = Predictor(exported.path, device=device)
        predictor.predict_paths(paths[:32])
        started = time.perf_counter()
        predictions = predictor.predict_paths(paths)
        seconds = time.perf_counter() - started
        report[f"predict_{device}"] = {"provider": predictor.provider, "images": len(predictions),
                                       "img_s": len(predictions) / seconds,
                                       "errors": sum(p.error is not None for p in predictions)}
    return report


# --- the summary --------------------------------------------------------------------------------------------------
def _f(value: Any, spec: str = ".1f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def _met(ok: bool | None) -> str:
    return "-" if ok is None else "yes" if ok else "**no**"


def _phases(child: dict[str, Any]) -> str:
    """A child run's phases, as the engine's events and metrics mark them."""
    return (f"train() {child['train_s']:.1f} s: scan + decode {_f(child['scan_decode_s'])}, quick head "
            f"{_f(child['quick_head_s'])} (head fit {_f(child['head_fit_s'])}), fine-tune {_f(child['fine_tune_s'])} "
            f"({child['fine_tune_epochs']} epochs, {child['plan']}), evaluation {_f(child['evaluation_s'])}")


def summary_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(part, measure, figure, target, met) for every figure that has a target, and the context beside them."""
    a, b, loop = results.get("a", {}), results.get("b", {}), results.get("a-loop", {})
    c, d, ceiling = results.get("c", {}), results.get("d", {}), results.get("ceiling", {})
    e, f = results.get("e", {}), results.get("f", {})
    rows = []
    if "process_s" in a:
        rows.append(("a", "default `train`, whole process, cold caches",
                     f"{a['process_s']:.1f} s ({_phases(a)}; peak RSS {a['peak_rss_mb']:,.0f} MB)",
                     f"<= {TARGET_PROCESS_S:.0f} s", _met(a["process_s"] <= TARGET_PROCESS_S)))
    if "accuracy" in a:
        figure = f"{a['accuracy']:.3f} vs {_f(loop.get('accuracy'), '.3f')} (balanced {a['balanced']:.3f} vs " \
                 f"{_f(loop.get('balanced'), '.3f')})"
        ok = a["accuracy"] >= loop["accuracy"] if "accuracy" in loop else None
        rows.append(("a", f"{a['scored_on']} accuracy: default vs plain loop", figure, ">= loop's", _met(ok)))
    if "wall_s" in loop:
        rows.append(("a", f"plain loop, {loop['epochs']} epochs, {loop['workers']} workers",
                     f"{loop['wall_s']:.1f} s (train {_f(loop['train_img_s'], '.0f')} img/s)", "", "-"))
    if b.get("img_s"):
        rows.append(("b", "feature extraction on the decoded cache",
                     f"{b['img_s']:,.0f} img/s ({b['images']} images / {b['embedding_seconds']:.2f} s)",
                     f">= {TARGET_FEATURE_IMG_S:,.0f} img/s", _met(b["img_s"] >= TARGET_FEATURE_IMG_S)))
    if c.get("img_s"):
        notes = "; ".join(c["batch_notes"]) or "batch size not reported"
        rows.append(("c", f"`--strategy full`, {c['images']} photos", f"{c['img_s']:,.0f} img/s ({notes})",
                     f">= {TARGET_FULL_IMG_S:,.0f} img/s", _met(c["img_s"] >= TARGET_FULL_IMG_S)))
        per_epoch = " / ".join(f"{ep['seconds']:.2f}" for ep in c["epochs"])
        rows.append(("c", "seconds per epoch (first-epoch stall?)",
                     f"{per_epoch} (quick head {_f(c['quick_head_s'])} s, run {c['wall_s']:.1f} s)", "", "-"))
    gpu = c.get("gpu") or {}
    if gpu.get("samples"):
        rows.append(("c", f"GPU utilisation ({gpu['window']}, {gpu['samples']} samples)",
                     f"mean {gpu['util_mean']:.0f} %, max {gpu['util_max']:.0f} %, memory max "
                     f"{gpu['memory_max_mib']:,.0f} MiB (whole run: mean {gpu['util_mean_whole_run']:.0f} %)",
                     f">= {TARGET_GPU_UTIL:.0f} %", _met(gpu["util_mean"] >= TARGET_GPU_UTIL)))
    if "img_s" in ceiling:
        rows.append(("c", f"train-step ceiling (Lite0, batch {ceiling['batch']}, on the device)",
                     f"{ceiling['img_s']:,.0f} img/s", "", "-"))
        if c.get("img_s"):
            ratio = c["img_s"] / ceiling["img_s"]
            rows.append(("c", "full / ceiling", f"{ratio:.2f}", f">= {TARGET_CEILING_RATIO:.2f}",
                         _met(ratio >= TARGET_CEILING_RATIO)))
    if "process_s" in d:
        rows.append(("d", f"default `train`, {d['images']:,} photos of {d['pixels']} px, whole process",
                     f"{d['process_s']:.1f} s ({_phases(d)}; validation {_f(d['best_val'], '.3f')})",
                     f"<= {TARGET_SCALE_S:.0f} s", _met(d["process_s"] <= TARGET_SCALE_S)))
        rows.append(("d", "peak RSS", f"{d['peak_rss_mb']:,.0f} MB (cache {d['cache_mb']:,.0f} MB)",
                     f"< {TARGET_SCALE_RSS_MB:,.0f} MB", _met(d["peak_rss_mb"] < TARGET_SCALE_RSS_MB)))
    if "torch_s" in e:
        rows.append(("e", "`import torch`, fresh interpreter",
                     f"{e['torch_s']:.2f} s (first {e['first_torch_s']:.2f} s; trainer {e['trainer_s']:.2f} s)",
                     "", "-"))
    if "max_abs_diff" in f:
        predict = f.get("predict_auto", {})
        rows.append(("f", "export + predict",
                     f"{f['seconds']:.1f} s, max |diff| {f['max_abs_diff']:.1e}, top-1 "
                     f"{_f(f.get('top1_agreement'), '.3f')}; predictor {predict.get('provider')} "
                     f"{_f(predict.get('img_s'), '.0f')} img/s", "", "-"))
    return rows


def summary_table(results: dict[str, Any]) -> str:
    lines = ["| part | measure | figure | target | met |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {' | '.join(row)} |" for row in summary_rows(results)]
    failed = [f"- {name}: {value}" for name, value in results.get("errors", {}).items()]
    skipped = [f"- {name}: {value}" for name, value in results.get("skipped", {}).items()]
    return "\n".join(lines + (["", "Failed:", *failed] if failed else []) + (["", "Skipped:", *skipped]
                                                                             if skipped else []))


# --- main ---------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("cuda-check"))
    parser.add_argument("--device", help="cuda (default), or auto with --smoke")
    parser.add_argument("--data", type=Path, help="part a's dataset (default .benchdata/ultrasound)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check (default 450)")
    parser.add_argument("--full-batch-size", type=int, default=0, help="part c's batch size; 0: the engine's")
    parser.add_argument("--parts", default="e,ceiling,a,b,a-loop,c,d,f",
                        help="the parts to run, comma-separated (default: all)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for a CPU-only check of this script")
    parser.add_argument("--keep-work", action="store_true", help="keep the generated data and run folders")
    parser.add_argument("--child-train", nargs=3, help=argparse.SUPPRESS)  # DATA RUN_DIR CONFIG_JSON
    args = parser.parse_args()
    if args.child_train:
        data, run_dir, config = args.child_train
        print(CHILD_RESULT + json.dumps(child_train(Path(data), Path(run_dir), json.loads(config))), flush=True)
        return 0

    budget = Budget(args.budget)
    sizes = SMOKE if args.smoke else FULL
    device = args.device or ("auto" if args.smoke else "cuda")
    compute = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    sample_gpu = not args.smoke and compute == "cuda" and shutil.which("nvidia-smi") is not None
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="cuda-check-"))
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # nothing of this check lands in the user's cache
    train_config: dict[str, Any] = {"device": device, **({"epochs": sizes.train_epochs} if sizes.train_epochs else {})}
    results: dict[str, Any] = {
        "environment": {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "device": device,
                        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                        "cpus": os.cpu_count(), "smoke": args.smoke, "sizes": asdict(sizes), "work": str(work),
                        "budget_s": args.budget},
        "errors": {}, "skipped": {}}
    print(json.dumps({"part": "environment", **results["environment"]}), flush=True)

    chosen = set(args.parts.split(","))

    def part(name: str, needs_s: float, run: Callable[[], dict[str, Any]], depends: str | None = None) -> None:
        if name not in chosen:
            return
        if depends is not None and depends not in results:
            results["skipped"][name] = f"needs part {depends}, which did not complete"
        elif budget.left() < needs_s:
            results["skipped"][name] = f"{budget.left():.0f} s of the budget left, {needs_s:.0f} s needed to start"
        else:
            started = time.perf_counter()
            try:
                results[name] = run()
                print(json.dumps({"part": name, "part_s": time.perf_counter() - started, **results[name]}),
                      flush=True)
                save()
                return
            except Exception as exc:  # noqa: BLE001 - a diagnostic script: report the part's failure, go on
                traceback.print_exc()
                results["errors"][name] = f"{type(exc).__name__}: {exc}"
        message = results["errors"].get(name) or results["skipped"][name]
        print(json.dumps({"part": name, "error" if name in results["errors"] else "skipped": message}), flush=True)
        save()

    def save() -> None:  # after every part: a call stopped at its time limit still brings back what was measured
        (out / "cuda_check.json").write_text(json.dumps(results, indent=2))

    data_a = args.data or REPO / ".benchdata" / "ultrasound"
    if args.smoke and args.data is None:  # ultrasound takes minutes on a CPU: a tiny train/test set stands in
        generate(work / "a-data" / "train", 2, 20, 96)
        data_a = generate(work / "a-data" / "test", 2, 6, 96, seed_offset=100).parent
    part("e", 20, part_imports)
    part("ceiling", 20, lambda: part_ceiling(compute, sizes))
    if data_a.is_dir():
        later = {"a-loop": 40, "c": 60, "d": 60}  # what the parts after part a need to start
        reserve = 30 + sum(need for name, need in later.items() if name in chosen)
        part("a", 60, lambda: part_default_train(data_a, work, train_config, min(budget.left() - reserve, 240)))
        part("b", 0, lambda: part_features(work / "a-default"), depends="a")
        part("a-loop", 40, lambda: plain_loop(work / "a-default", compute, sizes.loop_epochs, budget), depends="a")
    else:
        results["skipped"]["a"] = (f"{data_a}: not found (copy ../shared/data/ultrasound to .benchdata/, see "
                                   "bench/device_check.sh)")
        print(json.dumps({"part": "a", "skipped": results["skipped"]["a"]}), flush=True)
    part("c", 60, lambda: part_full(work, out, device, sizes, args.full_batch_size, sample_gpu, budget))
    part("d", 60, lambda: part_scale(work, train_config, sizes, budget.left() - 25))
    part("f", 10, lambda: part_export([work / "a-default", work / "c-full"], sizes.predict_images))

    table = summary_table(results)
    print("\n" + table, flush=True)
    (out / "summary.md").write_text(table + "\n")
    save()
    if not args.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
