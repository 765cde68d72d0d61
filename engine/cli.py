"""The headless commands of ``transfer-studio`` (``desktop.launcher`` opens the app when there are none).

Exit codes: 0 success, 1 export failed its checks, 2 bad input (one line naming the path and the fix), 130
interrupted (run saved). Only the engine's bad-input errors become exit 2: anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from engine.errors import BadInputError
from engine.prediction_csv import predictions_csv
from engine.run_files import RUN_FILE

EXIT_OK, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 2, 130
# The exported model failed onnx.checker or the parity check (nothing written), or only its int8 step failed
# (the float model written; the message says so).
EXIT_EXPORT_FAILED = 1
EXIT_FAILED = 1  # a run that failed for a reason the message gives (another training process died)
PREDICT_HELP = "classify images with an exported model (no PyTorch needed)"
_DATA_HELP = "dataset folder: one sub-folder of images per class, or train/, val/ and test/ folders of them"
DESCRIPTION = """\
Transfer Studio turns a folder of photos (one sub-folder per class) into an image classifier: it fine-tunes a
pretrained network, evaluates it on photos it did not train on, exports it to ONNX and classifies new photos
offline.

Run transfer-studio with no arguments to open the app's window; give a command to work in the terminal.
Each command explains its options: transfer-studio COMMAND --help."""
EXAMPLES = """\
examples:
  transfer-studio sample-data ~/ts-sample                  write a generated, photo-like 4-class dataset
  transfer-studio scan ~/ts-sample                         classes, splits, skipped files and why
  transfer-studio doctor ~/ts-sample                       near-duplicates, likely wrong labels, off-topic photos
  transfer-studio backbones                                what can be trained, and where the weights are
  transfer-studio train ~/ts-sample --out ~/ts-run         train a classifier (Ctrl-C stops it, resumable)
  transfer-studio lr-find ~/ts-sample                      suggest a learning rate
  transfer-studio distill --teacher ~/ts-run --out ~/kd    a Lite0 student of a trained run, compared with it
  transfer-studio evaluate ~/ts-run                        metrics table and confusion matrix
  transfer-studio export ~/ts-run --quantize int8          model.onnx (and model.int8.onnx), checked
  transfer-studio ensemble ~/ts-run ~/ts-run2 --out ~/ens  one model from runs of one split (--export)
  transfer-studio predict ~/ts-run/model.onnx ~/photos     classify photos (PyTorch not needed)
  transfer-studio demo                                     all of the above on generated data

