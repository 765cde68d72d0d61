"""Faults while training and saving: SIGKILL at random moments, a full disk, a photo corrupted after the scan.

After a SIGKILL the run folder is in one of these documented states:
- no run.json (killed while starting): ``train --resume`` says "not a run folder" (exit 2); a new start in the same
  folder works;
- run.json with status "running": ``train --resume`` continues from last.pt, or, when the run was killed before its
  first epoch ended (no last.pt yet), starts it again from epoch 0 and says so.
Either way metrics.jsonl never has a torn line, every checkpoint loads, and the resumed run ends with every epoch.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import engine.atomic
from engine.atomic import DiskFullError, append_line_atomic, write_bytes_atomic, write_json_atomic
from engine.cli import main
from engine.events import WarningEvent
from engine.training import preparation as preparation_module
from engine.training import run_folder as rf
from engine.training.checkpoints import load_checkpoint
from engine.training.config import TrainConfig
from engine.training.trainer import train

EPOCHS = 3
TRAIN_ARGS = ("--epochs", str(EPOCHS), "--batch-size", "4")
KILL_SEED = 20251126
KILL_TRIALS = 5
# Where each kill lands, as a fraction of the way from 1 s to the end of a whole run timed on this machine (so the
# kills hit start-up, scan, quick head, epochs and final evaluation whether the CPU is fast, slow or shared).
_rng = random.Random(KILL_SEED)
KILL_FRACTIONS = tuple(round(_rng.random(), 2) for _ in range(KILL_TRIALS))


def _epochs(run: Path) -> list[int]:
    return [record["epoch"] for record in rf.read_metrics(run)]


def _no_temporaries_left(run: Path) -> bool:
    return not [path.name for path in run.iterdir() if path.name.endswith(".tmp")]


def _check_killed_run(run: Path) -> str:
    """The invariants after a kill; the state found: "no run yet", "restart", "resumable" or "completed"."""
    if not (run / rf.RUN_FILE).exists():
        return "no run yet"
    status = rf.read_run(run).status  # read_run refuses a damaged run.json
    assert status in ("running", "completed")
    metrics = run / rf.METRICS_FILE
    assert not metrics.exists() or metrics.read_bytes().endswith(b"\n")  # no torn last line
    epochs = _epochs(run)  # every line parses
    assert epochs == list(range(len(epochs)))
    checkpoints = {name: load_checkpoint(run / name) for name in (rf.BEST_FILE, rf.LAST_FILE) if (run / name).exists()}
    if rf.LAST_FILE not in checkpoints:
        return "restart"
    assert epochs[-1] - checkpoints[rf.LAST_FILE]["epoch"] in (0, 1)  # metrics are appended just before last.pt
    return "completed" if status == "completed" else "resumable"


@pytest.fixture(scope="module")
def restarted_run(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The state a kill during the quick head leaves (run.json "running", no checkpoint yet, a half-written
    temporary file), made on purpose and resumed in process: the run folder and what the command printed.

    It also fills the batch-size and feature caches, as any earlier run would have: the kills below then land in
    the work itself, not in a first-run measurement (it is cached only once it has finished)."""
    run = tmp_path_factory.mktemp("restarted") / "run"
    rf.write_run_file(run, {"status": "running", "data_dir": str(small_data), "labels": ["circles", "squares"],
                            "config": TrainConfig(epochs=1, batch_size=4).to_dict(), "created": "2026-01-01",
                            "preprocessing": {"resize": 256, "crop": 224, "mean": [0.5] * 3, "std": [0.5] * 3,
                                              "interpolation": "bicubic"}})
    (run / ".last.pt.x1y2z3.tmp").write_bytes(b"half a checkpoint")
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(["train", "--out", str(run), "--resume"]) == 0
    return run, err.getvalue()


