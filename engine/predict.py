"""Classify images with an exported model: onnxruntime, NumPy and Pillow only (torch is never imported).

The preprocessing comes from the model's own metadata and runs through ``engine.images``, the same code
training-time evaluation and the export parity check use. So does the calibration: the graph's probabilities are
already temperature-scaled, and a prediction whose confidence is below the metadata's unsure threshold (or the
caller's ``min_confidence``) is marked unsure; its label is still the most likely class.

On the CPU each worker thread decodes a couple of images and runs them through onnxruntime itself, on one
core: one busy thread per core, and small runs whose activations stay in that core's cache. On 2 cores
(EfficientNet-Lite0, 1,188 JPEGs of about 500x375) that is 271 img/s at 7.2 ms of CPU per image, where decode
threads feeding one 2-thread onnxruntime session with batches of 32 reached 224 img/s at 8.9 ms. On CUDA the
GPU runs whole batches while the workers decode the next ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import io
import math
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from engine.control import RunControl
from engine.errors import BadInputError
from engine.events import BatchPredicted, EventSink, Progress, ignore_event
from engine.heatmaps import class_activation_map
from engine.images import IMAGE_EXTENSIONS, ImageLoadError, is_image_path, preprocess_for_model
from engine.onnx_metadata import HeatmapsUnavailableError, MetadataError, heatmap_outputs, parse_metadata
from engine.preprocessing import Preprocessing

DEVICES = ("auto", "cpu", "cuda")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
PREFETCH_BATCHES = 2
# Images per onnxruntime run on the CPU: small runs keep the activations in the core's cache (Lite0, one core:
# 4.6 ms per image at 1 or 2, 6.5 ms at 32); 2 rather than 1 halves the per-run overhead. Folder throughput on
# 2 cores: 259, 276, 266, 255 and 228 img/s for runs of 1, 2, 4, 8 and 32.
CPU_RUN_SIZE = 2
_QUIET = 3  # onnxruntime log severity: errors only
_SILENT = 4  # fatal only, while probing CUDA (a failed probe logs an error that is expected on CPU machines)
_GLOB_CHARACTERS = frozenset("*?[")


class ModelLoadError(BadInputError):
    """The model file cannot be used; the message names the file and what is wrong with it."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    path: str
    labels: tuple[str, ...]
    preprocessing: Preprocessing
    backbone: str
    training: dict
    app_version: str
    created: str
    temperature: float = 1.0
    unsure_threshold: float | None = None  # the model's own; None for models exported before calibration


