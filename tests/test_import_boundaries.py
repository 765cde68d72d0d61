"""The engine never imports Qt; the registry and image loader never import torch (fresh interpreters)."""

import subprocess
import sys


def _loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                         capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_engine_training_never_imports_qt() -> None:
    modules = _loaded_after("import engine.cli, engine.training.trainer, engine.training.evaluate_run")
    assert "torch" in modules
    assert not {m for m in modules if m.startswith(("PySide6", "pyqtgraph", "desktop"))}


def test_light_modules_do_not_import_torch() -> None:
    modules = _loaded_after("import engine.images, engine.backbones.registry, engine.evaluation.metrics, engine.cli")
    assert "torch" not in modules
