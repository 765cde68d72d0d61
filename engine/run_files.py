"""The names of a run folder's files, in a module free of torch: the torch-free readers (run summaries, speed
figures) and ``engine.training.run_folder``, which writes them, share one definition; and whether the process that
a "running" run names is still there."""

from __future__ import annotations

import os
import socket
from typing import Any

RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
EVALUATION_FILE = "evaluation.json"
MODEL_FILE = "model.onnx"  # where export writes by default


def this_process() -> dict[str, Any]:
    """What run.json records of the process training it (``"process"``), so that a reader can tell a run whose
    process was killed from one that still trains."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def training_process_gone(run: dict[str, Any]) -> bool:
    """Whether a run.json document says "running" but names a process of this machine that no longer exists (killed,
    crashed, the machine restarted). False when it cannot tell: another machine, Windows, or a run from before runs
    recorded their process. (A pid reused since by another process reads as alive.)"""
    process = run.get("process")
    if run.get("status") != "running" or not isinstance(process, dict) or process.get("host") != socket.gethostname():
        return False
    pid = process.get("pid")
    if os.name == "nt" or not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False  # on Windows os.kill(pid, 0) would terminate the process, not look at it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, but belongs to someone else
        return False
    return False