@dataclass(frozen=True, slots=True)
class Prediction:
    """One image's result: ``top_k`` is (label, probability), most likely first; empty when ``error`` is set.
    ``unsure``: the confidence is below the threshold in use (never without one, never for an error).
    ``heatmap``: asked for, the top class's activation map on the model's crop (h rows of w values in [0, 1];
    ``engine.heatmaps`` places it on the photo)."""

    path: str
    top_k: tuple[tuple[str, float], ...]
    error: str | None = None
    unsure: bool = False
    heatmap: tuple[tuple[float, ...], ...] | None = None

    @property
    def label(self) -> str | None:
        return self.top_k[0][0] if self.top_k else None

    @property
    def confidence(self) -> float | None:
        return self.top_k[0][1] if self.top_k else None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: ``{path, label, confidence, unsure, top_k: [{label, probability}], error}``."""
        return {"path": self.path, "label": self.label, "confidence": self.confidence, "unsure": self.unsure,
                "top_k": [{"label": label, "probability": p} for label, p in self.top_k], "error": self.error}


class Predictor:
    """An exported Transfer Studio model, ready to classify files.

    ``device``: "auto" uses CUDA when onnxruntime can really create a CUDA session, else the CPU; "cuda"
    insists (BadInputError otherwise); "cpu" never tries. ``threads``: worker threads, one per core this
    process may use by default. ``min_confidence`` replaces the model's unsure threshold (0: never unsure).
    """

    def __init__(self, model_path: str | Path, *, device: str = "auto", threads: int | None = None,
                 min_confidence: float | None = None) -> None:
        path = Path(model_path)
        if device not in DEVICES:
            raise BadInputError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise BadInputError(f"the minimum confidence must be from 0 to 1 (0: never unsure), not {min_confidence}")
        if not path.is_file():
            raise ModelLoadError(f"{path}: model file not found" if not path.is_dir() else
                                 f"{path}: is a folder; pass the .onnx file (e.g. {path / 'model.onnx'})")
        self.threads = threads or _usable_cores()
        self._session = _create_session(path, device, self.threads)
        self.provider: str = self._session.get_providers()[0]
        try:
            metadata = parse_metadata(self._session.get_modelmeta().custom_metadata_map)
        except MetadataError as exc:
            raise ModelLoadError(f"{path}: {exc}") from exc
        self.info = ModelInfo(path=str(path), labels=metadata.labels, preprocessing=metadata.preprocessing,
                              backbone=metadata.backbone, training=metadata.training,
                              app_version=metadata.app_version, created=metadata.created,
                              temperature=metadata.temperature, unsure_threshold=metadata.unsure_threshold)
        self.unsure_threshold = metadata.unsure_threshold if min_confidence is None else min_confidence
        self._input_name, self._output_name, self._softmax = _check_graph(self._session, self.info)
        self._document = metadata.document
        self._on_gpu = self.provider == CUDA_PROVIDER
        # On the GPU a few threads decode ahead of its runs; on the CPU every core runs a worker.
        self._workers = max(1, min(4, self.threads)) if self._on_gpu else self.threads

    def predict_paths(self, paths: Sequence[str | Path], *, top_k: int = 3, batch_size: int = 32,
                      on_event: EventSink = ignore_event, control: RunControl | None = None,
                      heatmaps: bool = False) -> list[Prediction]:
        """One Prediction per path, in order; unreadable files become entries with ``error`` set.

        ``heatmaps``: each prediction also gets its ``heatmap``, from the same onnxruntime run; a model that has
        none raises HeatmapsUnavailableError (saying why) before any image is read.

        Each batch's results are also sent as a BatchPredicted event as soon as they are ready. Raises
        ``engine.control.Cancelled`` when ``control`` is cancelled (checked before every batch). On CUDA a batch
        is one onnxruntime run; on the CPU the workers share it out in runs of ``CPU_RUN_SIZE``.
        """
        if batch_size < 1:
            raise BadInputError(f"batch_size must be at least 1, got {batch_size}")
        top_k = max(1, min(int(top_k), len(self.info.labels)))
        cam_outputs = self._heatmap_outputs() if heatmaps else ()
        paths = [Path(p) for p in paths]
        batches = [paths[start:start + batch_size] for start in range(0, len(paths), batch_size)]
        ahead = PREFETCH_BATCHES
        if not self._on_gpu:  # enough batches that every worker has a run while this thread waits for the oldest
            ahead += self._workers // math.ceil(batch_size / CPU_RUN_SIZE)
        results: list[Prediction] = []
        started = time.perf_counter()
        with ThreadPoolExecutor(self._workers, thread_name_prefix="predict") as pool:
            pending: deque[list[Future]] = deque()
            try:
                for index, batch in enumerate(batches):
                    while len(pending) < ahead and index + len(pending) < len(batches):
                        pending.append(self._submit(pool, batches[index + len(pending)], top_k, cam_outputs))
                    if control is not None:
                        control.check()
                    futures = pending.popleft()
                    predicted = (self._classify(batch, [future.result() for future in futures], top_k, cam_outputs)
                                 if self._on_gpu else [item for future in futures for item in future.result()])
                    results += predicted
                    elapsed = time.perf_counter() - started
                    done = len(results)
                    on_event(BatchPredicted(tuple(predicted), done, len(paths)))
                    on_event(Progress("predicting", done, len(paths), f"{done / elapsed:.0f} img/s",
                                      eta_seconds=elapsed / done * (len(paths) - done)))
            finally:
                for futures in pending:
                    for future in futures:
                        future.cancel()
        return results

    def _submit(self, pool: ThreadPoolExecutor, batch: list[Path], top_k: int,
                cam_outputs: Sequence[str]) -> list[Future]:
        """GPU: one decode per image (the batch runs here later); CPU: runs that decode and classify."""
        if self._on_gpu:
            return [pool.submit(self._load, path) for path in batch]
        return [pool.submit(self._decode_and_classify, batch[start:start + CPU_RUN_SIZE], top_k, cam_outputs)
                for start in range(0, len(batch), CPU_RUN_SIZE)]

    def _decode_and_classify(self, paths: list[Path], top_k: int, cam_outputs: Sequence[str]) -> list[Prediction]:
        return self._classify(paths, [self._load(path) for path in paths], top_k, cam_outputs)

    def _load(self, path: Path) -> np.ndarray | str:
        """The model input for ``path``, or the reason it cannot be read."""
        try:
            return preprocess_for_model(path, self.info.preprocessing)
        except ImageLoadError as exc:
            return exc.reason
        except Exception as exc:  # noqa: BLE001 - one odd file must not stop a folder
            return f"{type(exc).__name__}: {exc}"

    def _classify(self, paths: list[Path], loaded: list[np.ndarray | str], top_k: int,
                  cam_outputs: Sequence[str]) -> list[Prediction]:
        """One onnxruntime run over the images that loaded (with ``cam_outputs``: their heatmaps too); the others
        keep their reason."""
        good = [i for i, item in enumerate(loaded) if isinstance(item, np.ndarray)]
        ranked: dict[int, tuple[tuple[str, float], ...]] = {}
        heatmaps: dict[int, tuple[tuple[float, ...], ...]] = {}
        if good:
            probabilities, *cam_inputs = self._run(np.stack([loaded[i] for i in good]), cam_outputs)
            order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
            labels = self.info.labels
            for row, i in enumerate(good):
                ranked[i] = tuple((labels[c], float(probabilities[row, c])) for c in order[row])
                if cam_inputs:
                    feature_maps, weights = cam_inputs
                    cam = class_activation_map(feature_maps[row], weights, int(order[row, 0]))
                    heatmaps[i] = tuple(map(tuple, cam.tolist()))
        threshold = self.unsure_threshold
        return [Prediction(str(path), ranked[i], None, threshold is not None and ranked[i][0][1] < threshold,
                           heatmaps.get(i))
                if i in ranked else Prediction(str(path), (), str(loaded[i])) for i, path in enumerate(paths)]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N x C) for a preprocessed float32 NCHW batch (on the CPU: on the calling thread)."""
        return self._run(batch)[0]

    def _run(self, batch: np.ndarray, extra: Sequence[str] = ()) -> list[np.ndarray]:
        """The class probabilities, then the ``extra`` outputs, from one onnxruntime run."""
        output, *others = self._session.run([self._output_name, *extra],
                                            {self._input_name: batch.astype(np.float32, copy=False)})
        if output.ndim != 2 or output.shape[1] != len(self.info.labels):
            raise ModelLoadError(f"{self.info.path}: the model returned shape {list(output.shape)} for "
                                 f"{len(self.info.labels)} labels")
        if self._softmax:  # a graph without our probabilities output: scale as ours would
            output = output / self.info.temperature
            shifted = np.exp(output - output.max(axis=1, keepdims=True))
            output = shifted / shifted.sum(axis=1, keepdims=True)
        return [output, *others]

    def heatmaps_unavailable(self) -> str | None:
        """Why this model gives no heatmaps, in words for a tooltip (None: it gives them)."""
        try:
            self._heatmap_outputs()
        except BadInputError as exc:  # HeatmapsUnavailableError, or metadata naming outputs the graph lacks
            return str(exc).removeprefix(f"{self.info.path}: ")
        return None

    def _heatmap_outputs(self) -> tuple[str, str]:
        """The outputs heatmaps are computed from; HeatmapsUnavailableError, naming the model, when it has none."""
        try:
            names = heatmap_outputs(self._document)
        except HeatmapsUnavailableError as exc:
            raise HeatmapsUnavailableError(f"{self.info.path}: {exc}") from exc
        except MetadataError as exc:
            raise ModelLoadError(f"{self.info.path}: {exc}") from exc
        missing = set(names) - {output.name for output in self._session.get_outputs()}
        if missing:
            raise ModelLoadError(f"{self.info.path}: the metadata names heatmap outputs the graph lacks: "
                                 f"{', '.join(sorted(missing))}")
        return names


