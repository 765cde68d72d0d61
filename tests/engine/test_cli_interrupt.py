"""Ctrl-C during `transfer-studio train`, in a real process: exit 130 and a run that --resume finishes."""

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import EXIT_INTERRUPTED, main
from engine.training import run_folder as rf

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 12  # far more than pass between the first epoch's line and the signal's arrival


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent to a child process on Windows")
def test_ctrl_c_exits_130_and_leaves_a_resumable_run(small_data: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", str(small_data), "--out", str(run), "--epochs", str(EPOCHS),
         "--batch-size", "4", "--early-stopping", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # one line per finished epoch (not a terminal: no progress bar)
            if re.match(r"epoch +1 \[", line):
                break
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and f"resume with: transfer-studio train --out {run} --resume" in err
    assert rf.read_run(run).status == "cancelled"
    stopped_at = rf.read_metrics(run)[-1]["epoch"]
    assert 1 <= stopped_at < EPOCHS

    assert main(["train", "--out", str(run), "--resume"]) == 0
    assert f"run saved in {run}" in capsys.readouterr().out
    assert rf.read_run(run).status == "completed"
    assert [m["epoch"] for m in rf.read_metrics(run)] == list(range(EPOCHS + 1))
