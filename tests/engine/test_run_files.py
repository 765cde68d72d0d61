"""Whether the process a "running" run names is still there: how a killed run is told from one that trains."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from engine.run_files import RUN_FILE, this_process, training_process_gone


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_training_records_its_process(trained_run: Path) -> None:
    """The session's run was trained in this very process."""
    recorded = json.loads((trained_run / RUN_FILE).read_text(encoding="utf-8"))["process"]
    assert recorded == this_process() == {"host": socket.gethostname(), "pid": os.getpid()}


@pytest.mark.skipif(os.name == "nt", reason="on Windows it cannot tell, and says False")
def test_a_running_run_whose_process_is_gone(dead_pid: int) -> None:
    here = socket.gethostname()
    assert training_process_gone({"status": "running", "process": {"host": here, "pid": dead_pid}})
    assert not training_process_gone({"status": "running", "process": {"host": here, "pid": os.getpid()}})


@pytest.mark.parametrize("run", [
    {"status": "completed", "process": {"host": socket.gethostname(), "pid": -1}},  # not running: nothing to ask
    {"status": "running", "process": {"host": "another-machine", "pid": 1}},  # cannot look at another machine
    {"status": "running"},  # a run from before runs recorded their process
    {"status": "running", "process": {"host": socket.gethostname(), "pid": "12"}},
    {"status": "running", "process": {"host": socket.gethostname(), "pid": True}},
    {"status": "running", "process": None},
])
def test_it_says_gone_only_when_it_can_tell(run: dict, dead_pid: int) -> None:
    if run.get("process") and run["process"].get("pid") == -1:
        run["process"]["pid"] = dead_pid
    assert not training_process_gone(run)