exit codes: 0 success, 1 export failed its checks, 2 bad input (one line naming the path and the fix),
130 stopped with Ctrl-C (a stopped training is saved: continue it with transfer-studio train --out RUN --resume)"""


class UsageError(BadInputError):
    """Bad input detected by the CLI itself."""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default after its help, except where there is nothing to show (None, or a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["predict"]:  # its own parser: building every command's (training's imports included) costs 10 ms
        return predict_main(argv[1:])
    args = _parser().parse_args(argv)
    args.argv = argv  # what `train --nproc N` passes on to the processes it starts
    return run_command(args)


def predict_main(argv: Sequence[str], prog: str = "transfer-studio predict") -> int:
    """The ``predict`` command on its own parser: never imports torch (the light predictor app's CLI)."""
    parser = argparse.ArgumentParser(prog=prog, description=PREDICT_HELP, formatter_class=_HelpFormatter)
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


# The engine's bad-input errors that cannot derive from engine.errors.BadInputError (a ValueError): an OSError,
# RuntimeErrors that callers catch as such, and the loader's own base.
_BAD_INPUT_ERRORS = (
    ("engine.atomic", "DiskFullError"),
    ("engine.backbones.weights", "WeightsUnavailableError"),
    ("engine.images", "ImageLoadError"),
    ("engine.training.checkpoints", "CheckpointError"),
)


def _is_bad_input(exc: Exception) -> bool:
    """Only the engine's own bad-input errors: a ValueError from inside torch or NumPy is a bug, not bad input."""
    # An engine error can only come from a module that was loaded; looking them up in sys.modules instead of
    # importing them keeps this torch-free (the light predictor app has no torch at all).
    engine_errors = tuple(getattr(sys.modules[module], name) for module, name in _BAD_INPUT_ERRORS
                          if module in sys.modules)
    return isinstance(exc, (BadInputError, *engine_errors))


def _parser() -> argparse.ArgumentParser:
    from engine import __version__
    from engine.backbones.registry import DEFAULT_BACKBONE
    from engine.training.config import DEVICES

    parser = argparse.ArgumentParser(prog="transfer-studio", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"transfer-studio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)

    scan = command("scan", "scan and validate a dataset folder: classes, splits, skipped files and why")
    scan.add_argument("data", type=Path, help=_DATA_HELP)
    scan.add_argument("--json", action="store_true", help="print the scan report as JSON")
    _add_split_options(scan, val_split=0.2, test_split=0.0)
    scan.add_argument("--seed", type=int, default=0, help="seed of the split")
    scan.set_defaults(handler=_scan)

    doctor = command("doctor", "find near-duplicate photos (and leaks across splits), likely wrong labels and "
                               "off-topic photos in a dataset folder")
    doctor.add_argument("data", type=Path, help=_DATA_HELP)
    doctor.add_argument("--json", action="store_true",
                        help="the report as JSON (its schema: README, 'Dataset doctor') instead of a table")
    doctor.add_argument("--backbone", default=DEFAULT_BACKBONE,
                        help="pretrained network whose features compare the photos (list them with: "
                             "transfer-studio backbones)")
    doctor.add_argument("--out", type=Path, default=None, help="write the report to this file instead of stdout")
    doctor.set_defaults(handler=_doctor)

    sample = command("sample-data", "write the built-in generated sample dataset (photo-like shapes)")
    sample.add_argument("out", type=Path, help="folder to write it into (one sub-folder per class)")
    sample.add_argument("--classes", type=int, default=4, help="number of classes")
    sample.add_argument("--per-class", type=int, default=40, help="images per class")
    sample.add_argument("--seed", type=int, default=0, help="seed of the generated images")
    sample.set_defaults(handler=_sample_data)

    backbones = command("backbones", "list the pretrained backbones: size, input and where their weights are")
    backbones.set_defaults(handler=_backbones)

    train = command("train", "train a classifier on a dataset folder (Ctrl-C stops it; --resume continues)")
    train.add_argument("data", type=Path, nargs="?", help=f"{_DATA_HELP}; not needed with --resume")
    train.add_argument("--out", type=Path, required=True, help="run folder to create (or to continue with --resume)")
    _add_train_options(train)
    _add_split_from(train)
    train.add_argument("--resume", action="store_true", help="continue the stopped run in --out")
    train.add_argument("--nproc", type=int, default=1, metavar="N",
                       help="train in N processes on this machine, through torchrun and DistributedDataParallel "
                            "(gloo on CPUs; NCCL and one GPU each with CUDA); across machines start torchrun "
                            "yourself (README: Beyond one machine)")
    train.set_defaults(handler=_train)

    distill = command("distill", "train a small student on a bigger teacher's (or ensemble's) softened "
                                 "probabilities, then compare it with the teacher and the same student trained "
                                 "without one (Ctrl-C stops it; --resume continues)")
    distill.add_argument("--teacher", type=Path, nargs="+", action="extend", default=None, metavar="RUN",
                         help="trained run(s) or ensemble(s) with the data's classes; the student trains on the "
                              "first one's data and split (their probabilities are averaged)")
    distill.add_argument("--out", type=Path, required=True,
                         help="the student's run folder; the student without a teacher goes to <out>-without-teacher")
    _add_distill_options(distill)
    distill.add_argument("--no-baseline", action="store_true",
                         help="skip training the same student without a teacher (its row of the table)")
    _add_train_options(distill, backbone_option="--student")
    _add_split_from(distill)
    distill.add_argument("--resume", action="store_true",
                         help="continue the stopped distillation in --out (its options come from its run)")
    distill.set_defaults(handler=_distill)

    lr_find = command("lr-find", "sweep learning rates on a dataset and suggest one")
    lr_find.add_argument("data", type=Path, help=_DATA_HELP)
    lr_find.add_argument("--out", type=Path, default=Path("."), help="folder for lr_find.json and lr_find.png")
    lr_find.add_argument("--steps", type=int, default=200, help="learning rates tried, one training step each")
    _add_train_options(lr_find)
    lr_find.set_defaults(handler=_lr_find)

    evaluate = command("evaluate", "re-evaluate a trained run: metrics table, confusion matrix and verdict")
    evaluate.add_argument("run", type=Path, help="run folder written by train")
    evaluate.add_argument("--data", type=Path, help="evaluate on every image of another folder with the same "
                                                    "classes instead (evaluation.json is left as it is)")
    evaluate.set_defaults(handler=_evaluate)

    export = command("export", "export a trained run to ONNX, checked against PyTorch")
    export.add_argument("run", type=Path, help="run folder written by train")
    export.add_argument("--out", type=Path, default=None, help="the .onnx file to write (default: RUN/model.onnx)")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset, 18 or later (default: 18)")
    # engine.export.QUANTIZE_CHOICES (a test keeps them equal): importing it here would load torch for any --help
    export.add_argument("--quantize", choices=("int8",), default=None,
                        help="also write a smaller int8 model (<out>.int8.onnx) with its own parity figures")
    export.set_defaults(handler=_export)

    ensemble = command("ensemble", "combine trained runs of one dataset into one model (the weighted mean of their "
                                   "calibrated probabilities), evaluated on the split they share")
    ensemble.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                          help="two or more completed runs with the same classes and the same validation and test "
                               "photos (train the others with --split-from the first)")
    ensemble.add_argument("--out", type=Path, required=True, help="the ensemble's run folder to create")
    # engine.ensemble.WEIGHTINGS (a test keeps them equal): importing it here would load torch for any --help
    ensemble.add_argument("--weights", choices=("validation", "equal"), default="validation",
                          help="validation (default): each member's weight fitted on the validation photos, so a "
                               "weaker member counts less (the validation figures are then slightly optimistic; "
                               "test is the honest one); equal: a plain mean")
    ensemble.add_argument("--export", action="store_true",
                          help="also export it to OUT/model.onnx, checked against PyTorch (or later: transfer-studio "
                               "export OUT)")
    ensemble.add_argument("--device", choices=DEVICES, default="auto",
                          help="where the members run for the evaluation; auto: CUDA, else MPS, else CPU")
    ensemble.set_defaults(handler=_ensemble)

    add_predict_arguments(command("predict", PREDICT_HELP))

    demo = command("demo", "generate sample data, train, evaluate, export and predict, in one go")
    demo.add_argument("--out", type=Path, default=None,
                      help="folder for the data and the run (default: a new temporary folder)")
    demo.set_defaults(handler=_demo)
    return parser


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The predict command's arguments and handler (torch-free: shared by this CLI and the predictor app's)."""
    from engine.predict import DEVICES

    parser.add_argument("model", type=Path, help="an .onnx file written by 'transfer-studio export'")
    parser.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    parser.add_argument("--top-k", type=int, default=3, help="most likely labels shown per image")
    parser.add_argument("--format", choices=tuple(_PREDICTION_FORMATS), default="table",
                        help="table for reading, csv or json for other programs")
    parser.add_argument("--output", type=Path, default=None, help="write the results here instead of stdout")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="images per progress step (and per GPU batch; on the CPU each core runs 2 at a time)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: CUDA when onnxruntime can use it, else the CPU")
    parser.add_argument("--min-confidence", type=float, default=None,
                        help="mark predictions below this confidence unsure, instead of the model's own threshold "
                             "(0: never unsure)")
    parser.add_argument("--heatmaps", type=Path, default=None, metavar="DIR",
                        help="also write each photo with its class activation map over it, DIR/<photo name>.png "
                             "(an existing file is never replaced: ' (2)', ' (3)'... are added)")
    parser.add_argument("--sort-into", type=Path, default=None, metavar="DIR",
                        help="also copy each photo into DIR/<class>/ (unsure ones into DIR/_unsure/), with "
                             "DIR/sort-manifest.json; the originals stay and nothing is overwritten")
    parser.set_defaults(handler=_predict)


def _add_split_options(parser: argparse.ArgumentParser, *, val_split: float, test_split: float) -> None:
    parser.add_argument("--val-split", type=float, default=val_split,
                        help="fraction of each class held out for validation (unless the data has a val/ folder)")
    parser.add_argument("--test-split", type=float, default=test_split,
                        help="fraction of each class held out for a final test (unless the data has a test/ folder)")


def _add_distill_options(parser: argparse.ArgumentParser) -> None:
    from engine.training.config import TrainConfig

    d = TrainConfig()
    parser.add_argument("--alpha", type=float, default=d.distill_alpha,
                        help="the teacher's share of the loss (the labels' is 1 - alpha)")
    parser.add_argument("--temperature", type=float, default=d.distill_temperature,
                        help="softens the probabilities of teacher and student alike in the teacher's term")


def _add_split_from(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split-from", type=Path, default=None, metavar="RUN",
                        help="train, validate and test on the split recorded in this run instead of splitting anew "
                             "(--val-split and --test-split then do nothing): runs that share one compare fairly "
                             "and can be ensembled")


def _add_train_options(parser: argparse.ArgumentParser, *, backbone_option: str = "--backbone") -> None:
    from engine.dataset.report import IMBALANCE_WARNING_RATIO
    from engine.training import config

    d = config.TrainConfig()
    parser.add_argument(backbone_option, dest="backbone", default=d.backbone,
                        help="pretrained network to start from (list them with: transfer-studio backbones)")
    parser.add_argument("--strategy", choices=config.STRATEGIES, default=d.strategy,
                        help="feature-extract: train only the head; fine-tune: the head, then the top stages; "
                             "full: every stage")
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help="epochs after the quick head; 0: chosen from how well the quick head fits")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help="images per training step; 0: chosen for the device (16 on a CPU, 128 on a GPU)")
    parser.add_argument("--lr", type=float, default=d.lr,
                        help="learning rate of the head for a batch of 16, scaled by sqrt(batch size / 16) (the "
                             "unfrozen stages use a tenth of it)")
    _add_split_options(parser, val_split=d.val_split, test_split=d.test_split)
    parser.add_argument("--augment", choices=config.AUGMENT_PRESETS, default=d.augment,
                        help="how strongly the training photos are varied (crops, flips, colour)")
    parser.add_argument("--augment-views", type=int, default=d.augment_views,
                        help="augmented views per photo computed once and cycled through the fine-tune epochs; "
                             "0: chosen by the plan")
    parser.add_argument("--early-stopping", type=int, default=d.early_stopping,
                        help="stop after this many epochs without validation improvement; 0: never, -1: chosen "
                             "by the plan")
    parser.add_argument("--seed", type=int, default=d.seed, help="seed of the split, the head and the augmentation")
    parser.add_argument("--device", choices=config.DEVICES, default=d.device, help="auto: CUDA, else MPS, else CPU")
    parser.add_argument("--weights", type=Path, default=None,
                        help="local backbone weights (.pth/.safetensors) instead of the bundled or downloaded ones")
    parser.add_argument("--optimizer", choices=config.OPTIMIZERS, default=d.optimizer,
                        help="optimizer of the fine-tune (sgd: with momentum 0.9)")
    parser.add_argument("--unfreeze-stages", type=int, default=d.unfreeze_stages,
                        help="fine-tune: top stages to train; 0: 2 when the quick head fits the data, the top two "
                             "thirds when it does not")
    parser.add_argument("--compile", action="store_true",
                        help=argparse.SUPPRESS if config.compile_unavailable() else
                        "torch.compile the trained stages (pays off on GPUs and long runs; its first call takes "
                        "a minute or more)")
    parser.add_argument("--class-weighting", choices=config.CLASS_WEIGHTING, default=d.class_weighting,
                        help="weight the loss by inverse class frequency; auto: when the largest class has more "
                             f"than {IMBALANCE_WARNING_RATIO:g}x the images of the smallest")
    parser.add_argument("--batchnorm", choices=config.BATCHNORM_MODES, default=d.batchnorm,
                        help="BatchNorm statistics of the trained stages: keep ImageNet's (frozen, measured better "
                             "on small data) or update them from the batches (train)")


def _scan(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.dataset.report import format_scan_report
    from engine.dataset.scan import scan_dataset

    report = scan_dataset(args.data, val_fraction=args.val_split, test_fraction=args.test_split, seed=args.seed,
                          on_event=ConsoleProgress())
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_scan_report(report))
    return EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from engine.atomic import write_bytes_atomic
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.dataset.doctor import format_doctor_report
    from engine.training.config import TrainConfig
    from engine.training.doctor_run import diagnose_folder

    config = TrainConfig(backbone=args.backbone)  # the split of a default train: its leaks are the ones flagged
    try:
        report = _with_cancel_on_sigint(lambda control: diagnose_folder(
            args.data, config, on_event=ConsoleProgress(), control=control))
    except Cancelled:
        print("doctor stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    text = (json.dumps(report.to_dict(), indent=2, ensure_ascii=False) if args.json
            else format_doctor_report(report)) + "\n"
    if args.out:
        write_bytes_atomic(args.out, text.encode("utf-8"))
        print(f"report written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
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
    """First Ctrl-C asks the run to stop at the next batch (saving a resumable run); a second one aborts.

    In a process torchrun started, SIGINT and SIGTERM (what torchrun sends its processes on Ctrl-C, or when one of
    them died) only ask for the stop, which every process then makes at the same batch; torchrun kills what has
    not ended 30 s later."""
    from engine.control import RunControl

    distributed = _torchrun_rank() is not None
    if distributed:
        from engine.training.distributed import SharedStop

        control: RunControl = SharedStop()
    else:
        control = RunControl()

    def on_signal(_signum: int, _frame: object) -> None:
        if control.cancelled and not distributed:
            raise KeyboardInterrupt
        if not control.cancelled and _torchrun_rank() in (None, "0"):
            print(_STOPPING + ("" if distributed else _AGAIN_TO_ABORT) + "...", file=sys.stderr)
        control.cancel()

    handled = (signal.SIGINT, signal.SIGTERM) if distributed else (signal.SIGINT,)
    previous = {signum: signal.signal(signum, on_signal) for signum in handled}
    try:
        return run(control)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


_STOPPING, _AGAIN_TO_ABORT = "\nstopping after this batch", " (Ctrl-C again to abort)"


def _torchrun_rank() -> str | None:
    """This process's RANK when torchrun started it as one of several, else None."""
    return os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None


