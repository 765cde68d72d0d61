"""Benchmark: does an ensemble beat its best member, and does a distilled student beat the same student alone?

    python bench/ensemble_distill.py DATA [--out DIR] [--teacher efficientnet_lite2] [--student efficientnet_lite0]
                                     [--student-seeds 0,1,2]
    python bench/ensemble_distill.py --generated [--out DIR]     # 4 classes x 40 generated photos

All runs share the first run's split (``split_from``), so every figure is on the same held-out photos:

1. member A: default ``train`` of the student backbone, seed 0; member B: the same, seed 1 (another
   initialisation of the head, other augmented views and batch order);
2. the ensembles of A and B (seeds) and of A and the teacher (different backbones), each with equal weights and with
   weights chosen on validation (``build_ensemble``'s weighting);
3. the teacher: default ``train`` of the teacher backbone, seed 0;
4. ``distill`` of the teacher into the student for each student seed, which also trains the student without the
   teacher (same options, seed and split) and measures size, batch-1 latency and folder img/s of each exported
   model.

Runs already completed in OUT (a bench stopped, or run again with more seeds) are reused, not trained again.

Scores are on test/ when the folder has one (ultrasound), else on the test split carved here. Prints two tables
and writes ``OUT/ensemble_distill.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from engine.dataset.sample_data import generate_sample_dataset
from engine.ensemble import WEIGHTINGS, build_ensemble
from engine.evaluation.metrics import read_evaluation_document
from engine.tradeoff_table import DISTILLATION_FILE, format_tradeoff_table
from engine.training import run_folder as rf
from engine.training.config import TrainConfig
from engine.training.distillation import distill
from engine.training.trainer import train


def scores(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Accuracy and balanced accuracy on test (validation when the run has no test split), and on validation."""
    test = evaluation.get("test") or {}
    validation = evaluation["validation"]
    return {"test_accuracy": test.get("accuracy"), "test_balanced": test.get("balanced_accuracy"),
            "val_accuracy": validation["accuracy"], "val_balanced": validation["balanced_accuracy"],
            "test_count": len(test.get("predictions", [])), "val_count": len(validation["predictions"])}


def completed(out: Path) -> dict[str, Any] | None:
    """The scores of a completed run already in ``out`` (wall time unknown: None), else None."""
    if (out / rf.RUN_FILE).is_file() and rf.read_run(out).status == "completed":
        return {"run": str(out), "seconds": None, **scores(read_evaluation_document(out / rf.EVALUATION_FILE))}
    return None


def timed_train(data: Path, out: Path, config: TrainConfig) -> dict[str, Any]:
    if reused := completed(out):
        return {"backbone": config.backbone, "seed": config.seed, **reused}
    started = time.perf_counter()
    result = train(data, out, config)
    if result.status != "completed" or result.evaluation is None:
        raise SystemExit(f"{out}: training ended {result.status}")
    return {"run": str(out), "backbone": config.backbone, "seed": config.seed,
            "seconds": time.perf_counter() - started, **scores(result.evaluation)}


def timed_ensemble(members: list[Path], out: Path, weighting: str) -> dict[str, Any]:
    weights = {"members": [str(m) for m in members], "weighting": weighting}
    if reused := completed(out):
        return {**weights, "weights": [m["weight"] for m in rf.read_run(out).raw["ensemble"]["members"]], **reused}
    started = time.perf_counter()
    result = build_ensemble(members, out, weighting=weighting)
    return {"run": str(out), **weights, "weights": [m.weight for m in result.members],
            "seconds": time.perf_counter() - started, **scores(result.evaluation)}


def row(name: str, figures: dict[str, Any]) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    seconds = "-" if figures["seconds"] is None else f"{figures['seconds']:.0f}"
    return (f"| {name} | {cell(figures['val_accuracy'])} | {cell(figures['test_accuracy'])} | "
            f"{cell(figures['test_balanced'])} | {seconds} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path)
    parser.add_argument("--generated", action="store_true", help="4 classes x 40 generated photos instead of DATA")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--teacher", default="efficientnet_lite2")
    parser.add_argument("--student", default="efficientnet_lite0")
    parser.add_argument("--test-split", type=float, default=0.25, help="for folders without test/")
    parser.add_argument("--student-seeds", default="0", help="comma-separated seeds of the distilled students")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ensemble-distill-"))
    out.mkdir(parents=True, exist_ok=True)
    if args.generated:
        data = generate_sample_dataset(out / "data", classes=4, per_class=40, seed=3)
    elif args.data is None:
        parser.error("give DATA or --generated")
    else:
        data = args.data
    base = TrainConfig(backbone=args.student, seed=0, test_split=args.test_split)
    figures: dict[str, Any] = {"data": str(data)}
    member_a = out / "member-a"
    figures["member_a"] = timed_train(data, member_a, base)
    shared = replace(base, split_from=str(member_a))
    figures["member_b"] = timed_train(data, out / "member-b", replace(shared, seed=1))
    figures["teacher"] = timed_train(data, out / "teacher", replace(shared, backbone=args.teacher))
    ensembles = {"seeds": [member_a, out / "member-b"], "backbones": [member_a, out / "teacher"]}
    for name, members in ensembles.items():
        for weighting in WEIGHTINGS:
            suffix = "" if weighting == "equal" else f"-{weighting}"  # the equal ones keep their first names
            figures[f"ensemble_{name}_{weighting}"] = timed_ensemble(members, out / f"ensemble-{name}{suffix}",
                                                                     weighting)
    students = []
    for seed in (int(text) for text in args.student_seeds.split(",")):
        student = out / ("student" if seed == 0 else f"student-seed{seed}")
        started = time.perf_counter()
        distilled = distill([out / "teacher"], student, replace(shared, split_from="", seed=seed))
        figures[f"distillation_seed{seed}"] = {
            "seconds": time.perf_counter() - started, "status": distilled.status,
            "rows": json.loads((student / DISTILLATION_FILE).read_text())}
        students.append((seed, distilled))
    (out / "ensemble_distill.json").write_text(json.dumps(figures, indent=2))

    print(f"\n{data}  (runs in {out})\n")
    print("| model | validation accuracy | test accuracy | test balanced accuracy | wall s |")
    print("|---|---|---|---|---|")
    for name, key in (("A: " + args.student + " seed 0", "member_a"), ("B: " + args.student + " seed 1", "member_b"),
                      ("teacher: " + args.teacher, "teacher")):
        print(row(name, figures[key]))
    for name in ensembles:
        for weighting in WEIGHTINGS:
            figures_ = figures[f"ensemble_{name}_{weighting}"]
            weights = " / ".join(f"{w:.2f}" for w in figures_["weights"])
            print(row(f"ensemble ({name}), {weighting} weights {weights}", figures_))
    for seed, distilled in students:
        print(f"\nstudent seed {seed}:")
        print(format_tradeoff_table(distilled.rows))


if __name__ == "__main__":
    main()
