"""Entry point of the full Transfer Studio bundle: the ``transfer-studio`` command (no arguments: the app)."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()  # first: a frozen child process must not run the app again
    from desktop.launcher import main

    raise SystemExit(main())
