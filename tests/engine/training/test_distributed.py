"""Training in several processes (torchrun, gloo on the CPU): the collectives, a 2-process run stopped and resumed
alone, then evaluated and exported, and a killed process that stops the run instead of hanging it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.backbones.build import create_model
from engine.cli import EXIT_INTERRUPTED, EXIT_OK, main
from engine.export import PARITY_FILE
from engine.training import distributed
from engine.training import run_folder as rf
from engine.training.checkpoints import load_checkpoint

ROOT = Path(__file__).resolve().parents[3]
EPOCHS = 8  # more than run before the stop is seen (looked for every 0.5 s: an epoch or two); the resume runs the rest
DEADLINE = 300  # seconds for any one wait below: the whole run takes under a minute on 2 CPU cores


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *args]


def _wait_for(condition, what: str, process: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended ({process.returncode}) before {what}: {process.communicate()[0]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"no {what} after {DEADLINE} s")
        time.sleep(0.05)


def _epochs(run: Path) -> list[int]:
    return [record["epoch"] for record in rf.read_metrics(run)]


COLLECTIVES = '''
import json, os, sys
import torch
from engine.training import distributed
from engine.training.distributed import SharedStop
from engine.control import Cancelled

processes = distributed.start("cpu")
rank = processes.rank
mine = distributed.shard(list(range(7)))
rows = torch.tensor([[float(i), float(i) * 10] for i in mine])
merged = distributed.gather_shards(rows, 7)
decided = distributed.from_main({"rank": rank})
summed = distributed.sum_across(torch.tensor([1.0, float(rank)]))
stop = SharedStop()
if rank == 1:
    stop.cancel()  # only one process asks; check() alone must not raise anywhere
stop.check()
try:
    stop.check_together()
    stopped = False
except Cancelled:
    stopped = True
result = {"processes": [processes.world_size, processes.backend, processes.main], "mine": mine,
          "merged": merged.tolist(), "decided": decided, "summed": summed.tolist(), "stopped": stopped,
          "devices": distributed.gathered(f"device {rank}")}
with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as f:
    json.dump(result, f)
distributed.stop()
'''


def test_the_collectives_in_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "collectives.py"
    script.write_text(COLLECTIVES)
    done = subprocess.run(_torchrun(str(script), str(tmp_path)), cwd=ROOT, capture_output=True, text=True,
                          timeout=DEADLINE)
    assert done.returncode == 0, done.stderr
    results = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert [r["mine"] for r in results] == [[0, 2, 4, 6], [1, 3, 5]]  # strided shards, sizes differ by one
    for rank, result in enumerate(results):
        assert result["processes"] == [2, "gloo", rank == 0]
        assert result["merged"] == [[float(i), float(i) * 10] for i in range(7)]  # every row, in order, everywhere
        assert result["decided"] == {"rank": 0} and result["summed"] == [2.0, 1.0]
        assert result["stopped"]  # rank 1's stop, seen by both at the same check
        assert result["devices"] == ["device 0", "device 1"]


def test_alone_every_helper_is_the_identity() -> None:
    assert distributed.current() == distributed.Processes() and distributed.current().main
    assert distributed.shard([3, 4, 5]) == [3, 4, 5]
    rows = torch.arange(6.0).view(3, 2)
    assert distributed.gather_shards(rows, 3) is rows and distributed.sum_across(rows) is rows
    assert distributed.from_main("x") == "x" and distributed.gathered(1) == [1]
    error = RuntimeError("[gloo/transport/tcp/pair.cc:545] Read error: Connection reset by peer")
    assert distributed.explained(error) is error  # alone, there is no other process to blame


def test_two_processes_train_stop_then_one_resumes_evaluates_and_exports(sample_data: Path, tmp_path: Path) -> None:
    """`train --nproc 2` stopped through the stop file after its first fine-tune epoch, resumed in one process,
    evaluated and exported: the model learned (held-out test photos) and the run says how it was trained."""
    run = tmp_path / "run"
    with subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "train", str(sample_data), "--out", str(run), "--nproc", "2",
         "--epochs", str(EPOCHS), "--early-stopping", "0", "--test-split", "0.2", "--device", "cpu"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as launcher:
        _wait_for(lambda: len(_epochs(run)) >= 2, "fine-tune epoch", launcher)  # epoch 0 is the quick head
        rf.request_stop(run)
        output = launcher.communicate(timeout=DEADLINE)[0]
    assert launcher.returncode == EXIT_INTERRUPTED, output
    assert f"stopped; resume with: transfer-studio train --out {run} --resume" in output
    stopped = rf.read_run(run)
    assert stopped.status == "cancelled"
    assert stopped.raw["processes"] == {"world_size": 2, "backend": "gloo", "devices": ["CPU (1 threads)"] * 2}
    trained_together = _epochs(run)
    assert 2 <= len(trained_together) < EPOCHS + 1 and trained_together == list(range(len(trained_together)))
    assert (run / rf.STOP_FILE).exists()  # spent: the resume below removes it before it watches for a new one

    assert main(["train", "--out", str(run), "--resume"]) == EXIT_OK
    resumed = rf.read_run(run)
    assert resumed.status == "completed" and resumed.raw["processes"]["world_size"] == 1
    assert not (run / rf.STOP_FILE).exists()
    assert _epochs(run) == list(range(EPOCHS + 1))  # the epochs of both sessions, none twice, none lost
    assert main(["evaluate", str(run)]) == EXIT_OK
    evaluation = json.loads((run / rf.EVALUATION_FILE).read_text())
    assert len(evaluation["test"]["predictions"]) >= 15
    assert evaluation["test"]["accuracy"] >= 0.8  # 3 classes: a third by chance
    assert main(["export", str(run)]) == EXIT_OK
    assert json.loads((run / PARITY_FILE).read_text())["passed"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the process to kill in /proc")
def test_a_killed_process_stops_the_others_with_the_last_checkpoint_intact(small_data: Path, tmp_path: Path) -> None:
    """SIGKILL to rank 1 mid-training: rank 0 fails its next collective at once (not after a timeout), says why
    in run.json, and leaves last.pt loadable; the launcher ends within seconds, not the 120 s timeout."""
    run = tmp_path / "run"
    with subprocess.Popen(
        _torchrun("-m", "engine.cli", "train", str(small_data), "--out", str(run), "--epochs", "1000",
                  "--early-stopping", "0", "--batch-size", "4", "--device", "cpu"),
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    ) as launcher:
        _wait_for(lambda: len(_epochs(run)) >= 2, "fine-tune epoch", launcher)
        victim = next(pid for pid in _children(launcher.pid) if _environment(pid).get("RANK") == "1")
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        output = launcher.communicate(timeout=DEADLINE)[0]
        ended = time.monotonic() - killed
    assert launcher.returncode != 0
    assert ended < 60, f"took {ended:.0f} s to stop"
    info = rf.read_run(run)
    assert info.status == "failed" and "another training process stopped answering" in info.raw["error"]
    assert "resume with the same command and --resume" in output
    last = load_checkpoint(run / rf.LAST_FILE, "cpu")
    model = create_model(info.config.backbone, len(info.labels), pretrained=False)
    model.load_state_dict(last["model"])  # whole: written atomically, never half
    assert last["epoch"] >= 1


def test_distill_is_refused_under_torchrun(small_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["distill", "--teacher", str(tmp_path / "teacher"), "--out", str(tmp_path / "student")]) == 2
    assert "train --nproc N is the command" in capsys.readouterr().err


def test_nproc_is_refused_where_torchrun_cannot_start(small_data: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert main(["train", str(small_data), "--out", str(tmp_path / "run"), "--nproc", "2"]) == 2
    assert "app bundle cannot" in capsys.readouterr().err


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux /proc: the field after the parenthesised name is the
    state, then the parent's pid)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def _environment(pid: int) -> dict[str, str]:
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    return dict(entry.decode(errors="replace").split("=", 1) for entry in entries if b"=" in entry)