def expand_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[Prediction]]:
    """Files as given, folders searched recursively (image extensions only, hidden entries skipped), and globs.

    Returns the files (each once, in input order) and error entries for inputs that name nothing usable.
    """
    files: list[Path] = []
    errors: list[Prediction] = []
    seen: set[str] = set()

    def add(found: list[Path]) -> None:
        for path in found:
            key = os.path.abspath(path)
            if key not in seen:
                seen.add(key)
                files.append(path)

    for raw in inputs:
        text = str(raw)
        path = Path(raw)
        if path.is_dir():
            found = _images_under(path)
            if not found:
                extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
                errors.append(Prediction(text, (), f"folder contains no images (looked for {extensions})"))
            add(found)
        elif path.exists():
            add([path])
        elif _GLOB_CHARACTERS & set(text):
            matches = [Path(m) for m in sorted(glob.glob(os.path.expanduser(text), recursive=True))]
            found = [m for m in matches if m.is_file() and is_image_path(m)]
            for folder in (m for m in matches if m.is_dir()):
                found += _images_under(folder)
            if not found:
                errors.append(Prediction(text, (), "no images match this pattern"))
            add(found)
        else:
            errors.append(Prediction(text, (), "broken symbolic link (its target is missing, or it loops)"
                                     if path.is_symlink() else "file not found"))
    return files, errors