def test_a_run_killed_before_its_first_epoch_starts_again_when_resumed(restarted_run: tuple[Path, str]) -> None:
    run, printed = restarted_run
    assert "no checkpoint yet (the run stopped before its first epoch ended); starting again from epoch 0" in printed
    assert _epochs(run) == [0, 1] and rf.read_run(run).status == "completed" and _no_temporaries_left(run)


@pytest.fixture(scope="module")
def run_seconds(small_data: Path, tmp_path_factory: pytest.TempPathFactory, restarted_run: tuple[Path, str]) -> float:
    """How long one whole `train --epochs 3` takes on this machine now, start-up included (caches warm)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "engine.cli", "train", str(small_data), "--out",
                    str(tmp_path_factory.mktemp("reference") / "run"), *TRAIN_ARGS],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=600)
    return time.monotonic() - started


@pytest.mark.parametrize("fraction", KILL_FRACTIONS, ids=lambda fraction: f"SIGKILL-at-{fraction:.0%}-of-the-run")
def test_sigkill_at_a_random_moment_never_loses_the_run(fraction: float, run_seconds: float, small_data: Path,
                                                        tmp_path: Path, capsys,
                                                        error_line: Callable[[str], str]) -> None:
    """`train` killed between 1 s and the run's end; then what the user would do next finishes the run."""
    delay = 1.0 + fraction * max(0.0, run_seconds - 1.0)
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "engine.cli", "train", str(small_data), "--out", str(run),
                                *TRAIN_ARGS], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        process.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    state = _check_killed_run(run)
    with capsys.disabled():
        print(f" [killed after {delay:.1f} s of a {run_seconds:.1f} s run: {state}]", end="")
    capsys.readouterr()
    if state == "no run yet":
        assert main(["train", "--out", str(run), "--resume"]) == 2
        assert "not a run folder" in error_line(capsys.readouterr().err)
        assert main(["train", str(small_data), "--out", str(run), *TRAIN_ARGS]) == 0
    elif state != "completed":
        assert main(["train", "--out", str(run), "--resume"]) == 0
        assert ("starting again from epoch 0" in capsys.readouterr().err) == (state == "restart")
    assert _epochs(run) == list(range(EPOCHS + 1))
    assert rf.read_run(run).status == "completed" and _no_temporaries_left(run)


class FullDisk:
    """Writes of the given files fail like a full disk (half-written temporary file, ENOSPC when flushed) after
    ``after`` successful ones. Installed in engine.atomic only, as its ``tempfile`` and ``os``. Files are named by
    full path, so a write elsewhere (another test's leftover thread) cannot use up the allowance."""

    def __init__(self) -> None:
        self._allowed: dict[str, int] = {}
        self._target_of: dict[int, str] = {}
        self.refused: list[str] = []

    def fill(self, path: Path, *, after: int = 0) -> None:
        self._allowed[str(path)] = after

    def free(self) -> None:
        self._allowed.clear()

    def mkstemp(self, *, prefix: str, suffix: str, dir: Path) -> tuple[int, str]:  # noqa: A002 - tempfile's name
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
        self._target_of[fd] = str(Path(dir) / prefix[1:-1])  # write_atomic's temporary: ".<target>.<random>.tmp"
        return fd, name

    def fsync(self, fd: int) -> None:
        target = self._target_of.pop(fd, "")
        if target in self._allowed:
            if self._allowed[target] == 0:
                self.refused.append(target)
                raise OSError(errno.ENOSPC, "No space left on device")
            self._allowed[target] -= 1
        os.fsync(fd)

    def __getattr__(self, name: str) -> object:  # everything else of ``os``
        return getattr(os, name)


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> FullDisk:
    disk = FullDisk()
    monkeypatch.setattr(engine.atomic, "os", disk)
    monkeypatch.setattr(engine.atomic, "tempfile", disk)
    return disk


WRITERS = {
    "write_bytes_atomic": lambda path: write_bytes_atomic(path, b"new" * 1000),
    "write_json_atomic": lambda path: write_json_atomic(path, {"new": list(range(1000))}),
    "append_line_atomic": lambda path: append_line_atomic(path, '{"epoch": 1}'),
}