def _launch_torchrun(processes: int, argv: Sequence[str], run_dir: Path) -> int:
    """``train ... --nproc N``: the same command in N processes under torchrun on this machine. torchrun gets
    its own process group; a first Ctrl-C here writes the run's stop file, which every process obeys at the same
    batch, and a second one (or one before the run folder exists) goes to torchrun, which stops them at once."""
    if getattr(sys, "frozen", False):
        raise UsageError("--nproc starts Python processes through torchrun, which the app bundle cannot do; install "
                         "the engine with pip (README) and run transfer-studio train --nproc there")
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            rest.append(arg)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "engine.cli", *rest]
    child = subprocess.Popen(command, start_new_session=True)
    asked = []

    def forward(signum: int, _frame: object) -> None:
        from engine.training.run_folder import request_stop

        if not asked and (run_dir / RUN_FILE).is_file():
            asked.append(signum)
            request_stop(run_dir)
            print(_STOPPING + _AGAIN_TO_ABORT + "...", file=sys.stderr)
        else:
            child.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - a TrainConfig (imported lazily: torch-free parser)
    """The options as a TrainConfig (whose validation raises BadInputError, shown as bad input)."""
    from engine.training.config import TrainConfig, compile_unavailable

    if args.compile and (reason := compile_unavailable()):
        raise UsageError(reason)
    return TrainConfig(
        backbone=args.backbone, strategy=args.strategy, epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr, val_split=args.val_split, test_split=args.test_split, augment=args.augment,
        augment_views=args.augment_views, early_stopping=args.early_stopping, seed=args.seed, device=args.device,
        weights_file=str(args.weights) if args.weights else None, optimizer=args.optimizer,
        unfreeze_stages=args.unfreeze_stages, class_weighting=args.class_weighting, compile=args.compile,
        batchnorm=args.batchnorm,
        split_from=str(args.split_from.resolve()) if getattr(args, "split_from", None) else "",  # train, distill
    )


