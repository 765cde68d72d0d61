"""The ``transfer-studio`` command: no arguments opens the GUI; subcommands run headless.

Exit codes: 0 success, 2 bad input (one line naming the path and the fix), 130 interrupted (run saved).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130


class UsageError(Exception):
    """Bad input detected by the CLI itself."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        from desktop.app import main as gui_main

        return gui_main()
    args = _parser().parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - known bad-input errors become exit 2, the rest re-raise
        if _is_bad_input(exc):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


def _is_bad_input(exc: Exception) -> bool:
    from engine.backbones.weights import WeightsUnavailableError
    from engine.images import ImageLoadError

    bad_input = (ValueError, UsageError, WeightsUnavailableError, ImageLoadError, FileNotFoundError, FileExistsError,
                 NotADirectoryError)
    return isinstance(exc, bad_input)


def _parser() -> argparse.ArgumentParser:
    from engine import __version__

    parser = argparse.ArgumentParser(prog="transfer-studio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"transfer-studio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    scan = commands.add_parser("scan", help="scan and validate a dataset folder")
    scan.add_argument("data", type=Path)
    scan.add_argument("--json", action="store_true", help="print the scan report as JSON")
    scan.add_argument("--val-split", type=float, default=0.2)
    scan.add_argument("--test-split", type=float, default=0.0)
    scan.add_argument("--seed", type=int, default=0)
    scan.set_defaults(handler=_scan)

    sample = commands.add_parser("sample-data", help="write the built-in generated sample dataset")
    sample.add_argument("out", type=Path)
    sample.add_argument("--classes", type=int, default=4)
    sample.add_argument("--per-class", type=int, default=40)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(handler=_sample_data)

    backbones = commands.add_parser("backbones", help="list the available pretrained backbones")
    backbones.set_defaults(handler=_backbones)

    train = commands.add_parser("train", help="train a classifier on a dataset folder")
    train.add_argument("data", type=Path, nargs="?", help="dataset folder (optional with --resume)")
    train.add_argument("--out", type=Path, required=True, help="run folder to create (or resume)")
    _add_train_options(train)
    train.add_argument("--resume", action="store_true", help="continue the stopped run in --out")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="re-evaluate a trained run")
    evaluate.add_argument("run", type=Path)
    evaluate.add_argument("--data", type=Path, help="another folder with the same classes")
    evaluate.set_defaults(handler=_evaluate)

    demo = commands.add_parser("demo", help="generate sample data, train, evaluate: does it all work?")
    demo.add_argument("--out", type=Path, default=None, help="folder for the data and the run")
    demo.set_defaults(handler=_demo)
    return parser


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from engine.training.augment import AUGMENT_PRESETS
    from engine.training.config import DEVICES, STRATEGIES, TrainConfig

    d = TrainConfig()
    parser.add_argument("--backbone", default=d.backbone)
    parser.add_argument("--strategy", choices=STRATEGIES, default=d.strategy)
    parser.add_argument("--epochs", type=int, default=d.epochs)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--val-split", type=float, default=d.val_split)
    parser.add_argument("--test-split", type=float, default=d.test_split)
    parser.add_argument("--augment", choices=AUGMENT_PRESETS, default=d.augment)
    parser.add_argument("--early-stopping", type=int, default=d.early_stopping, help="patience in epochs; 0 = off")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", choices=DEVICES, default=d.device)
    parser.add_argument("--weights", type=Path, default=None, help="local backbone weights (.pth/.safetensors)")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default=d.optimizer)
    parser.add_argument("--unfreeze-stages", type=int, default=d.unfreeze_stages)
    parser.add_argument("--class-weighting", choices=("auto", "on", "off"), default=d.class_weighting)


def _scan(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.dataset.report import format_scan_report
    from engine.dataset.scan import scan_dataset

    report = scan_dataset(args.data, val_fraction=args.val_split, test_fraction=args.test_split, seed=args.seed,
                          on_event=ConsoleProgress())
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_scan_report(report))
    return EXIT_OK


def _sample_data(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.dataset.sample_data import generate_sample_dataset

    out = generate_sample_dataset(args.out, classes=args.classes, per_class=args.per_class, seed=args.seed,
                                  on_event=ConsoleProgress())
    print(f"wrote {args.classes} classes x {args.per_class} images to {out}")
    return EXIT_OK


def _backbones(_args: argparse.Namespace) -> int:
    from engine.backbones.registry import DEFAULT_BACKBONE, list_backbones

    rows = [("name", "parameters", "file size", "input", "weights")]
    for spec in list_backbones():
        p = spec.preprocessing()
        name = spec.name + (" (default)" if spec.name == DEFAULT_BACKBONE else "")
        rows.append((name, f"{spec.parameters() / 1e6:.1f} M", f"{spec.file_size_mb():.0f} MB",
                     f"{p.crop}x{p.crop} (resize {p.resize}, {p.interpolation})", spec.weights_state()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK


def _with_cancel_on_sigint(run: Callable) -> object:
    """First Ctrl-C asks the run to stop at the next batch (saving a resumable run); a second one aborts."""
    from engine.control import RunControl

    control = RunControl()

    def on_sigint(_signum: int, _frame: object) -> None:
        if control.cancelled:
            raise KeyboardInterrupt
        print("\nstopping after this batch (Ctrl-C again to abort)...", file=sys.stderr)
        control.cancel()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        return run(control)
    finally:
        signal.signal(signal.SIGINT, previous)


def _train(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.training.config import TrainConfig
    from engine.training.trainer import train

    config = None
    if not args.resume:
        if args.data is None:
            raise UsageError("a dataset folder is required (or --resume with --out pointing at a stopped run)")
        config = TrainConfig(
            backbone=args.backbone, strategy=args.strategy, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, val_split=args.val_split, test_split=args.test_split, augment=args.augment,
            early_stopping=args.early_stopping, seed=args.seed, device=args.device,
            weights_file=str(args.weights) if args.weights else None, optimizer=args.optimizer,
            unfreeze_stages=args.unfreeze_stages, class_weighting=args.class_weighting,
        )
    result = _with_cancel_on_sigint(
        lambda control: train(args.data, args.out, config, resume=args.resume, on_event=ConsoleProgress(),
                              control=control))
    if result.status == "cancelled":
        print(f"stopped; resume with: transfer-studio train --out {args.out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_evaluation(result.evaluation)
    print(f"run saved in {args.out}")
    return EXIT_OK


def _print_evaluation(document: dict | None) -> None:
    from engine.evaluation.format import format_metrics_table

    if not document:
        return
    for split in ("validation", "test", "data"):
        if split in document:
            print(f"\n== {split} ==")
            print(format_metrics_table(document[split], document["labels"]))


def _evaluate(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.training.evaluate_run import evaluate_run

    _print_evaluation(evaluate_run(args.run, args.data, on_event=ConsoleProgress()))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    import tempfile

    from engine.console import ConsoleProgress
    from engine.dataset.sample_data import generate_sample_dataset
    from engine.training.trainer import train

    out = args.out or Path(tempfile.mkdtemp(prefix="transfer-studio-demo-"))
    data = generate_sample_dataset(out / "data", on_event=ConsoleProgress())
    print(f"sample data: {data}")
    result = _with_cancel_on_sigint(
        lambda control: train(data, out / "run", on_event=ConsoleProgress(), control=control))
    if result.status != "completed":
        return EXIT_INTERRUPTED
    _print_evaluation(result.evaluation)
    print(f"demo run saved in {out / 'run'}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
