"""Entry point of the Transfer Studio Predictor bundle: ``predict ...`` runs the command line, anything else the
window. Nothing on either path imports torch (the bundle is built without it)."""

import multiprocessing
import sys


def main() -> int:
    if sys.argv[1:2] == ["predict"]:
        from engine.cli import predict_main

        return predict_main(sys.argv[2:], prog="transfer-studio-predictor predict")
    from desktop.predictor_app import main as window_main

    return window_main(sys.argv[1:])


if __name__ == "__main__":
    multiprocessing.freeze_support()
    raise SystemExit(main())