@pytest.mark.parametrize("writer", WRITERS)
def test_a_full_disk_keeps_the_previous_file_and_says_what_to_free(writer: str, full_disk: FullDisk,
                                                                   tmp_path: Path) -> None:
    target = tmp_path / "metrics.jsonl"
    target.write_bytes(b'{"epoch": 0}\n')
    full_disk.fill(target)
    with pytest.raises(DiskFullError) as caught:
        WRITERS[writer](target)
    assert target.read_bytes() == b'{"epoch": 0}\n' and _no_temporaries_left(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"{target}: disk full") and f"free space on the disk that holds {tmp_path}" in message
    assert caught.value.errno == errno.ENOSPC


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(small_data: Path, tmp_path: Path,
                                                                      full_disk: FullDisk, capsys,
                                                                      error_line: Callable[[str], str]) -> None:
    run = tmp_path / "run"
    full_disk.fill(run / rf.LAST_FILE, after=1)  # epoch 0's last.pt fits, epoch 1's does not
    assert main(["train", str(small_data), "--out", str(run), "--epochs", "1", "--batch-size", "4"]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(run / rf.LAST_FILE) in line and "disk full" in line and f"Free space on {run}" in line
    assert full_disk.refused == [str(run / rf.LAST_FILE)]
    assert load_checkpoint(run / rf.LAST_FILE)["epoch"] == 0
    assert rf.read_run(run).status == "failed" and _no_temporaries_left(run)

    full_disk.free()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert _epochs(run) == [0, 1] and rf.read_run(run).status == "completed"


def test_a_full_disk_while_updating_run_json_keeps_it_valid_and_resumable(small_data: Path, tmp_path: Path,
                                                                         full_disk: FullDisk, capsys,
                                                                         error_line: Callable[[str], str]) -> None:
    run = tmp_path / "run"
    full_disk.fill(run / rf.RUN_FILE, after=2)  # created, plan added; the final update: disk full
    assert main(["train", str(small_data), "--out", str(run), "--strategy", "feature-extract",
                 "--batch-size", "4"]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(run / rf.RUN_FILE) in line and "disk full" in line and "free space" in line
    assert rf.read_run(run).status == "running"  # the previous version, intact
    assert load_checkpoint(run / rf.LAST_FILE)["epoch"] == 0 and _no_temporaries_left(run)

    full_disk.free()
    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert _epochs(run) == [0] and rf.read_run(run).status == "completed"


def test_a_full_disk_while_exporting_keeps_the_previous_model(run_copy: Path, full_disk: FullDisk, capsys,
                                                              error_line: Callable[[str], str]) -> None:
    model = run_copy / rf.MODEL_FILE
    before = model.read_bytes()
    full_disk.fill(model)
    assert main(["export", str(run_copy)]) == 2
    line = error_line(capsys.readouterr().err)
    assert str(model) in line and "disk full" in line and "free space" in line
    assert model.read_bytes() == before and _no_temporaries_left(run_copy)


def test_a_photo_corrupted_after_the_scan_is_skipped_with_a_warning(small_data: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(shutil.copytree(small_data, tmp_path / "data"))
    victim = sorted((data / "circles").iterdir())[0]
    real_scan = preparation_module.scan_dataset

    def scan_then_corrupt(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        report = real_scan(*args, **kwargs)
        victim.write_bytes(victim.read_bytes()[:200])  # e.g. a sync client replacing it with a partial download
        return report

    monkeypatch.setattr(preparation_module, "scan_dataset", scan_then_corrupt)
    events: list[object] = []
    result = train(data, tmp_path / "run", TrainConfig(strategy="feature-extract", batch_size=4),
                   on_event=events.append)
    assert result.status == "completed"
    warnings = [e.message for e in events if isinstance(e, WarningEvent) and "changed since the scan" in e.message]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipped {victim}: truncated or corrupt image data")
