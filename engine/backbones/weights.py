"""Fetching and loading pretrained weights safely.

Downloads go into torch's hub cache (where torchvision itself would put them) with progress events, a
cancel check and a SHA-256 prefix check; loading uses ``weights_only=True`` or safetensors, never pickle.
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import torch

from engine.atomic import write_atomic
from engine.control import RunControl
from engine.errors import BadInputError
from engine.events import EventSink, Progress, ignore_event

_CHUNK = 1 << 20


class WeightsUnavailableError(RuntimeError):
    """Weights could not be downloaded or read; the message says where to put the file."""


class WeightsMismatchError(BadInputError):
    """A state dict that does not fit the architecture."""


def cached_weights_path(file_name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def fetch_weights(url: str, *, on_event: EventSink = ignore_event, control: RunControl | None = None,
                  timeout: float = 30.0) -> Path:
    """Return the cached file for ``url``, downloading it first if needed."""
    target = cached_weights_path(Path(url).name)
    if target.exists():
        return target
    hash_prefix = _hash_prefix(target.name)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URLs
            total = int(response.headers.get("Content-Length") or 0)
            digest = hashlib.sha256()

            def write(handle) -> None:  # noqa: ANN001 - a binary file object
                done = 0
                while chunk := response.read(_CHUNK):
                    if control is not None:
                        control.check()
                    handle.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    on_event(Progress("downloading", done, total, f"{target.name}: {done / 1e6:.1f} MB"))
                if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
                    raise WeightsUnavailableError(f"{url}: downloaded file is corrupt (hash mismatch); try again")

            write_atomic(target, write)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise WeightsUnavailableError(
            f"could not download {url} ({getattr(exc, 'reason', exc)}). Without internet, put the file "
            f"{target.name} in {target.parent} or pass a local weights file (--weights FILE)"
        ) from exc
    return target


def _hash_prefix(file_name: str) -> str:
    """torchvision names files "<name>-<sha256 prefix>.pth"."""
    stem = Path(file_name).stem
    _, _, suffix = stem.rpartition("-")
    return suffix if len(suffix) >= 8 and all(c in "0123456789abcdef" for c in suffix) else ""


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Load a .pth/.pt (tensors only, ``weights_only=True``) or .safetensors state dict."""
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: is a folder; pass the weights file itself (.pth, .pt, .safetensors)"
                                      if path.is_dir() else f"{path}: weights file not found")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            with warnings.catch_warnings():  # a forged file makes torch warn about its pickle protocol
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here means an unusable file; say which
        raise WeightsUnavailableError(
            f"{path}: not a usable weights file ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            "Only plain state dicts (.pth, .pt, .safetensors) are accepted."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path}: does not contain a state dict of tensors")
    return state


def load_matching(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, turning key or shape mismatches into one readable error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

        details = "; ".join(
            f"{label}: {few(keys)}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape))
            if keys
        )
        raise WeightsMismatchError(f"{source}: weights do not match this architecture ({details})")
    module.load_state_dict(state, strict=True)
