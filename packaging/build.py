"""Build the desktop bundles with PyInstaller into dist/, report their size, and smoke-test them.

    python packaging/build.py [predictor|full|all] [--no-smoke]

predictor  Transfer Studio Predictor (dist/transfer-studio-predictor): built from build/predictor-venv, a virtual
           environment this script creates with only what the predictor needs (the CPU onnxruntime, Pillow, NumPy,
           PySide6-Essentials, platformdirs, pyinstaller; versions from pyproject.toml), so torch cannot get in.
full       Transfer Studio (dist/transfer-studio): built with this interpreter, which needs the package's
           dependencies and pyinstaller (`pip install -e . pyinstaller`). With a CUDA torch it is several GB.

The smoke tests are tests/packaging/test_<name>_bundle.py, run with this interpreter (it needs the test extras).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
WORK = ROOT / "build" / "pyinstaller"
PREDICTOR_VENV = ROOT / "build" / "predictor-venv"
PYINSTALLER = "pyinstaller>=6.10"
# The package's dependencies the predictor needs; onnxruntime-gpu is replaced by the CPU onnxruntime.
PREDICTOR_DEPENDENCIES = ("numpy", "pillow", "pyside6-essentials", "platformdirs", "onnxruntime")
PREDICTOR_FORBIDDEN = ("torch", "torchvision", "onnxruntime-gpu", "onnx", "PyQt5", "PyQt6", "PySide2")


@dataclass(frozen=True)
class Bundle:
    name: str  # the spec's name, the dist/ folder and the executable
    spec: str
    test: str


BUNDLES = {
    "predictor": Bundle("transfer-studio-predictor", "predictor.spec", "tests/packaging/test_predictor_bundle.py"),
    "full": Bundle("transfer-studio", "transfer_studio.spec", "tests/packaging/test_full_bundle.py"),
}


class BuildError(Exception):
    pass


def _project_dependencies() -> list[str]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the installed package's metadata lists the same requirements
        return [r for r in metadata.requires("transfer-studio") or [] if "extra ==" not in r]
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]


def predictor_requirements() -> list[str]:
    """The predictor's share of pyproject.toml's dependencies (markers dropped), plus PyInstaller."""
    chosen: dict[str, str] = {}
    for requirement in _project_dependencies():
        requirement = requirement.split(";")[0].strip()
        written = re.match(r"[A-Za-z0-9._-]+", requirement).group()
        name = written.lower().replace("_", "-")
        name = "onnxruntime" if name == "onnxruntime-gpu" else name
        if name in PREDICTOR_DEPENDENCIES:
            chosen.setdefault(name, name + requirement[len(written):])
    missing = set(PREDICTOR_DEPENDENCIES) - set(chosen)
    if missing:
        raise BuildError(f"pyproject.toml no longer lists {', '.join(sorted(missing))}: update {__file__}")
    return [*chosen.values(), PYINSTALLER]


def _venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(command: list[str | Path], **kwargs: object) -> None:
    print("+ " + " ".join(str(part) for part in command), flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, **kwargs)
    if result.returncode != 0:
        raise BuildError(f"{Path(str(command[0])).name} ... exited with {result.returncode}")


def prepare_predictor_venv() -> Path:
    """Create (or update) build/predictor-venv with the predictor's requirements only; returns its python."""
    python = _venv_python(PREDICTOR_VENV)
    if not python.exists():
        venv.create(PREDICTOR_VENV, with_pip=True, clear=True)
    _run([python, "-m", "pip", "install", "--quiet", *predictor_requirements()])
    check = "import importlib.metadata as m, sys\nfor name in sys.argv[1:]:\n    try: m.version(name); print(name)\n" \
            "    except m.PackageNotFoundError: pass"
    found = subprocess.run([str(python), "-c", check, *PREDICTOR_FORBIDDEN], capture_output=True, text=True,
                           check=True).stdout.split()
    if found:
        raise BuildError(f"{PREDICTOR_VENV} holds {', '.join(found)}, which the predictor must not bundle: delete it")
    return python


def find_pyinstaller(python: Path) -> None:
    if subprocess.run([str(python), "-c", "import PyInstaller"], capture_output=True).returncode != 0:
        raise BuildError(f"PyInstaller is not installed for {python}: python -m pip install '{PYINSTALLER}'")


def bundle_size(folder: Path) -> tuple[float, int]:
    """Megabytes (10^6 bytes) and the number of regular files (symbolic links are neither counted nor followed)."""
    sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]
    return sum(sizes) / 1e6, len(sizes)


def build(which: str, *, smoke: bool) -> None:
    bundle = BUNDLES[which]
    started = time.perf_counter()
    if which == "predictor":
        python = prepare_predictor_venv()
    else:
        python = Path(sys.executable)
        find_pyinstaller(python)
    prepared = time.perf_counter()
    shutil.rmtree(DIST / bundle.name, ignore_errors=True)
    _run([python, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath", DIST,
          "--workpath", WORK / which, ROOT / "packaging" / bundle.spec])
    built = time.perf_counter()
    size_mb, files = bundle_size(DIST / bundle.name)
    timing = f"built in {built - started:.0f} s"
    if which == "predictor":
        timing += f" (build venv {prepared - started:.0f} s, PyInstaller {built - prepared:.0f} s)"
    print(f"{bundle.name}: {DIST / bundle.name}: {size_mb:.0f} MB, {files} files, {timing}", flush=True)
    if smoke:
        _run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", bundle.test],
             env={**os.environ, "TS_DIST": str(DIST), "TS_REQUIRE_BUNDLES": which})
        print(f"{bundle.name}: smoke test passed in {time.perf_counter() - built:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="?", choices=("predictor", "full", "all"), default="predictor")
    parser.add_argument("--no-smoke", action="store_true", help="build only; skip the smoke tests")
    args = parser.parse_args(argv)
    try:
        for which in ("predictor", "full") if args.which == "all" else (args.which,):
            build(which, smoke=not args.no_smoke)
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
