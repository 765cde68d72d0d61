"""The ``transfer-studio`` command: no arguments (or the bundle's ``--smoke-seconds N``) opens the app; anything
else is the headless CLI in ``engine.cli``, which knows nothing of the GUI."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] != "--smoke-seconds":
        from engine.cli import main as cli_main

        return cli_main(argv)
    if sys.platform == "win32":
        import torch  # noqa: F401 - before Qt: Qt's DLLs loaded first break torch's (pytorch#166628)
    from desktop.app import main as gui_main

    return gui_main(argv)


if __name__ == "__main__":
    sys.exit(main())