def _train(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise UsageError("--nproc must be 1 or more")
    if args.nproc > 1 and _torchrun_rank() is None:
        code = _launch_torchrun(args.nproc, args.argv, args.out)
        run_file = args.out / RUN_FILE
        stopped = code == EXIT_OK and run_file.is_file() and json.loads(
            run_file.read_text(encoding="utf-8")).get("status") == "cancelled"
        return EXIT_INTERRUPTED if stopped else code
    from engine.console import ConsoleProgress
    from engine.training.distributed import DistributedError, stop
    from engine.training.trainer import train

    config = None
    if not args.resume:
        if args.data is None:
            raise UsageError("a dataset folder is required (or --resume with --out pointing at a stopped run)")
        config = _train_config(args)
    ended = False
    try:
        result = _with_cancel_on_sigint(
            lambda control: train(args.data, args.out, config, resume=args.resume, on_event=ConsoleProgress(),
                                  control=control))
        ended = True
    except DistributedError as exc:
        print(f"error (rank {_torchrun_rank()}): {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        stop(together=ended)
    if _torchrun_rank() not in (None, "0"):  # rank 0 reports for every process
        return EXIT_OK
    if result.status == "cancelled":
        print(f"stopped; resume with: transfer-studio train --out {args.out} --resume", file=sys.stderr)
        # Under torchrun a stop is a clean end (torchrun reports any other code as a failure, with tracebacks);
        # `--nproc` reads the status and exits 130 itself.
        return EXIT_OK if _torchrun_rank() is not None else EXIT_INTERRUPTED
    _print_evaluation(result.evaluation)
    print(f"run saved in {args.out}")
    return EXIT_OK


def _distill(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine.console import ConsoleProgress
    from engine.export import ExportError
    from engine.tradeoff_table import DISTILLATION_FILE, format_tradeoff_table
    from engine.training import run_folder as rf
    from engine.training.distillation import distill

    if _torchrun_rank() is not None:
        raise UsageError("distill runs in one process (it trains, exports and times several models in turn): run it "
                         "without torchrun; train --nproc N is the command that trains in several")
    if args.resume:
        config = rf.read_run(args.out).config
        if not config.teachers:
            raise UsageError(f"{args.out}: not a distillation (its run has no teacher); continue it with "
                             f"transfer-studio train --out {args.out} --resume")
        teachers = config.teachers
    else:
        if not args.teacher:
            raise UsageError("--teacher RUN is required (or --resume with --out pointing at a stopped distillation)")
        if (args.out / rf.RUN_FILE).exists():
            raise UsageError(f"{args.out}: already holds a run; continue it with --resume or choose another --out")
        config = replace(_train_config(args), distill_alpha=args.alpha, distill_temperature=args.temperature)
        teachers = args.teacher
    try:
        result = _with_cancel_on_sigint(lambda control: distill(
            teachers, args.out, config, baseline=not args.no_baseline, on_event=ConsoleProgress(), control=control))
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT_FAILED
    if result.status == "cancelled":
        print(f"stopped; resume with: transfer-studio distill --out {args.out} --resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(format_tradeoff_table(result.rows))
    print(f"student saved in {args.out}; the table in {args.out / DISTILLATION_FILE}")
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
    from engine.evaluation.format import format_calibration, format_metrics_table, format_verdict

    if not document:
        return
    for split in ("validation", "test"):
        if split in document:
            print(f"\n== {split} ==")
            print(format_metrics_table(document[split], document["labels"]))
            if verdict := format_verdict(document[split], split):
                print(f"\n{verdict}")
    if calibration := format_calibration(document):
        print(f"\n== calibration ==\n{calibration}")


def _evaluate(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.training.evaluate_run import evaluate_run

    _print_evaluation(evaluate_run(args.run, args.data, on_event=ConsoleProgress()))
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    return _export_run(args.run, args.out, opset=args.opset, quantize=args.quantize)


def _export_run(run: Path, out: Path | None = None, *, opset: int | None = None, quantize: str | None = None) -> int:
    """Export ``run`` with progress on the console, and say how it went; the exit code (export, ensemble)."""
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.export import ExportError, QuantizationError, export_onnx

    try:
        result = _with_cancel_on_sigint(lambda control: export_onnx(
            run, out, opset=opset, quantize=quantize, on_event=ConsoleProgress(), control=control))
    except QuantizationError as exc:
        _print_export(exc.float_export)
        print(f"int8 export failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT_FAILED
    except ExportError as exc:
        print(f"export failed: {exc}", file=sys.stderr)
        return EXIT_EXPORT_FAILED
    except Cancelled:
        print("export stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_export(result)
    return EXIT_OK


def _ensemble(args: argparse.Namespace) -> int:
    from engine.console import ConsoleProgress
    from engine.control import Cancelled
    from engine.ensemble import build_ensemble

    try:
        result = _with_cancel_on_sigint(lambda control: build_ensemble(
            args.runs, args.out, weighting=args.weights, device=args.device, on_event=ConsoleProgress(),
            control=control))
    except Cancelled:
        print(f"ensemble stopped; {args.out} holds an unfinished ensemble: build it again into another folder",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_evaluation(result.evaluation)

    def accuracies(validation: float, test: float | None) -> str:
        return f"validation accuracy {validation:.4f}, " + ("no test split" if test is None else f"test {test:.4f}")

    evaluation = result.evaluation
    print("\n== the ensemble and its members (each alone, as its own evaluation.json says) ==")
    print(f"ensemble: {accuracies(evaluation['validation']['accuracy'], evaluation.get('test', {}).get('accuracy'))}")
    for number, member in enumerate(result.members, 1):
        print(f"member {number}: {accuracies(member.validation_accuracy, member.test_accuracy)}, weight "
              f"{member.weight:.2f} ({member.backbone}, {member.run})")
    print(f"ensemble saved in {args.out}")
    return _export_run(args.out) if args.export else EXIT_OK


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
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise UsageError("--min-confidence must be from 0 to 1 (0: never unsure)")
    predictor = Predictor(args.model, device=args.device, min_confidence=args.min_confidence)
    if args.heatmaps is not None and args.heatmaps.exists() and not args.heatmaps.is_dir():
        raise UsageError(f"--heatmaps {args.heatmaps}: is a file; give a folder for the heatmap images")
    if args.sort_into is not None and args.sort_into.exists() and not args.sort_into.is_dir():
        raise UsageError(f"--sort-into {args.sort_into}: is a file; give a folder to copy the photos into")
    files, missing = expand_inputs(args.paths)
    if not files:
        raise UsageError("no images to predict: " + "; ".join(f"{e.path}: {e.error}" for e in missing))
    started = time.perf_counter()
    try:
        predictions = _with_cancel_on_sigint(lambda control: predictor.predict_paths(
            files, top_k=args.top_k, batch_size=args.batch_size, on_event=ConsoleProgress(), control=control,
            heatmaps=args.heatmaps is not None))
    except Cancelled:
        print("prediction stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    seconds = time.perf_counter() - started
    rows = predictions + missing
    top_k = min(args.top_k, len(predictor.info.labels))
    text = _PREDICTION_FORMATS[args.format](rows, top_k)
    if args.output:
        write_bytes_atomic(args.output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    if args.heatmaps is not None:
        written = _write_heatmaps(predictions, predictor.info.preprocessing, args.heatmaps)
        print(f"{written} heatmaps in {args.heatmaps}", file=sys.stderr)
    if args.sort_into is not None:
        from engine.sort_into import sort_into_folders

        sorted_ = sort_into_folders(predictions, args.sort_into, on_event=ConsoleProgress())
        print(f"{sorted_.copied} photos copied into class folders in {args.sort_into} ({sorted_.unsure} unsure); "
              f"{len(sorted_.failed)} not copied; manifest {sorted_.manifest}", file=sys.stderr)
    failed = sum(p.error is not None for p in rows)
    print(f"{len(files)} images in {seconds:.1f} s ({len(files) / max(seconds, 1e-9):.0f} img/s, "
          f"{predictor.provider}); {failed} could not be read" + (f"; results in {args.output}" if args.output else ""),
          file=sys.stderr)
    return EXIT_OK


def _write_heatmaps(predictions: list, preprocessing, folder: Path) -> int:  # noqa: ANN001 - a Preprocessing
    """One overlay PNG per prediction with a heatmap; a photo that can no longer be read is reported and skipped."""
    import numpy as np

    from engine.console import ConsoleProgress
    from engine.events import Progress
    from engine.heatmaps import evidence_note, write_overlay
    from engine.images import ImageLoadError

    progress = ConsoleProgress()
    written = 0
    for done, prediction in enumerate(predictions, 1):
        if prediction.heatmap is not None:
            try:
                cam = np.asarray(prediction.heatmap, dtype=np.float32)
                write_overlay(prediction.path, cam, preprocessing, folder)
                written += 1
                if note := evidence_note(cam, prediction.label):
                    print(f"note: {prediction.path}: {note}", file=sys.stderr)
            except ImageLoadError as exc:
                print(f"warning: no heatmap for {exc}", file=sys.stderr)
        progress(Progress("writing heatmaps", done, len(predictions)))
    return written


def _prediction_table(predictions: list, top_k: int) -> str:
    """file, top label (with "(unsure)" below the threshold), confidence and the runners-up; unreadable files show
    their error instead."""
    width = min(60, max([len("file"), *(len(p.path) for p in predictions)]))
    label_width = max([len("label"), *(len(_shown_label(p)) for p in predictions if p.label)])
    lines = [f"{'file':<{width}}  {'label':<{label_width}}  confidence  runners-up"]
    for p in predictions:
        if p.error is not None:
            lines.append(f"{p.path:<{width}}  error: {p.error}")
            continue
        runners_up = ", ".join(f"{label} {prob:.1%}" for label, prob in p.top_k[1:top_k])
        lines.append(f"{p.path:<{width}}  {_shown_label(p):<{label_width}}  {p.confidence:>10.1%}  {runners_up}"
                     .rstrip())
    return "\n".join(lines) + "\n"


def _shown_label(prediction) -> str:  # noqa: ANN001 - an engine.predict.Prediction (imported lazily)
    return f"{prediction.label} (unsure)" if prediction.unsure else prediction.label


def _prediction_json(predictions: list, _top_k: int) -> str:
    return json.dumps([p.to_dict() for p in predictions], indent=2, ensure_ascii=False) + "\n"


_PREDICTION_FORMATS: dict[str, Callable[[list, int], str]] = {
    "table": _prediction_table, "csv": predictions_csv, "json": _prediction_json}


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
