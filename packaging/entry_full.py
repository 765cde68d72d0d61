"""Entry point of the full Transfer Studio bundle: the ``transfer-studio`` command (no arguments: the app)."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()  # first: a frozen child process must not run the app again
    if sys.platform == "win32":
        import torch  # noqa: F401 - before Qt: Qt's DLLs loaded first break torch's (pytorch#166628)
    from engine.cli import main

    raise SystemExit(main())