def _images_under(folder: Path) -> list[Path]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / n for n in sorted(names) if not n.startswith(".") and is_image_path(Path(n))]
    return found


def _usable_cores() -> int:
    """The cores this process may run on (a container or ``taskset`` may allow fewer than the machine has)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def _create_session(path: Path, device: str, threads: int) -> ort.InferenceSession:
    ort.set_default_logger_severity(_QUIET)
    options = ort.SessionOptions()
    options.log_severity_level = _QUIET
    options.intra_op_num_threads = threads
    if device != "cpu" and CUDA_PROVIDER in ort.get_available_providers():
        session = _try_cuda(path, options)
        if session is not None:
            return session
    if device == "cuda":
        raise BadInputError(f"device 'cuda' was requested but onnxruntime cannot create a CUDA session here "
                         f"(providers built in: {', '.join(ort.get_available_providers())}); use auto or cpu")
    # No intra-op thread pool on the CPU: each run stays on the worker thread that decoded its images.
    options.intra_op_num_threads = 1
    return _open(path, options, [CPU_PROVIDER])


def _try_cuda(path: Path, options: ort.SessionOptions) -> ort.InferenceSession | None:
    """A CUDA session, or None: onnxruntime-gpu lists CUDA even where it cannot load it, so try it for real."""
    if not _nvidia_gpu_visible():
        return None
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:  # the CUDA libraries pip installed (nvidia-* wheels) are not on the loader path
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
            preload()
    ort.set_default_logger_severity(_SILENT)
    try:
        session = _open(path, options, [CUDA_PROVIDER, CPU_PROVIDER])
    finally:
        ort.set_default_logger_severity(_QUIET)
    return session if session.get_providers()[0] == CUDA_PROVIDER else None


def _nvidia_gpu_visible() -> bool:
    """Whether the NVIDIA driver, the library CUDA itself loads, sees a GPU. Checking takes 1 ms, where loading
    the CUDA libraries and failing to create a session cost a machine without one 75 ms at start and 30 ms at exit.
    """
    try:
        driver = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    except OSError:
        return False
    count = ctypes.c_int(0)
    return driver.cuInit(0) == 0 and driver.cuDeviceGetCount(ctypes.byref(count)) == 0 and count.value > 0


def _open(path: Path, options: ort.SessionOptions, providers: list[str]) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for unreadable models
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"{path}: not a valid ONNX model ({detail})") from exc


def _check_graph(session: ort.InferenceSession, info: ModelInfo) -> tuple[str, str, bool]:
    """The input name, the output to read and whether it still needs a softmax; refuses a mismatched graph."""
    inputs = session.get_inputs()
    crop = info.preprocessing.crop
    if len(inputs) != 1:
        raise ModelLoadError(f"{info.path}: expected one image input, found {len(inputs)}")
    shape = list(inputs[0].shape)
    expected = [3, crop, crop]
    if len(shape) != 4 or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected, strict=True)):
        raise ModelLoadError(f"{info.path}: the graph's input shape {shape} does not match the metadata's "
                             f"N x 3 x {crop} x {crop}")
    outputs = {output.name: output for output in session.get_outputs()}
    name = "probabilities" if "probabilities" in outputs else "logits" if "logits" in outputs else None
    if name is None:
        raise ModelLoadError(f"{info.path}: no 'probabilities' or 'logits' output (outputs: {', '.join(outputs)})")
    classes = outputs[name].shape[-1] if outputs[name].shape else None
    if isinstance(classes, int) and classes != len(info.labels):
        raise ModelLoadError(f"{info.path}: the metadata lists {len(info.labels)} labels but the model's "
                             f"'{name}' output has {classes} classes")
    return inputs[0].name, name, name == "logits"
